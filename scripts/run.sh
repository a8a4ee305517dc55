#!/usr/bin/env bash
# The main job, end to end: set up, build, prepare the dataset and print its
# report, fine-tune the describe and qa adapters on it (and the grounded qa
# adapter of the closed-book vs grounded comparison), and compare the base
# model with them on held-out products; then serve them with vitrined and
# ask it a few titles and questions over gRPC.
# Usage: scripts/run.sh [trn.json or trn.json.gz] [output dir]
#   default input: ../shared/data/amazon_titles_sample.jsonl (884 real records)
#   default output: out/ (out/dataset, out/run)
set -euo pipefail
cd "$(dirname "$0")/.."
INPUT=${1:-../shared/data/amazon_titles_sample.jsonl}
OUT=${2:-out}
BUILD_DIR=${BUILD_DIR:-build}

if [[ ! -f "$INPUT" ]]; then
  echo "run: input '$INPUT' not found; pass the path of trn.json(.gz) as the first argument" >&2
  exit 1
fi
bash scripts/setup.sh
# ccache (when installed) hits across checkouts in other folders.
export CCACHE_BASEDIR="$PWD" CCACHE_SLOPPINESS=pch_defines,time_macros
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" --parallel "$(nproc)" --target vitrine vitrined
export OMP_WAIT_POLICY=PASSIVE

"$BUILD_DIR/cli/vitrine" prepare --input "$INPUT" --out "$OUT/dataset" --config configs/prepare.yaml --print-report

# The adapters from the dataset just made (configs/train.yaml: describe, qa
# and qa_grounded; the base model is ../shared/models/stories260K-hf), then
# the base-vs-tuned evaluation with closed-book and grounded qa side by side.
"$BUILD_DIR/cli/vitrine" train --config configs/train.yaml --dataset "$OUT/dataset" --output "$OUT/run"
cat "$OUT/run/eval/report.md"

# Serve what was just trained: vitrined with the run's adapters, classifier
# and the dataset's catalogue (configs/router.yaml), on a port of its own.
PORT=${VITRINE_PORT:-50061}
METRICS_PORT=${VITRINE_METRICS_PORT:-9464}
mkdir -p "$OUT/router"
cat > "$OUT/router/router.yaml" <<EOF_CONFIG
listen: 127.0.0.1:$PORT
metrics_listen: 127.0.0.1:$METRICS_PORT
adapters_dir: $OUT/run/adapters
classifier: $OUT/run/classifier
catalog: $OUT/dataset/catalog.sqlite
response_log: $OUT/router/responses.sqlite
EOF_CONFIG
"$BUILD_DIR/router/vitrined" --config "$OUT/router/router.yaml" 2>"$OUT/router/vitrined.log" &
DAEMON=$!
trap 'kill $DAEMON 2>/dev/null || true' EXIT
ASK=("$BUILD_DIR/cli/vitrine" ask --address "127.0.0.1:$PORT")
for _ in $(seq 1 120); do
  if "${ASK[@]}" --route base --max-new-tokens 1 "ping" >/dev/null 2>&1; then break; fi
  kill -0 $DAEMON 2>/dev/null || { echo "run: vitrined failed, see $OUT/router/vitrined.log" >&2; exit 1; }
  sleep 0.5
done
# A title and a question from the test split, a title that reads as a
# question, and a question about no known product.
TITLE=$(head -1 "$OUT/dataset/tasks/describe/test.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["prompt"])')
QUESTION=$(head -1 "$OUT/dataset/tasks/qa/test.jsonl" | python3 -c 'import json,sys; print(json.load(sys.stdin)["question"])')
TITLE_QUESTION=$(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    t = json.loads(line)["prompt"]
    if t.endswith("?"):
        print(t); break' "$OUT/dataset/tasks/describe/train.jsonl")
for text in "$TITLE" "$QUESTION" "$TITLE_QUESTION" "What is the battery life of the zq-9000 hyperdrive?"; do
  [[ -n "$text" ]] || continue
  echo
  echo "== vitrine ask \"$text\""
  "${ASK[@]}" --max-new-tokens 48 "$text"
done
echo
echo "== vitrine compare \"$QUESTION\""
"$BUILD_DIR/cli/vitrine" compare --address "127.0.0.1:$PORT" --max-new-tokens 48 "$QUESTION"
kill -TERM $DAEMON
wait $DAEMON
trap - EXIT
echo
"$BUILD_DIR/cli/vitrine" ab-report --log "$OUT/router/responses.sqlite"
