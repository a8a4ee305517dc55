#!/usr/bin/env python3
"""Benchmark: vitrined under load from `vitrine bench`.

Starts the daemon on a trained run (adapters and classifier) and its dataset,
sends --requests AskStream requests at each concurrency level (titles and
questions of the test split, alternating), and writes the figures to the
"Serving" section of docs/benchmarks.md: generated tokens/s, requests/s,
latency and time-to-first-token percentiles, the routing decision's
percentiles (as the daemon timed them), errors, and the daemon's resident
memory before and after. The scaling target: tokens/s at the highest level at
least 4x those at concurrency 1.

Usage: python3 bench/serving_bench.py [--build build] [--dataset out/dataset]
           [--run out/run] [--levels 1,4,16] [--requests 1000] [--no-write]
(scripts/run.sh makes out/dataset and out/run.)
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
BEGIN = "<!-- serving-bench:begin -->"
END = "<!-- serving-bench:end -->"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--dataset", default=os.path.join(ROOT, "out", "dataset"))
    ap.add_argument("--run", default=os.path.join(ROOT, "out", "run"))
    ap.add_argument("--model", default=os.path.join(ROOT, "..", "shared", "models", "stories260K-hf"))
    ap.add_argument("--levels", default="1,4,16")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--max-new-tokens", type=int, default=96, help="per answer (the daemon's default)")
    ap.add_argument("--max-batch", type=int, default=8, help="the daemon's engine.max_batch")
    ap.add_argument("--threads", type=int, default=1,
                    help="the daemon's torch threads (the load generator shares the machine)")
    ap.add_argument("--gateway-requests", type=int, default=300,
                    help="requests at concurrency 1 through vitrine-gateway and directly")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()

    vitrine = os.path.join(args.build, "cli", "vitrine")
    vitrined = os.path.join(args.build, "router", "vitrined")
    gateway_bin = os.path.join(args.build, "gateway", "vitrine-gateway")
    for path in (vitrine, vitrined, gateway_bin, os.path.join(args.run, "classifier"),
                 os.path.join(args.dataset, "catalog.sqlite")):
        if not os.path.exists(path):
            sys.exit(f"serving_bench: {path} not found (build, then scripts/run.sh)")
    port, metrics_port, http_port = free_port(), free_port(), free_port()
    address, metrics = f"127.0.0.1:{port}", f"127.0.0.1:{metrics_port}"
    work = tempfile.mkdtemp(prefix="vitrine-serving-bench-")
    config = {
        "listen": address,
        "metrics_listen": metrics,
        "model": os.path.abspath(args.model),
        "adapters_dir": os.path.abspath(os.path.join(args.run, "adapters")),
        "classifier": os.path.abspath(os.path.join(args.run, "classifier")),
        "catalog": os.path.abspath(os.path.join(args.dataset, "catalog.sqlite")),
        "response_log": os.path.join(work, "responses.sqlite"),
        "threads": args.threads,
        "engine": {"max_batch": args.max_batch, "max_queue": 64},
    }
    config_path = os.path.join(work, "router.yaml")
    with open(config_path, "w") as f:
        json.dump(config, f)  # JSON is YAML
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    log = open(os.path.join(work, "vitrined.log"), "w")
    daemon = subprocess.Popen([vitrined, "--config", config_path], stderr=log, env=env)
    gateway = None
    try:
        wait_serving(vitrine, address, daemon, who="serving_bench")
        out = os.path.join(work, "bench.json")
        base = [vitrine, "bench", "--address", address, "--dataset", args.dataset,
                "--max-new-tokens", str(args.max_new_tokens)]
        bench = subprocess.run(base + ["--concurrency", args.levels, "--requests", str(args.requests),
                                       "--metrics", metrics, "--json", out], env=env)
        with open(out) as f:
            figures = json.load(f)
        # The gateway's cost: the same requests at concurrency 1, directly and through HTTP.
        gateway = subprocess.Popen([gateway_bin, "--listen", f"127.0.0.1:{http_port}",
                                    "--daemon", address], stderr=log, env=env)
        time.sleep(1)
        pair = {}
        for name, extra in (("grpc", []), ("gateway", ["--gateway", f"http://127.0.0.1:{http_port}"])):
            path = os.path.join(work, f"pair-{name}.json")
            run = subprocess.run(base + ["--concurrency", "1", "--requests", str(args.gateway_requests),
                                         "--json", path] + extra, env=env)
            with open(path) as f:
                pair[name] = json.load(f)["levels"][0]
            pair[name]["exit"] = run.returncode
    finally:
        if gateway is not None:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(timeout=30)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    if daemon.returncode != 0:
        sys.exit(f"serving_bench: vitrined exited with {daemon.returncode} (log in {work})")

    levels = figures["levels"]
    first, last = levels[0], levels[-1]
    ratio = last["tokens_per_second"] / first["tokens_per_second"]
    errors = sum(l["errors"] for l in levels)
    lines = [
        BEGIN,
        "## Serving: `vitrine bench` against vitrined",
        "",
        f"Command: `python3 bench/serving_bench.py --levels {args.levels} --requests {args.requests}"
        f" --max-new-tokens {args.max_new_tokens} --max-batch {args.max_batch}`"
        f" (on `scripts/run.sh`'s out/dataset and out/run).",
        "",
        f"vitrined serving `{os.path.basename(os.path.normpath(args.model))}` with the run's describe"
        f" and qa adapters and classifier, engine.max_batch {args.max_batch}, {args.threads} torch"
        f" threads; each level sends {args.requests} AskStream requests (test-split titles and"
        f" questions, alternating, routed by the classifier agent, up to {args.max_new_tokens}"
        " tokens each) from that many concurrent clients on the same machine (the clients share"
        " its 2 cores). Time to first token is measured by the client.",
        "",
        "| concurrency | requests | errors | tokens/s | requests/s | p50 ms | p99 ms | TTFT p50 ms | TTFT p99 ms | route p50 µs | route p99 µs |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for l in levels:
        lines.append(
            f"| {l['concurrency']} | {l['requests']} | {l['errors']} | {l['tokens_per_second']:.0f} |"
            f" {(l['requests'] - l['errors']) / l['seconds']:.1f} | {l['latency_ms_p50']:.1f} |"
            f" {l['latency_ms_p99']:.1f} | {l['first_token_ms_p50']:.1f} | {l['first_token_ms_p99']:.1f} |"
            f" {l['route_us_p50']:.0f} | {l['route_us_p99']:.0f} |")
    route_p99 = max(l["route_us_p99"] for l in levels)
    lines += [
        "",
        f"* Tokens/s at concurrency {last['concurrency']}: {ratio:.1f}x those at"
        f" {first['concurrency']} (target: at least 4x) — "
        + ("met." if ratio >= 4 else "NOT met."),
        f"* Errors: {errors} in {args.requests * len(levels)} requests.",
        f"* Routing decision (the classifier agent: catalogue lookups and classifier, timed by the"
        f" daemon and reported in each answer's `timings.route_ms`): p99 {route_p99:.0f} µs at"
        f" worst over the levels (target: under 1 ms) — " + ("met." if route_p99 < 1000 else "NOT met."),
        f"* Daemon resident memory: {figures['rss_mib_before']:.1f} MiB before the load,"
        f" {figures['rss_mib_after']:.1f} MiB after.",
        "",
        f"Through vitrine-gateway (OpenAI streaming chat completions over HTTP) against gRPC"
        f" directly, {args.gateway_requests} requests each at concurrency 1, one after the other:",
        "",
        "| path | errors | p50 ms | p99 ms | TTFT p50 ms | TTFT p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in ("grpc", "gateway"):
        l = pair[name]
        lines.append(f"| {name} | {l['errors']} | {l['latency_ms_p50']:.1f} | {l['latency_ms_p99']:.1f} |"
                     f" {l['first_token_ms_p50']:.1f} | {l['first_token_ms_p99']:.1f} |")
    added = pair["gateway"]["latency_ms_p50"] - pair["grpc"]["latency_ms_p50"]
    added_ttft = pair["gateway"]["first_token_ms_p50"] - pair["grpc"]["first_token_ms_p50"]
    lines += [
        "",
        f"* The gateway adds {added:.2f} ms to the p50 latency and {added_ttft:.2f} ms to the p50"
        " time to first token (target: under 2 ms) — " + ("met." if added < 2 else "NOT met."),
        END,
    ]
    section = "\n".join(lines)
    publish(section, BEGIN, END, write=not args.no_write)
    ok = bench.returncode == 0 and all(pair[n]["exit"] == 0 for n in pair)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
