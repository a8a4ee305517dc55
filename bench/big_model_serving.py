#!/usr/bin/env python3
"""Benchmark: a 7B-shaped checkpoint served by vitrined — load time,
resident memory and decode tokens/s.

The checkpoint is the real-models issue's bench model (random weights of
Qwen2.5-7B's shape in bf16 shards: bench/make_shaped_checkpoint.py --shape
qwen2.5-7b); it has no tokenizer, so the served directory links its config
and shards beside a tokenizer of the same family (--tokenizer, e.g.
../shared/tokenizers/qwen3). vitrined starts with no adapters (the base
answers every route) on the catalogue and classifier of a trained run;
load time is from the process's start to its first answer; `vitrine bench`
then sends --requests requests one at a time (the dataset's test titles and
questions) for --tokens tokens each; resident memory is the daemon's
VmRSS and VmHWM (its peak) after them. --weights picks the format (bf16
is the checkpoint's own; int8 quantizes at load).

Usage: /usr/bin/python3 bench/big_model_serving.py --model DIR --tokenizer DIR
           [--weights bf16 int8] [--requests 3] [--tokens 32] [--run out/run]
           [--dataset out/dataset] [--no-write]
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from benchmarks_doc import publish
from daemon_util import free_port, wait_serving

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN = "<!-- big-model-serving:begin -->"
END = "<!-- big-model-serving:end -->"


def served_dir(model, tokenizer, work):
    """A model directory of links: the checkpoint's config and weights, the tokenizer's files."""
    out = os.path.join(work, "model")
    os.makedirs(out)
    for source in (model, tokenizer):
        for name in os.listdir(source):
            if source == tokenizer and not name.startswith(("tokenizer", "special_tokens")):
                continue
            if source == model and name.startswith("tokenizer"):
                continue
            os.symlink(os.path.abspath(os.path.join(source, name)), os.path.join(out, name))
    return out


def memory_of(pid):
    """VmRSS and VmHWM of a process, in MiB."""
    figures = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                figures[key] = int(value.split()[0]) / 1024
    return figures


def serve_once(args, vitrine, weights):
    """Start vitrined on one weight format, time its load, send the requests, read its memory."""
    work = tempfile.mkdtemp(prefix="vitrine-big-model-")
    model = served_dir(args.model, args.tokenizer, work)
    address, metrics = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    config = {
        "listen": address,
        "metrics_listen": metrics,
        "model": model,
        "adapters_dir": os.path.join(work, "adapters"),
        "adapters": ["describe", "qa"],  # none published: the base answers
        "classifier": os.path.abspath(os.path.join(args.run, "classifier")),
        "catalog": os.path.abspath(os.path.join(args.dataset, "catalog.sqlite")),
        "response_log": os.path.join(work, "responses.sqlite"),
        "threads": args.threads,
        "weights": weights,
        "engine": {"max_batch": 1, "max_new_tokens": args.tokens, "default_new_tokens": args.tokens},
        "routing": {"unknown_product": "generate"},
    }
    os.makedirs(config["adapters_dir"])
    path = os.path.join(work, "router.yaml")
    with open(path, "w") as f:
        json.dump(config, f)
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    log_path = os.path.join(work, "vitrined.log")
    print(f"big_model_serving: {weights}: starting vitrined (load {os.getloadavg()[0]:.1f})", flush=True)
    start = time.time()
    daemon = subprocess.Popen([os.path.join(args.build, "router", "vitrined"), "--config", path],
                              stderr=open(log_path, "w"), env=env)
    try:
        wait_serving(vitrine, address, daemon, limit=3600, who="big_model_serving")
        load_seconds = time.time() - start
        loaded = memory_of(daemon.pid)
        out = os.path.join(work, "bench.json")
        subprocess.run([vitrine, "bench", "--address", address, "--dataset", args.dataset,
                        "--concurrency", "1", "--requests", str(args.requests),
                        "--max-new-tokens", str(args.tokens), "--timeout", "3600", "--json", out],
                       check=True, stdout=subprocess.DEVNULL, env=env)
        level = json.load(open(out))["levels"][0]
        after = memory_of(daemon.pid)
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=120)
    if level["errors"]:
        sys.exit(f"big_model_serving: {level['errors']} errors; see {log_path}")
    return (f"| {weights} | {load_seconds:.1f} s | {loaded['VmRSS']:,.0f} MiB | {after['VmRSS']:,.0f} MiB"
            f" | {after['VmHWM']:,.0f} MiB | {level['tokens_per_second']:.2f} | {level['tokens']} in"
            f" {level['requests']} requests |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--tokenizer", required=True, help="a directory with the family's tokenizer files")
    ap.add_argument("--weights", nargs="+", default=["bf16"], help="formats served one after another")
    ap.add_argument("--requests", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--run", default=os.path.join(ROOT, "out", "run"), help="a trained run: its classifier")
    ap.add_argument("--dataset", default=os.path.join(ROOT, "out", "dataset"))
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    vitrine = os.path.join(args.build, "cli", "vitrine")
    load_before = os.getloadavg()[0]
    rows = [serve_once(args, vitrine, w) for w in args.weights]
    config_json = json.load(open(os.path.join(args.model, "config.json")))
    shards = [n for n in os.listdir(args.model) if n.endswith(".safetensors")]
    size_gib = sum(os.path.getsize(os.path.join(args.model, n)) for n in shards) / 2**30
    lines = [
        BEGIN,
        "## A 7B-shaped model in vitrined (`bench/big_model_serving.py`)",
        "",
        f"Command: `/usr/bin/python3 bench/big_model_serving.py --model DIR --tokenizer "
        f"{os.path.relpath(args.tokenizer, ROOT)} --weights {' '.join(args.weights)} --requests {args.requests}"
        f" --tokens {args.tokens}`; the checkpoint: {config_json.get('model_type')}, hidden"
        f" {config_json.get('hidden_size')}, {config_json.get('num_hidden_layers')} layers, vocabulary"
        f" {config_json.get('vocab_size')}, {len(shards)} shards, {size_gib:.1f} GiB on disk"
        f" ({config_json.get('torch_dtype')}); {args.threads} threads; load average {load_before:.1f}"
        f" before and {os.getloadavg()[0]:.1f} after; the formats one after another, each in a fresh"
        " daemon.",
        "",
        "| weights | load (start to first answer) | resident after loading | resident after the requests"
        " | peak resident | generated tok/s | generated tokens |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        "Generated tok/s is `vitrine bench`'s: generated tokens over the requests' wall time, one"
        " request at a time, prefill of each prompt included.",
        END,
    ]
    section = "\n".join(lines)
    publish(section, BEGIN, END, write=not args.no_write)


if __name__ == "__main__":
    main()
