#!/usr/bin/env bash
# Re-records docs/demo.cast: a terminal recording (asciinema) of the README's
# main command, scripts/run.sh, from preparing the dataset and fine-tuning
# the adapters to the daemon answering titles and questions with their
# sources and the base-vs-tuned comparison. Play it with
# `asciinema play docs/demo.cast`.
# Usage: scripts/record_demo.sh [trn.json(.gz)]   (BUILD_DIR and OUT as for run.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v asciinema >/dev/null || { echo "record_demo: install asciinema (apt-get install asciinema)" >&2; exit 1; }
OUT=${OUT:-out-demo}
INPUT=${1:-../shared/data/amazon_titles_sample.jsonl}
# A fixed terminal size, so the recording plays the same everywhere.
export COLUMNS=120 LINES=36
asciinema rec --overwrite --quiet --cols 120 --rows 36 \
  --title "vitrine: prepare, fine-tune, serve (scripts/run.sh)" \
  --command "bash scripts/run.sh '$INPUT' '$OUT'" docs/demo.cast.tmp
mv docs/demo.cast.tmp docs/demo.cast
echo "record_demo: docs/demo.cast ($(wc -c < docs/demo.cast) bytes)"
