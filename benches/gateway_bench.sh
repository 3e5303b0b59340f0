#!/usr/bin/env bash
# End-to-end gateway benchmark on this machine: starts the gateway (release build)
# against the local PostgreSQL and NATS, registers the simulated devices, then steps the
# load up with benches/src/bin/gateway_load.rs and measures idle connections and memory.
#
#   benches/gateway_bench.sh [RATES] [IDLE_CONNECTIONS]
#   benches/gateway_bench.sh "5000 10000 20000 30000" 19000
#   ARCHIVE=false benches/gateway_bench.sh "10000 20000" 0   (without the raw frame archive)
# (idle connections are bounded by the open-file limit of one process: 20,000 here)
set -euo pipefail
cd "$(dirname "$0")/.."
RATES=${1:-"5000 10000 20000 30000"}
IDLE=${2:-19000}
DEVICES=${DEVICES:-1000}
SECONDS_PER_STEP=${SECONDS_PER_STEP:-20}
ARCHIVE=${ARCHIVE:-true}
SCHEMA=fg_bench
IMEI_BASE=100000000000000
PORT=25027
METRICS=29102
PG="postgres://postgres@127.0.0.1:5432/test"

scripts/services.sh
cargo build --release --locked -p fleetgate -p fleetgate-benches --bin fleetgate --bin gateway_load >&2

ulimit -n "$(ulimit -Hn)"
psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE; CREATE SCHEMA $SCHEMA" >&2
benches/tools/delete_streams.py FG_BENCH FG_BENCH_RAW FG_BENCH_DEAD FG_BENCH_JOBS >&2
cat > target/bench-gateway.toml <<TOML
[postgres]
url = "$PG?options=-csearch_path%3D$SCHEMA"
[nats]
stream = "FG_BENCH"
subject_prefix = "fgbench"
max_age_days = 1
archive = $ARCHIVE
archive_max_age_days = 1
archive_max_bytes = 1073741824
[gateway]
max_connections = $((IDLE + 1000))
metrics_addr = "127.0.0.1:$METRICS"
[[gateway.listeners]]
protocol = "teltonika"
tcp_port = $PORT
TOML
target/release/fleetgate migrate -c target/bench-gateway.toml 2>&1 | tail -1 >&2
MAX_DEVICES=$(( IDLE > DEVICES ? IDLE : DEVICES ))
psql -q "$PG" >&2 <<SQL
SET search_path = $SCHEMA;
INSERT INTO tenants (name) VALUES ('bench');
INSERT INTO devices (tenant_id, identifier, protocol)
  SELECT 1, ($IMEI_BASE + n)::text, 'teltonika' FROM generate_series(0, $MAX_DEVICES - 1) AS n;
SQL

FLEETGATE_LOG=warn target/release/fleetgate gateway -c target/bench-gateway.toml &
GATEWAY=$!
trap 'kill $GATEWAY 2>/dev/null; wait $GATEWAY 2>/dev/null || true' EXIT
sleep 2
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$GATEWAY/status"; }

for rate in $RATES; do
  target/release/gateway_load --address "127.0.0.1:$PORT" --devices "$DEVICES" --rate "$rate" \
    --seconds "$SECONDS_PER_STEP" --imei-base "$IMEI_BASE"
done

if [ "$IDLE" -gt 0 ]; then
  before=$(rss_kib)
  target/release/gateway_load --address "127.0.0.1:$PORT" --devices "$IDLE" --idle --seconds 15 \
    --imei-base "$IMEI_BASE" &
  LOAD=$!
  sleep 1
  # Wait until every connection is in, then read the gateway's memory.
  for _ in $(seq 1 600); do
    open=$(curl -s "127.0.0.1:$METRICS/metrics" | awk '/^fleetgate_gateway_connections\{protocol="teltonika"\}/ {print $2}')
    [ "${open:-0}" -ge "$IDLE" ] && break
    sleep 0.5
  done
  after=$(rss_kib)
  echo "{\"idle_connections_open\":${open:-0},\"gateway_rss_kib_before\":$before,\"gateway_rss_kib_after\":$after,\"kib_per_connection\":$(awk -v a="$after" -v b="$before" -v n="${open:-1}" 'BEGIN { printf "%.2f", (a - b) / n }')}"
  wait $LOAD
fi
