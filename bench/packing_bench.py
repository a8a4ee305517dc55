#!/usr/bin/env python3
"""Benchmark: packing on the real task mix, useful tokens per second.

Runs `vitrine train` on a prepared dataset (describe and qa, as
configs/train.yaml has them) for a few steps with packing on and off,
alternately, --runs times each, and reads metrics.jsonl: useful tokens per
second (tokens that are not padding, over the steps' wall time, each
adapter's first step left out as warm-up), the
padding share of the processed tokens, and the tokens an epoch holds (from
the rows and the real-token rate). A batch pads its rows to the longest,
so without packing short examples drag a long row's worth of padding.

The model is a directory with weights and a tokenizer (for the figures in
docs/benchmarks.md: the TinyLlama-1.1B shape from bench/train_bench.py with
../shared/tokenizers/llama2's tokenizer.model beside it, so the examples
are tokenized as TinyLlama's are).

Usage: /usr/bin/python3 bench/packing_bench.py --model DIR [--dataset out/dataset]
           [--steps 4] [--batch 4] [--seq 256] [--runs 2] [--no-write]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

from benchmarks_doc import publish

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN = "<!-- packing-bench:begin -->"
END = "<!-- packing-bench:end -->"


def run(args, packing, out):
    config = os.path.join(out + ".yaml")
    adapters = "".join(
        f"  {name}:\n    task: {name}\n    max_steps: {args.steps}\n    eval_every: 0\n"
        f"    checkpoint_every: 0\n    validation_examples: 8\n    batch_size: {args.batch}\n"
        f"    max_seq_len: {args.seq}\n    packing: {'true' if packing else 'false'}\n"
        f"    target_modules: [q_proj, v_proj]\n"
        for name in ("describe", "qa"))
    with open(config, "w") as f:
        f.write(f"base_model: {args.model}\ndataset: {args.dataset}\nthreads: {args.threads}\n"
                f"base_dtype: bf16\nbf16_compute: true\nend_token: eos\nclassifier:\n  enabled: false\n"
                f"adapters:\n{adapters}")
    cmd = [os.path.join(args.build, "cli", "vitrine"), "train", "-q", "--no-eval", "--config",
           config, "--output", out]
    done = subprocess.run(cmd, capture_output=True, text=True,
                          env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"))
    if done.returncode != 0:
        sys.exit(f"packing_bench: {' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")
    steps, starts = {}, {}
    with open(os.path.join(out, "metrics.jsonl")) as f:
        for line in f:
            j = json.loads(line)
            if j["event"] == "step":
                steps.setdefault(j["adapter"], []).append(j)
            if j["event"] == "start":
                starts[j["adapter"]] = j
    # The first step of each adapter warms up (allocations, page faults of the
    # weights): the rate counts the steps after it, over their own wall time.
    real = sum(s["real_tokens"] for a in steps.values() for s in a[1:])
    tokens = sum(s["tokens"] for a in steps.values() for s in a[1:])
    seconds = sum(a[-1]["seconds"] - a[0]["seconds"] for a in steps.values())
    # An epoch's rows, each holding the step's mean of real tokens per row.
    epoch_tokens = sum(
        starts[a]["train_rows"] * sum(s["real_tokens"] for s in steps[a]) /
        (len(steps[a]) * args.batch) for a in steps)
    return {"useful_per_s": real / seconds, "padding": 1 - real / tokens,
            "rows": sum(st["train_rows"] for st in starts.values()),
            "examples": sum(st["train_examples"] for st in starts.values()),
            "epoch_tokens": epoch_tokens}


def med(values, fmt):
    return (f"{fmt.format(statistics.median(values))} "
            f"({fmt.format(min(values))}–{fmt.format(max(values))})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", default=os.path.join(ROOT, "out", "dataset"))
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    if args.steps < 2:
        sys.exit("packing_bench: --steps must be at least 2 (the first step of each adapter is warm-up)")
    work = tempfile.mkdtemp(prefix="vitrine-packing-")
    results = {True: [], False: []}
    for i in range(args.runs):
        for packing in ((True, False) if i % 2 == 0 else (False, True)):
            r = run(args, packing, os.path.join(work, f"run-{i}-{int(packing)}"))
            results[packing].append(r)
            print(f"  packing {packing}: {r['useful_per_s']:.1f} useful tokens/s, "
                  f"padding {100 * r['padding']:.1f} %", flush=True)
    on, off = results[True], results[False]
    gain = statistics.median(r["useful_per_s"] for r in on) / statistics.median(
        r["useful_per_s"] for r in off)
    rows = []
    for name, rs in (("on", on), ("off", off)):
        rows.append(f"| {name} | {rs[0]['examples']:,} | {rs[0]['rows']:,} | "
                    f"{med([r['useful_per_s'] for r in rs], '{:.1f}')} | "
                    f"{med([100 * r['padding'] for r in rs], '{:.1f}')} % |")
    section = "\n".join([
        BEGIN,
        "## Packing: useful tokens per second on the real task mix",
        "",
        f"Command: `/usr/bin/python3 bench/packing_bench.py --model DIR --steps {args.steps} "
        f"--batch {args.batch} --seq {args.seq} --runs {args.runs}`, DIR the TinyLlama-1.1B "
        f"shape with the Llama-2 tokenizer; the describe and qa tasks of `{os.path.relpath(args.dataset, ROOT)}` "
        f"(the real sample), `vitrine train` with base_dtype bf16 and bf16_compute, LoRA r 8 "
        f"on q_proj and v_proj, {args.steps} steps per adapter, batch {args.batch} x "
        f"{args.seq} tokens, packing on and off alternately, {args.runs} runs each. Useful "
        f"tokens are those that are not padding, over the wall time of the steps after "
        f"each adapter's first (warm-up); medians (ranges).",
        "",
        "| packing | training examples | rows | useful tokens/s | padding share |",
        "| --- | ---: | ---: | ---: | ---: |",
    ] + rows + [
        "",
        f"Packing gives {gain:.2f}x the useful tokens per second. An epoch of this mix holds "
        f"about {statistics.median(r['epoch_tokens'] for r in on):,.0f} real tokens "
        f"({on[0]['examples']:,} examples).",
        END,
    ])
    publish(section, BEGIN, END, write=not args.no_write)


if __name__ == "__main__":
    main()
