#!/usr/bin/env bash
# A throwaway MariaDB server for the MySqlKeyStore tests.
#
#   eval "$(.ci/mariadb.sh start)"   # install if needed, create, start; sets
#                                    # API_KEYS_TEST_MYSQL_URL and API_KEYS_MARIADB_DIR
#   cargo test --features mysql --test sql_stores
#   .ci/mariadb.sh stop              # stop and delete it ($API_KEYS_MARIADB_DIR, or a dir argument)
#
# `start` prints only `export ...` lines on stdout (everything else goes to
# stderr). The server lives in a fresh temporary directory, listens on
# 127.0.0.1 only (first free port from 53306) and on a Unix socket inside that
# directory, has one database (`api_keys_test`) and one user (`api_keys`, a
# random password, all privileges on the databases named `api_keys_test…`
# only, so tests can make empty ones), and runs without
# binary log or flushes at commit: it is for tests, never for data.
#
# If mariadbd/mariadb-install-db are not on PATH or in /usr/sbin, it installs
# Debian's `mariadb-server` package (needs root or sudo) without letting the
# package start its own service. As root the server runs as the `mysql` user
# (created by the package).
set -euo pipefail

log() { printf 'mariadb.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

MARKER=.api-keys-test-mariadb
STATE_FILE="${TMPDIR:-/tmp}/api-keys-test-mariadb.dir"

find_tool() {
    local name
    for name in "$@"; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
        if [ -x "/usr/sbin/$name" ]; then
            echo "/usr/sbin/$name"
            return 0
        fi
    done
    return 1
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "MariaDB is not installed and this is neither root nor has sudo: install the 'mariadb-server' package"
    fi
}

install_mariadb() {
    command -v apt-get >/dev/null 2>&1 ||
        die "MariaDB is not installed and apt-get is not available: install mariadb-server"
    log "installing MariaDB from Debian packages"
    # Don't let the package start its own server on port 3306: the tests
    # use their own. policy-rc.d answering 101 forbids service starts during
    # the install (only if the admin has not installed a policy of their own).
    local policy=/usr/sbin/policy-rc.d placed=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null
        as_root chmod 755 "$policy"
        placed=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
    local rc=0
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        mariadb-server mariadb-client >&2 || rc=$?
    if [ "$placed" -eq 1 ]; then
        as_root rm -f "$policy"
    fi
    [ "$rc" -eq 0 ] || die "apt-get install mariadb-server failed"
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
    local server installdb client dir port password user_args=() i
    server=$(find_tool mariadbd mysqld || true)
    installdb=$(find_tool mariadb-install-db mysql_install_db || true)
    client=$(find_tool mariadb mysql || true)
    if [ -z "$server" ] || [ -z "$installdb" ] || [ -z "$client" ]; then
        install_mariadb
        server=$(find_tool mariadbd mysqld) || die "MariaDB was installed but mariadbd was not found"
        installdb=$(find_tool mariadb-install-db mysql_install_db) || die "mariadb-install-db not found"
        client=$(find_tool mariadb mysql) || die "the mariadb client was not found"
    fi
    log "using $("$server" --version 2>/dev/null || echo "$server")"

    dir=$(mktemp -d "${TMPDIR:-/tmp}/api-keys-mariadb.XXXXXX")
    # Whatever fails from here on, leave nothing running or behind.
    trap 'stop "$dir" >/dev/null 2>&1 || true' EXIT
    touch "$dir/$MARKER"
    mkdir "$dir/data"
    chmod 755 "$dir"
    if [ "$(id -u)" -eq 0 ]; then
        id mysql >/dev/null 2>&1 || die "running as root but there is no 'mysql' user"
        chown -R mysql "$dir"
        user_args=(--user=mysql)
    fi

    port=53306
    while port_in_use "$port"; do
        port=$((port + 1))
        [ "$port" -lt 53406 ] || die "no free port in 53306-53405"
    done

    log "creating a server in $dir"
    "$installdb" --no-defaults "${user_args[@]}" --datadir="$dir/data" \
        --auth-root-authentication-method=normal --skip-test-db \
        >"$dir/install.log" 2>&1 || {
        cat "$dir/install.log" >&2
        die "mariadb-install-db failed"
    }

    log "starting it on 127.0.0.1:$port"
    "$server" --no-defaults "${user_args[@]}" --datadir="$dir/data" \
        --bind-address=127.0.0.1 --port="$port" --socket="$dir/mysqld.sock" \
        --pid-file="$dir/mysqld.pid" --log-error="$dir/server.log" \
        --skip-log-bin --innodb-flush-log-at-trx-commit=0 --innodb-doublewrite=0 \
        --innodb-buffer-pool-size=64M --max-connections=200 \
        --character-set-server=utf8mb4 --collation-server=utf8mb4_bin \
        >/dev/null 2>&1 &
    printf '%s\n' "$dir" >"$STATE_FILE"

    for i in $(seq 1 120); do
        if "$client" --no-defaults --socket="$dir/mysqld.sock" -uroot -e 'SELECT 1' >/dev/null 2>&1; then
            break
        fi
        [ "$i" -lt 120 ] || {
            cat "$dir/server.log" >&2 || true
            die "the server did not start"
        }
        sleep 0.5
    done

    password=$(od -An -N18 -tx1 /dev/urandom | tr -d ' \n')
    "$client" --no-defaults --socket="$dir/mysqld.sock" -uroot <<SQL || die "creating the database failed"
CREATE DATABASE api_keys_test CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
CREATE USER 'api_keys'@'127.0.0.1' IDENTIFIED BY '$password';
GRANT ALL PRIVILEGES ON \`api\\_keys\\_test%\`.* TO 'api_keys'@'127.0.0.1';
SQL

    trap - EXIT
    log "ready; stop it with: .ci/mariadb.sh stop"
    printf 'export API_KEYS_MARIADB_DIR=%q\n' "$dir"
    printf 'export API_KEYS_TEST_MYSQL_URL=%q\n' \
        "mysql://api_keys:$password@127.0.0.1:$port/api_keys_test"
}

stop() {
    local dir=${1:-${API_KEYS_MARIADB_DIR:-}} pid i
    if [ -z "$dir" ] && [ -f "$STATE_FILE" ]; then
        dir=$(cat "$STATE_FILE")
    fi
    [ -n "$dir" ] || { log "no server to stop"; return 0; }
    [ -d "$dir" ] || { log "$dir is gone already"; rm -f "$STATE_FILE"; return 0; }
    [ -f "$dir/$MARKER" ] || die "$dir was not made by this script; not touching it"
    if [ -f "$dir/mysqld.pid" ]; then
        pid=$(cat "$dir/mysqld.pid")
        log "stopping the server in $dir (pid $pid)"
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 120); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "the server did not stop; killing it"
            kill -KILL "$pid" 2>/dev/null || true
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
