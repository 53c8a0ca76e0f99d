#!/usr/bin/env bash
# Full-range TCP connect scan of loopback: vigil agent vs `nmap -sT -T4`.
#
# Scans ONLY 127.0.0.1, every port except 2024 (reserved on the build
# machines), and prints both wall-clock times and their ratio. Installs nmap
# with apt-get when it is missing (needs root). Usage: deploy/bench/portscan.sh [runs]
set -euo pipefail

cd "$(dirname "$0")/../.."
RUNS="${1:-3}"
PORTS="1-2023,2025-65535"
TARGET="127.0.0.1"

if ! command -v nmap >/dev/null 2>&1; then
    echo "installing nmap..." >&2
    apt-get update -qq && apt-get install -y -qq nmap >/dev/null
fi

cargo build --release -p agent --bin agent >&2
AGENT=target/release/agent

# A few listeners of our own so both scanners have known open ports to find.
LISTEN_LOG=$(mktemp)
python3 -c '
import socket, sys, time
socks = []
for _ in range(3):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64); socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks), flush=True)
time.sleep(600)
' >"$LISTEN_LOG" &
LISTENER_PID=$!
trap 'kill "$LISTENER_PID" 2>/dev/null || true; rm -f "$LISTEN_LOG"' EXIT
for _ in $(seq 50); do [ -s "$LISTEN_LOG" ] && break; sleep 0.1; done
KNOWN=$(cat "$LISTEN_LOG")
echo "bench listeners on 127.0.0.1: $KNOWN"

now() { date +%s.%N; }
best_ours=""
best_nmap=""
for i in $(seq 1 "$RUNS"); do
    t0=$(now)
    "$AGENT" scan --target "$TARGET" --checks ports --ports "$PORTS" --no-banners --format json \
        >/tmp/vigil-bench-ours.json 2>/dev/null
    t1=$(now)
    nmap -sT -T4 -n -Pn -p "$PORTS" "$TARGET" -oG /tmp/vigil-bench-nmap.txt >/dev/null
    t2=$(now)
    ours=$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')
    theirs=$(awk -v a="$t1" -v b="$t2" 'BEGIN{print b-a}')
    printf 'run %d: vigil %.3fs  nmap %.3fs\n' "$i" "$ours" "$theirs"
    best_ours=$(awk -v x="$ours" -v b="${best_ours:-inf}" 'BEGIN{print (b=="inf" || x<b) ? x : b}')
    best_nmap=$(awk -v x="$theirs" -v b="${best_nmap:-inf}" 'BEGIN{print (b=="inf" || x<b) ? x : b}')
done

# Both tools must find our listeners; other ports may come and go with
# whatever else runs on the machine, so differences there are only reported.
ours_open=" $(grep -o '"port": [0-9]*' /tmp/vigil-bench-ours.json | awk '{print $2}' | sort -n | tr '\n' ' ')"
nmap_open=" $(grep -o '[0-9]*/open' /tmp/vigil-bench-nmap.txt | cut -d/ -f1 | sort -n | tr '\n' ' ')"
echo "open ports (vigil):${ours_open}"
echo "open ports (nmap): ${nmap_open}"
for p in $KNOWN; do
    case "$ours_open" in *" $p "*) ;; *) echo "vigil missed listener $p" >&2; exit 1 ;; esac
    case "$nmap_open" in *" $p "*) ;; *) echo "nmap missed listener $p" >&2; exit 1 ;; esac
done
[ "$ours_open" = "$nmap_open" ] || echo "note: the open-port sets differ outside the bench listeners (transient listeners of other processes)"
printf 'best of %d: vigil %.3fs, nmap %.3fs, ratio vigil/nmap = %.2f\n' \
    "$RUNS" "$best_ours" "$best_nmap" "$(awk -v a="$best_ours" -v b="$best_nmap" 'BEGIN{print a/b}')"
