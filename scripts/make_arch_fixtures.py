#!/usr/bin/python3
"""Tiny random checkpoints of the architectures vitrine loads, with reference
logits computed by the real Hugging Face transformers (and peft).

The models/ tests (tests/models/architectures_test.cc) load each folder and
compare their logits with the ones stored here. The set is committed in
tests/data/transformers/arch, so the comparisons run everywhere, also where
transformers cannot; with the reference stack, a test runs this script again
into the build tree and checks that the committed set is byte for byte what
it writes (the output is deterministic: fixed seeds, sorted JSON). After
changing this script or the harness, rewrite the committed set with

    scripts/make_arch_fixtures.py --out tests/data/transformers/arch --force

Each folder:

  config.json, model.safetensors or model-0000i-of-0000n.safetensors +
      model.safetensors.index.json   exactly as save_pretrained writes them
  expected.safetensors   ids.<name> [n] (I64) and logits.<name> [n, vocab]
      (F32): transformers' logits at every position, computed in float32
      from the saved files (for F16/BF16 checkpoints: float32 on the same
      rounded weights), eager attention, CPU
  adapter/ (qwen2)       a PEFT LoRA adapter with non-zero B on all seven
      projections; expected.safetensors then also has adapter_logits.<name>

The folders (hidden 64, 2-3 layers, vocabulary 300: a few hundred KB each):

  qwen2           Qwen2ForCausalLM: q/k/v biases, tied head, rope_theta 1e6, F32
  mistral         MistralForCausalLM: sliding_window 8 (sequences run past it),
                  one KV head, F16
  llama3-rope     LlamaForCausalLM: rope_scaling llama3 (frequencies in all
                  three bands), tied head, F32 in 2 shards
  llama-bf16      LlamaForCausalLM: GQA, untied head, BF16 in 3+ shards

Weights are HF's random init (normal, std 0.05) with RMSNorm weights
1 + N(0, 0.1^2) and biases N(0, 0.1^2), so that a missing norm or bias shows.
The fixtures are checked here to be discriminating: zeroing the Qwen2
biases, lifting the Mistral window or dropping llama3's RoPE scaling changes
the logits by far more than the tests' tolerance.

Needs the reference harness (../shared/reference/hf_reference.py, see its
README) and the source trees it names: TRANSFORMERS_SRC, HF_HUB_SRC, PEFT_SRC,
ACCELERATE_SRC, or --ref DIR (or VITRINE_REFERENCE_SRC) holding transformers/,
huggingface_hub/, peft/ and accelerate/. When they are missing it writes
nothing, says what is missing and exits with status 3 (the tests then skip).

Reruns are cheap: OUT/STAMP records a digest of this script and the harness,
and an up-to-date folder is left alone (and used without the reference
stack). A fresh set is built beside OUT and renamed into place under a lock,
so readers never see half a folder.

usage: make_arch_fixtures.py --out DIR [--shared DIR] [--ref DIR] [--force]
"""

import argparse
import fcntl
import hashlib
import json
import os
import shutil
import sys

SEED = 1234
VOCAB = 300
SEQUENCE_LENGTHS = {"len1": 1, "len23": 23, "len70": 70}  # 70: past llama3's 64 and the window
MISSING = 3  # exit status: the reference stack is not available


def repo_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, help="folder to write (replaced when stale)")
    p.add_argument("--shared", default=os.environ.get("VITRINE_SHARED_DIR",
                                                      os.path.join(repo_root(), "..", "shared")),
                   help="the shared folder holding reference/hf_reference.py")
    p.add_argument("--ref", default="",
                   help="folder with the transformers/, huggingface_hub/, peft/, accelerate/ trees")
    p.add_argument("--force", action="store_true", help="rebuild even when up to date")
    return p.parse_args(argv)


def point_at_trees(ref):
    """Sets the harness's *_SRC variables from --ref unless already set."""
    for env, sub in (("TRANSFORMERS_SRC", "transformers"), ("HF_HUB_SRC", "huggingface_hub"),
                     ("PEFT_SRC", "peft"), ("ACCELERATE_SRC", "accelerate")):
        if ref and not os.environ.get(env) and os.path.isdir(os.path.join(ref, sub)):
            os.environ[env] = os.path.join(ref, sub)


def missing_pieces(harness):
    """What keeps the reference from running, as phrases; empty when all is there."""
    import importlib.util

    missing = []
    if not os.path.isfile(harness):
        missing.append("the harness %s" % harness)
    if importlib.util.find_spec("torch") is None:
        missing.append("torch for %s (Debian: apt-get install python3-torch; see the harness README)"
                       % sys.executable)
    trees = [env for env in ("TRANSFORMERS_SRC", "HF_HUB_SRC", "PEFT_SRC", "ACCELERATE_SRC")
             if not os.path.isdir(os.environ.get(env, ""))]
    if trees:
        missing.append("%s (source trees at the harness README's commits; or --ref DIR / "
                       "VITRINE_REFERENCE_SRC=DIR holding transformers/, huggingface_hub/, peft/, "
                       "accelerate/)" % ", ".join(trees))
    return missing


def stamp_of(harness):
    """This script and the harness; the trees they run are pinned by the harness README."""
    digest = hashlib.sha256()
    for path in (os.path.abspath(__file__), harness):
        with open(path, "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()


# --- model building -------------------------------------------------------


def perturb(model, torch):
    """Norm weights 1 + N(0, 0.1^2) and biases N(0, 0.1^2): HF's init leaves
    them at 1 and 0, where a loader that drops them would still match."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.add_(0.1 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.1 * torch.randn_like(p))


def common_shape(**extra):
    shape = dict(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6,
                 initializer_range=0.05, bos_token_id=1, eos_token_id=2)
    shape.update(extra)
    return shape


def specs(tf):
    """(folder, config, storage dtype, max_shard_size or None, with a PEFT adapter)."""
    return [
        ("qwen2", tf.Qwen2Config(**common_shape(max_position_embeddings=256, rope_theta=1e6,
                                                tie_word_embeddings=True, use_sliding_window=False,
                                                max_window_layers=2)),
         "float32", None, True),
        ("mistral", tf.MistralConfig(**common_shape(num_key_value_heads=1, max_position_embeddings=256,
                                                    sliding_window=8, tie_word_embeddings=False)),
         "float16", None, False),
        ("llama3-rope", tf.LlamaConfig(**common_shape(
            head_dim=16, max_position_embeddings=512, rope_theta=500000.0, tie_word_embeddings=True,
            rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                          "high_freq_factor": 4.0, "original_max_position_embeddings": 64})),
         "float32", "250KB", False),
        ("llama-bf16", tf.LlamaConfig(**common_shape(num_hidden_layers=3, max_position_embeddings=512,
                                                     tie_word_embeddings=False)),
         "bfloat16", "80KB", False),
    ]


def sequences(torch):
    g = torch.Generator().manual_seed(SEED)
    out = {}
    for name, n in SEQUENCE_LENGTHS.items():
        out[name] = torch.cat([torch.tensor([1]), torch.randint(3, VOCAB, (n - 1,), generator=g)])
    return out


def load_float32(tf, torch, folder):
    """The saved checkpoint as transformers reads it, computing in float32."""
    model, info = tf.AutoModelForCausalLM.from_pretrained(
        folder, torch_dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    if bad:
        raise SystemExit("%s: transformers did not load every tensor: %s" % (folder, bad))
    return model.eval()


def logits_of(model, torch, seqs):
    with torch.no_grad():
        return {name: model(input_ids=ids.unsqueeze(0)).logits[0].float().contiguous()
                for name, ids in seqs.items()}


def max_change(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def require_discriminating(what, change):
    if change < 1e-2:
        raise SystemExit("fixture not discriminating: %s changes the logits by only %.2e" % (what, change))
    print("  %s changes the logits by up to %.3f" % (what, change))


def check_discriminating(tf, torch, name, folder, seqs, reference):
    """Proves the architecture-specific part matters in this fixture."""
    if name == "qwen2":
        model = load_float32(tf, torch, folder)
        with torch.no_grad():
            for layer in model.model.layers:
                for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                    proj.bias.zero_()
        require_discriminating("zeroing the q/k/v biases", max_change(reference, logits_of(model, torch, seqs)))
    elif name in ("mistral", "llama3-rope"):
        config = tf.AutoConfig.from_pretrained(folder)
        what = "lifting the sliding window" if name == "mistral" else "plain RoPE instead of llama3's"
        if name == "mistral":
            config.sliding_window = None
        else:
            config.rope_scaling = None
        model = tf.AutoModelForCausalLM.from_pretrained(
            folder, config=config, torch_dtype=torch.float32, attn_implementation="eager").eval()
        require_discriminating(what, max_change(reference, logits_of(model, torch, seqs)))


def add_adapter(tf, torch, folder, seqs, tensors):
    """A PEFT LoRA adapter with random (non-zero) B, and the logits with it."""
    import peft

    torch.manual_seed(SEED + 1)
    base = load_float32(tf, torch, folder)
    config = peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, bias="none", task_type="CAUSAL_LM",
                             init_lora_weights=False,
                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                             "up_proj", "down_proj"])
    model = peft.get_peft_model(base, config).eval()
    model.save_pretrained(os.path.join(folder, "adapter"))
    # PEFT's template README goes; the base is named by folder, not by the staging path.
    readme = os.path.join(folder, "adapter", "README.md")
    if os.path.exists(readme):
        os.remove(readme)
    adapter_config = os.path.join(folder, "adapter", "adapter_config.json")
    with open(adapter_config) as f:
        saved = json.load(f)
    saved["base_model_name_or_path"] = os.path.basename(folder)
    saved["target_modules"] = sorted(saved["target_modules"])  # PEFT saves a set's order
    with open(adapter_config, "w") as f:
        json.dump(saved, f, indent=2, sort_keys=True)
    for key, value in logits_of(model, torch, seqs).items():
        tensors["adapter_logits." + key] = value


def build_one(tf, torch, hf, spec, seqs, root):
    name, config, dtype, shard, with_adapter = spec
    folder = os.path.join(root, name)
    torch.manual_seed(SEED)
    config.torch_dtype = dtype
    model = tf.AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
    perturb(model, torch)
    model = model.to(getattr(torch, dtype))
    kwargs = {"max_shard_size": shard} if shard else {"max_shard_size": "100GB"}
    model.save_pretrained(folder, safe_serialization=True, **kwargs)
    reference = logits_of(load_float32(tf, torch, folder), torch, seqs)
    tensors = {"ids." + k: v.to(torch.int64).contiguous() for k, v in seqs.items()}
    tensors.update({"logits." + k: v for k, v in reference.items()})
    check_discriminating(tf, torch, name, folder, seqs, reference)
    if with_adapter:
        add_adapter(tf, torch, folder, seqs, tensors)
    meta = {"made_by": "scripts/make_arch_fixtures.py", "transformers": tf.__version__,
            "torch": torch.__version__, "storage_dtype": dtype, "seed": str(SEED)}
    hf.st_save_file(tensors, os.path.join(folder, "expected.safetensors"), meta)
    files = sorted(f for f in os.listdir(folder) if f.endswith(".safetensors") and f.startswith("model"))
    print("  %s: %s, %d weight file(s): %s" % (name, dtype, len(files), ", ".join(files)))


def build_all(hf, root):
    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    tf = hf._hf()
    tf.utils.logging.disable_progress_bar()
    seqs = sequences(torch)
    for spec in specs(tf):
        build_one(tf, torch, hf, spec, seqs, root)


def main(argv=None):
    args = parse_args(argv)
    point_at_trees(args.ref or os.environ.get("VITRINE_REFERENCE_SRC", ""))
    harness = os.path.join(os.path.abspath(args.shared), "reference", "hf_reference.py")
    out = os.path.abspath(args.out)
    stamp = stamp_of(harness) if os.path.isfile(harness) else None
    if stamp and up_to_date(out, stamp, args.force):
        return 0
    missing = missing_pieces(harness)
    if missing:
        print("make_arch_fixtures: the transformers reference is not available; missing: " +
              "; ".join(missing), file=sys.stderr)
        return MISSING
    os.makedirs(os.path.dirname(out), exist_ok=True)
    # One writer at a time (tests run in parallel): the others wait, then find it up to date.
    with open(out + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if up_to_date(out, stamp, args.force):
            return 0
        sys.path.insert(0, os.path.dirname(harness))
        import hf_reference

        staging = out + ".tmp"
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(staging)
        print("make_arch_fixtures: writing %s" % out)
        build_all(hf_reference, staging)
        with open(os.path.join(staging, "STAMP"), "w") as f:
            f.write(stamp + "\n")
        shutil.rmtree(out, ignore_errors=True)
        os.rename(staging, out)
    return 0


def up_to_date(out, stamp, force):
    stamp_file = os.path.join(out, "STAMP")
    if force or not os.path.isfile(stamp_file):
        return False
    with open(stamp_file) as f:
        return f.read().strip() == stamp

if __name__ == "__main__":
    sys.exit(main())
