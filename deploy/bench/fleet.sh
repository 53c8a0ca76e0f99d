#!/usr/bin/env bash
# Fleet simulator against a separate collector process on loopback, with the
# load average and the kernel's UDP receive-buffer drop counter recorded
# around the run. Usage:
#   deploy/bench/fleet.sh [fleet arguments...]
# Defaults to the 10,000-agent synchronized burst of docs/benchmarks.md:
#   --agents 10000 --tenants 20 --batches-per-agent 2 --records-per-batch 100
#   --duration 45s --heartbeat 5s --enroll-parallel 16 --connect-parallel 128 --search-rate 5
# Output and the collector log go to ${OUT:-/tmp/vigil-fleet}; a 10,000-agent
# run leaves several GB of collector data there, delete it afterwards.
set -euo pipefail

cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/vigil-fleet}"
PORT="${PORT:-24433}"
METRICS="${METRICS:-19464}"
if [ "$#" -eq 0 ]; then
    set -- --agents 10000 --tenants 20 --batches-per-agent 2 --records-per-batch 100 \
        --duration 45s --heartbeat 5s --enroll-parallel 16 --connect-parallel 128 --search-rate 5
fi

cargo build --release -p collector --bin collector -p e2e --bin fleet >&2
rm -rf "$OUT" && mkdir -p "$OUT"
printf 'console_listen = ""\nmetrics_listen = "127.0.0.1:%s"\n' "$METRICS" > "$OUT/collector.toml"
udp_drops() { awk '/^Udp:/ && $2 ~ /^[0-9]+$/ {print $6}' /proc/net/snmp; }
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); UDP receive-buffer drops so far: $(udp_drops)"
RUST_LOG=error target/release/collector --config "$OUT/collector.toml" --data-dir "$OUT/data" \
    serve --listen "127.0.0.1:$PORT" > "$OUT/collector.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 50); do [ -S "$OUT/data/admin.sock" ] && break; sleep 0.1; done
status=0
target/release/fleet --collector "127.0.0.1:$PORT" --admin-socket "$OUT/data/admin.sock" \
    --collector-pid "$PID" --metrics-url "http://127.0.0.1:$METRICS/metrics" \
    --work-dir "$OUT/work" "$@" || status=$?
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg); UDP receive-buffer drops so far: $(udp_drops)"
exit $status
