#!/usr/bin/env bash
# Does llama.cpp run what `vitrine export` writes as vitrine runs it? Exports
# a base model with a LoRA adapter, converts the export to GGUF with
# llama.cpp's own converters and compares llama.cpp's greedy text with
# `vitrine generate`'s greedy text for the same prompts:
#
#   merged    vitrine export --merge --dtype f32, convert_hf_to_gguf.py
#             --outtype f32, llama-cli; against vitrine generate on BASE with
#             the adapter attached (unmerged, as vitrine serves it)
#   unmerged  vitrine export (OUT + OUT/adapter), convert_hf_to_gguf.py for
#             OUT and convert_lora_to_gguf.py for OUT/adapter, llama-cli
#             --lora; against the same
#
# Not part of CI (it needs a llama.cpp build); the result is recorded in
# docs/models.md. llama.cpp is built outside the repository as
# ../shared/bench/llamacpp/README.md says (build.sh), and its converters
# need python3-torch, python3-numpy and python3-sentencepiece.
#
# usage: bench/export_gguf_check.sh LLAMACPP_DIR ADAPTER_DIR [BASE_DIR] [TOKENS]
#   LLAMACPP_DIR  the OUT_DIR given to build.sh (holds build/bin/llama-cli)
#   ADAPTER_DIR   a PEFT adapter for BASE_DIR, e.g. out/run/adapters/describe
#                 from scripts/run.sh
#   BASE_DIR      default ../shared/models/stories260K-hf
#   TOKENS        greedy tokens per prompt, default 48
# environment: VITRINE (default build/cli/vitrine), WORK (default a new
# folder under /tmp, removed at the end unless KEEP=1)
# Exit status 0 when every text matches, 1 when one differs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
lc=$(cd "$1" && pwd)
adapter=$(cd "$2" && pwd)
base=$(cd "${3:-$root/../shared/models/stories260K-hf}" && pwd)
tokens=${4:-48}
vitrine=${VITRINE:-$root/build/cli/vitrine}
to_gguf=$root/../shared/bench/llamacpp/to_gguf.py
work=${WORK:-$(mktemp -d /tmp/export-gguf.XXXXXX)}
[ "${KEEP:-0}" = 1 ] || trap 'rm -rf "$work"' EXIT
prompts=("Once upon a time" "The little dog" "Lily and Ben went to the park" "Torres: El Niño: My Story")

run() { echo "+ $*" >&2; "$@"; }

run "$vitrine" export -q --model "$base" --adapter "$adapter" --out "$work/merged" --merge --dtype f32
run "$vitrine" export -q --model "$base" --adapter "$adapter" --out "$work/unmerged" --dtype f32
run /usr/bin/python3 "$to_gguf" "$lc" convert_hf_to_gguf.py "$work/merged" --outtype f32 \
  --outfile "$work/merged-f32.gguf" > "$work/convert.log" 2>&1
run /usr/bin/python3 "$to_gguf" "$lc" convert_hf_to_gguf.py "$work/unmerged" --outtype f32 \
  --outfile "$work/base-f32.gguf" >> "$work/convert.log" 2>&1
# The LoRA converter imports convert_hf_to_gguf (beside it) and transformers
# (TRANSFORMERS_SRC and HF_HUB_SRC, as for ../shared/reference's harness).
PYTHONPATH="$lc${PYTHONPATH:+:$PYTHONPATH}" \
  run /usr/bin/python3 "$to_gguf" "$lc" convert_lora_to_gguf.py "$work/unmerged/adapter" \
    --base "$work/unmerged" --outtype f32 --outfile "$work/adapter-f32.gguf" >> "$work/convert.log" 2>&1

# Both print the prompt, then the greedy continuation (llama-cli on stdout,
# its logs on stderr; greedy is --temp 0). The continuations are compared
# exactly but for spaces at their ends: llama-cli prints a space before the
# prompt (SentencePiece's dummy prefix) and `vitrine generate` none between
# prompt and continuation (its stream decoder restarts after the prompt,
# dropping the first piece's leading space).
llama() {
  "$lc/build/bin/llama-cli" -t 2 --temp 0 -n "$tokens" -no-cnv --no-warmup -s 1 "$@" 2>/dev/null
}
continuation() {  # TEXT PROMPT -> TEXT after PROMPT, without end marker or outer spaces
  local text=$1
  text=${text#"${text%%[![:space:]]*}"}
  text=${text#"$2"}
  text=${text% \[end of text\]}
  text=${text#"${text%%[![:space:]]*}"}
  printf '%s' "${text%"${text##*[![:space:]]}"}"
}
status=0
for prompt in "${prompts[@]}"; do
  ours=$(continuation "$("$vitrine" generate --model "$base" --adapter "$adapter" --prompt "$prompt" \
    -n "$tokens")" "$prompt")
  merged=$(continuation "$(llama -m "$work/merged-f32.gguf" -p "$prompt")" "$prompt")
  unmerged=$(continuation "$(llama -m "$work/base-f32.gguf" --lora "$work/adapter-f32.gguf" \
    -p "$prompt")" "$prompt")
  for kind in merged unmerged; do
    if [ "${!kind}" = "$ours" ]; then
      echo "same text, $kind, '$prompt' + '$ours'"
    else
      status=1
      printf 'DIFFERENT, %s, %s:\n  vitrine:   %s\n  llama.cpp: %s\n' "$kind" "'$prompt'" "$ours" \
        "${!kind}"
    fi
  done
done
exit $status
