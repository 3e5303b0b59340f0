#!/usr/bin/env bash
# Makes sure PostgreSQL (127.0.0.1:5432, user postgres, database test, trust auth),
# Redis (127.0.0.1:6379) and nats-server with JetStream (127.0.0.1:4222) answer.
# A server already answering is used as it is. A missing one is started from the
# installed packages with its data in .data/ (git-ignored); packages that are missing
# are installed from Debian when running as root. Used by ./test (and ./run).
# FLEETGATE_PG_PORT, FLEETGATE_REDIS_PORT, FLEETGATE_NATS_PORT and FLEETGATE_DATA move
# the servers it starts elsewhere (to try it beside running ones).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA="${FLEETGATE_DATA:-$PWD/.data}"
PG_PORT="${FLEETGATE_PG_PORT:-5432}"
REDIS_PORT="${FLEETGATE_REDIS_PORT:-6379}"
NATS_PORT="${FLEETGATE_NATS_PORT:-4222}"
mkdir -p "$DATA"

log() { echo "services: $*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  for _ in $(seq 1 100); do port_open "$1" && return 0; sleep 0.1; done
  log "nothing answers on port $1 after starting $2"; return 1
}

install() {
  if [ "$(id -u)" != 0 ]; then
    log "$1 is not installed; install the Debian package '$1' (or run as root)"; return 1
  fi
  log "installing $1 from Debian packages"
  if [ -z "${APT_UPDATED:-}" ]; then apt-get update -qq >&2; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >&2
}

postgres_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$dir" ] && echo "$dir"
}

ensure_postgres() {
  port_open "$PG_PORT" && return 0
  if [ "$PG_PORT" = 5432 ] && [ -d /etc/postgresql ] && command -v pg_ctlcluster >/dev/null && [ "$(id -u)" = 0 ]; then
    log "starting the system PostgreSQL cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -1)" main start >&2 || true
    port_open "$PG_PORT" || sleep 1
    port_open "$PG_PORT" && return 0
  fi
  [ -n "$(postgres_bin)" ] || install postgresql
  local bin run_as=()
  bin=$(postgres_bin)
  # PostgreSQL refuses to run as root: use the postgres account for the local cluster.
  if [ "$(id -u)" = 0 ]; then run_as=(runuser -u postgres --); chown -R postgres "$DATA" 2>/dev/null || true; fi
  if [ ! -f "$DATA/postgres/PG_VERSION" ]; then
    log "creating a local PostgreSQL cluster in .data/postgres"
    mkdir -p "$DATA/postgres"; [ "$(id -u)" = 0 ] && chown postgres "$DATA/postgres"
    "${run_as[@]}" "$bin/initdb" -D "$DATA/postgres" -U postgres --auth=trust >/dev/null
  fi
  log "starting PostgreSQL from .data/postgres"
  "${run_as[@]}" "$bin/pg_ctl" -D "$DATA/postgres" -l "$DATA/postgres.log" \
    -o "-c listen_addresses=127.0.0.1 -c port=$PG_PORT -k /tmp" start >/dev/null
  wait_port "$PG_PORT" postgres
  "$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='test'" postgres \
    | grep -q 1 || "$bin/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres test
}

ensure_redis() {
  port_open "$REDIS_PORT" && return 0
  command -v redis-server >/dev/null || install redis-server
  log "starting redis-server"
  redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$DATA" --logfile "$DATA/redis.log" >&2
  wait_port "$REDIS_PORT" redis
}

ensure_nats() {
  port_open "$NATS_PORT" && return 0
  command -v nats-server >/dev/null || [ -x /usr/sbin/nats-server ] || install nats-server
  local bin
  bin=$(command -v nats-server || echo /usr/sbin/nats-server)
  log "starting nats-server with JetStream in .data/nats"
  mkdir -p "$DATA/nats"
  nohup "$bin" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$DATA/nats" >"$DATA/nats.log" 2>&1 &
  wait_port "$NATS_PORT" nats-server
}

ensure_postgres
ensure_redis
ensure_nats
