#!/usr/bin/env bash
# Builds and runs the libFuzzer target for the HTTP request parser
# (Tests/Fuzz/HTTPParserFuzz.swift) with AddressSanitizer.
#   scripts/http-fuzz.sh [seconds]   (default 60)
set -euo pipefail
cd "$(dirname "$0")/.."
out=.build/fuzz
mkdir -p "$out" "$out/corpus"
flags=(-sanitize=fuzzer,address -parse-as-library -O -g)

swiftc "${flags[@]}" -module-name KilnJSON -emit-module -emit-module-path "$out/KilnJSON.swiftmodule" \
    -emit-object -wmo -o "$out/KilnJSON.o" Sources/KilnJSON/*.swift
swiftc "${flags[@]}" -module-name KilnHTTP -I "$out" -emit-module -emit-module-path "$out/KilnHTTP.swiftmodule" \
    -emit-object -wmo -o "$out/KilnHTTP.o" Sources/KilnHTTP/*.swift
swiftc "${flags[@]}" -I "$out" Tests/Fuzz/HTTPParserFuzz.swift "$out/KilnHTTP.o" "$out/KilnJSON.o" \
    -o "$out/http-parser-fuzz"

# Seed corpus: a few valid and hostile requests.
printf 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n' > "$out/corpus/get"
printf 'POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello' > "$out/corpus/post"
printf 'POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\n' > "$out/corpus/chunked"
printf 'POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nokGET / HTTP/1.0\r\n\r\n' > "$out/corpus/pipelined"

"$out/http-parser-fuzz" -max_len=65536 -max_total_time="${1:-60}" "$out/corpus"
