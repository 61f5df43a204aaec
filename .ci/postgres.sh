#!/usr/bin/env bash
# A throwaway PostgreSQL cluster for the PostgresKeyStore tests (tests/sql_stores.rs).
#
#   eval "$(.ci/postgres.sh start)"   # install if needed, create, start; sets
#                                     # API_KEYS_TEST_POSTGRES_URL and API_KEYS_PG_DIR
#   cargo test --all-features --test sql_stores
#   .ci/postgres.sh stop              # stop and delete it ($API_KEYS_PG_DIR, or a dir argument)
#
# `start` prints only `export ...` lines on stdout (everything else goes to
# stderr). The cluster lives in a fresh temporary directory, listens on
# 127.0.0.1 only (first free port from 55432) and on a Unix socket inside that
# directory, uses SCRAM password authentication with a random password, and
# runs with fsync off: it is for tests, never for data.
#
# If initdb/pg_ctl are not on PATH or under /usr/lib/postgresql/*/bin, it
# installs Debian's `postgresql` package (needs root or sudo). initdb refuses
# to run as root, so as root the cluster runs as the `postgres` user (created
# by the package), or a dedicated system user if that does not exist.
set -euo pipefail

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

MARKER=.api-keys-test-cluster
STATE_FILE="${TMPDIR:-/tmp}/api-keys-test-postgres.dir"

find_bindir() {
    local dir
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        # Through symlinks (e.g. /usr/local/bin/initdb), to find createdb too.
        dirname "$(readlink -f "$(command -v initdb)")"
        return 0
    fi
    # Debian keeps the server binaries off PATH; take the newest version.
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
        echo "$dir"
        return 0
    fi
    return 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "PostgreSQL is not installed and this is neither root nor has sudo: install the 'postgresql' package"
    fi
}

install_postgres() {
    command -v apt-get >/dev/null 2>&1 ||
        die "PostgreSQL is not installed and apt-get is not available: install PostgreSQL (initdb, pg_ctl)"
    log "installing PostgreSQL from Debian packages"
    # Don't let the package create and start its own cluster on port 5432:
    # the tests use their own. (Only if the admin has not configured this.)
    if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
        as_root mkdir -p /etc/postgresql-common
        echo 'create_main_cluster = false' | as_root tee /etc/postgresql-common/createcluster.conf >/dev/null
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        postgresql >&2
}

# Runs a command as the cluster's owner.
as_owner() {
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u "$OWNER" -- "$@"
    else
        "$@"
    fi
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
    local bindir dir port password
    bindir=$(find_bindir || true)
    if [ -z "$bindir" ]; then
        install_postgres
        bindir=$(find_bindir) || die "PostgreSQL was installed but initdb/pg_ctl were not found"
    fi
    log "using $("$bindir/postgres" --version 2>/dev/null || echo "$bindir")"

    if [ "$(id -u)" -eq 0 ]; then
        if id postgres >/dev/null 2>&1; then
            OWNER=postgres
        else
            OWNER=api-keys-pg
            id "$OWNER" >/dev/null 2>&1 ||
                useradd --system --no-create-home --shell /usr/sbin/nologin "$OWNER"
        fi
    else
        OWNER=$(id -un)
    fi

    dir=$(mktemp -d "${TMPDIR:-/tmp}/api-keys-pg.XXXXXX")
    # Whatever fails from here on, leave nothing running or behind.
    trap 'stop "$dir" >/dev/null 2>&1 || true' EXIT
    touch "$dir/$MARKER"
    mkdir "$dir/sock"
    password=$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')
    printf '%s\n' "$password" >"$dir/pwfile"
    chmod 600 "$dir/pwfile"
    chmod 755 "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        chown -R "$OWNER" "$dir"
    fi

    port=55432
    while port_in_use "$port"; do
        port=$((port + 1))
        [ "$port" -lt 55532 ] || die "no free port in 55432-55531"
    done

    log "creating a cluster in $dir (owner $OWNER)"
    as_owner "$bindir/initdb" -D "$dir/data" -U api_keys --pwfile="$dir/pwfile" \
        --auth=scram-sha-256 --encoding=UTF8 --no-locale >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        die "initdb failed"
    }
    rm -f "$dir/pwfile"

    log "starting it on 127.0.0.1:$port"
    as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir/sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
        start >&2 || {
        cat "$dir/server.log" >&2 || true
        die "the server did not start"
    }
    printf '%s\n' "$dir" >"$STATE_FILE"

    PGPASSWORD=$password "$bindir/createdb" -h 127.0.0.1 -p "$port" -U api_keys api_keys_test ||
        die "createdb failed"

    trap - EXIT
    log "ready; stop it with: .ci/postgres.sh stop"
    printf 'export API_KEYS_PG_DIR=%q\n' "$dir"
    printf 'export API_KEYS_TEST_POSTGRES_URL=%q\n' \
        "postgres://api_keys:$password@127.0.0.1:$port/api_keys_test"
}

stop() {
    local dir=${1:-${API_KEYS_PG_DIR:-}} bindir owner
    if [ -z "$dir" ] && [ -f "$STATE_FILE" ]; then
        dir=$(cat "$STATE_FILE")
    fi
    [ -n "$dir" ] || { log "no cluster to stop"; return 0; }
    [ -d "$dir" ] || { log "$dir is gone already"; rm -f "$STATE_FILE"; return 0; }
    [ -f "$dir/$MARKER" ] || die "$dir was not made by this script; not touching it"
    if [ -f "$dir/data/postmaster.pid" ]; then
        bindir=$(find_bindir) || die "pg_ctl not found"
        owner=$(stat -c %U "$dir/data")
        log "stopping the cluster in $dir"
        if [ "$(id -u)" -eq 0 ]; then
            runuser -u "$owner" -- "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >&2 || true
        else
            "$bindir/pg_ctl" -D "$dir/data" -m fast -w -t 60 stop >&2 || true
        fi
    fi
    rm -rf "$dir"
    if [ -f "$STATE_FILE" ] && [ "$(cat "$STATE_FILE")" = "$dir" ]; then
        rm -f "$STATE_FILE"
    fi
    log "removed $dir"
}

case "${1:-}" in
start) start ;;
stop) stop "${2:-}" ;;
*)
    echo "usage: $0 start | stop [DIR]" >&2
    exit 2
    ;;
esac
