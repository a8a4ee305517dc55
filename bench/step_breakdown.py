#!/usr/bin/env python3
"""Time per part of one LoRA training step, from the Chrome trace that
`build/bench/train_bench --trace FILE` writes (libtorch's profiler: every
aten operator, autograd's backward nodes, and vitrine's kernels and layers
as named scopes, vitrine::...).

Each event's self time (its duration less its children's) goes to the part
of the step its innermost named ancestor says (a vitrine:: scope or a
backward node), in the forward or the backward (under vitrine::backward);
what no event covers is the step's own overhead. Prints a table of parts,
milliseconds and shares, largest first.

Not goals: more than one step per trace, threads other than the one that
runs the step (the kernel threads' work counts inside the scope that
waits for it).

    python3 bench/step_breakdown.py TRACE [--top 30]
"""
import argparse
import collections
import json
import re

# (pattern on an event's name, the part it names); first match wins.
PARTS = [
    (r"vitrine::lm_loss", "head + cross-entropy"),
    (r"vitrine::head", "head + cross-entropy"),
    (r"LogSoftmaxBackward|NllLossBackward|CrossEntropySum", "head + cross-entropy"),
    (r"vitrine::packed_linear_bf16_backward_data", "frozen products"),
    (r"vitrine::packed_linear_bf16$", "frozen products"),
    (r"FrozenBf16Product", "frozen products"),
    (r"vitrine::attention_core|AttentionCore", "attention core"),
    (r"vitrine::rope|Rope>", "RoPE"),
    (r"vitrine::rms_norm|RmsNorm", "RMSNorm"),
    (r"vitrine::swiglu|SwiGlu", "SiLU x up"),
    (r"vitrine::lora_adapter", "LoRA A/B"),
    (r"MmBackward|MulBackward|AddmmBackward|UnsafeViewBackward|TBackward|MatmulBackward|DropoutBackward", "LoRA A/B"),
    (r"vitrine::optimizer", "clip + AdamW"),
    (r"AccumulateGrad", "LoRA A/B"),
]


def part_of(name):
    for pattern, part in PARTS:
        if re.search(pattern, name):
            return part
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("trace")
    ap.add_argument("--top", type=int, default=30, help="also list this many operators by self time")
    args = ap.parse_args()
    with open(args.trace) as f:
        events = json.load(f)
    if isinstance(events, dict):
        events = events.get("traceEvents", [])
    spans = [e for e in events if e.get("ph") == "X" and "dur" in e]
    by_thread = collections.defaultdict(list)
    for e in spans:
        by_thread[e.get("tid")].append(e)
    # The thread with the most time in events runs the step.
    tid = max(by_thread, key=lambda t: sum(e["dur"] for e in by_thread[t]))
    ev = sorted(by_thread[tid], key=lambda e: (e["ts"], -e["dur"]))
    parts = collections.Counter()
    ops = collections.Counter()
    stack = []  # (end, event, [part-or-None along the path], backward?)
    covered = 0.0
    first, last = ev[0]["ts"], max(e["ts"] + e["dur"] for e in ev)
    self_time = {}
    for e in ev:
        while stack and stack[-1][0] <= e["ts"]:
            stack.pop()
        parent_part = stack[-1][2] if stack else None
        backward = (stack[-1][3] if stack else False) or e["name"] == "vitrine::backward"
        part = part_of(e["name"]) or parent_part
        if stack:
            self_time[id(stack[-1][1])] -= e["dur"]
        else:
            covered += e["dur"]
        self_time[id(e)] = e["dur"]
        stack.append((e["ts"] + e["dur"], e, part, backward))
        e["_part"], e["_backward"] = part, backward
    for e in ev:
        t = self_time[id(e)] / 1000.0
        label = (e["_part"] or "other") + (" (backward)" if e["_backward"] else " (forward)")
        if e["_part"] == "clip + AdamW":
            label = "clip + AdamW"
        parts[label] += t
        ops[(label, e["name"])] += t
    total = (last - first) / 1000.0
    parts["outside any operator"] += total - covered / 1000.0
    print(f"step: {total:.1f} ms on thread {tid}")
    print(f"{'part':<40} {'ms':>9} {'share':>7}")
    for label, t in parts.most_common():
        print(f"{label:<40} {t:9.1f} {100 * t / total:6.1f}%")
    print(f"\ntop {args.top} operators by self time:")
    for (label, name), t in ops.most_common(args.top):
        print(f"{t:9.1f} ms  {label:<32} {name[:90]}")


if __name__ == "__main__":
    main()
