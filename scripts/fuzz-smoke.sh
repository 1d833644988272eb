#!/usr/bin/env bash
# Bounded fuzzing smoke run of every cargo-fuzz target in fuzz/ (libFuzzer + AddressSanitizer).
#
#   scripts/fuzz-smoke.sh                 # each target for 20 s
#   FUZZ_SECONDS=300 scripts/fuzz-smoke.sh
#   FUZZ_SECONDS=0 scripts/fuzz-smoke.sh  # only replay the committed corpus (regression check)
#   FUZZ_TARGETS="redirect config" scripts/fuzz-smoke.sh
#
# Installs cargo-fuzz when it is missing. Uses rustup's nightly toolchain when one is installed,
# otherwise the stable toolchain with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs -Z flags); it says which.
# New inputs go to a scratch directory, so the committed seed corpus (fuzz/corpus/<target>/)
# only changes when you copy something there on purpose. Crashing inputs land in
# fuzz/artifacts/<target>/ and make the script exit 1; reproduce one with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-20}"
targets="${FUZZ_TARGETS:-cookies redirect forwarded config bypass_rule inline_register}"
case "$seconds" in
  '' | *[!0-9]*) echo "fuzz-smoke: FUZZ_SECONDS must be a whole number" >&2; exit 2 ;;
esac

now() { date +%s; }

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz-smoke: cargo-fuzz is missing; installing it (cargo install cargo-fuzz --locked)"
  t0=$(now)
  cargo install cargo-fuzz --locked
  echo "fuzz-smoke: cargo-fuzz installed in $(( $(now) - t0 )) s"
fi
echo "fuzz-smoke: $(cargo fuzz --version)"

if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  cargo_cmd=(cargo +nightly)
  echo "fuzz-smoke: toolchain: rustup nightly ($(rustc +nightly --version))"
else
  export RUSTC_BOOTSTRAP=1
  cargo_cmd=(cargo)
  echo "fuzz-smoke: toolchain: stable with RUSTC_BOOTSTRAP=1, no nightly installed ($(rustc --version))"
fi

t0=$(now)
for t in $targets; do
  "${cargo_cmd[@]}" fuzz build "$t"
done
echo "fuzz-smoke: targets built in $(( $(now) - t0 )) s"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in $targets; do
  mkdir -p "$scratch/$t" "fuzz/corpus/$t"
  if [ "$seconds" -eq 0 ]; then
    limit=(-runs=0)
  else
    limit=(-max_total_time="$seconds")
  fi
  t1=$(now)
  if "${cargo_cmd[@]}" fuzz run "$t" "$scratch/$t" "fuzz/corpus/$t" -- \
      "${limit[@]}" -timeout=10 -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1 \
      >"$scratch/$t.log" 2>&1; then
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$scratch/$t.log" | grep -o '[0-9]*$' || echo '?')
    cov=$(grep -o 'cov: [0-9]*' "$scratch/$t.log" | tail -1 || true)
    echo "fuzz-smoke: $t: ok in $(( $(now) - t1 )) s, $execs runs, $cov"
  else
    failed+=("$t")
    echo "fuzz-smoke: $t: FAILED after $(( $(now) - t1 )) s; the end of its log:"
    tail -n 60 "$scratch/$t.log"
  fi
done

if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz-smoke: failing targets: ${failed[*]} (inputs in fuzz/artifacts/)"
  exit 1
fi
echo "fuzz-smoke: all targets passed"
