#!/usr/bin/env bash
# The client-compatibility run under the name the issue gives it: see scripts/compat-tests.sh.
exec "$(dirname "$0")/compat-tests.sh" "$@"
