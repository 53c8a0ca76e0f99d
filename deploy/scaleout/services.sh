#!/usr/bin/env bash
# Throwaway NATS JetStream + PostgreSQL on loopback for the scale-out backend's
# tests and local runs.
#
#   deploy/scaleout/services.sh start   install if missing, start, print env
#   deploy/scaleout/services.sh env     print the env of running services
#   deploy/scaleout/services.sh stop    stop both and delete their state
#
# `eval "$(deploy/scaleout/services.sh start)"` exports VIGIL_TEST_NATS_URL and
# VIGIL_TEST_POSTGRES_URL. State lives in $VIGIL_SCALEOUT_DIR (default
# /tmp/vigil-scaleout); start is idempotent: running services are reused.
set -euo pipefail

STATE="${VIGIL_SCALEOUT_DIR:-/tmp/vigil-scaleout}"
PGDATA="$STATE/pg"
ENV_FILE="$STATE/env"

log() { echo "services.sh: $*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

pg_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}

install_missing() {
  local need=()
  command -v nats-server >/dev/null || need+=(nats-server)
  pg_bin >/dev/null || need+=(postgresql)
  command -v runuser >/dev/null || need+=(util-linux)
  if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    as_root apt-get update -qq >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >&2
  fi
}

# A TCP port nothing listens on right now, chosen by the kernel.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
    echo $((20000 + RANDOM % 20000))
}

# Runs a command as the unprivileged owner of the cluster (initdb refuses root).
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

nats_running() {
  [ -f "$STATE/nats.pid" ] && kill -0 "$(cat "$STATE/nats.pid")" 2>/dev/null
}

pg_running() {
  local bin
  bin="$(pg_bin)" || return 1
  [ -f "$PGDATA/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1
}

start_nats() {
  if nats_running; then return 0; fi
  local port
  port="$(free_port)"
  mkdir -p "$STATE/nats"
  nats-server -a 127.0.0.1 -p "$port" -js -sd "$STATE/nats" -l "$STATE/nats.log" \
    -P "$STATE/nats.pid" >/dev/null 2>&1 &
  local i
  for i in $(seq 1 100); do
    if nats_running && (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port" >"$STATE/nats.port"
      return 0
    fi
    sleep 0.1
  done
  log "nats-server did not start; see $STATE/nats.log"
  return 1
}

start_pg() {
  local bin port
  bin="$(pg_bin)"
  if pg_running; then return 0; fi
  mkdir -p "$STATE"
  if [ "$(id -u)" = 0 ]; then
    chown postgres "$STATE"
  fi
  chmod 755 "$STATE"
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$PGDATA" -U vigil --auth=trust -E UTF8 --no-sync >/dev/null
  fi
  port="$(free_port)"
  # Loopback TCP only; the unix socket stays inside the state directory.
  as_pg "$bin/pg_ctl" -D "$PGDATA" -l "$STATE/pg.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $STATE -c fsync=off -c max_connections=200" \
    start >/dev/null
  echo "$port" >"$STATE/pg.port"
  if ! as_pg "$bin/psql" -h 127.0.0.1 -p "$port" -U vigil -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'vigil'" | grep -q 1; then
    as_pg "$bin/createdb" -h 127.0.0.1 -p "$port" -U vigil vigil
  fi
}

write_env() {
  {
    echo "export VIGIL_TEST_NATS_URL=nats://127.0.0.1:$(cat "$STATE/nats.port")"
    echo "export VIGIL_TEST_POSTGRES_URL=postgres://vigil@127.0.0.1:$(cat "$STATE/pg.port")/vigil"
  } >"$ENV_FILE"
  cat "$ENV_FILE"
}

stop_all() {
  local bin
  if nats_running; then
    kill "$(cat "$STATE/nats.pid")" 2>/dev/null || true
    sleep 0.5
  fi
  if bin="$(pg_bin)" && [ -f "$PGDATA/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$STATE"
}

case "${1:-}" in
  start)
    install_missing
    start_nats
    start_pg
    write_env
    ;;
  env)
    nats_running && pg_running || { log "services are not running; use start"; exit 1; }
    cat "$ENV_FILE"
    ;;
  stop)
    stop_all
    ;;
  *)
    echo "usage: $0 start|env|stop" >&2
    exit 2
    ;;
esac
