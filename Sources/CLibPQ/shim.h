// libpq, PostgreSQL's C client (Debian libpq-dev; headers under /usr/include/postgresql,
// found through pkg-config).
#include <libpq-fe.h>
