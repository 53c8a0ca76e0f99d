#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time: the wire-frame decoder,
# the rule condition parser and the findings query parser.
#
#   deploy/fuzz.sh                 # 30 s per target
#   FUZZ_SECONDS=300 deploy/fuzz.sh
#   deploy/fuzz.sh parse_condition # only the named target(s)
#
# cargo-fuzz needs nightly features; on a stable toolchain RUSTC_BOOTSTRAP=1
# unlocks them. Corpora grow in <crate>/fuzz/corpus/<target>; a crash stops
# the script with a non-zero status and leaves its input in
# <crate>/fuzz/artifacts/<target>/ (reproduce: cargo fuzz run <target> <file>).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-30}"
export RUSTC_BOOTSTRAP=1
export PATH="$HOME/.cargo/bin:$PATH"
# One build directory for every fuzz crate: libFuzzer and shared
# dependencies are compiled once, not once per crate.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/fuzz}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# crate directory : target
targets=(
  "protocol/fuzz:decode_frame"
  "rules/fuzz:parse_condition"
  "collector/fuzz:search_query"
)

want=("$@")
for entry in "${targets[@]}"; do
  dir="${entry%%:*}"
  target="${entry##*:}"
  if [ ${#want[@]} -gt 0 ] && [[ ! " ${want[*]} " =~ " ${target} " ]]; then
    continue
  fi
  echo "==> fuzz ${target} for ${seconds}s (${dir})"
  mkdir -p "${dir}/corpus/${target}"
  log="$(mktemp)"
  # -rss_limit_mb and -timeout turn memory blow-ups and hangs into failures too.
  status=0
  (cd "${dir}" && cargo fuzz run "${target}" -- \
    -max_total_time="${seconds}" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1) \
    >"${log}" 2>&1 || status=$?
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb|#[0-9]+ +DONE|Done [0-9]+ runs)' "${log}" || true
  if [ "${status}" -ne 0 ]; then
    tail -n 60 "${log}"
    rm -f "${log}"
    echo "==> fuzz target ${target} FAILED (exit ${status}); see ${dir}/artifacts/${target}/" >&2
    exit "${status}"
  fi
  rm -f "${log}"
done
echo "==> fuzzing finished without crashes"
