#!/usr/bin/env bash
# The main job, end to end: set up, build, prepare the dataset and print its
# report, fine-tune the describe and qa adapters on it, and compare the base
# model with them on held-out products. Serving joins here as it lands.
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
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BUILD_DIR" --parallel "$(nproc)" --target vitrine
export OMP_WAIT_POLICY=PASSIVE

"$BUILD_DIR/cli/vitrine" prepare --input "$INPUT" --out "$OUT/dataset" --config configs/prepare.yaml --print-report

# Both adapters from the dataset just made (configs/train.yaml; the base model
# is ../shared/models/stories260K-hf), then the base-vs-tuned evaluation.
"$BUILD_DIR/cli/vitrine" train --config configs/train.yaml --dataset "$OUT/dataset" --output "$OUT/run"
cat "$OUT/run/eval/report.md"
