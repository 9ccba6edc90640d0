#!/usr/bin/env bash
# MariaDB from Debian's packages, on 127.0.0.1:${MARIADB_PORT:-13306}, data under var/services/mariadb.
# Creates the database and user of MYSQL_URL: mysql://tracardi:tracardi@127.0.0.1:13306/tracardi
set -euo pipefail
source "$(dirname "$0")/common.sh"
PORT=${MARIADB_PORT:-13306}
DIR=$SERVICES_VAR/mariadb
PIDFILE=$DIR/mariadb.pid
LOG=$DIR/mariadb.log
SOCKET=$DIR/mysqld.sock

start() {
  apt_install mariadb-server mariadb-client
  mkdir -p "$DIR"
  if running "$PIDFILE"; then echo "mariadb: already running (pid $(cat "$PIDFILE"))"; return 0; fi
  if [ ! -d "$DIR/data/mysql" ]; then
    mariadb-install-db --user="$(id -un)" --datadir="$DIR/data" --auth-root-authentication-method=socket \
      --skip-test-db >"$DIR/install.log" 2>&1
  fi
  mariadbd --no-defaults --user="$(id -un)" --datadir="$DIR/data" --socket="$SOCKET" --port="$PORT" \
    --bind-address=127.0.0.1 --pid-file="$DIR/mariadbd.pid" --skip-name-resolve \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_bin \
    --innodb-buffer-pool-size=128M --innodb-flush-log-at-trx-commit=2 --max-connections=300 \
    >"$LOG" 2>&1 &
  echo $! >"$PIDFILE"
  wait_until 60 "$PIDFILE" "$LOG" mariadb --socket="$SOCKET" -uroot -e "SELECT 1"
  mariadb --socket="$SOCKET" -uroot -e "
    CREATE DATABASE IF NOT EXISTS tracardi CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
    CREATE USER IF NOT EXISTS 'tracardi'@'127.0.0.1' IDENTIFIED BY 'tracardi';
    GRANT ALL PRIVILEGES ON *.* TO 'tracardi'@'127.0.0.1';
    FLUSH PRIVILEGES;"
  echo "mariadb: ready on 127.0.0.1:$PORT (pid $(cat "$PIDFILE"))"
}

case "${1:-}" in
  start) start ;;
  stop) stop_pid "$PIDFILE" 60 && echo "mariadb: stopped" ;;
  status) running "$PIDFILE" && echo "mariadb: running (pid $(cat "$PIDFILE"))" || { echo "mariadb: stopped"; exit 1; } ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
