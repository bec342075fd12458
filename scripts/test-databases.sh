#!/usr/bin/env bash
# Brings up PostgreSQL 15 and MariaDB on 127.0.0.1 for the tests, then prints
# the URLs to use. Idempotent: a quick no-op when both already answer.
#   PostgreSQL: user postgres, trust on 127.0.0.1:5432, no password.
#   MariaDB:    root@127.0.0.1:3306, empty password, max_connections >= 500.
# A database whose TEST_POSTGRES_URL / TEST_MYSQL_URL is already set is left
# alone (someone else provides it). Changing anything needs root.
set -euo pipefail

PG_URL='postgresql+asyncpg://postgres@127.0.0.1:5432/postgres'
MY_URL='mysql+aiomysql://root@127.0.0.1:3306/mysql'
WAIT_SECONDS=${TEST_DB_WAIT_SECONDS:-60}
MY_MAX_CONNECTIONS=500
MY_LOG=/var/log/mysql/error.log

if [[ -n ${TEST_POSTGRES_URL:-} && -n ${TEST_MYSQL_URL:-} ]]; then
  exit 0
fi

say() { echo "test-databases: $*" >&2; }
die() { echo "test-databases: ERROR: $*" >&2; exit 1; }

# wait_for SECONDS CMD...: true once CMD succeeds, false after SECONDS.
wait_for() {
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

locked=0
become_admin() {  # root only, and one bring-up at a time
  [[ $(id -u) -eq 0 ]] || die "$1 needs to be started or configured, which needs root (or set TEST_POSTGRES_URL and TEST_MYSQL_URL)"
  if ((!locked)); then  # fd 9; closed (9>&-) for every daemon we start
    exec 9>/run/lock/users-v1-test-databases.lock
    flock -w 180 9 || die "another test-databases.sh run holds /run/lock/users-v1-test-databases.lock"
    locked=1
  fi
}

apt_updated=0
apt_install() {
  if ((!apt_updated)); then apt-get update 9>&-; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y "$@" 9>&-
}

# ---------------------------------------------------------------- PostgreSQL
pg_sql() { PGCONNECT_TIMEOUT=5 psql -h 127.0.0.1 -p 5432 -U postgres -d postgres -w -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }
pg_ok() { pg_sql -c 'SELECT 1' >/dev/null 2>&1; }

postgres_up() {
  pg_ok && return 0
  become_admin PostgreSQL
  pg_ok && return 0  # another run finished it while we waited for the lock
  if [[ ! -d /etc/postgresql ]] || [[ -z $(ls /etc/postgresql) ]]; then
    say "installing PostgreSQL"
    apt_install postgresql
  fi
  local v hba
  v=$(ls /etc/postgresql | sort -n | tail -1)
  hba=/etc/postgresql/$v/main/pg_hba.conf
  [[ -f $hba ]] || die "no PostgreSQL $v cluster 'main' ($hba is missing)"
  if ! grep -qx 'host all all 127.0.0.1/32 trust' "$hba"; then
    say "PostgreSQL $v: trusting 127.0.0.1 and ::1 in $hba"
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba"
  fi
  if pg_isready -q -h 127.0.0.1; then
    say "PostgreSQL $v: reloading"
    pg_ctlcluster --skip-systemctl-redirect "$v" main reload 9>&-
  else
    say "PostgreSQL $v: starting"
    local rc=0
    pg_ctlcluster --skip-systemctl-redirect "$v" main start 9>&- || rc=$?
    ((rc == 0 || rc == 2)) || die "pg_ctlcluster $v main start exited $rc; see /var/log/postgresql/postgresql-$v-main.log"
  fi
  if ! wait_for "$WAIT_SECONDS" pg_isready -h 127.0.0.1 -p 5432; then
    tail -n 20 "/var/log/postgresql/postgresql-$v-main.log" >&2 || true
    die "PostgreSQL did not accept connections on 127.0.0.1:5432 within ${WAIT_SECONDS}s"
  fi
  # A reload is applied asynchronously: give trust a moment to take effect.
  wait_for 10 pg_ok || die "PostgreSQL is up but 'psql -h 127.0.0.1 -U postgres' is refused; check $hba"
  say "PostgreSQL $v: ready"
}

pg_trgm_check() {  # the tests may use it; warn only
  pg_sql -c 'SET client_min_messages = warning' -c 'BEGIN' \
    -c 'CREATE EXTENSION IF NOT EXISTS pg_trgm' -c 'ROLLBACK' >/dev/null 2>&1 ||
    say "WARNING: CREATE EXTENSION pg_trgm fails (install postgresql-contrib); trigram indexes unavailable"
}

# ------------------------------------------------------------------- MariaDB
my_tcp() { mysql --connect-timeout=5 --protocol=TCP -h 127.0.0.1 -P 3306 -u root -N -B "$@"; }
my_max_connections() { my_tcp -e 'SELECT @@GLOBAL.max_connections' 2>/dev/null; }
my_ok() { local n; n=$(my_max_connections) && ((n >= MY_MAX_CONNECTIONS)); }

mariadb_up() {
  my_ok && return 0
  become_admin MariaDB
  my_ok && return 0
  if [[ $(dpkg-query -W -f='${db:Status-Status}' mariadb-server 2>/dev/null) != installed ]]; then
    say "installing MariaDB"
    apt_install mariadb-server
  fi
  if ! mysqladmin ping --silent >/dev/null 2>&1; then
    say "MariaDB: starting"
    install -d -o mysql -g root -m 755 /run/mysqld
    install -d -o mysql -g adm -m 2750 "$(dirname "$MY_LOG")"
    start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- \
      --user=mysql --max-connections="$MY_MAX_CONNECTIONS" --log-error="$MY_LOG" 9>&-
    if ! wait_for "$WAIT_SECONDS" mysqladmin ping --silent; then
      tail -n 20 "$MY_LOG" >&2 || true
      die "MariaDB did not answer 'mysqladmin ping' within ${WAIT_SECONDS}s (log: $MY_LOG)"
    fi
  fi
  # Started by someone else (e.g. the package's own init script): raise the limit live.
  local n
  n=$(mysql -u root -N -B -e 'SELECT @@GLOBAL.max_connections')
  if ((n < MY_MAX_CONNECTIONS)); then
    say "MariaDB: max_connections $n -> $MY_MAX_CONNECTIONS"
    mysql -u root -e "SET GLOBAL max_connections = $MY_MAX_CONNECTIONS"
  fi
  if ! my_tcp -e 'SELECT 1' >/dev/null 2>&1; then
    say "MariaDB: allowing root over TCP with an empty password"
    mysql -u root -e "ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('') OR unix_socket"
  fi
  my_ok || die "MariaDB is up but 'mysql -h 127.0.0.1 -u root' fails: $(my_tcp -e 'SELECT 1' 2>&1 || true)"
  say "MariaDB: ready"
}

# ----------------------------------------------------------------- PgBouncer
# The tests start their own PgBouncer (tests/ops/pgbouncer.py); only the program is needed.
# The Debian package also starts a service of its own on 6432, which nothing here uses.
pgbouncer_installed() {
  command -v pgbouncer >/dev/null 2>&1 && return 0
  become_admin PgBouncer
  command -v pgbouncer >/dev/null 2>&1 && return 0
  say "installing PgBouncer"
  apt_install pgbouncer
  if command -v systemctl >/dev/null 2>&1; then systemctl disable --now pgbouncer 9>&- || true; fi
  pkill -x pgbouncer || true
}

# ------------------------------------------------- Patroni, etcd and HAProxy
# The failover test starts its own etcd, two Patroni nodes and an HAProxy
# (tests/ops/failover.py); only the programs are needed. Packaged services stay off.
failover_stack_installed() {
  command -v patroni >/dev/null 2>&1 && command -v etcd >/dev/null 2>&1 \
    && command -v haproxy >/dev/null 2>&1 && return 0
  become_admin "Patroni, etcd and HAProxy"
  say "installing Patroni, etcd and HAProxy"
  apt_install patroni etcd-server haproxy
  if command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now patroni etcd haproxy 9>&- || true
  fi
}

# ---------------------------------------------------------------------- tmux
# tests/client/test_progress_terminal.py draws the operator commands' progress bar in a
# real terminal: a tmux pane, read back with capture-pane.
tmux_installed() {
  command -v tmux >/dev/null 2>&1 && return 0
  become_admin tmux
  say "installing tmux"
  apt_install tmux
}

# ---------------------------------------------------------------------- main
if [[ -z ${TEST_POSTGRES_URL:-} ]]; then
  postgres_up
  pg_trgm_check
  echo "TEST_POSTGRES_URL=$PG_URL"
fi
if [[ -z ${TEST_MYSQL_URL:-} ]]; then
  mariadb_up
  echo "TEST_MYSQL_URL=$MY_URL"
fi
pgbouncer_installed
failover_stack_installed
tmux_installed
