#!/usr/bin/env bash
# End-to-end benchmark of the whole system on this machine: `fleetgate serve` (gateway,
# processor, API) against the local PostgreSQL, Redis and NATS in a schema, stream and
# key prefix of its own; `fleetgate simulate` steps the rate up. For each step it prints
# the simulator's summary and checks that every acknowledged position is in Postgres
# exactly once; then it measures live freshness (device send -> pushed by the API's
# live stream, i.e. visible through the API) at FRESHNESS_RATE.
#
#   benches/e2e_bench.sh [RATES]
#   benches/e2e_bench.sh "10000 20000 30000 40000 50000"
# Environment: DEVICES (5000), SECONDS_PER_STEP (20), FRESHNESS_RATE (20000),
# PROCESSOR_WORKERS (2), PROCESSOR_BATCH (5000),
# MIX, the simulator's protocol mix (teltonika=1: Wialon IPS carries whole-second times,
# so a device sending several records a second would repeat a time, and a repeated time
# is the same position).
set -euo pipefail
cd "$(dirname "$0")/.."
RATES=${1:-"10000 20000 30000 40000 50000"}
DEVICES=${DEVICES:-5000}
SECONDS_PER_STEP=${SECONDS_PER_STEP:-20}
FRESHNESS_RATE=${FRESHNESS_RATE:-20000}
MIX=${MIX:-teltonika=1}
SCHEMA=fg_e2e_bench
PG="postgres://postgres@127.0.0.1:5432/test"
PG_SCHEMA="$PG?options=-csearch_path%3D$SCHEMA"
TELTONIKA=26027
WIALON=26039
API=28080
OUT=target/e2e-bench
# Stream and keys of this run only (a stream left by an earlier run would be replayed).
TAG=$(date +%s)
mkdir -p "$OUT"

scripts/services.sh
cargo build --release --locked -p fleetgate -p fleetgate-benches --bin fleetgate --bin sse_freshness >&2
ulimit -n "$(ulimit -Hn)"

psql -q "$PG" -c "DROP SCHEMA IF EXISTS $SCHEMA CASCADE; CREATE SCHEMA $SCHEMA" >&2
cat > "$OUT/fleetgate.toml" <<TOML
[postgres]
url = "$PG_SCHEMA"
[nats]
stream = "FG_E2E_BENCH_$TAG"
command_stream = "FG_E2E_BENCH_CMD_$TAG"
subject_prefix = "fge2ebench$TAG"
max_age_days = 1
archive_max_age_days = 1
archive_max_bytes = 1073741824
[redis]
key_prefix = "fge2ebench$TAG"
[gateway]
max_connections = $((DEVICES + 1000))
metrics_addr = ""
[[gateway.listeners]]
protocol = "teltonika"
tcp_port = $TELTONIKA
[[gateway.listeners]]
protocol = "wialon"
tcp_port = $WIALON
[processor]
metrics_addr = ""
workers = ${PROCESSOR_WORKERS:-2}
batch_max_positions = ${PROCESSOR_BATCH:-5000}
[api]
bind = "127.0.0.1:$API"
TOML
target/release/fleetgate migrate -c "$OUT/fleetgate.toml" >/dev/null 2>&1
KEY=$(target/release/fleetgate admin create-tenant --name bench -c "$OUT/fleetgate.toml" | sed -n 's/.*"api_key":"\([^"]*\)".*/\1/p')
FLEETGATE_LOG=warn target/release/fleetgate serve -c "$OUT/fleetgate.toml" 2> "$OUT/serve.log" &
SERVE=$!
trap 'kill -INT $SERVE 2>/dev/null; wait $SERVE 2>/dev/null
  benches/tools/delete_streams.py "FG_E2E_BENCH_$TAG" "FG_E2E_BENCH_CMD_$TAG" "FG_E2E_BENCH_${TAG}_DEAD" "FG_E2E_BENCH_${TAG}_RAW" "FG_E2E_BENCH_${TAG}_JOBS" >&2' EXIT
for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/$API) 2>/dev/null && break; sleep 0.2; done

# Register the devices once (the first run of the simulator does it through the API).
target/release/fleetgate simulate --port teltonika=$TELTONIKA --port wialon=$WIALON --devices "$DEVICES" \
  --protocols "$MIX" --seconds 1 --interval-s 1 --register "http://127.0.0.1:$API" --api-key "$KEY" --json > /dev/null

step() { # RATE SECONDS EXTRA...: runs the simulator at RATE positions/s
  local rate=$1 seconds=$2; shift 2
  local records=$(( (rate + DEVICES - 1) / DEVICES ))
  local interval
  interval=$(awk -v d="$DEVICES" -v r="$records" -v rate="$rate" 'BEGIN { printf "%.3f", d * r / rate }')
  target/release/fleetgate simulate --port teltonika=$TELTONIKA --port wialon=$WIALON --devices "$DEVICES" \
    --records "$records" --interval-s "$interval" --seconds "$seconds" --offline-share 0 --corrupt-share 0 \
    --protocols "$MIX" --json "$@"
}

echo "| target positions/s | devices | records/frame | acknowledged/s | ack p50 ms | ack p99 ms | acknowledged | stored once | lost | duplicated |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for RATE in $RATES; do
  psql -q "$PG_SCHEMA" -c "TRUNCATE positions, events" >&2
  SUMMARY=$(step "$RATE" "$SECONDS_PER_STEP" --acked "$OUT/acked-$RATE.jsonl")
  sleep 5 # let the processor drain
  python3 - "$OUT/acked-$RATE.jsonl" "$PG_SCHEMA" "$SUMMARY" "$RATE" "$DEVICES" <<'PY'
import json, subprocess, sys
path, url, summary, rate, devices = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4], int(sys.argv[5])
acked = [json.loads(l) for l in open(path)]
rows = subprocess.run(["psql", "-qAt", url, "-c",
    "SELECT d.identifier || ' ' || to_char(p.fix_time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS') FROM positions p JOIN devices d ON d.id = p.device_id"],
    capture_output=True, text=True, check=True).stdout.split()
stored = {}
for i in range(0, len(rows), 2):
    key = (rows[i], rows[i + 1])
    stored[key] = stored.get(key, 0) + 1
def norm(t):
    t = t.rstrip("Z")
    return t + ".000" if "." not in t else t
lost = sum(1 for a in acked if stored.get((a["device"], norm(a["time"])), 0) == 0)
dup = sum(1 for a in acked if stored.get((a["device"], norm(a["time"])), 0) > 1)
records = (int(rate) + devices - 1) // devices
print(f"| {rate} | {devices} | {records} | {summary['rate_per_second']:.0f} | {summary['ack_ms']['p50']:.1f} | {summary['ack_ms']['p99']:.1f} | {len(acked)} | {len(acked) - lost - dup} | {lost} | {dup} |")
PY
done

echo
echo "Freshness at $FRESHNESS_RATE positions/s (Teltonika devices, device send -> pushed by GET /v1/stream):"
step "$FRESHNESS_RATE" $((SECONDS_PER_STEP + 5)) > "$OUT/freshness-sim.json" &
SIM=$!
sleep 3
target/release/sse_freshness --address "127.0.0.1:$API" --key "$KEY" --seconds "$SECONDS_PER_STEP"
wait $SIM
cat "$OUT/freshness-sim.json"
