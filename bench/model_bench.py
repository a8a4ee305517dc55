#!/usr/bin/env python3
"""Benchmark: models/ decoding and prefill beside the plain PyTorch peer, in one run.

For each preset model of ../shared/bench/torch_lora_baseline.py (20m, 110m;
made with its --make-model when missing), runs in alternation, --repeat
times each:
  1. torch_lora_baseline.py --mode generate (the peer: eager PyTorch,
     preallocated KV cache, LoRA r 8 on q_proj and v_proj, unmerged),
     greedy decoding of 64 tokens after 32 at batch 1 and 8;
  2. build/bench/decode_bench (models/ through generate_batch_ids, the same
     prompt length, new tokens, LoRA rank and targets; at batch 8 the rows
     mix two adapters and the base model), plus one 512-token prefill and
     the machine's matrix-product ceiling measured in the same process.
Medians over the repeats are written between the markers of
docs/benchmarks.md, with the command that made them.

Usage:
  python3 bench/model_bench.py [--bench-dir DIR] [--presets 20m 110m] [--repeat 3]
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

from benchmarks_doc import write_section

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
PEER = os.path.join(SHARED, "bench", "torch_lora_baseline.py")
PY = "/usr/bin/python3"  # Debian's python3 with python3-torch
BEGIN = "<!-- model-bench:begin -->"
END = "<!-- model-bench:end -->"


def run_json(cmd, env):
    """Runs cmd with --json into a temporary file; returns the JSON lines."""
    with tempfile.NamedTemporaryFile("r", suffix=".jsonl") as out:
        proc = subprocess.run(cmd + ["--json", out.name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env)
        if proc.returncode != 0:
            sys.exit("failed (%d): %s\n%s" % (proc.returncode, " ".join(cmd), proc.stderr[-2000:]))
        return [json.loads(line) for line in out if line.strip()]


def ensure_model(bench_dir, preset):
    path = os.path.join(bench_dir, "m" + preset.rstrip("m"))
    if not os.path.exists(os.path.join(path, "model.safetensors")):
        print("making %s (%s preset) ..." % (path, preset), flush=True)
        subprocess.run([PY, PEER, "--make-model", path, "--preset", preset], check=True)
    return path


def median_of(rows, key):
    return statistics.median(r[key] for r in rows)


def bench_preset(args, preset):
    model = ensure_model(args.bench_dir, preset)
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    peer, ours = [], []
    for i in range(args.repeat):
        print("%s: round %d of %d" % (preset, i + 1, args.repeat), flush=True)
        peer += run_json([PY, PEER, "--model", model, "--mode", "generate", "--threads", str(args.threads)], env)
        ours += run_json([args.decode_bench, "--model", model, "--threads", str(args.threads)], env)
    result = {"preset": preset}
    for batch in (1, 8):
        p = [r for r in peer if r["mode"] == "generate" and r["batch"] == batch]
        o = [r for r in ours if r["mode"] == "generate" and r["batch"] == batch]
        result["peer_decode_%d" % batch] = median_of(p, "decode_tokens_per_s")
        result["ours_decode_%d" % batch] = median_of(o, "decode_tokens_per_s")
        result["peer_prefill_%d" % batch] = median_of(p, "prefill_tokens_per_s")
        result["ours_prefill_%d" % batch] = median_of(o, "prefill_tokens_per_s")
        result["ours_decode_%d_range" % batch] = (min(r["decode_tokens_per_s"] for r in o),
                                                  max(r["decode_tokens_per_s"] for r in o))
        result["peer_decode_%d_range" % batch] = (min(r["decode_tokens_per_s"] for r in p),
                                                  max(r["decode_tokens_per_s"] for r in p))
    long = [r for r in ours if r["mode"] == "prefill"]
    result["long_prefill_tokens_per_s"] = median_of(long, "prefill_tokens_per_s")
    result["long_prefill_gflops"] = median_of(long, "gflops")
    result["gemm_gflops"] = median_of(long, "gemm_1024_gflops")
    result["peer_rss"] = max(r["peak_rss_mb"] for r in peer)
    result["ours_rss"] = max(r["peak_rss_mb"] for r in ours)
    result["params"] = peer[0]["params"]
    return result


def render(args, results):
    def rng(pair):
        return "%.0f to %.0f" % pair

    lines = [BEGIN, "",
             "Measured %s on %s, %d threads, load average %.2f before the run; medians of %d "
             "alternating runs each (range in brackets). Command:" % (
                 datetime.date.today().isoformat(), platform.machine(), args.threads, args.load_before,
                 args.repeat), "",
             "```", "python3 bench/model_bench.py " + " ".join(args.argv), "```", "",
             "Greedy decoding, 64 new tokens after a 32-token prompt, LoRA r 8 on q_proj and v_proj "
             "unmerged (tokens per second, all rows of the batch together):", "",
             "| model | peer batch 1 | vitrine batch 1 | speed-up | peer batch 8 | vitrine batch 8, mixed "
             "adapters | vitrine batch 8 / batch 1 |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append("| %s (%.1f M) | %.1f (%s) | %.1f (%s) | %.1fx | %.1f (%s) | %.1f (%s) | %.1fx |" % (
            r["preset"], r["params"] / 1e6, r["peer_decode_1"], rng(r["peer_decode_1_range"]),
            r["ours_decode_1"], rng(r["ours_decode_1_range"]), r["ours_decode_1"] / r["peer_decode_1"],
            r["peer_decode_8"], rng(r["peer_decode_8_range"]), r["ours_decode_8"],
            rng(r["ours_decode_8_range"]), r["ours_decode_8"] / r["ours_decode_1"]))
    lines += ["", "Prefill (tokens per second) and peak memory:", "",
              "| model | peer, 32 tokens x 1 | vitrine, 32 x 1 | peer, 32 x 8 | vitrine, 32 x 8 | "
              "vitrine, 512 x 1 | GFLOP/s at 512 | of 150 GFLOP/s | one 1024³ product here | "
              "peak RSS peer / vitrine |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        lines.append("| %s | %.0f | %.0f | %.0f | %.0f | %.0f | %.1f | %.0f %% | %.1f GFLOP/s | %.0f / %.0f MiB |" % (
            r["preset"], r["peer_prefill_1"], r["ours_prefill_1"], r["peer_prefill_8"], r["ours_prefill_8"],
            r["long_prefill_tokens_per_s"], r["long_prefill_gflops"], 100 * r["long_prefill_gflops"] / 150,
            r["gemm_gflops"], r["peer_rss"], r["ours_rss"]))
    lines += ["", "GFLOP/s counts the useful work of the 512-token prefill: two per multiply-add of every "
              "projection and LoRA factor, the causal half of the attention products, and the head for the "
              "last position only.", "", END]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench-dir", default=os.environ.get("BENCH", "/tmp/vitrine-bench"))
    ap.add_argument("--presets", nargs="+", default=["20m", "110m"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--decode-bench", default=os.path.join(ROOT, "build", "bench", "decode_bench"))
    ap.add_argument("--no-write", action="store_true", help="print the tables, leave docs/benchmarks.md alone")
    args = ap.parse_args()
    args.argv = sys.argv[1:]
    if not os.path.exists(PEER):
        sys.exit("../shared/bench not found: the peer decoder is needed for a side-by-side run")
    if subprocess.run([PY, "-c", "import torch"], capture_output=True).returncode != 0:
        sys.exit("the peer needs Debian's python3-torch: apt-get install python3-torch")
    if not os.path.exists(args.decode_bench):
        sys.exit("%s not found: build first (scripts/test.sh)" % args.decode_bench)
    os.makedirs(args.bench_dir, exist_ok=True)
    args.load_before = os.getloadavg()[0]
    results = [bench_preset(args, p) for p in args.presets]
    table = render(args, results)
    print(table)
    if args.no_write:
        return
    write_section(os.path.join(ROOT, "docs", "benchmarks.md"), BEGIN, END, table)


if __name__ == "__main__":
    main()
