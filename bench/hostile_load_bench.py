#!/usr/bin/env python3
"""Benchmark: a hostile mixed load through vitrine-gateway, and the soak.

Starts vitrined (on scripts/run.sh's out/dataset and out/run) and
vitrine-gateway with client tokens in front of it, then sends --requests
requests from --concurrency clients: valid chat completions (whole and
streamed, sampled, with stop sequences, with the max_tokens chat clients send),
model listings, comparisons and feedback, mixed with every kind of bad
request the hardening issue lists (settings that once crashed the daemon,
targets and bodies that are not UTF-8, mistyped and unimplemented parameters,
bodies over the limit however framed, foreign Hosts and Origins, missing
tokens, requests the daemon refuses). All the while a dozen clients trickle
header bytes (slow loris) and a prober times /healthz.

Every answer is checked against the status its class must get (and a valid
answer's body: a completion, a stream ending in [DONE], no chunked encoding
for HTTP/1.0). The daemon's and the gateway's resident memory are sampled
every 1,000 requests; both must still be running at the end and exit 0 on
SIGTERM. The figures go to the "Hostile load" section of docs/benchmarks.md.

Then the soak: --soak valid chat completions in the same processes, resident
memory sampled every 1,000, to tell a leak from a working set that levels off.

Usage: /usr/bin/python3 bench/hostile_load_bench.py [--build build]
           [--dataset out/dataset] [--run out/run] [--requests 20000]
           [--concurrency 16] [--soak 20000] [--no-write]
"""

import argparse
import collections
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

from benchmarks_doc import publish

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BEGIN = "<!-- hostile-load-bench:begin -->"
END = "<!-- hostile-load-bench:end -->"
TOKEN = "bench-token"
MAX_BODY = 65536


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


# ---- one request over a raw socket: bytes in, (status, head, body) out ----

def exchange(port, raw, timeout=120):
    """Sends `raw` (a whole request, Connection: close) and reads to EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(raw)
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    reply = b"".join(chunks)
    head, _, body = reply.partition(b"\r\n\r\n")
    try:
        status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        status = 0  # no status line: the connection was dropped
    return status, head.decode("latin-1"), body


def request(port, method, target, body=b"", headers=None, version="HTTP/1.1", token=True,
            host=None):
    lines = [f"{method} {target} {version}", f"Host: {host or f'127.0.0.1:{port}'}",
             "Connection: close"]
    if token:
        lines.append(f"Authorization: Bearer {TOKEN}")
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body and "Transfer-Encoding" not in (headers or {}):
        lines.append(f"Content-Length: {len(body)}")
        lines.append("Content-Type: application/json")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chat_body(text, model="vitrine", max_tokens=16, **extra):
    j = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": max_tokens}
    j.update(extra)
    return json.dumps(j).encode()


def chunked(body, piece=4096):
    out = b""
    for i in range(0, len(body), piece):
        part = body[i:i + piece]
        out += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    return out + b"0\r\n\r\n"


# ---- the classes: (name, expected status, builder(port, texts, ids) -> raw, check) ----

def is_completion(body):
    j = json.loads(body)
    return j["object"] == "chat.completion" and isinstance(j["choices"][0]["message"]["content"], str)


def is_stream(body):
    return b"data: [DONE]" in body and b"chat.completion.chunk" in body


def make_classes():
    c = []

    def add(name, status, build, check=None, valid=False):
        c.append({"name": name, "status": status, "build": build, "check": check, "valid": valid})

    post = lambda port, body, **kw: request(port, "POST", "/v1/chat/completions", body, **kw)
    # Valid requests.
    add("chat", 200, lambda p, t, ids: post(p, chat_body(t.pick())), is_completion, True)
    add("chat stream", 200, lambda p, t, ids: post(p, chat_body(t.pick(), stream=True)),
        is_stream, True)
    add("chat sampled", 200, lambda p, t, ids: post(
        p, chat_body(t.pick(), temperature=0.8, top_p=0.9, seed=7)), is_completion, True)
    add("chat stop sequence", 200, lambda p, t, ids: post(
        p, chat_body(t.pick(), stop=["."], stream=True)), is_stream, True)
    add("chat max_tokens 4096 (up to the limit)", 200,
        lambda p, t, ids: post(p, chat_body(t.pick(), max_tokens=4096)), is_completion, True)
    add("chat max_tokens 1e20", 200, lambda p, t, ids: post(
        p, chat_body(t.pick()).replace(b'"max_tokens": 16', b'"max_tokens": 1e20')),
        is_completion, True)
    add("chat stream null", 200, lambda p, t, ids: post(p, chat_body(t.pick(), stream=None)),
        is_completion, True)
    add("chat HTTP/1.0 stream", 200, lambda p, t, ids: post(
        p, chat_body(t.pick(), stream=True), version="HTTP/1.0"), is_stream, True)
    add("models", 200, lambda p, t, ids: request(p, "GET", "/v1/models"), None, True)
    add("models retrieve", 200, lambda p, t, ids: request(p, "GET", "/v1/models/vitrine-qa"),
        None, True)
    add("compare", 200, lambda p, t, ids: request(
        p, "POST", "/v1/compare", json.dumps({"text": t.pick(), "max_tokens": 8}).encode()),
        None, True)
    add("feedback", 200, lambda p, t, ids: request(p, "POST", "/v1/feedback", json.dumps(
        {"response_id": ids.pick(), "rating": 1}).encode()), None, True)
    # Settings that once crashed the daemon: now answered.
    for temp in ("1e-300", "5e-324", "1e-45"):
        add(f"temperature {temp} (was a crash)", 200, lambda p, t, ids, temp=temp: post(
            p, chat_body(t.pick(), temperature=0.5).replace(b"0.5", temp.encode())),
            is_completion, True)
    add("top_p 1e-300 (was a crash)", 200, lambda p, t, ids: post(
        p, chat_body(t.pick(), temperature=0.8, top_p=0.5).replace(b"0.5", b"1e-300")),
        is_completion, True)
    # Bad requests and their statuses.
    add("target not UTF-8", 404, lambda p, t, ids: request(p, "GET", "/%ff"))
    add("target overlong UTF-8", 404, lambda p, t, ids: request(p, "GET", "/%c0%ae%c0%ae/x"))
    add("body not UTF-8", 400, lambda p, t, ids: post(
        p, b'{"model":"vitrine","messages":[{"role":"user","content":"caf\xc3("}]}'))
    add("body not JSON", 400, lambda p, t, ids: post(p, b'{"model": "vitrine", '))
    add("include_usage not boolean", 400, lambda p, t, ids: post(p, chat_body(
        t.pick(), stream=True, stream_options={"include_usage": "yes"})))
    add("content part type 5", 400, lambda p, t, ids: post(p, json.dumps(
        {"model": "vitrine", "messages": [{"role": "user", "content": [{"type": 5}]}]}).encode()))
    add("model 123", 400, lambda p, t, ids: post(p, chat_body(t.pick(), model=123)))
    add("unknown model", 404, lambda p, t, ids: post(p, chat_body(t.pick(), model="gpt-4")))
    add("unknown model retrieve", 404, lambda p, t, ids: request(p, "GET", "/v1/models/gpt-4"))
    add("temperature 3", 400, lambda p, t, ids: post(p, chat_body(t.pick(), temperature=3)))
    add("temperature NaN", 400, lambda p, t, ids: post(
        p, chat_body(t.pick(), temperature=0.5).replace(b"0.5", b"NaN")))
    add("max_tokens -1", 400, lambda p, t, ids: post(p, chat_body(t.pick(), max_tokens=-1)))
    add("max_tokens 2.9", 400, lambda p, t, ids: post(p, chat_body(t.pick(), max_tokens=2.9)))
    add("tools", 400, lambda p, t, ids: post(p, chat_body(t.pick(), tools=[{
        "type": "function", "function": {"name": "f", "parameters": {}}}])))
    add("n 2", 400, lambda p, t, ids: post(p, chat_body(t.pick(), n=2)))
    add("response_format", 400, lambda p, t, ids: post(
        p, chat_body(t.pick(), response_format={"type": "json_object"})))
    add("logprobs", 400, lambda p, t, ids: post(p, chat_body(t.pick(), logprobs=True)))
    add("user over 256 bytes (the daemon refuses)", 400,
        lambda p, t, ids: post(p, chat_body(t.pick(), user="u" * 300)))
    add("stream refused before its first byte", 400,
        lambda p, t, ids: post(p, chat_body(t.pick(), stream=True, max_tokens=-3)))
    add("stream the daemon refuses", 400,
        lambda p, t, ids: post(p, chat_body(t.pick(), stream=True, user="u" * 300)))
    add("chunked body over the limit", 413, lambda p, t, ids: post(
        p, chunked(chat_body("x" * (MAX_BODY + 4096))), headers={"Transfer-Encoding": "chunked",
                                                              "Content-Type": "application/json"}))
    add("Content-Length over the limit", 413, lambda p, t, ids: request(
        p, "POST", "/v1/chat/completions", b"", headers={"Content-Length": str(10 ** 7)}))
    add("foreign Host (DNS rebinding)", 403,
        lambda p, t, ids: request(p, "GET", "/v1/models", host="evil.example"))
    add("foreign Origin", 403, lambda p, t, ids: request(
        p, "GET", "/v1/models", headers={"Origin": "https://evil.example"}))
    add("no token", 401, lambda p, t, ids: post(p, chat_body(t.pick()), token=False))
    add("wrong token", 401, lambda p, t, ids: post(
        p, chat_body(t.pick()), token=False, headers={"Authorization": "Bearer nope"}))
    add("feedback unknown id", 404, lambda p, t, ids: request(p, "POST", "/v1/feedback", json.dumps(
        {"response_id": "r-nope", "rating": 1}).encode()))
    add("feedback comment over 4096 bytes", 400, lambda p, t, ids: request(
        p, "POST", "/v1/feedback", json.dumps(
            {"response_id": ids.pick(), "rating": 1, "comment": "c" * 5000}).encode()))
    add("feedback rating 5", 400, lambda p, t, ids: request(p, "POST", "/v1/feedback", json.dumps(
        {"response_id": ids.pick(), "rating": 5}).encode()))
    return c


class Texts:
    def __init__(self, dataset):
        self.items = []
        for task, key in (("describe", "prompt"), ("qa", "question")):
            with open(os.path.join(dataset, "tasks", task, "test.jsonl")) as f:
                for i, line in enumerate(f):
                    if i >= 200:
                        break
                    self.items.append(json.loads(line)[key])
        self.rng = random.Random(1)
        self.lock = threading.Lock()

    def pick(self):
        with self.lock:
            return self.rng.choice(self.items)


class ResponseIds:
    """Response ids of answers seen so far, for feedback."""

    def __init__(self):
        self.ids = []
        self.lock = threading.Lock()

    def add(self, body):
        try:
            rid = json.loads(body)["vitrine"]["response_id"]
        except (ValueError, KeyError, TypeError):
            return
        with self.lock:
            if len(self.ids) < 1000:
                self.ids.append(rid)

    def pick(self):
        with self.lock:
            return random.choice(self.ids) if self.ids else "r-none-yet"


def check_answer(cls, status, head, body):
    """'' when the answer is what the class must get, else why not."""
    if status != cls["status"]:
        return f"status {status}, expected {cls['status']}: {body[:200]!r}"
    if cls["name"] == "chat HTTP/1.0 stream" and "chunked" in head.lower():
        return "chunked encoding sent to an HTTP/1.0 client"
    if cls["check"] is not None:
        try:
            if not cls["check"](body):
                return f"unexpected body: {body[:200]!r}"
        except (ValueError, KeyError, TypeError, IndexError) as e:
            return f"unreadable body ({e}): {body[:200]!r}"
    if cls["status"] >= 400:
        try:
            json.loads(body)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            return f"error without an OpenAI error object: {body[:200]!r}"
    return ""


def slow_loris(port, stop, counts):
    """Twelve connections sending a header line every 2 s, reopened when cut."""
    socks = []
    while not stop.is_set():
        while len(socks) < 12:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(f"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n".encode())
                socks.append(s)
                counts["opened"] += 1
            except OSError:
                counts["refused"] += 1
                break
        for s in list(socks):
            try:
                s.sendall(b"X-Slow: 1\r\n")
            except OSError:
                socks.remove(s)
                s.close()
                counts["cut"] += 1
        stop.wait(2)
    for s in socks:
        s.close()


def prober(port, stop, latencies):
    while not stop.is_set():
        start = time.perf_counter()
        try:
            status, _, _ = exchange(port, request(port, "GET", "/healthz", token=False), timeout=30)
        except OSError:
            status = 0
        latencies.append((time.perf_counter() - start) * 1000 if status == 200 else float("inf"))
        stop.wait(1)


def start_servers(args, work):
    port, metrics_port, http_port = free_port(), free_port(), free_port()
    address = f"127.0.0.1:{port}"
    config = {
        "listen": address, "metrics_listen": f"127.0.0.1:{metrics_port}",
        "model": os.path.abspath(args.model),
        "adapters_dir": os.path.abspath(os.path.join(args.run, "adapters")),
        "classifier": os.path.abspath(os.path.join(args.run, "classifier")),
        "catalog": os.path.abspath(os.path.join(args.dataset, "catalog.sqlite")),
        "response_log": os.path.join(work, "responses.sqlite"),
        "threads": 1, "engine": {"max_batch": 16, "max_queue": 64},
    }
    with open(os.path.join(work, "router.yaml"), "w") as f:
        json.dump(config, f)
    with open(os.path.join(work, "tokens"), "w") as f:
        f.write(TOKEN + "\n")
    gateway_config = {"listen": f"127.0.0.1:{http_port}", "daemon": address,
                      "tokens_file": os.path.join(work, "tokens"), "max_body_bytes": MAX_BODY,
                      "timeout_seconds": 120, "threads": 8}
    with open(os.path.join(work, "gateway.yaml"), "w") as f:
        json.dump(gateway_config, f)
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    log = open(os.path.join(work, "servers.log"), "w")
    daemon = subprocess.Popen([os.path.join(args.build, "router", "vitrined"), "--config",
                               os.path.join(work, "router.yaml")], stderr=log, env=env)
    gateway = subprocess.Popen([os.path.join(args.build, "gateway", "vitrine-gateway"), "--config",
                                os.path.join(work, "gateway.yaml")], stderr=log, env=env)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if exchange(http_port, request(http_port, "GET", "/readyz", token=False), 5)[0] == 200:
                return daemon, gateway, http_port
        except OSError:
            pass
        if daemon.poll() is not None or gateway.poll() is not None:
            break
        time.sleep(0.2)
    sys.exit(f"hostile_load_bench: the servers did not start (log in {work})")


def run_load(args, port, daemon, gateway, classes, schedule):
    texts, ids = Texts(args.dataset), ResponseIds()
    lock = threading.Lock()
    results = collections.defaultdict(lambda: {"n": 0, "bad": 0, "ms": [], "why": []})
    rss = [(0, rss_mib(daemon.pid), rss_mib(gateway.pid))]
    next_index = [0]

    def worker():
        while True:
            with lock:
                i = next_index[0]
                if i >= len(schedule):
                    return
                next_index[0] += 1
            cls = schedule[i]
            raw = cls["build"](port, texts, ids)
            start = time.perf_counter()
            try:
                status, head, body = exchange(port, raw)
            except OSError as e:
                status, head, body = 0, "", str(e).encode()
            ms = (time.perf_counter() - start) * 1000
            why = check_answer(cls, status, head, body)
            if status == 200 and cls["name"] == "chat":
                ids.add(body)
            with lock:
                r = results[cls["name"]]
                r["n"] += 1
                r["ms"].append(ms)
                if why:
                    r["bad"] += 1
                    if len(r["why"]) < 3:
                        r["why"].append(why)
                done = sum(x["n"] for x in results.values())
                if done % 1000 == 0:
                    rss.append((done, rss_mib(daemon.pid), rss_mib(gateway.pid)))
                    print(f"  {done} requests, daemon RSS {rss[-1][1]:.1f} MiB, "
                          f"gateway {rss[-1][2]:.1f} MiB", flush=True)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return classes, results, rss, time.perf_counter() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--dataset", default=os.path.join(ROOT, "out", "dataset"))
    ap.add_argument("--run", default=os.path.join(ROOT, "out", "run"))
    ap.add_argument("--model", default=os.path.join(ROOT, "..", "shared", "models", "stories260K-hf"))
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--soak", type=int, default=20000,
                    help="valid requests after the mixed load, resident memory sampled (0: none)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    for path in (os.path.join(args.run, "classifier"), os.path.join(args.dataset, "catalog.sqlite")):
        if not os.path.exists(path):
            sys.exit(f"hostile_load_bench: {path} not found (scripts/run.sh makes it)")
    work = tempfile.mkdtemp(prefix="vitrine-hostile-load-")
    daemon, gateway, port = start_servers(args, work)
    stop = threading.Event()
    loris = collections.Counter()
    probes = []
    side = [threading.Thread(target=slow_loris, args=(port, stop, loris)),
            threading.Thread(target=prober, args=(port, stop, probes))]
    try:
        for t in side:
            t.start()
        classes = make_classes()
        rng = random.Random(42)
        # Valid requests first for a moment, so feedback has ids; then the mix.
        schedule = [classes[0]] * 32 + [rng.choice(classes) for _ in range(args.requests - 32)]
        mixed = run_load(args, port, daemon, gateway, classes, schedule)
        # The soak: valid answers only (whole and streamed, alternating).
        soak = run_load(args, port, daemon, gateway, classes,
                        [classes[i % 2] for i in range(args.soak)]) if args.soak else None
    finally:
        stop.set()
        for t in side:
            t.join()
    alive = daemon.poll() is None and gateway.poll() is None
    for p in (gateway, daemon):
        p.send_signal(signal.SIGTERM)
    exits = (daemon.wait(timeout=60), gateway.wait(timeout=60))
    report(args, classes, mixed, soak, alive, exits, loris, probes, work)


def rss_line(rss):
    shown = rss[::4] + ([rss[-1]] if (len(rss) - 1) % 4 else [])
    return ", ".join(f"{n}: {d:.1f} / {g:.1f}" for n, d, g in shown)


def growth_line(rss):
    if len(rss) < 11:
        return []
    half = len(rss) // 2
    return [f"* vitrined's growth over the second half ({rss[half][0]} to {rss[-1][0]} "
            f"requests): {rss[-1][1] - rss[half][1]:+.1f} MiB; over the first half: "
            f"{rss[half][1] - rss[1][1]:+.1f} MiB (from the first 1,000)."]


def report(args, classes, mixed, soak, alive, exits, loris, probes, work):
    results, rss, seconds = mixed[1], mixed[2], mixed[3]
    total = sum(r["n"] for r in results.values())
    bad = sum(r["bad"] for r in results.values())
    valid = sum(r["n"] for c in classes if c["valid"] for r in [results[c["name"]]])
    lines = [
        BEGIN,
        "## Hostile load through vitrine-gateway",
        "",
        f"Command: `/usr/bin/python3 bench/hostile_load_bench.py --requests {args.requests} "
        f"--concurrency {args.concurrency} --soak {args.soak}` (on `scripts/run.sh`'s "
        f"out/dataset and out/run).",
        "",
        f"vitrined (stories260K-hf with the run's adapters, engine.max_batch 16, 1 torch thread) "
        f"behind vitrine-gateway with client tokens; {total} requests from {args.concurrency} "
        f"clients, each class drawn at random ({valid} valid, {total - valid} invalid), while 12 "
        f"slow-loris connections trickled header lines every 2 s and a prober timed /healthz "
        f"every second. {seconds:.0f} s in all.",
        "",
        "| class | expected | requests | answered as expected | p50 ms | p99 ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in classes:
        r = results[c["name"]]
        if r["n"] == 0:
            continue
        ms = sorted(r["ms"])
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        lines.append(f"| {c['name']} | {c['status']} | {r['n']} | {r['n'] - r['bad']} | "
                     f"{statistics.median(ms):.1f} | {p99:.1f} |")
    finite = [p for p in probes if p != float("inf")]
    lines += [
        "",
        f"* Answered as their class must be: {total - bad} of {total}"
        f"{'' if bad == 0 else ' (' + str(bad) + ' not: see below)'}.",
        f"* Both processes running at the end: {'yes' if alive else 'NO'}; exit codes on SIGTERM:"
        f" vitrined {exits[0]}, vitrine-gateway {exits[1]}.",
        f"* Slow-loris connections: {loris['opened']} opened, {loris['cut']} cut by the header "
        f"timeout; /healthz: {len(finite)} of {len(probes)} probes answered, the slowest in "
        f"{max(finite) if finite else float('nan'):.1f} ms.",
        f"* Resident memory, MiB (requests done: vitrined / vitrine-gateway): {rss_line(rss)}.",
    ] + growth_line(rss)
    for c in classes:
        for why in results[c["name"]]["why"]:
            lines.append(f"* Not as expected, {c['name']}: {why}")
    if soak is not None:
        s_results, s_rss, s_seconds = soak[1], soak[2], soak[3]
        s_total = sum(r["n"] for r in s_results.values())
        s_bad = sum(r["bad"] for r in s_results.values())
        bad += s_bad
        ms = sorted(m for r in s_results.values() for m in r["ms"])
        lines += [
            "",
            f"Then the soak, in the same processes: {s_total} valid chat completions (whole and "
            f"streamed, alternating, up to 16 tokens each) from {args.concurrency} clients, "
            f"{s_seconds:.0f} s, p50 {statistics.median(ms):.1f} ms.",
            "",
            f"* Answered: {s_total - s_bad} of {s_total}.",
            f"* Resident memory, MiB (soak requests done: vitrined / vitrine-gateway): "
            f"{rss_line(s_rss)}.",
        ] + growth_line(s_rss)
    lines.append(END)
    section = "\n".join(lines)
    publish(section, BEGIN, END, write=not args.no_write)
    print(f"(logs in {work})")
    if bad or not alive or exits != (0, 0):
        sys.exit(1)


if __name__ == "__main__":
    main()
