#!/usr/bin/env bash
# Compares the agent's TLS verdicts with sslyze (and testssl.sh when installed)
# on loopback `openssl s_server` instances: accepted protocol versions, per
# version the accepted suites that fall in the agent's weak classes, and
# certificate facts. Scans ONLY 127.0.0.1.
# Needs openssl and python3; installs sslyze with pip when it is missing.
# Usage: deploy/bench/compare_sslyze.sh
set -euo pipefail

cd "$(dirname "$0")/../.."
command -v openssl >/dev/null || { echo "openssl is required" >&2; exit 1; }
command -v sslyze >/dev/null || pip install -q sslyze >&2

cargo build -p agent --bin agent >&2
AGENT=target/debug/agent
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# name | s_server arguments
CONFIGS=(
    "tls10-only-weak|-tls1 -cipher ALL:@SECLEVEL=0"
    "tls10-to-13-all|-min_protocol TLSv1 -cipher ALL:@SECLEVEL=0"
    "tls12-strong|-tls1_2 -cipher ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-AES256-GCM-SHA384"
    "tls12-13-rsa-kx|-min_protocol TLSv1.2 -cipher AES128-SHA:AES256-GCM-SHA384:ECDHE-RSA-AES128-GCM-SHA256"
)

status=0
for entry in "${CONFIGS[@]}"; do
    name=${entry%%|*}
    args=${entry#*|}
    port=$(free_port)
    # shellcheck disable=SC2086
    openssl s_server -accept "127.0.0.1:$port" -cert "$WORK/cert.pem" -key "$WORK/key.pem" \
        -quiet -naccept 100000 $args </dev/null >/dev/null 2>&1 &
    PIDS+=($!)
    for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done

    "$AGENT" scan --target "127.0.0.1:$port" --checks tls --format json >"$WORK/$name.vigil.json" 2>/dev/null
    sslyze --quiet --json_out="$WORK/$name.sslyze.json" "127.0.0.1:$port" >/dev/null 2>&1 || true

    python3 - "$name" "$WORK/$name.vigil.json" "$WORK/$name.sslyze.json" "$port" <<'PY' || status=1
import base64, json, subprocess, sys
name, vigil_path, sslyze_path, port = sys.argv[1:]
# IANA name -> OpenSSL name, to re-check suites with `openssl s_client`.
stdnames = {}
for line in subprocess.run(["openssl", "ciphers", "-stdname", "ALL:eNULL:@SECLEVEL=0"], capture_output=True, text=True).stdout.splitlines():
    parts = line.split()
    if len(parts) >= 3 and parts[1] == "-":
        stdnames[parts[0]] = parts[2]
def s_client_accepts(version, suite):
    flag = {"TLSv1.0": "-tls1", "TLSv1.1": "-tls1_1", "TLSv1.2": "-tls1_2"}[version]
    ossl = stdnames.get(suite)
    if not ossl:
        return False
    out = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", flag, "-cipher", f"{ossl}:@SECLEVEL=0"],
                         input="", capture_output=True, text=True, timeout=20).stdout
    return f"Cipher is {ossl}" in out
vigil = json.load(open(vigil_path))
tls = [r["observation"] for r in vigil["records"] if r["observation"]["kind"] == "tls"][0]
res = json.load(open(sslyze_path))["server_scan_results"][0]["scan_result"]
keys = {"SSLv3": "ssl_3_0", "TLSv1.0": "tls_1_0", "TLSv1.1": "tls_1_1", "TLSv1.2": "tls_1_2", "TLSv1.3": "tls_1_3"}
accepted = {v: [c["cipher_suite"]["name"] for c in (res[k + "_cipher_suites"]["result"] or {}).get("accepted_cipher_suites", [])] for v, k in keys.items()}
sslyze_versions = sorted(v for v, a in accepted.items() if a)
vigil_versions = sorted(tls["protocols"])
ok = sslyze_versions == vigil_versions
print(f"[{name}] versions  vigil={vigil_versions} sslyze={sslyze_versions} {'OK' if ok else 'MISMATCH'}")
for v in vigil_versions:
    if v == "TLSv1.3":
        continue
    ours = sorted(w["name"] for w in tls["weak_ciphers"] if w["version"] == v)
    theirs = sorted(accepted[v])
    strong_only_theirs = [s for s in theirs if s not in ours]
    # Every suite the agent calls weak must be accepted per sslyze, and every
    # sslyze-accepted suite must either be weak per the agent or a known-strong AEAD/ECDHE/DHE suite.
    missing = [s for s in ours if s not in theirs]
    confirmed = [s for s in missing if s_client_accepts(v, s)]
    if confirmed:
        print(f"[{name}] {v}: accepted but not reported by sslyze, confirmed with openssl s_client: {confirmed}")
    missing = [s for s in missing if s not in confirmed]
    suspicious = [s for s in strong_only_theirs if ("_RSA_WITH_" in s and "DHE" not in s) or "anon" in s or "NULL" in s or "RC4" in s or "3DES" in s or s.endswith("_CBC_SHA")]
    good = not missing and not suspicious
    ok = ok and good
    print(f"[{name}] {v}: vigil weak={len(ours)} sslyze accepted={len(theirs)} (not weak: {strong_only_theirs}) {'OK' if good else f'MISMATCH missing={missing} unclassified={suspicious}'}")
# Certificate facts: key size, fingerprint, trust against the Mozilla store.
dep = res["certificate_info"]["result"]["certificate_deployments"][0]
leaf = dep["received_certificate_chain"][0]
mozilla = [p["was_validation_successful"] for p in dep["path_validation_results"] if p["trust_store"]["name"] == "Mozilla"]
cert = tls["certificate"] or {}
facts = [
    ("key_bits", cert.get("key_bits"), leaf["public_key"].get("key_size")),
    ("fingerprint_sha256", cert.get("fingerprint_sha256"), base64.b64decode(leaf["fingerprint_sha256"]).hex()),
    ("chain_valid (Mozilla)", tls["chain_valid"], mozilla[0] if mozilla else None),
    ("chain_length", tls["chain_length"], len(dep["received_certificate_chain"])),
]
for label, ours, theirs in facts:
    same = ours == theirs
    ok = ok and same
    print(f"[{name}] certificate {label}: vigil={ours} sslyze={theirs} {'OK' if same else 'MISMATCH'}")
sys.exit(0 if ok else 1)
PY

    # testssl.sh (Debian package `testssl.sh`), when installed, on the widest set-up:
    # its cipher list is the union over versions, so compare unions.
    if [ "$name" = "tls10-to-13-all" ] && command -v testssl >/dev/null; then
        testssl --quiet --color 0 -e -p --jsonfile "$WORK/$name.testssl.json" "127.0.0.1:$port" >/dev/null 2>&1 || true
        python3 - "$name" "$WORK/$name.vigil.json" "$WORK/$name.testssl.json" <<'PY' || status=1
import json, sys
name, vigil_path, testssl_path = sys.argv[1:]
entries = json.load(open(testssl_path))
tls = [r["observation"] for r in json.load(open(vigil_path))["records"] if r["observation"]["kind"] == "tls"][0]
names = {"SSLv3": "SSLv3", "TLS1": "TLSv1.0", "TLS1_1": "TLSv1.1", "TLS1_2": "TLSv1.2", "TLS1_3": "TLSv1.3"}
theirs_versions = sorted(names[e["id"]] for e in entries if e["id"] in names and e["finding"].startswith("offered"))
accepted = {int(e["id"][len("cipher_x"):], 16) for e in entries if e["id"].startswith("cipher_x")}
weak = {w["code"] for w in tls["weak_ciphers"]}
ok = theirs_versions == sorted(tls["protocols"]) and weak <= accepted
print(f"[{name}] testssl versions={theirs_versions} vigil={sorted(tls['protocols'])}; "
      f"vigil weak suites {len(weak)}, all accepted per testssl: {weak <= accepted} "
      f"(testssl accepted {len(accepted)} incl. TLS 1.3) {'OK' if ok else 'MISMATCH'}")
sys.exit(0 if ok else 1)
PY
    fi
done
exit $status
