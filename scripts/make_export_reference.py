#!/usr/bin/python3
"""Records what the real transformers (and peft) compute from `vitrine
export`'s directories, so that tests/models/export_transformers_test.cc can
check exports against transformers on machines without it (CI).

For each case (a ../shared/fixtures/hf-llama checkpoint with its PEFT
adapter; merged or not; written in f32 or bf16; sharded at --shard-bytes)
it runs `vitrine export`, lists the files written with their sizes and
CRC-32s (all but the marker file, which names the paths it came from), and has transformers load the directory as a user would
(scripts/transformers_logits.py: no tensor missing or unexpected; unmerged:
the base with OUT/adapter applied by PeftModel) and compute the logits at
every position of a fixed id sequence. OUT, a safetensors file:

  ids [n] (I64), logits.<i> [n, vocab] (F32) for case i
  metadata: cases = the number of cases, shard_bytes,
            case.<i> = "<fixture> <dtype> merged|unmerged",
            files.<i> = JSON [[relative path, bytes, crc32], ...] (sorted),
            auto_dtype.<i> = the parameters' dtype under torch_dtype="auto",
            transformers, torch = their versions

The test exports each case again and compares its files with files.<i>:
equal files mean transformers' logits were computed from exactly those
bytes, and the test then checks that vitrine computes them too. When an
export changes on purpose, rewrite the record (needs the reference stack:
../shared/reference, or --ref DIR / VITRINE_REFERENCE_SRC):

    scripts/make_export_reference.py --vitrine build/cli/vitrine

usage: make_export_reference.py --vitrine PATH [--out FILE] [--shared DIR] [--ref DIR]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_arch_fixtures  # noqa: E402
import transformers_logits  # noqa: E402

# (fixture, dtype, merged): f32 and bf16, merged and with the adapter beside the base.
CASES = [("mha-untied", "f32", True), ("mha-untied", "bf16", True),
         ("llama3-rope", "f32", True), ("llama3-rope", "bf16", True),
         ("mha-untied", "bf16", False), ("llama3-rope", "f32", False)]
SHARD_BYTES = 300000  # every case is sharded, with an index
MARKER = ".vitrine-export"  # models/export.h kExportMarker: read by no loader
IDS = [(i * 53 + 1) % 509 for i in range(24)]  # the fixtures' vocabularies are 512 and 1024


def parse_args(argv):
    root = make_arch_fixtures.repo_root()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vitrine", required=True, help="the vitrine program (build/cli/vitrine)")
    p.add_argument("--out", default=os.path.join(root, "tests", "data", "transformers",
                                                 "export.safetensors"))
    p.add_argument("--shared", default=os.environ.get("VITRINE_SHARED_DIR",
                                                      os.path.join(root, "..", "shared")))
    p.add_argument("--ref", default="",
                   help="folder with the transformers/, huggingface_hub/, peft/, accelerate/ trees")
    return p.parse_args(argv)


def listing(folder):
    """[[relative path, bytes, crc32], ...] of every file under folder but the
    export's marker (a line naming the paths it was made from), sorted."""
    out = []
    for top, _, names in os.walk(folder):
        for name in names:
            if name == MARKER:
                continue
            path = os.path.join(top, name)
            with open(path, "rb") as f:
                data = f.read()
            out.append([os.path.relpath(path, folder), len(data), zlib.crc32(data)])
    return sorted(out)


def main(argv=None):
    args = parse_args(argv)
    stack = transformers_logits.reference_stack(args.shared, args.ref)
    if stack is None:
        return make_arch_fixtures.MISSING
    hf_reference, torch, tf = stack
    meta = {"cases": str(len(CASES)), "shard_bytes": str(SHARD_BYTES)}
    models, adapters = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i, (fixture, dtype, merged) in enumerate(CASES):
            base = os.path.join(os.path.abspath(args.shared), "fixtures", "hf-llama", fixture)
            out = os.path.join(tmp, str(i))
            command = [args.vitrine, "export", "--model", base, "--adapter",
                       os.path.join(base, "adapter"), "--out", out, "--dtype", dtype,
                       "--max-shard-size", str(SHARD_BYTES), "--quiet"]
            if merged:
                command.append("--merge")
            subprocess.run(command, check=True)
            meta["case.%d" % i] = "%s %s %s" % (fixture, dtype, "merged" if merged else "unmerged")
            meta["files.%d" % i] = json.dumps(listing(out), separators=(",", ":"))
            models.append(out)
            adapters.append("" if merged else os.path.join(out, "adapter"))
        tensors, computed = transformers_logits.compute(tf, torch, models, adapters, IDS)
        computed["made_by"] = "scripts/make_export_reference.py"
        meta.update(computed)
        os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
        staging = args.out + ".tmp"
        hf_reference.st_save_file(tensors, staging, meta)
        os.replace(staging, args.out)
    print("make_export_reference: wrote %s (%d cases)" % (args.out, len(CASES)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
