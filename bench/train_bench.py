#!/usr/bin/env python3
"""Benchmark: LoRA training speed and memory, vitrine against plain PyTorch.

The peer is ../shared/bench/torch_lora_baseline.py (an eager float32 Llama
with LoRA, AdamW on the adapters); vitrine's side is build/bench/train_bench,
which trains the same way (random token ids, next-token loss over the whole
vocabulary, LoRA r 8 / alpha 16 on q_proj and v_proj, one optimizer step per
batch). For each shape and (sequence, batch) the two run alternately, --runs
times each, in fresh processes; the figures are medians with their ranges,
and peak resident memory includes loading.

Shapes: the peer's 20m and 110m presets, and a TinyLlama-1.1B-shaped
checkpoint (hidden 2048, 22 layers, 32 heads, 4 KV heads, intermediate 5632,
vocabulary 32000) written in bf16 as the Hub ships it. Models are made once
in --work (random weights; a few GB for the 1.1B shape).

vitrine runs as `vitrine train` does with base_dtype bf16 and bf16_compute
(VITRINE_FLAGS): the 1.1B checkpoint is bf16 already; the presets' float32
weights are rounded to bf16 on loading, so vitrine trains the same
architecture on weights that differ by that rounding. The peer computes in
float32 (it has no bf16 path). The machine's ceilings (register-only
float32 FMA and vdpbf16ps loops, `train_bench --ceiling`) are measured at
the start and the end of the run, and each figure's useful GFLOP/s (four
per weight and token: the frozen products forward and backward-data) is
set against the ceiling of the arithmetic it runs.

--qwen7b DIR adds the Qwen2.5-7B shape (bench/make_shaped_checkpoint.py
--shape qwen2.5-7b writes it, 15 GB in bf16 shards): vitrine alone (the
peer's float32 copy, 30 GB, does not fit in this machine), seq 512 batch 1,
seconds per step and peak memory.

Targets (the real-models issue): 1.1B shape at seq 512 batch 1: at least 2x
the peer's tokens/s with at most 0.6x its peak memory; 110m at seq 512 batch
1 and seq 256 batch 4: at least 1.5x the peer.

Usage: /usr/bin/python3 bench/train_bench.py [--build build] [--work DIR]
           [--runs 3] [--only 20m,110m,1.1b] [--no-write]
"""

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile

from benchmarks_doc import publish

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_BENCH = os.path.join(ROOT, "..", "shared", "bench")
PEER = os.path.join(SHARED_BENCH, "torch_lora_baseline.py")
BEGIN = "<!-- train-bench:begin -->"
END = "<!-- train-bench:end -->"

TINYLLAMA = ["--vocab", "32000", "--hidden", "2048", "--layers", "22", "--heads", "32",
             "--kv-heads", "4", "--intermediate", "5632"]
# (shape, preset, overrides, bf16, [(seq, batch, timed steps)])
SHAPES = [
    ("20m", "20m", [], False, [(512, 1, 10)]),
    ("110m", "110m", [], False, [(512, 1, 5), (256, 4, 5)]),
    ("1.1b", "20m", TINYLLAMA, True, [(256, 1, 3), (512, 1, 3)]),
]
TARGETS = {("110m", 512, 1): (1.5, None), ("110m", 256, 4): (1.5, None),
           ("1.1b", 512, 1): (2.0, 0.6)}
VITRINE_FLAGS = ["--base-dtype", "bf16", "--bf16-compute"]


def product_params(model):
    """Weights in the frozen products per token: every projection and the head."""
    with open(os.path.join(model, "config.json")) as f:
        c = json.load(f)
    h, inter = c["hidden_size"], c["intermediate_size"]
    d = c.get("head_dim") or h // c["num_attention_heads"]
    q, kv = c["num_attention_heads"] * d, c.get("num_key_value_heads", c["num_attention_heads"]) * d
    layer = h * q + 2 * h * kv + q * h + 3 * h * inter
    return c["num_hidden_layers"] * layer + c["vocab_size"] * h


def ceilings(args, scratch):
    cmd = [os.path.join(args.build, "bench", "train_bench"), "--ceiling",
           "--threads", str(args.threads)]
    return run_one(cmd, os.path.join(scratch, "ceiling.json"))


def to_bf16(model_dir):
    """Rewrites model.safetensors in bf16 (as the Hub ships such models)."""
    spec = importlib.util.spec_from_file_location("peer", PEER)
    peer = importlib.util.module_from_spec(spec)
    argv, sys.argv = sys.argv, [PEER]
    try:
        spec.loader.exec_module(peer)
    finally:
        sys.argv = argv
    import torch
    path = os.path.join(model_dir, "model.safetensors")
    tensors = {k: v.to(torch.bfloat16) for k, v in peer.read_safetensors(path).items()}
    peer.write_safetensors(path + ".tmp", tensors)
    os.replace(path + ".tmp", path)
    with open(os.path.join(model_dir, "config.json")) as f:
        config = json.load(f)
    config["torch_dtype"] = "bfloat16"
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


def make_model(work, name, preset, overrides, bf16):
    out = os.path.join(work, name)
    if os.path.exists(os.path.join(out, "config.json")):
        return out
    subprocess.run([sys.executable, PEER, "--make-model", out, "--preset", preset] + overrides,
                   check=True)
    if bf16:
        to_bf16(out)
    return out


def run_one(cmd, json_path):
    if os.path.exists(json_path):
        os.remove(json_path)
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    done = subprocess.run(cmd + ["--json", json_path], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"train_bench: {' '.join(cmd)} failed:\n{done.stdout}{done.stderr}")
    with open(json_path) as f:
        return json.loads(f.readline())


def measure(args, model, seq, batch, steps, scratch):
    common = ["--model", model, "--seq", str(seq), "--batch", str(batch), "--steps", str(steps),
              "--warmup", "1", "--threads", str(args.threads)]
    peer_cmd = [sys.executable, PEER, "--mode", "train", "--lora-r", "8", "--lora-alpha", "16",
                "--lora-targets", "q_proj,v_proj"] + common
    ours_cmd = [os.path.join(args.build, "bench", "train_bench"), "--lora-r", "8",
                "--lora-alpha", "16", "--targets", "q_proj,v_proj"] + VITRINE_FLAGS + common
    runs = {"peer": [], "vitrine": []}
    for i in range(args.runs):
        order = [("peer", peer_cmd), ("vitrine", ours_cmd)]
        for name, cmd in order if i % 2 == 0 else order[::-1]:
            r = run_one(cmd, os.path.join(scratch, f"{name}.json"))
            runs[name].append(r)
            print(f"  {name:8s} seq {seq} batch {batch}: {r['tokens_per_s']:.1f} tokens/s, "
                  f"peak {r['peak_rss_mb']:.0f} MB", flush=True)
    return runs


def median_range(values, fmt="{:.1f}"):
    return (f"{fmt.format(statistics.median(values))} "
            f"({fmt.format(min(values))}–{fmt.format(max(values))})")


def row(shape, seq, batch, runs, params, ceiling):
    peer_tps = [r["tokens_per_s"] for r in runs["peer"]]
    ours_tps = [r["tokens_per_s"] for r in runs["vitrine"]]
    peer_mb = [r["peak_rss_mb"] for r in runs["peer"]]
    ours_mb = [r["peak_rss_mb"] for r in runs["vitrine"]]
    speed = statistics.median(ours_tps) / statistics.median(peer_tps)
    memory = statistics.median(ours_mb) / statistics.median(peer_mb)
    estimate = statistics.median(r["estimate_mb"] for r in runs["vitrine"])
    peer_gflops = 4 * params * statistics.median(peer_tps) / 1e9
    ours_gflops = 4 * params * statistics.median(ours_tps) / 1e9
    line = (f"| {shape} | {seq} x {batch} | {median_range(peer_tps)} | {median_range(ours_tps)} | "
            f"{speed:.2f}x | {median_range(peer_mb, '{:,.0f}')} | "
            f"{median_range(ours_mb, '{:,.0f}')} ({estimate:,.0f}) | {memory:.2f}x | "
            f"{peer_gflops:.0f} ({100 * peer_gflops / ceiling['f32_gflops']:.0f} % of f32) | "
            f"{ours_gflops:.0f} ({100 * ours_gflops / ceiling['bf16_gflops']:.0f} % of bf16) |")
    verdict = None
    target = TARGETS.get((shape, seq, batch))
    if target:
        need_speed, need_memory = target
        met = speed >= need_speed and (need_memory is None or memory <= need_memory)
        want = f"at least {need_speed}x the peer's tokens/s" + (
            f" with at most {need_memory}x its peak memory" if need_memory else "")
        verdict = (f"* {shape}, seq {seq} batch {batch}: {speed:.2f}x the speed, "
                   f"{memory:.2f}x the memory (target: {want}) — {'met' if met else 'NOT met'}.")
    return line, verdict


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "vitrine-train-bench"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="20m,110m,1.1b")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--qwen7b", help="a Qwen2.5-7B-shaped checkpoint (make_shaped_checkpoint.py)")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    wanted = set(args.only.split(","))
    rows, verdicts = [], []
    before = ceilings(args, args.work)
    print(f"ceilings: f32 {before['f32_gflops']:.0f}, bf16 {before['bf16_gflops']:.0f} GFLOP/s",
          flush=True)
    results = []
    for name, preset, overrides, bf16, settings in SHAPES:
        if name not in wanted:
            continue
        model = make_model(args.work, name, preset, overrides, bf16)
        for seq, batch, steps in settings:
            results.append((name, seq, batch, product_params(model),
                            measure(args, model, seq, batch, steps, args.work)))
    after = ceilings(args, args.work)
    ceiling = {k: statistics.median([before[k], after[k]]) for k in ("f32_gflops", "bf16_gflops")}
    for name, seq, batch, params, runs in results:
        line, verdict = row(name, seq, batch, runs, params, ceiling)
        rows.append(line)
        if verdict:
            verdicts.append(verdict)
    big = []
    if args.qwen7b:
        cmd = [os.path.join(args.build, "bench", "train_bench"), "--model", args.qwen7b,
               "--seq", "512", "--batch", "1", "--steps", "2", "--warmup", "1",
               "--threads", str(args.threads), "--lora-r", "8", "--lora-alpha", "16",
               "--targets", "q_proj,v_proj"] + VITRINE_FLAGS
        r = run_one(cmd, os.path.join(args.work, "qwen7b.json"))
        print(f"  qwen2.5-7b seq 512: {r['ms_per_step'] / 1000:.1f} s/step, "
              f"peak {r['peak_rss_mb']:.0f} MB", flush=True)
        big = ["", "Qwen2.5-7B shape (hidden 3584, 28 layers, 28 heads, 4 KV heads, intermediate "
               "18944, vocabulary 152064, q/k/v biases; bf16 in shards), vitrine alone, seq 512 "
               f"batch 1, {r['steps']} timed steps after one untimed: "
               f"{r['ms_per_step'] / 1000:.1f} s per step (best {r['best_ms_per_step'] / 1000:.1f}), "
               f"{r['tokens_per_s']:.1f} tokens/s, peak resident memory {r['peak_rss_mb']:,.0f} MB "
               f"(estimate {r['estimate_mb']:,.0f} MB; activation checkpointing "
               f"{'on' if r['checkpointing'] else 'off'}), within this machine's 24 GB."]
    lines = [
        BEGIN,
        "## Training: vitrine against plain PyTorch",
        "",
        f"Command: `/usr/bin/python3 bench/train_bench.py --runs {args.runs} --only {args.only}"
        f"{' --qwen7b DIR' if args.qwen7b else ''}`.",
        "",
        f"LoRA r 8, alpha 16 on q_proj and v_proj; random token ids; one AdamW step per batch; "
        f"{args.threads} threads each; the peer (../shared/bench/torch_lora_baseline.py) and "
        f"vitrine's bench/train_bench alternate, {args.runs} runs each in fresh processes "
        f"(one untimed step, then the timed ones). Medians (ranges). The 1.1b shape is "
        f"TinyLlama-1.1B's, its checkpoint in bf16; the peer loads it into float32, vitrine "
        f"keeps it in bf16 (`{' '.join(VITRINE_FLAGS)}`; the presets' float32 weights are "
        f"rounded to bf16). Peak memory includes loading; in brackets the estimate "
        f"`vitrine train` plans with. GFLOP/s counts the frozen products (4 per weight and "
        f"token), against the machine's ceilings measured in the same run: float32 FMA "
        f"{ceiling['f32_gflops']:.0f} GFLOP/s, vdpbf16ps {ceiling['bf16_gflops']:.0f} GFLOP/s "
        f"({args.threads} threads; register-only loops, start {before['f32_gflops']:.0f} / "
        f"{before['bf16_gflops']:.0f}, end {after['f32_gflops']:.0f} / {after['bf16_gflops']:.0f}).",
        "",
        "| shape | seq x batch | peer tokens/s | vitrine tokens/s | speed | peer peak MB | "
        "vitrine peak MB (estimate) | memory | peer GFLOP/s | vitrine GFLOP/s |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ] + rows + [""] + verdicts + big + [END]
    section = "\n".join(lines)
    publish(section, BEGIN, END, write=not args.no_write)


if __name__ == "__main__":
    main()
