#!/usr/bin/env bash
# Quickstart: a collector and one enrolled agent on this machine, on the
# embedded default (sled + tantivy, no external services). The agent scans
# only 127.0.0.1 (the scope written below) and streams signed results over
# mutual-TLS QUIC; this script shows them arriving, then stops both.
#
#   bash deploy/quickstart.sh            # runs for 40 s
#   QUICKSTART_SECONDS=0 bash deploy/quickstart.sh   # runs until Ctrl-C
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_TO_RUN="${QUICKSTART_SECONDS:-40}"
DATA="$PWD/vigil-data/quickstart"
QUIC_PORT="${QUICKSTART_QUIC_PORT:-14433}"
METRICS_PORT="${QUICKSTART_METRICS_PORT:-19464}"
CONSOLE_PORT="${QUICKSTART_CONSOLE_PORT:-18080}"

echo "==> building collector and agent (release; the first build takes a few minutes)"
cargo build --release --quiet -p collector -p agent
BIN="$PWD/target/release"

rm -rf "$DATA"
mkdir -p "$DATA"
chmod 700 "$DATA"

# Scope and job for the demo tenant: loopback only, well-known ports plus the
# collector's own metrics port so there is something to find.
cat > "$DATA/collector.toml" <<TOML
listen = "127.0.0.1:$QUIC_PORT"
data_dir = "$DATA/collector"
metrics_listen = "127.0.0.1:$METRICS_PORT"
console_listen = "127.0.0.1:$CONSOLE_PORT"

[tenants.demo.scope]
cidrs = ["127.0.0.1/32"]
ports = "1-1023,$METRICS_PORT"

[[tenants.demo.jobs]]
id = "loopback"
targets = ["127.0.0.1"]
ports = "1-1023,$METRICS_PORT"
checks = ["ports", "http"]
every = "15s"
TOML

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

C="$BIN/collector --config $DATA/collector.toml"
echo "==> starting collector on udp/127.0.0.1:$QUIC_PORT (log: $DATA/collector.log)"
$C serve >"$DATA/collector.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  $C ca fingerprint >/dev/null 2>&1 && [ -S "$DATA/collector/admin.sock" ] && break
  sleep 0.1
done

echo "==> creating a single-use enrolment token for tenant 'demo'"
TOKEN=$($C token create --tenant demo --ttl 10m --quiet)
FP=$($C ca fingerprint)
echo "    server CA fingerprint: $FP"

echo "==> enrolling an agent"
A="$BIN/agent --state-dir $DATA/agent"
$A enroll --collector "127.0.0.1:$QUIC_PORT" --token "$TOKEN" --ca-fingerprint "$FP" --hostname quickstart-agent

echo "==> starting the agent (log: $DATA/agent.log)"
$A run >"$DATA/agent.log" 2>&1 &
pids+=($!)

echo "==> console admin for the web UI"
CONSOLE_PW="qs-$(od -An -N9 -tx1 /dev/urandom | tr -d ' \n')"
printf '%s\n' "$CONSOLE_PW" | $C user create --email admin@demo.test --tenant demo --role admin --password-stdin >/dev/null
echo "    web console: http://127.0.0.1:$CONSOLE_PORT/  (admin@demo.test / $CONSOLE_PW)"

echo "==> results arriving (collector stats every 5 s)"
start=$(date +%s)
while :; do
  sleep 5
  echo "--- $(date -u +%H:%M:%S)"
  $C stats
  if [ "$SECONDS_TO_RUN" != 0 ] && [ $(( $(date +%s) - start )) -ge "$SECONDS_TO_RUN" ]; then
    break
  fi
done

echo
echo "==> agents"
$C agent list
echo
echo "==> newest results"
$C records --tenant demo --limit 6
echo
echo "==> compliance findings (rules evaluated on the collector)"
$C findings search --tenant demo 'sort:-severity' --limit 10 || true
echo
echo "==> NIS2 posture"
$C posture --tenant demo --framework nis2 --history 3 || true
echo
echo "==> NIS2 compliance report (PDF, generated in the background by the collector)"
$C report create --tenant demo --framework nis2 --format pdf --out "$DATA/nis2-report.pdf" || true
echo
echo "==> collector metrics (http://127.0.0.1:$METRICS_PORT/metrics)"
if command -v curl >/dev/null; then
  curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | grep -E '^vigil_(batches_stored|records_stored|enrollments|connections_total|tenant_records)' || true
fi
echo
echo "==> done. Data is kept in $DATA; logs: $DATA/collector.log, $DATA/agent.log"
