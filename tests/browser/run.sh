#!/usr/bin/env bash
# Browser end-to-end tests of the web console: a real collector and agent on
# loopback with real scan data, driven by headless Debian Chromium through
# playwright-core. Installs chromium (apt) and the npm lock when missing.
#
#   bash tests/browser/run.sh              # set up, run the tests, tear down
#   VIGIL_UI_SERVE=1 bash tests/browser/run.sh   # set up and keep serving (Ctrl-C stops)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if [ ! -x /usr/bin/chromium ]; then
  echo "==> installing chromium (Debian package)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
fi
if ! command -v python3 >/dev/null || ! command -v curl >/dev/null; then
  echo "==> installing python3 and curl (Debian packages)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 curl
fi
if ! command -v npm >/dev/null; then
  echo "==> installing nodejs and npm (Debian packages)"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm
fi

echo "==> npm ci (playwright-core only; no browser download)"
(cd "$HERE" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --silent)

echo "==> building collector and agent (debug)"
(cd "$ROOT" && cargo build --quiet -p collector -p agent)
BIN="$ROOT/target/debug"

WORK="$(mktemp -d /tmp/vigil-ui-XXXXXX)"
chmod 700 "$WORK"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "${VIGIL_UI_KEEP:-0}" = 1 ]; then echo "data kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

# Free loopback ports (never 2024): QUIC (udp), console, metrics, demo web server.
read -r QUIC_PORT CONSOLE_PORT METRICS_PORT WEB_PORT < <(python3 - <<'PY'
import socket
out, held = [], []
while len(out) < 4:
    kind = socket.SOCK_DGRAM if not out else socket.SOCK_STREAM
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    held.append(s)
    if port != 2024 and port not in out:
        out.append(port)
print(*out)
PY
)

# The scanned asset: python's http.server sends no security headers, so the
# HTTP rules have real findings to report.
mkdir -p "$WORK/www"
echo '<h1>vigil browser test target</h1>' > "$WORK/www/index.html"
python3 -m http.server "$WEB_PORT" --bind 127.0.0.1 --directory "$WORK/www" >"$WORK/web.log" 2>&1 &
pids+=($!)

cat > "$WORK/collector.toml" <<TOML
listen = "127.0.0.1:$QUIC_PORT"
data_dir = "$WORK/collector"
metrics_listen = "127.0.0.1:$METRICS_PORT"
console_listen = "127.0.0.1:$CONSOLE_PORT"

[tenants.acme.scope]
cidrs = ["127.0.0.1/32"]
ports = "$WEB_PORT,$METRICS_PORT"

[[tenants.acme.jobs]]
id = "web"
targets = ["127.0.0.1"]
ports = "$WEB_PORT,$METRICS_PORT"
checks = ["ports", "http"]
every = "20s"

[[tenants.acme.jobs]]
id = "nightly-tls"
targets = ["127.0.0.1"]
ports = "$WEB_PORT"
checks = ["tls"]
schedule = "0 0 2 * * *"
TOML

C="$BIN/collector --config $WORK/collector.toml"
echo "==> starting collector (console http://127.0.0.1:$CONSOLE_PORT, log $WORK/collector.log)"
$C serve >"$WORK/collector.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do
  [ -S "$WORK/collector/admin.sock" ] && $C ca fingerprint >/dev/null 2>&1 && break
  sleep 0.1
done

ADMIN_PW="admin-pass-$RANDOM$RANDOM"
VIEWER_PW="viewer-pass-$RANDOM$RANDOM"
echo "$ADMIN_PW" | $C user create --email admin@example.net --tenant acme --role admin --password-stdin >/dev/null
echo "$ADMIN_PW" | $C user create --email admin@example.net --tenant globex --role admin --password-stdin >/dev/null
echo "$VIEWER_PW" | $C user create --email viewer@example.net --tenant acme --role viewer --password-stdin >/dev/null

echo "==> enrolling an agent for tenant acme"
TOKEN=$($C token create --tenant acme --ttl 10m --quiet)
FP=$($C ca fingerprint)
A="$BIN/agent --state-dir $WORK/agent"
$A enroll --collector "127.0.0.1:$QUIC_PORT" --token "$TOKEN" --ca-fingerprint "$FP" --hostname browser-test-agent >/dev/null
$A run >"$WORK/agent.log" 2>&1 &
pids+=($!)

echo "==> waiting for findings from the first scan"
BASE="http://127.0.0.1:$CONSOLE_PORT"
JAR="$WORK/cookies"
curl -sf -c "$JAR" -H 'content-type: application/json' \
  -d "{\"email\":\"admin@example.net\",\"password\":\"$ADMIN_PW\"}" "$BASE/api/v1/login" >/dev/null
found=0
for _ in $(seq 120); do
  total=$(curl -sf -b "$JAR" "$BASE/api/v1/tenants/acme/findings?q=kind:finding&limit=1" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])' 2>/dev/null || echo 0)
  if [ "${total:-0}" -gt 0 ]; then found=1; break; fi
  sleep 0.5
done
if [ "$found" != 1 ]; then
  echo "no findings after 60 s; collector log:" >&2
  tail -30 "$WORK/collector.log" >&2
  exit 1
fi
echo "    $total findings"

export VIGIL_UI_BASE="$BASE" VIGIL_UI_ADMIN_PW="$ADMIN_PW" VIGIL_UI_VIEWER_PW="$VIEWER_PW"
export VIGIL_UI_SHOTS="$WORK/screenshots"
mkdir -p "$VIGIL_UI_SHOTS"

if [ "${VIGIL_UI_SERVE:-0}" = 1 ]; then
  echo "serving $BASE  admin@example.net / $ADMIN_PW  viewer@example.net / $VIEWER_PW"
  echo "env: VIGIL_UI_BASE=$BASE VIGIL_UI_ADMIN_PW=$ADMIN_PW VIGIL_UI_VIEWER_PW=$VIEWER_PW"
  wait
fi

# The reports flow goes first: the console tests end by tripping the login limit.
tests=("$HERE/reports.test.mjs" "$HERE/alerts_incidents.test.mjs" "$HERE/console.test.mjs")

echo "==> browser tests"
status=0
# One file at a time, in order (older node has no --test-concurrency).
for t in "${tests[@]}"; do
  (cd "$HERE" && node --test "$t") || status=$?
done
if [ "$status" != 0 ]; then
  VIGIL_UI_KEEP=1
  echo "browser tests failed; screenshots in $VIGIL_UI_SHOTS" >&2
  tail -20 "$WORK/collector.log" >&2
fi
exit "$status"
