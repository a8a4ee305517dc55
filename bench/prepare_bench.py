#!/usr/bin/env python3
"""Benchmark: `vitrine prepare` beside the pandas cleaning pipeline, in one run.

Runs, on the same input and the same machine, one after the other:
  1. ../shared/bench/pandas_clean.py (the peer: parse, clean, filter, dedupe,
     write JSONL), with Debian's python3 and pandas;
  2. `vitrine prepare --clean-only` (the same stage: parse, clean, filter,
     dedupe, write JSONL);
  3. the whole `vitrine prepare` (catalogue, FTS5 index and task files too).
Each is timed with /usr/bin/time -v (wall clock, peak RSS). The figures are
written between the markers of docs/benchmarks.md, with the command that made
them. The input is made by ../shared/bench/synth_trn.py when missing.

Usage:
  python3 bench/prepare_bench.py [--bench-dir DIR] [--lines 2248619] [--repeat 1]
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile

from benchmarks_doc import publish

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
PY = "/usr/bin/python3"  # Debian's python3 with python3-pandas
BEGIN = "<!-- prepare-bench:begin -->"
END = "<!-- prepare-bench:end -->"


def timed(cmd, env=None):
    """Runs cmd under /usr/bin/time -v; returns (wall seconds, peak RSS MiB, stdout)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        proc = subprocess.run(["/usr/bin/time", "-v", "-o", tf.name] + cmd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
        if proc.returncode != 0:
            sys.exit("failed (%d): %s\n%s" % (proc.returncode, " ".join(cmd), proc.stderr[-2000:]))
        report = tf.read()
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", report).group(1)
    parts = [float(p) for p in wall.split(":")]
    seconds = parts[-1] + 60 * parts[-2] + (3600 * parts[-3] if len(parts) > 2 else 0)
    rss_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", report).group(1))
    return seconds, rss_kb / 1024.0, proc.stdout


def ensure_input(bench_dir, lines):
    path = os.path.join(bench_dir, "trn_%d.json" % lines)
    if not os.path.exists(path):
        print("generating %s (%d lines) with synth_trn.py ..." % (path, lines), flush=True)
        subprocess.run([PY, os.path.join(SHARED, "bench", "synth_trn.py"), "--lines", str(lines), "--seed", "1",
                        "--out", path, "--workers", "2"], check=True)
    return path


def run_all(vitrine, path, bench_dir):
    size = os.path.getsize(path)
    mb = size / 1e6
    rows = {}
    out = os.path.join(bench_dir, "out")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")

    print("pandas_clean.py ...", flush=True)
    secs, rss, stdout = timed([PY, os.path.join(SHARED, "bench", "pandas_clean.py"), path,
                               "--out", os.path.join(out, "pandas.jsonl"), "--report", os.path.join(out, "pandas.json")])
    peer = json.load(open(os.path.join(out, "pandas.json")))
    rows["pandas"] = dict(secs=secs, rss=rss, kept=peer["written"])

    print("vitrine prepare --clean-only ...", flush=True)
    secs, rss, _ = timed([vitrine, "prepare", "-q", "--clean-only", "--input", path, "--out",
                          os.path.join(out, "clean"), "--timings", os.path.join(out, "clean_timings.json")], env)
    t = json.load(open(os.path.join(out, "clean_timings.json")))
    rows["clean"] = dict(secs=secs, rss=rss, kept=t["kept"], timings=t)

    print("vitrine prepare ...", flush=True)
    secs, rss, _ = timed([vitrine, "prepare", "-q", "--input", path, "--out", os.path.join(out, "dataset"),
                          "--timings", os.path.join(out, "full_timings.json")], env)
    t = json.load(open(os.path.join(out, "full_timings.json")))
    stats = json.load(open(os.path.join(out, "dataset", "stats.json")))
    rows["full"] = dict(secs=secs, rss=rss, kept=t["kept"], timings=t, stats=stats)

    lookup = os.path.join(os.path.dirname(vitrine), "..", "bench", "catalog_lookup_bench")
    if os.path.exists(lookup):
        print("catalog_lookup_bench ...", flush=True)
        proc = subprocess.run([lookup, os.path.join(out, "dataset"), "--queries", "2000"], stdout=subprocess.PIPE,
                              text=True, check=True)
        rows["lookup"] = json.loads(proc.stdout)
    for key in ("pandas", "clean", "full"):
        rows[key]["mbs"] = mb / rows[key]["secs"]
    return size, rows


def render(args, runs):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    lines = [BEGIN, "",
             "Measured %s on %s, %d cores (1-minute load average %.1f before the run, %.1f after), by:" % (
                 now, cpu, os.cpu_count(), args.load_before, os.getloadavg()[0]), "",
             "    python3 bench/prepare_bench.py %s" % " ".join(args.argv), "",
             "| input | program | stage | wall s | input MB/s | peak RSS MiB | records out | speed-up vs pandas |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, size, rows in runs:
        base = rows["pandas"]["secs"]
        for key, prog, stage in (("pandas", "pandas_clean.py", "parse, clean, filter, dedupe, write JSONL"),
                                 ("clean", "vitrine prepare --clean-only", "parse, clean, filter, dedupe, write JSONL"),
                                 ("full", "vitrine prepare", "all: + catalogue, FTS5 index, task files, report")):
            r = rows[key]
            lines.append("| %s (%.0f MB) | %s | %s | %.1f | %.1f | %.0f | %s | %s |" % (
                name, size / 1e6, prog, stage, r["secs"], r["mbs"], r["rss"], format(r["kept"], ","),
                "1.0x" if key == "pandas" else "%.1fx" % (base / r["secs"])))
    lines += ["", "Stages of the whole `vitrine prepare` (from `--timings`; the stream stages overlap on "
              "the reader, worker and consumer threads, so CPU seconds add up to more than wall time):", "",
              "| input | stream wall s | FTS5 index + close s | workers CPU s (parse, clean) | consumer CPU s (dedupe, catalogue inserts, task files) | total s |",
              "| --- | --- | --- | --- | --- | --- |"]
    for name, size, rows in runs:
        t = rows["full"]["timings"]
        lines.append("| %s | %.1f | %.1f | %.1f | %.1f | %.1f |" % (
            name, t["stream_s"], t["catalog_index_s"], t["parse_clean_cpu_s"], t["consumer_cpu_s"], t["total_s"]))
    lines += ["", "Finding a product in catalog.sqlite from a user's wording of its title "
              "(`build/bench/catalog_lookup_bench DATASET --queries 2000`: test-split titles, four noisy wordings "
              "each: lowercase without punctuation, \"what is ...?\", \"o que é ...\", a middle word dropped; "
              "after a warm-up pass):", "",
              "| input | products | queries | median µs | p90 µs | p99 µs | max µs | top-1 | top-5 |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, size, rows in runs:
        if "lookup" not in rows:
            continue
        l = rows["lookup"]
        lines.append("| %s | %s | %d | %.0f | %.0f | %.0f | %.0f | %.1f %% | %.1f %% |" % (
            name, format(l["products"], ","), l["queries"], l["median_us"], l["p90_us"], l["p99_us"], l["max_us"],
            100 * l["top1"], 100 * l["top5"]))
    lines += ["", "Records out differ by design: vitrine also drops descriptions under 40 characters, titles over "
              "400, descriptions that repeat the title and duplicate uids, and keeps records whose invalid UTF-8 "
              "it repairs (see docs/dataset.md); pandas_clean.py runs with its defaults.", "", END]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench-dir", default=os.environ.get("BENCH", "/tmp/vitrine-bench"))
    ap.add_argument("--lines", type=int, nargs="+", default=[200000, 2248619])
    ap.add_argument("--vitrine", default=os.path.join(ROOT, "build", "cli", "vitrine"))
    ap.add_argument("--no-write", action="store_true", help="print the table, leave docs/benchmarks.md alone")
    args = ap.parse_args()
    args.argv = sys.argv[1:]
    if not os.path.exists(os.path.join(SHARED, "bench", "pandas_clean.py")):
        sys.exit("../shared/bench not found: the peer pipeline is needed for a side-by-side run")
    os.makedirs(args.bench_dir, exist_ok=True)
    args.load_before = os.getloadavg()[0]
    runs = []
    for n in args.lines:
        path = ensure_input(args.bench_dir, n)
        size, rows = run_all(args.vitrine, path, args.bench_dir)
        runs.append(("synthetic %s lines" % format(n, ","), size, rows))
    table = render(args, runs)
    publish(table, BEGIN, END, write=not args.no_write)


if __name__ == "__main__":
    main()
