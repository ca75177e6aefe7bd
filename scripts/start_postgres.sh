#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on 127.0.0.1 for mtlsearch studies and tests.
#
#   source scripts/start_postgres.sh      # exports MTLSEARCH_TEST_POSTGRES_URL
#   bash scripts/start_postgres.sh        # prints the URL on the last line
#
# Idempotent: a server already running on the data folder is reused. Installs PostgreSQL with
# apt-get when missing (as root) and the psycopg2 driver with pip. The server runs as the
# system user "postgres" (initdb refuses to run as root). Settings (environment):
#   MTLSEARCH_PG_DIR  data folder  (default /tmp/mtlsearch-pg)
#   MTLSEARCH_PG_DB   database     (default mtlsearch)
#   MTLSEARCH_PG_STOP=1            stop the server instead
_mtlsearch_pg() {
    local dir="${MTLSEARCH_PG_DIR:-/tmp/mtlsearch-pg}" db="${MTLSEARCH_PG_DB:-mtlsearch}"
    local user=postgres bin port run
    bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    if [ -z "$bin" ] && ! command -v initdb >/dev/null 2>&1; then
        echo "start_postgres: installing PostgreSQL with apt-get" >&2
        apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq postgresql >&2 || { echo "start_postgres: apt-get failed" >&2; return 1; }
        bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    fi
    [ -n "$bin" ] || bin="$(dirname "$(command -v initdb)")"
    python -c "import psycopg2" 2>/dev/null || python -m pip install -q psycopg2-binary >&2 \
        || { echo "start_postgres: cannot install psycopg2-binary" >&2; return 1; }
    if [ "$(id -u)" = 0 ]; then
        id "$user" >/dev/null 2>&1 || useradd --system --create-home --shell /bin/bash "$user" \
            || { echo "start_postgres: cannot create user $user" >&2; return 1; }
        _mtlsearch_pg_run() { runuser -u "$user" -- "$@"; }
    else
        user="$(id -un)"
        _mtlsearch_pg_run() { "$@"; }
    fi
    mkdir -p "$dir" && [ "$(id -u)" != 0 ] || chown "$user" "$dir"
    chmod 700 "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
        _mtlsearch_pg_run "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
            || { cat "$dir/initdb.log" >&2; return 1; }
    fi
    if _mtlsearch_pg_run "$bin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 && [ -f "$dir/port" ]; then
        port="$(cat "$dir/port")"
    else
        port="$(python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
        echo "$port" >"$dir/port"
        _mtlsearch_pg_run "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
            -o "-h 127.0.0.1 -p $port -k $dir -c max_connections=200 -c fsync=off" start >&2 \
            || { tail -n 20 "$dir/server.log" >&2; return 1; }
    fi
    if ! _mtlsearch_pg_run "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -Atc \
            "SELECT 1 FROM pg_database WHERE datname='$db'" postgres | grep -q 1; then
        _mtlsearch_pg_run "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres "$db" || return 1
    fi
    export MTLSEARCH_TEST_POSTGRES_URL="postgresql+psycopg2://postgres@127.0.0.1:$port/$db"
    echo "$MTLSEARCH_TEST_POSTGRES_URL"
}
_mtlsearch_pg_stop() {
    local dir="${MTLSEARCH_PG_DIR:-/tmp/mtlsearch-pg}" bin
    bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    [ -n "$bin" ] || bin="$(dirname "$(command -v pg_ctl)")"
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m fast stop
    else "$bin/pg_ctl" -D "$dir/data" -m fast stop; fi
}
if [ "${MTLSEARCH_PG_STOP:-}" = 1 ]; then _mtlsearch_pg_stop; else _mtlsearch_pg; fi
