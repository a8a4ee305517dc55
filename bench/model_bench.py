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

With --llamacpp BIN (llama.cpp's build/bin, ../shared/bench/llamacpp) it
compares weight formats with llama.cpp instead: for each model directory of
--models (NAME=DIR; a DIR-f32.gguf and DIR-q8_0.gguf beside it are run by
llama-bench -p 512 -n 128, when present), in alternation, --repeat times:
llama-bench on both GGUFs, then decode_bench --weights W for each format of
--weights (batch 1, no adapter, 128 tokens after 8; and the 512-token
prefill). Medians go between the weights-bench markers, with the bytes of
weights a decode step streams and the share of the measured read bandwidth
that reaches.

Usage:
  python3 bench/model_bench.py [--bench-dir DIR] [--presets 20m 110m] [--repeat 3]
  python3 bench/model_bench.py --llamacpp /tmp/llamacpp/build/bin \
      --models 20m=/tmp/b/m20m 110m=/tmp/b/m110m [--weights f32 bf16 int8] [--repeat 3]
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

from benchmarks_doc import publish

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
PEER = os.path.join(SHARED, "bench", "torch_lora_baseline.py")
PY = "/usr/bin/python3"  # Debian's python3 with python3-torch
BEGIN = "<!-- model-bench:begin -->"
END = "<!-- model-bench:end -->"
WEIGHTS_BEGIN = "<!-- weights-bench:begin -->"
WEIGHTS_END = "<!-- weights-bench:end -->"


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


def llama_bench(args, gguf, env):
    """pp512 and tg128 tokens/s of one GGUF by llama-bench."""
    proc = subprocess.run([os.path.join(args.llamacpp, "llama-bench"), "-m", gguf, "-t", str(args.threads),
                           "-p", "512", "-n", "128", "-r", "1", "-o", "json"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    if proc.returncode != 0:
        sys.exit("llama-bench failed on %s:\n%s" % (gguf, proc.stderr[-2000:]))
    rows = json.loads(proc.stdout)
    pp = [r["avg_ts"] for r in rows if r["n_prompt"] == 512 and r["n_gen"] == 0]
    tg = [r["avg_ts"] for r in rows if r["n_gen"] == 128 and r["n_prompt"] == 0]
    return {"pp512": pp[0], "tg128": tg[0]}


def bench_weights(args, name, model):
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    ggufs = {q: model.rstrip("/") + "-%s.gguf" % q for q in ("f32", "q8_0")}
    ggufs = {q: g for q, g in ggufs.items() if os.path.exists(g)}
    peer = {q: [] for q in ggufs}
    ours = {w: [] for w in args.weights}
    for i in range(args.repeat):
        print("%s: round %d of %d (load %.2f)" % (name, i + 1, args.repeat, os.getloadavg()[0]), flush=True)
        for q, g in ggufs.items():
            peer[q].append(llama_bench(args, g, env))
        for w in args.weights:
            ours[w] += run_json([args.decode_bench, "--model", model, "--threads", str(args.threads),
                                 "--weights", w, "--batches", "1", "--adapters", "none",
                                 "--prompt-len", "8", "--new-tokens", "128"], env)
    result = {"name": name, "peer": {}, "ours": {}}
    for q, runs in peer.items():
        result["peer"][q] = {k: statistics.median(r[k] for r in runs) for k in ("pp512", "tg128")}
    for w, rows in ours.items():
        gen = [r for r in rows if r["mode"] == "generate"]
        pre = [r for r in rows if r["mode"] == "prefill"]
        result["ours"][w] = {
            "decode": median_of(gen, "decode_tokens_per_s"),
            "decode_range": (min(r["decode_tokens_per_s"] for r in gen), max(r["decode_tokens_per_s"] for r in gen)),
            "prefill": median_of(pre, "prefill_tokens_per_s"),
            "bytes": gen[0]["weight_bytes_per_step"],
            "weight_gbs": median_of(gen, "weight_gbs"),
            "bandwidth": median_of(gen, "read_bandwidth_gbs"),
            "rss": max(r["peak_rss_mb"] for r in rows),
            "load_s": median_of(gen, "load_s"),
        }
    return result


def render_weights(args, results):
    lines = [WEIGHTS_BEGIN, "",
             "Measured %s on %s, %d threads, load average %.2f before the run and %.2f after (2 cores); "
             "medians of %d alternating rounds. Command:" % (
                 datetime.date.today().isoformat(), platform.machine(), args.threads, args.load_before,
                 os.getloadavg()[0], args.repeat), "",
             "```", "python3 bench/model_bench.py " + " ".join(args.argv), "```", "",
             "Batch-1 decode (128 tokens after 8, no adapter; llama-bench tg128) and a 512-token prefill "
             "(vitrine with a LoRA r 8 adapter on q_proj and v_proj; llama-bench pp512), tokens per second:", "",
             "| model | weights | vitrine decode | llama.cpp tg128 | vitrine prefill 512 | llama.cpp pp512 | "
             "MB per decode step | GB/s of weights | of read bandwidth | peak RSS |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        for w, o in r["ours"].items():
            peer = r["peer"].get({"f32": "f32", "bf16": "q8_0", "int8": "q8_0"}[w])
            peer_name = {"f32": "f32", "bf16": "q8_0", "int8": "q8_0"}[w]
            lines.append("| %s | %s | %.1f (%.1f to %.1f) | %s | %.0f | %s | %.0f | %.1f | %.0f %% of %.1f GB/s | %.0f MiB |" % (
                r["name"], w, o["decode"], o["decode_range"][0], o["decode_range"][1],
                "%.1f (%s)" % (peer["tg128"], peer_name) if peer else "—", o["prefill"],
                "%.0f (%s)" % (peer["pp512"], peer_name) if peer else "—", o["bytes"] / 1e6, o["weight_gbs"],
                100 * o["weight_gbs"] / o["bandwidth"], o["bandwidth"], o["rss"]))
    lines += ["", "MB per decode step: the projections' and the head's weights in that format (int8 with a "
              "float32 scale per output row), which a batch-1 step streams once; GB/s of weights: that over "
              "the measured time per step; read bandwidth: at::sum over 1 GiB in the same process. The "
              "llama.cpp column beside bf16 and int8 is its q8_0.", "", WEIGHTS_END]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench-dir", default=os.environ.get("BENCH", "/tmp/vitrine-bench"))
    ap.add_argument("--presets", nargs="+", default=["20m", "110m"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--decode-bench", default=os.path.join(ROOT, "build", "bench", "decode_bench"))
    ap.add_argument("--no-write", action="store_true", help="print the tables, leave docs/benchmarks.md alone")
    ap.add_argument("--llamacpp", help="llama.cpp's build/bin: compare weight formats with llama-bench")
    ap.add_argument("--models", nargs="+", default=[], help="NAME=DIR model directories for --llamacpp")
    ap.add_argument("--weights", nargs="+", default=["f32", "bf16", "int8"])
    args = ap.parse_args()
    args.argv = sys.argv[1:]
    if args.llamacpp:
        if not os.path.exists(args.decode_bench):
            sys.exit("%s not found: build first" % args.decode_bench)
        args.load_before = os.getloadavg()[0]
        results = [bench_weights(args, *m.split("=", 1)) for m in args.models]
        table = render_weights(args, results)
        publish(table, WEIGHTS_BEGIN, WEIGHTS_END, write=not args.no_write)
        return
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
    publish(table, BEGIN, END, write=not args.no_write)


if __name__ == "__main__":
    main()
