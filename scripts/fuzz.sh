#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/, clang + ASan + UBSan) into
# build-fuzz/ and runs each for a fixed time on a seed corpus built from
# ../shared. Prints one summary row per target (also in
# build-fuzz/summary.md: seconds actually run, executions, exec/s, corpus
# files, crashing inputs); crashing inputs land in build-fuzz/crashes/<target>/
# and stop that target. The corpus in build-fuzz/corpus/ grows run to run.
#
# Usage: scripts/fuzz.sh [seconds per target (default 600)] [target...]
#   FUZZ_JOBS=2 runs that many targets at once (default 1).
#   VITRINE_SHARED_DIR overrides ../shared.
# Exits non-zero when a target found a crash. Needs clang-14 and
# libclang-rt-14-dev (not in scripts/setup.sh: CI does not fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-600}
shift || true
TARGETS=("$@")
if ((${#TARGETS[@]} == 0)); then
  TARGETS=(trn_record safetensors tokenizer_json tokenizer_model peft_config config_binders
    gateway_request)
fi
SHARED=${VITRINE_SHARED_DIR:-../shared}
OUT=build-fuzz
JOBS=${FUZZ_JOBS:-1}

CXX=${CXX:-clang++-14} cmake -S tests/fuzz -B "$OUT" -G Ninja >/dev/null
cmake --build "$OUT" --parallel "$(nproc)"
rm -rf "$OUT/seeds"
python3 scripts/fuzz_seeds.py "$SHARED" . "$OUT/seeds"

# Longest input per target: a little over its largest seed, so one
# execution stays fast.
max_len() {
  case $1 in
    tokenizer_json | tokenizer_model) echo 24576 ;;
    trn_record | safetensors | config_binders) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

run_target() {
  local target=$1
  local corpus="$OUT/corpus/$target" crashes="$OUT/crashes/$target/"
  mkdir -p "$corpus" "$crashes" "$OUT/logs"
  # Scratch files (inputs read through a path) go to tmpfs when there is one.
  local tmp=/dev/shm
  [[ -w $tmp ]] || tmp=${TMPDIR:-/tmp}
  local start=$SECONDS
  TMPDIR=$tmp "$OUT/${target}_fuzz" "$corpus" "$OUT/seeds/$target" \
    -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 \
    -max_len="$(max_len "$target")" -dict=tests/fuzz/vitrine.dict \
    -artifact_prefix="$crashes" -print_final_stats=1 >"$OUT/logs/$target.log" 2>&1 || true
  echo $((SECONDS - start)) >"$OUT/logs/$target.seconds"  # less than asked when it crashed
}

pids=()
for target in "${TARGETS[@]}"; do
  run_target "$target" &
  pids+=($!)
  if ((${#pids[@]} >= JOBS)); then
    wait "${pids[0]}"
    pids=("${pids[@]:1}")
  fi
done
wait

status=0
{
  echo "| target | seconds | executions | exec/s | corpus files | crashes |"
  echo "|---|---|---|---|---|---|"
  for target in "${TARGETS[@]}"; do
    log="$OUT/logs/$target.log"
    runs=$(sed -n 's/^stat::number_of_executed_units: //p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    files=$(find "$OUT/corpus/$target" -type f | wc -l)
    found=$(find "$OUT/crashes/$target" -type f | wc -l)
    ran=$(cat "$OUT/logs/$target.seconds")
    ((found == 0)) || status=1
    echo "| $target | $ran | ${runs:-?} | ${rate// /} | $files | $found |"
  done
} | tee "$OUT/summary.md"
exit $status
