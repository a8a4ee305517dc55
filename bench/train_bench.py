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

from benchmarks_doc import write_section

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
                "--lora-alpha", "16", "--targets", "q_proj,v_proj"] + common
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


def row(shape, seq, batch, runs):
    peer_tps = [r["tokens_per_s"] for r in runs["peer"]]
    ours_tps = [r["tokens_per_s"] for r in runs["vitrine"]]
    peer_mb = [r["peak_rss_mb"] for r in runs["peer"]]
    ours_mb = [r["peak_rss_mb"] for r in runs["vitrine"]]
    speed = statistics.median(ours_tps) / statistics.median(peer_tps)
    memory = statistics.median(ours_mb) / statistics.median(peer_mb)
    line = (f"| {shape} | {seq} x {batch} | {median_range(peer_tps)} | {median_range(ours_tps)} | "
            f"{speed:.2f}x | {median_range(peer_mb, '{:,.0f}')} | "
            f"{median_range(ours_mb, '{:,.0f}')} | {memory:.2f}x |")
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
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    wanted = set(args.only.split(","))
    rows, verdicts = [], []
    for name, preset, overrides, bf16, settings in SHAPES:
        if name not in wanted:
            continue
        model = make_model(args.work, name, preset, overrides, bf16)
        for seq, batch, steps in settings:
            runs = measure(args, model, seq, batch, steps, args.work)
            line, verdict = row(name, seq, batch, runs)
            rows.append(line)
            if verdict:
                verdicts.append(verdict)
    lines = [
        BEGIN,
        "## Training: vitrine against plain PyTorch",
        "",
        f"Command: `/usr/bin/python3 bench/train_bench.py --runs {args.runs} --only {args.only}`.",
        "",
        f"LoRA r 8, alpha 16 on q_proj and v_proj; random token ids; one AdamW step per batch; "
        f"{args.threads} threads each; the peer (../shared/bench/torch_lora_baseline.py) and "
        f"vitrine's bench/train_bench alternate, {args.runs} runs each in fresh processes "
        f"(one untimed step, then the timed ones). Medians (ranges). The 1.1b shape is "
        f"TinyLlama-1.1B's, its checkpoint in bf16; both load it into float32.",
        "",
        "| shape | seq x batch | peer tokens/s | vitrine tokens/s | speed | peer peak MB | "
        "vitrine peak MB | memory |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ] + rows + [""] + verdicts + [END]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        write_section(os.path.join(ROOT, "docs", "benchmarks.md"), BEGIN, END, section)


if __name__ == "__main__":
    main()
