#!/usr/bin/env python3
"""Benchmark: serving two LoRA adapters at once, vitrined against llama-server.

The workload of the weight-formats issue: 16 requests, 4 at a time, the two
adapters alternating between requests, 64 greedy tokens each, on one base
model; aggregate generated tokens per wall second. vitrined serves the base
in each of its weight formats (f32, bf16, int8) with the adapters unmerged
in float32, batching rows of both adapters in one step; llama-server (the
pinned llama.cpp of ../shared/bench/llamacpp) serves the same base as GGUF
in f32 and q8_0 with the same adapters converted to GGUF (`--lora` twice,
`-np 4`), each request naming its adapter (`"lora": [{"id": i, "scale": 1}]`).
The two servers run alternately, --repeat rounds each in fresh processes;
the figures are medians with their ranges.

vitrined's requests are `vitrine bench`'s: the dataset's test titles and
questions alternating, the titles routed to the describe adapter and the
questions to qa by the classifier agent (the catalogue and classifier of a
trained run), so the adapters alternate as the workload asks;
`routing.unknown_product: generate` keeps every request on the model.
llama-server gets the same texts after the same task instructions, in the
plain instruction format vitrine uses for a base without a chat template.
Neither ignores its end of sequence; the generated tokens are counted as
each server reports them.

The adapters are random (seeded), r 8, alpha 16, on q_proj and v_proj: what
is measured is the serving cost, which does not depend on what they learnt.

Usage: /usr/bin/python3 bench/adapter_serving_bench.py --llamacpp LLAMACPP_DIR
           --model MODEL_DIR --gguf f32=FILE q8_0=FILE [--run out/run]
           [--dataset out/dataset] [--repeat 3] [--no-write]
LLAMACPP_DIR is the llama.cpp tree ../shared/bench/llamacpp/build.sh built
(its build/bin and its converters); MODEL_DIR a Hugging Face directory with
its tokenizer.model (e.g. the 110m preset).
"""

import argparse
import json
import os
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from benchmarks_doc import publish
from daemon_util import free_port, wait_serving

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared")
BEGIN = "<!-- adapter-serving-bench:begin -->"
END = "<!-- adapter-serving-bench:end -->"
ADAPTERS = ("describe", "qa")
# The task instructions of prompts/prompts.cc, in the plain format of
# models/tokenizer/chat_format.cc, for llama-server's side.
SYSTEM = {"describe": "You write product descriptions for an online shop.",
          "qa": "You answer shoppers' questions about products."}


def write_safetensors(path, tensors):
    """tensors: name -> (shape, list of float32): a safetensors file."""
    header, offset, blobs = {}, 0, []
    for name, (shape, values) in sorted(tensors.items()):
        blob = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    head = json.dumps(header, separators=(",", ":")).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)) + head + b"".join(blobs))


def make_adapter(model_dir, out, seed, rank=8):
    """A PEFT LoRA adapter for q_proj and v_proj with random A and B."""
    import random
    config = json.load(open(os.path.join(model_dir, "config.json")))
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    heads, kv = config["num_attention_heads"], config.get("num_key_value_heads", config["num_attention_heads"])
    head_dim = config.get("head_dim", hidden // heads)
    rng = random.Random(seed)
    tensors = {}
    for layer in range(layers):
        for module, out_features in (("q_proj", heads * head_dim), ("v_proj", kv * head_dim)):
            prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
            tensors[prefix + ".lora_A.weight"] = ((rank, hidden), [rng.gauss(0, 0.02) for _ in range(rank * hidden)])
            tensors[prefix + ".lora_B.weight"] = ((out_features, rank),
                                                   [rng.gauss(0, 0.02) for _ in range(out_features * rank)])
    os.makedirs(out, exist_ok=True)
    write_safetensors(os.path.join(out, "adapter_model.safetensors"), tensors)
    with open(os.path.join(out, "adapter_config.json"), "w") as f:
        json.dump({"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": 2 * rank,
                   "lora_dropout": 0.0, "bias": "none", "target_modules": ["q_proj", "v_proj"],
                   "base_model_name_or_path": os.path.abspath(model_dir)}, f)


def reference_env(ref, llamacpp):
    """The environment llama.cpp's converter needs: its own directory on the
    path (the LoRA converter imports the model converter), and the
    transformers source trees of ../shared/reference (TRANSFORMERS_SRC and
    co.), from --ref unless already set."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (llamacpp, env.get("PYTHONPATH")) if p)
    for var, sub in (("TRANSFORMERS_SRC", "transformers"), ("HF_HUB_SRC", "huggingface_hub"),
                     ("PEFT_SRC", "peft"), ("ACCELERATE_SRC", "accelerate")):
        if ref and not env.get(var):
            env[var] = os.path.join(ref, sub, "src")
    return env


def prepare(args, work):
    """The adapters as PEFT directories (vitrined) and GGUF files (llama-server)."""
    adapters_dir = os.path.join(work, "adapters")
    ggufs = {}
    for i, name in enumerate(ADAPTERS):
        peft = os.path.join(adapters_dir, name)
        make_adapter(args.model, peft, seed=100 + i)
        gguf = os.path.join(work, f"{name}.gguf")
        convert = subprocess.run(
            ["/usr/bin/python3", os.path.join(SHARED, "bench", "llamacpp", "to_gguf.py"), args.llamacpp,
             "convert_lora_to_gguf.py", peft, "--base", args.model, "--outtype", "f32", "--outfile", gguf],
            capture_output=True, text=True, env=reference_env(args.ref, args.llamacpp))
        if convert.returncode != 0:
            sys.exit(f"adapter_serving_bench: converting {peft} to GGUF failed:\n{convert.stderr[-2000:]}")
        ggufs[name] = gguf
    return adapters_dir, ggufs


def texts(dataset, n):
    """The test split's titles and questions, alternating, as vitrine bench sends them."""
    def field(task, key):
        with open(os.path.join(dataset, "tasks", task, "test.jsonl")) as f:
            return [json.loads(line)[key] for line in f]
    titles, questions = field("describe", "prompt"), field("qa", "question")
    out = []
    for i in range(n):
        out.append(("describe", titles[(i // 2) % len(titles)]) if i % 2 == 0
                   else ("qa", questions[(i // 2) % len(questions)]))
    return out


def plain_prompt(task, text):
    user = f"Describe this product: {text}" if task == "describe" else text
    return f"{SYSTEM[task]}\n\n### Instruction:\n{user}\n\n### Response:\n"


def run_vitrined(args, weights, adapters_dir, work):
    vitrine = os.path.join(args.build, "cli", "vitrine")
    port = free_port()
    config = {
        "listen": f"127.0.0.1:{port}",
        "metrics_listen": f"127.0.0.1:{free_port()}",
        "model": os.path.abspath(args.model),
        "adapters_dir": adapters_dir,
        "adapters": list(ADAPTERS),
        "classifier": os.path.abspath(os.path.join(args.run, "classifier")),
        "catalog": os.path.abspath(os.path.join(args.dataset, "catalog.sqlite")),
        "response_log": os.path.join(work, f"responses-{weights}.sqlite"),
        "threads": args.threads,
        "weights": weights,
        "engine": {"max_batch": args.parallel, "max_new_tokens": args.tokens,
                   "default_new_tokens": args.tokens, "repetition_penalty": 1.0},
        "routing": {"unknown_product": "generate"},
    }
    path = os.path.join(work, f"router-{weights}.yaml")
    with open(path, "w") as f:
        json.dump(config, f)
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    log = open(os.path.join(work, f"vitrined-{weights}.log"), "w")
    daemon = subprocess.Popen([os.path.join(args.build, "router", "vitrined"), "--config", path],
                              stderr=log, env=env)
    address = config["listen"]
    try:
        wait_serving(vitrine, address, daemon, limit=300, who=f"adapter_serving_bench ({weights})")
        out = os.path.join(work, f"bench-{weights}.json")
        subprocess.run([vitrine, "bench", "--address", address, "--dataset", args.dataset,
                        "--concurrency", str(args.parallel), "--requests", str(args.requests),
                        "--max-new-tokens", str(args.tokens), "--json", out],
                       check=True, stdout=subprocess.DEVNULL, env=env)
        level = json.load(open(out))["levels"][0]
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    if level["errors"]:
        sys.exit(f"adapter_serving_bench: vitrined ({weights}): {level['errors']} errors")
    return level["tokens_per_second"], level["tokens"] / level["requests"]


def post(url, body, timeout=600):
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.load(response)


def run_llama_server(args, name, gguf, adapter_ggufs, items, work):
    port = free_port()
    log = open(os.path.join(work, f"llama-server-{name}.log"), "w")
    cmd = [os.path.join(args.llamacpp, "build", "bin", "llama-server"), "-m", gguf, "-t", str(args.threads),
           "-np", str(args.parallel), "-c", str(args.parallel * 1024), "--port", str(port), "--host", "127.0.0.1"]
    for name_ in ADAPTERS:
        cmd += ["--lora", adapter_ggufs[name_]]
    server = subprocess.Popen(cmd, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except Exception:
                pass
            if server.poll() is not None or time.time() > deadline:
                sys.exit(f"adapter_serving_bench: llama-server ({name}) did not start; see {log.name}")
            time.sleep(0.3)
        generated, lock, queue = [0], threading.Lock(), list(enumerate(items))

        def worker():
            while True:
                with lock:
                    if not queue:
                        return
                    _, (task, text) = queue.pop(0)
                reply = post(url + "/completion", {
                    "prompt": plain_prompt(task, text), "n_predict": args.tokens, "temperature": 0,
                    "cache_prompt": False, "lora": [{"id": ADAPTERS.index(task), "scale": 1.0}]})
                with lock:
                    generated[0] += reply["tokens_predicted"]

        start = time.time()
        threads = [threading.Thread(target=worker) for _ in range(args.parallel)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.time() - start
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    return generated[0] / seconds, generated[0] / len(items)


def median_range(values):
    return statistics.median(values), min(values), max(values)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--llamacpp", required=True, help="llama.cpp tree with build/bin (../shared/bench/llamacpp)")
    ap.add_argument("--model", required=True, help="Hugging Face model directory with tokenizer.model")
    ap.add_argument("--gguf", nargs="+", required=True, help="FORMAT=FILE of the same model, e.g. f32=m.gguf q8_0=q.gguf")
    ap.add_argument("--ref", help="a directory of the transformers, huggingface_hub, peft and accelerate"
                    " trees (each with src/), for the adapter converter; or set TRANSFORMERS_SRC and co.")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--run", default=os.path.join(ROOT, "out", "run"), help="a trained run: its classifier")
    ap.add_argument("--dataset", default=os.path.join(ROOT, "out", "dataset"))
    ap.add_argument("--weights", nargs="+", default=["f32", "bf16", "int8"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    ggufs = dict(item.split("=", 1) for item in args.gguf)
    work = tempfile.mkdtemp(prefix="vitrine-adapter-serving-")
    adapters_dir, adapter_ggufs = prepare(args, work)
    items = texts(args.dataset, args.requests)
    ours = {w: [] for w in args.weights}
    theirs = {g: [] for g in ggufs}
    load = [os.getloadavg()[0]]
    tokens_per_request = {}  # generated per request, per server: the same work on both sides
    for round_ in range(args.repeat):
        for w in args.weights:
            tps, per_request = run_vitrined(args, w, adapters_dir, work)
            ours[w].append(tps)
            tokens_per_request.setdefault(f"vitrined {w}", []).append(per_request)
            print(f"round {round_ + 1}: vitrined {w}: {ours[w][-1]:.1f} tok/s", flush=True)
        for g, path in ggufs.items():
            tps, per_request = run_llama_server(args, g, path, adapter_ggufs, items, work)
            theirs[g].append(tps)
            tokens_per_request.setdefault(f"llama-server {g}", []).append(per_request)
            print(f"round {round_ + 1}: llama-server {g}: {theirs[g][-1]:.1f} tok/s", flush=True)
        load.append(os.getloadavg()[0])

    def cell(values):
        m, lo, hi = median_range(values)
        return f"{m:.1f} ({lo:.1f} to {hi:.1f})"
    # Each vitrine format against llama-server's closest: f32 with f32, the
    # 16- and 8-bit formats with q8_0 (its 8-bit).
    peer_of = {"f32": "f32", "bf16": "q8_0", "int8": "q8_0"}
    lines = [
        BEGIN,
        "## Two adapters at once: vitrined against llama-server (`bench/adapter_serving_bench.py`)",
        "",
        f"Command: `/usr/bin/python3 bench/adapter_serving_bench.py --llamacpp LLAMACPP --model "
        f"{os.path.basename(os.path.normpath(args.model))} --gguf "
        + " ".join(f"{g}=FILE" for g in ggufs)
        + f" --repeat {args.repeat}` ({args.requests} requests, {args.parallel} at a time, the describe"
        f" and qa adapters alternating, {args.tokens} greedy tokens at most, {args.threads} threads each;"
        f" load average {min(load):.1f} to {max(load):.1f} during the run). Generated tokens per wall"
        " second, medians of the rounds (ranges).",
        "",
        "| vitrined weights | vitrined tok/s | llama-server GGUF | llama-server tok/s | ratio |",
        "| --- | ---: | --- | ---: | ---: |",
    ]
    for w in args.weights:
        peer = peer_of.get(w, "f32") if peer_of.get(w) in theirs else next(iter(theirs))
        ratio = statistics.median(ours[w]) / statistics.median(theirs[peer])
        lines.append(f"| {w} | {cell(ours[w])} | {peer} | {cell(theirs[peer])} | {ratio:.2f}x |")
    lines += ["", "Generated tokens per request (mean over the rounds): " + ", ".join(
        f"{k} {statistics.mean(v):.1f}" for k, v in tokens_per_request.items()) + "."]
    lines += ["", "Target (the weight-formats issue): at least 1.5x llama-server's aggregate tokens/s in each"
              " format.", END]
    section = "\n".join(lines)
    publish(section, BEGIN, END, write=not args.no_write)


if __name__ == "__main__":
    main()
