#!/usr/bin/env python3
"""Builds the seed corpora of the fuzz targets (tests/fuzz/) from ../shared.

Usage: scripts/fuzz_seeds.py <shared dir> <repo dir> <out dir>

Writes <out>/<target>/ for each target. Real files are shrunk to a few KB so
that one execution stays fast while keeping each format's structure:
tokenizer.json keeps every component but only the first pieces and merges,
tokenizer.model (protobuf) the first pieces and every other field, and
.safetensors files the smallest tensors with their header layout. Nothing
from the shared folder is ever copied into the repository.
"""
import glob
import json
import os
import struct
import sys

MAX_SEED_BYTES = 64 * 1024


def write(out_dir, name, data):
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode("utf-8"))


def trn_record_seeds(shared, out):
    # One line per file, after a flags byte: 0 = the defaults, others vary
    # repair_utf8 and the cleaner's knobs (see trn_record_fuzz.cc).
    n = 0
    for path in sorted(glob.glob(os.path.join(shared, "data", "*.jsonl"))):
        with open(path, "rb") as f:
            for line in f:
                line = line.rstrip(b"\n")
                if not line or len(line) > MAX_SEED_BYTES:
                    continue
                flags = bytes([(n * 37) % 128 if n % 4 else 0])
                write(out, f"line{n:05d}", flags + line)
                n += 1


def shrink_tokenizer_json(text, n_vocab=300, n_merges=300):
    root = json.loads(text)
    model = root.get("model", {})
    vocab = model.get("vocab")
    if isinstance(vocab, dict):
        kept = dict(sorted(vocab.items(), key=lambda kv: kv[1])[:n_vocab])
        model["vocab"] = kept
        merges = []
        for m in model.get("merges", []):
            a, b = (m if isinstance(m, list) else m.split(" ", 1) + [""])[:2]
            if a in kept and b in kept and (a + b) in kept:
                merges.append(m)
            if len(merges) >= n_merges:
                break
        model["merges"] = merges
    root["added_tokens"] = root.get("added_tokens", [])[:20]
    return json.dumps(root, ensure_ascii=False)


def tokenizer_json_seeds(shared, out):
    for path in sorted(glob.glob(os.path.join(shared, "**", "tokenizer.json"), recursive=True)):
        name = os.path.basename(os.path.dirname(path))
        with open(path, encoding="utf-8") as f:
            write(out, name + ".json", shrink_tokenizer_json(f.read()))


def read_varint(data, pos):
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def shrink_sentencepiece(data, n_pieces=300):
    """Keeps the first pieces (field 1) of a ModelProto and every other field."""
    out, pieces, pos = bytearray(), 0, 0
    while pos < len(data):
        start = pos
        key, pos = read_varint(data, pos)
        wire = key & 7
        if wire == 0:
            _, pos = read_varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        elif wire == 2:
            length, pos = read_varint(data, pos)
            pos += length
        else:
            raise ValueError("unexpected wire type")
        if key >> 3 == 1:
            pieces += 1
            if pieces > n_pieces:
                continue
        out += data[start:pos]
    return bytes(out)


def tokenizer_model_seeds(shared, out):
    for path in sorted(glob.glob(os.path.join(shared, "**", "tokenizer.model"), recursive=True)):
        name = os.path.basename(os.path.dirname(path))
        with open(path, "rb") as f:
            data = f.read()
        try:
            write(out, name + ".model", shrink_sentencepiece(data))
        except (ValueError, IndexError):  # not a protobuf (Llama 3's tiktoken text)
            write(out, name + ".model", data[:4096])


def shrink_safetensors(data, budget=4096):
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    entries = [(k, v) for k, v in header.items() if k != "__metadata__"]
    entries.sort(key=lambda kv: kv[1]["data_offsets"][1] - kv[1]["data_offsets"][0])
    new_header, blob = {}, bytearray()
    if "__metadata__" in header:
        new_header["__metadata__"] = header["__metadata__"]
    for name, info in entries[:6]:
        begin, end = info["data_offsets"]
        if len(blob) + end - begin > budget:
            break
        new_header[name] = dict(info, data_offsets=[len(blob), len(blob) + end - begin])
        blob += body[begin:end]
    text = json.dumps(new_header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + bytes(blob)


def safetensors_seeds(shared, out):
    for i, path in enumerate(sorted(glob.glob(os.path.join(shared, "**", "*.safetensors"),
                                              recursive=True))):
        with open(path, "rb") as f:
            write(out, f"seed{i:02d}.safetensors", shrink_safetensors(f.read()))


def copy_small(pattern, out, suffix):
    for i, path in enumerate(sorted(glob.glob(pattern, recursive=True))):
        with open(path, "rb") as f:
            data = f.read()
        if len(data) <= MAX_SEED_BYTES:
            write(out, f"seed{i:02d}{suffix}", data)


def gateway_request_seeds(out):
    """Request bodies as clients send them, each after the byte that picks
    the endpoint (0 chat, 1 compare, 2 feedback)."""
    chats = [
        {"model": "vitrine", "messages": [{"role": "user", "content": "Who Moved My Cheese?"}]},
        {"model": "vitrine-qa", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Tell me about Dune"},
            {"role": "assistant", "content": "A novel."},
            {"role": "user", "content": [{"type": "text", "text": "and who wrote it?"}]}],
         "max_tokens": 64, "temperature": 0.7, "top_p": 0.9, "seed": 3, "stream": True,
         "stream_options": {"include_usage": True}, "stop": ["\n", "."], "user": "u1"},
        {"model": "base", "messages": [{"role": "user", "content": "Dune"}],
         "max_completion_tokens": 4096, "n": 1, "response_format": {"type": "text"},
         "stream": None, "tools": None},
        {"model": "vitrine-describe", "messages": [{"role": "developer", "content": "x"},
                                                    {"role": "user", "content": "Dune"}],
         "max_tokens": 1e20, "stop": "END"},
    ]
    for i, c in enumerate(chats):
        write(out, f"chat{i}.bin", b"\x00" + json.dumps(c).encode())
    write(out, "compare.bin", b"\x01" + json.dumps(
        {"text": "Dune", "model": "vitrine", "max_tokens": 8, "temperature": 0, "seed": 1}).encode())
    write(out, "feedback.bin", b"\x02" + json.dumps(
        {"response_id": "r-1", "rating": -1, "comment": "too long"}).encode())


def main():
    shared, repo, out = sys.argv[1:4]
    trn_record_seeds(shared, os.path.join(out, "trn_record"))
    tokenizer_json_seeds(shared, os.path.join(out, "tokenizer_json"))
    tokenizer_model_seeds(shared, os.path.join(out, "tokenizer_model"))
    safetensors_seeds(shared, os.path.join(out, "safetensors"))
    copy_small(os.path.join(shared, "**", "adapter_config.json"),
               os.path.join(out, "peft_config"), ".json")
    copy_small(os.path.join(repo, "configs", "*.yaml"), os.path.join(out, "config_binders"),
               ".yaml")
    gateway_request_seeds(os.path.join(out, "gateway_request"))


if __name__ == "__main__":
    main()
