#!/usr/bin/python3
"""Logits of model directories as the real Hugging Face transformers computes
them, for tests that check what vitrine writes (tests/models/
export_transformers_test.cc: `vitrine export`'s directories load in
transformers and compute what vitrine computes).

For each --model DIR it loads DIR with AutoModelForCausalLM, as a user
would, and refuses a load that leaves any tensor missing, unexpected or
mismatched. It loads it twice: with torch_dtype="auto" (what config.json's
torch_dtype says; the parameters' dtype is recorded) and in float32, eager
attention, CPU, with the PEFT adapter of the matching --adapter (when given
and not empty) applied by peft's PeftModel, whose logits at every position
of --ids are written:

  OUT  a safetensors file: logits.<i> [n, vocab] (F32) for the i-th --model
       (from 0), ids [n] (I64); metadata auto_dtype.<i> = the parameters'
       dtype under torch_dtype="auto" ("bfloat16", ...), transformers = its
       version

Needs the reference harness (../shared/reference/hf_reference.py) and the
source trees it names, found as scripts/make_arch_fixtures.py finds them
(TRANSFORMERS_SRC, HF_HUB_SRC, PEFT_SRC, ACCELERATE_SRC, or --ref DIR /
VITRINE_REFERENCE_SRC); without them it writes nothing, says what is missing
and exits with status 3 (the tests then skip).

usage: transformers_logits.py --model DIR [--model DIR ...] [--adapter DIR|'' ...]
                              --ids 1,2,3 --out FILE [--shared DIR] [--ref DIR]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_arch_fixtures  # noqa: E402  (finding the trees; the harness's path)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", action="append", required=True, help="model directory (repeatable)")
    p.add_argument("--adapter", action="append", default=[],
                   help="PEFT adapter for the --model of the same position, '' for none")
    p.add_argument("--ids", required=True, help="comma-separated token ids")
    p.add_argument("--out", required=True, help="safetensors file to write")
    p.add_argument("--shared", default=os.environ.get(
        "VITRINE_SHARED_DIR", os.path.join(make_arch_fixtures.repo_root(), "..", "shared")),
        help="the shared folder holding reference/hf_reference.py")
    p.add_argument("--ref", default="",
                   help="folder with the transformers/, huggingface_hub/, peft/, accelerate/ trees")
    return p.parse_args(argv)


def load(tf, folder, dtype):
    model, info = tf.AutoModelForCausalLM.from_pretrained(
        folder, torch_dtype=dtype, attn_implementation="eager", output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    if bad:
        raise SystemExit("%s: transformers did not load it cleanly: %s" % (folder, bad))
    return model.eval()


def reference_stack(shared, ref):
    """(hf_reference, torch, transformers) ready to run, or None after saying
    on stderr what is missing."""
    make_arch_fixtures.point_at_trees(ref or os.environ.get("VITRINE_REFERENCE_SRC", ""))
    harness = os.path.join(os.path.abspath(shared), "reference", "hf_reference.py")
    missing = make_arch_fixtures.missing_pieces(harness)
    if missing:
        print("the transformers reference is not available; missing: " + "; ".join(missing),
              file=sys.stderr)
        return None
    sys.path.insert(0, os.path.dirname(harness))
    import hf_reference
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    tf = hf_reference._hf()
    tf.utils.logging.disable_progress_bar()
    return hf_reference, torch, tf


def compute(tf, torch, models, adapters, ids):
    """(tensors, metadata) as OUT holds them, for the models (and adapters,
    '' for none) at the ids."""
    ids = torch.tensor(ids, dtype=torch.int64)
    tensors = {"ids": ids}
    meta = {"made_by": "scripts/transformers_logits.py", "transformers": tf.__version__,
            "torch": torch.__version__}
    for i, folder in enumerate(models):
        auto = load(tf, folder, "auto")
        meta["auto_dtype.%d" % i] = str(next(auto.parameters()).dtype).replace("torch.", "")
        del auto
        model = load(tf, folder, torch.float32)
        adapter = adapters[i] if adapters else ""
        if adapter:
            import peft

            model = peft.PeftModel.from_pretrained(model, adapter).eval()
        with torch.no_grad():
            logits = model(input_ids=ids.unsqueeze(0)).logits[0].float().contiguous()
        tensors["logits.%d" % i] = logits
        print("  %s%s: loaded (torch_dtype auto -> %s), logits %s" %
              (folder, " + " + adapter if adapter else "", meta["auto_dtype.%d" % i],
               tuple(logits.shape)))
    return tensors, meta


def main(argv=None):
    args = parse_args(argv)
    if args.adapter and len(args.adapter) != len(args.model):
        raise SystemExit("transformers_logits: %d --adapter for %d --model" %
                         (len(args.adapter), len(args.model)))
    stack = reference_stack(args.shared, args.ref)
    if stack is None:
        return make_arch_fixtures.MISSING
    hf_reference, torch, tf = stack
    tensors, meta = compute(tf, torch, args.model, args.adapter,
                            [int(x) for x in args.ids.split(",")])
    hf_reference.st_save_file(tensors, args.out, meta)
    return 0


if __name__ == "__main__":
    sys.exit(main())
