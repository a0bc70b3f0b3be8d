#!/usr/bin/env bash
# A private PostgreSQL server for the pgstore contract tests and benchmarks.
#
#   hack/postgres.sh start    initialize (first time) and start; prints the DSN
#   hack/postgres.sh stop     stop (no-op when not running)
#   hack/postgres.sh status   exit 0 when running, 3 when not
#   hack/postgres.sh dsn      print the DSN (the cluster must have been initialized)
#
# The cluster lives in bin/pg (PG_DIR), listens on 127.0.0.1:55432 only (PG_PORT), has no
# Unix socket, and its superuser "keyward" logs in with a password generated at initdb
# (scram-sha-256; bin/pg/password, mode 0600). Debian's `postgresql` package is installed
# with apt-get when no server binaries are found; its default cluster is not created.
# Root cannot run postgres, so as root the server runs as the `postgres` user (runuser);
# as anyone else it runs as that user. Every command is idempotent.
#
# Use it from a test run:
#   hack/postgres.sh start >/dev/null && export KEYWARD_PG_DSN="$(hack/postgres.sh dsn)"
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
PG_DIR=${PG_DIR:-$root/bin/pg}
PG_PORT=${PG_PORT:-55432}
PG_USER=keyward
data=$PG_DIR/data
pwfile=$PG_DIR/password
logfile=$PG_DIR/postgres.log

log() { echo "==> $*" >&2; }
die() { echo "hack/postgres.sh: $*" >&2; exit 1; }

# bindir prints the newest installed server's bin directory (Debian layout first).
bindir() {
  local d
  d=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  if [[ -n "$d" && -x "$d/postgres" ]]; then echo "$d"; return; fi
  if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/postgres" ]]; then
    pg_config --bindir
  fi
}

install_server() {
  [[ $(id -u) -eq 0 ]] || die "no PostgreSQL server found; install Debian's postgresql package (needs root)"
  command -v apt-get >/dev/null || die "no PostgreSQL server found and no apt-get to install one"
  log "Installing PostgreSQL (Debian package postgresql)"
  # Only our private cluster: no default "main" cluster on port 5432.
  mkdir -p /etc/postgresql-common
  if ! grep -qs '^[[:space:]]*create_main_cluster' /etc/postgresql-common/createcluster.conf; then
    echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends postgresql >&2 ||
    { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends postgresql >&2; }
}

# as runs a command as the cluster's owner.
as() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

owner() { if [[ $(id -u) -eq 0 ]]; then echo postgres; else id -un; fi; }

dsn() {
  [[ -s "$pwfile" ]] || die "not initialized: run hack/postgres.sh start"
  # The generated password is hex, so it needs no escaping in a URL.
  echo "postgres://$PG_USER:$(cat "$pwfile")@127.0.0.1:$PG_PORT/postgres?sslmode=disable"
}

running() {
  local bin=$1
  [[ -f "$data/PG_VERSION" ]] && as "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1
}

init() {
  local bin=$1
  [[ -f "$data/PG_VERSION" ]] && return
  log "Initializing a PostgreSQL cluster in $data"
  mkdir -p "$PG_DIR"
  chmod 0700 "$PG_DIR"
  if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "no postgres user (it comes with Debian's postgresql-common)"
    chown postgres: "$PG_DIR"
    runuser -u postgres -- test -x "$PG_DIR" ||
      die "the postgres user cannot reach $PG_DIR (a parent directory is not searchable); set PG_DIR elsewhere"
  fi
  rm -rf "$data"
  (umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' > "$pwfile")
  [[ $(id -u) -eq 0 ]] && chown postgres: "$pwfile"
  as "$bin/initdb" -D "$data" -U "$PG_USER" --pwfile="$pwfile" \
    --auth-local=scram-sha-256 --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$PG_DIR/initdb.log" 2>&1 ||
    { cat "$PG_DIR/initdb.log" >&2; die "initdb failed"; }
  # Loopback TCP only; the one pg_hba rule that matters is scram on 127.0.0.1.
  as tee -a "$data/postgresql.conf" >/dev/null <<EOF

# hack/postgres.sh
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = ''
max_connections = 200
EOF
  as tee "$data/pg_hba.conf" >/dev/null <<'EOF'
# hack/postgres.sh: loopback TCP only, password (scram-sha-256) required.
host  all  all  127.0.0.1/32  scram-sha-256
EOF
}

start() {
  local bin
  bin=$(bindir)
  if [[ -z "$bin" ]]; then
    install_server
    bin=$(bindir)
    [[ -n "$bin" ]] || die "postgresql installed but no server binaries found under /usr/lib/postgresql"
  fi
  init "$bin"
  if running "$bin"; then
    log "PostgreSQL already running on 127.0.0.1:$PG_PORT ($data)"
  else
    log "Starting PostgreSQL on 127.0.0.1:$PG_PORT ($data)"
    if ! as "$bin/pg_ctl" -D "$data" -l "$logfile" -w -t 60 start >/dev/null; then
      tail -n 20 "$logfile" >&2 || true
      die "PostgreSQL did not start (is port $PG_PORT in use?); log: $logfile"
    fi
  fi
  dsn
}

stop() {
  local bin
  bin=$(bindir)
  if [[ -n "$bin" ]] && running "$bin"; then
    log "Stopping PostgreSQL ($data)"
    as "$bin/pg_ctl" -D "$data" -m fast -w stop >/dev/null
  else
    log "PostgreSQL not running ($data)"
  fi
}

status() {
  local bin
  bin=$(bindir)
  if [[ -n "$bin" ]] && running "$bin"; then
    echo "running on 127.0.0.1:$PG_PORT ($data, owner $(owner))"
  else
    echo "not running ($data)"
    exit 3
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  dsn) dsn ;;
  *) die "usage: hack/postgres.sh start|stop|status|dsn" ;;
esac
