#!/usr/bin/env bash
# Start a local PostgreSQL server for promptopt's store tests and print its URL.
#
# Idempotent: installs Debian's `postgresql` if missing, creates and starts a cluster
# if none is running, creates (or updates) the role and database, and prints
#   postgresql+psycopg://promptopt:<password>@127.0.0.1:<port>/promptopt_test
# on its LAST line (everything else goes to stderr), so CI can do
#   export PROMPTOPT_TEST_PG_URL=$(bash .ci/postgres.sh | tail -1)
#
# The role gets CREATEDB because the test-suite creates a throw-away database per test, and
# pg_signal_backend so that dropping one ends an autovacuum worker still in it.
# Override with PROMPTOPT_PG_USER / PROMPTOPT_PG_PASSWORD / PROMPTOPT_PG_DB.
set -euo pipefail

PG_USER="${PROMPTOPT_PG_USER:-promptopt}"
PG_PASSWORD="${PROMPTOPT_PG_PASSWORD:-promptopt}"
PG_DB="${PROMPTOPT_PG_DB:-promptopt_test}"

log() { echo "postgres.sh: $*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

if ! command -v pg_lsclusters >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
    log "installing postgresql"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi

# Newest installed server version.
PG_VERSION="$(ls /usr/lib/postgresql | sort -n | tail -1)"
if ! pg_lsclusters -h | awk -v v="$PG_VERSION" '$1 == v && $2 == "main"' | grep -q .; then
    log "creating cluster $PG_VERSION/main"
    as_root pg_createcluster "$PG_VERSION" main >&2
fi

PG_PORT="$(pg_lsclusters -h | awk -v v="$PG_VERSION" '$1 == v && $2 == "main" {print $3}')"
PG_STATUS="$(pg_lsclusters -h | awk -v v="$PG_VERSION" '$1 == v && $2 == "main" {print $4}')"
if [ "$PG_STATUS" != "online" ]; then
    log "starting cluster $PG_VERSION/main on port $PG_PORT"
    as_root pg_ctlcluster "$PG_VERSION" main start >&2
fi

# Wait until the server accepts connections (start is asynchronous on slow machines).
for _ in $(seq 1 60); do
    if as_root su postgres -c "pg_isready -q -h 127.0.0.1 -p $PG_PORT" 2>/dev/null; then break; fi
    sleep 0.5
done
as_root su postgres -c "pg_isready -h 127.0.0.1 -p $PG_PORT" >&2

psql_admin() {
    as_root su postgres -c "psql -v ON_ERROR_STOP=1 -qAt -p $PG_PORT $*"
}

# Quote for SQL literals (double single quotes).
sql_password="${PG_PASSWORD//\'/\'\'}"
if [ "$(psql_admin "-c \"SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER'\"")" = "1" ]; then
    psql_admin "-c \"ALTER ROLE \\\"$PG_USER\\\" WITH LOGIN CREATEDB PASSWORD '$sql_password'\"" >&2
else
    log "creating role $PG_USER"
    psql_admin "-c \"CREATE ROLE \\\"$PG_USER\\\" WITH LOGIN CREATEDB PASSWORD '$sql_password'\"" >&2
fi
# DROP DATABASE ... WITH (FORCE) in the tests' teardown terminates the database's other
# sessions; an autovacuum worker's session belongs to no role, so only pg_signal_backend
# lets a non-superuser end it (without it the drop fails when autovacuum happens to run).
psql_admin "-c \"GRANT pg_signal_backend TO \\\"$PG_USER\\\"\"" >&2
if [ "$(psql_admin "-c \"SELECT 1 FROM pg_database WHERE datname = '$PG_DB'\"")" != "1" ]; then
    log "creating database $PG_DB"
    psql_admin "-c \"CREATE DATABASE \\\"$PG_DB\\\" OWNER \\\"$PG_USER\\\"\"" >&2
fi

# URL-encode the password for the URL (python3 is always present where promptopt runs).
enc_password="$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$PG_PASSWORD")"
echo "postgresql+psycopg://${PG_USER}:${enc_password}@127.0.0.1:${PG_PORT}/${PG_DB}"
