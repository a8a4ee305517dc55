#!/usr/bin/env python3
"""Writes a random checkpoint with a real model's shape, as the Hub ships it.

For benchmarks of models that cannot be downloaded here: the weights are
N(0, 0.02²) (norms 1), stored in bf16 in shards of at most --max-shard-gb
with a model.safetensors.index.json, tensor by tensor, so a 7B model is
written in a few GB of memory. Shapes:

  qwen2.5-7b   hidden 3584, 28 layers, 28 heads, 4 KV heads, intermediate
               18944, vocabulary 152064, q/k/v biases, untied head
  qwen2.5-0.5b hidden 896, 24 layers, 14 heads, 2 KV heads, intermediate
               4864, vocabulary 151936, q/k/v biases, tied head
  llama3.2-1b  hidden 2048, 16 layers, 32 heads, 8 KV heads, intermediate
               8192, vocabulary 128256, Llama-3 RoPE scaling, tied head
  tinyllama    hidden 2048, 22 layers, 32 heads, 4 KV heads, intermediate
               5632, vocabulary 32000

Usage: /usr/bin/python3 bench/make_shaped_checkpoint.py --shape qwen2.5-7b --out DIR
"""

import argparse
import json
import os
import struct

import torch

SHAPES = {
    "qwen2.5-7b": dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", vocab_size=152064,
                       hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
                       num_attention_heads=28, num_key_value_heads=4, rope_theta=1000000.0,
                       rms_norm_eps=1e-6, tie_word_embeddings=False, max_position_embeddings=32768,
                       sliding_window=131072, use_sliding_window=False, bos_token_id=151643,
                       eos_token_id=151643, qkv_bias=True),
    "llama3.2-1b": dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=128256,
                        hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                        num_attention_heads=32, num_key_value_heads=8, rope_theta=500000.0,
                        rope_scaling={"rope_type": "llama3", "factor": 32.0,
                                      "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                      "original_max_position_embeddings": 8192},
                        rms_norm_eps=1e-5, tie_word_embeddings=True,
                        max_position_embeddings=131072, bos_token_id=128000,
                        eos_token_id=128001, qkv_bias=False),
    "qwen2.5-0.5b": dict(architectures=["Qwen2ForCausalLM"], model_type="qwen2", vocab_size=151936,
                         hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2, rope_theta=1000000.0,
                         rms_norm_eps=1e-6, tie_word_embeddings=True,
                         max_position_embeddings=32768, sliding_window=32768,
                         use_sliding_window=False, bos_token_id=151643, eos_token_id=151643,
                         qkv_bias=True),
    "tinyllama": dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=32000,
                      hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                      num_attention_heads=32, num_key_value_heads=4, rope_theta=10000.0,
                      rms_norm_eps=1e-5, tie_word_embeddings=False, max_position_embeddings=2048,
                      bos_token_id=1, eos_token_id=2, qkv_bias=False),
}


def tensors(spec, generator):
    """(name, shape, kind) in checkpoint order; kind is "normal" or "ones"."""
    h, inter = spec["hidden_size"], spec["intermediate_size"]
    head_dim = h // spec["num_attention_heads"]
    q, kv = spec["num_attention_heads"] * head_dim, spec["num_key_value_heads"] * head_dim
    yield "model.embed_tokens.weight", (spec["vocab_size"], h), "normal"
    for i in range(spec["num_hidden_layers"]):
        p = "model.layers.%d." % i
        yield p + "input_layernorm.weight", (h,), "ones"
        for name, rows in (("q_proj", q), ("k_proj", kv), ("v_proj", kv)):
            yield p + "self_attn.%s.weight" % name, (rows, h), "normal"
            if spec["qkv_bias"]:
                yield p + "self_attn.%s.bias" % name, (rows,), "normal"
        yield p + "self_attn.o_proj.weight", (h, q), "normal"
        yield p + "post_attention_layernorm.weight", (h,), "ones"
        yield p + "mlp.gate_proj.weight", (inter, h), "normal"
        yield p + "mlp.up_proj.weight", (inter, h), "normal"
        yield p + "mlp.down_proj.weight", (h, inter), "normal"
    yield "model.norm.weight", (h,), "ones"
    if not spec["tie_word_embeddings"]:
        yield "lm_head.weight", (spec["vocab_size"], h), "normal"


def write_shard(path, shard):
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, t in shard:
        nbytes = t.numel() * 2
        header[name] = {"dtype": "BF16", "shape": list(t.shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for _, t in shard:
            f.write(t.contiguous().view(torch.int16).numpy().tobytes())
    os.replace(path + ".tmp", path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", choices=sorted(SHAPES), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--max-shard-gb", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    spec = dict(SHAPES[args.shape])
    os.makedirs(args.out, exist_ok=True)
    generator = torch.Generator().manual_seed(args.seed)
    limit = int(args.max_shard_gb * 1e9)
    shards, current, size = [], [], 0
    for name, shape, kind in tensors(spec, generator):
        if kind == "ones":
            t = torch.ones(shape, dtype=torch.bfloat16)
        else:
            t = (torch.randn(shape, generator=generator) * 0.02).to(torch.bfloat16)
        if current and size + t.numel() * 2 > limit:
            shards.append(current)
            current, size = [], 0
        current.append((name, t))
        size += t.numel() * 2
        if size >= limit:
            shards.append(current)
            current, size = [], 0
    if current:
        shards.append(current)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards):
        file = "model-%05d-of-%05d.safetensors" % (i + 1, len(shards))
        write_shard(os.path.join(args.out, file), shard)
        for name, t in shard:
            weight_map[name] = file
            total += t.numel() * 2
        print("wrote %s (%d tensors)" % (file, len(shard)), flush=True)
        shard.clear()
    with open(os.path.join(args.out, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    config = {k: v for k, v in spec.items() if k != "qkv_bias"}
    config.update(hidden_act="silu", torch_dtype="bfloat16")
    if spec["qkv_bias"] and spec["model_type"] == "llama":
        config["attention_bias"] = True
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    print("wrote %s: %.2f GB of bf16 weights in %d shards" % (args.out, total / 1e9, len(shards)))


if __name__ == "__main__":
    main()
