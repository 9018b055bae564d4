#!/usr/bin/env python3
"""muster's CPU per durable change, by API, on a registry that already holds many
instances (issue 17 goal 6): Cloud Map `RegisterInstance` (one instance per call, the
only form the API has), REST `PUT` (one per request) and REST `POST .../batch` (many per
request), each over keep-alive HTTP/1.1 from several writers.

It starts target/release/muster (MUSTER_BIN to override) with the APIs open and no write
limit, loads `--instances` instances through REST batches of 1,000 into 20 per service,
then runs each load `--repeat` times, interleaved, and prints per row the changes/s,
latency and muster's CPU per change (utime+stime of its process over the load, /proc),
the median of the repeats. Every load registers new instances.

    cargo build --release && cargo build --release --example cloudmap_load
    .venv/bin/python bench/change_cost.py      # --instances 100000 --count 10000 --batch 50

`--data-dir /dev/shm` puts muster's log on a tmpfs (the disk's fsync out of the
figures); `--profile` records each API's first load with `perf record` (DWARF call graphs) and prints
where muster's CPU went (the perf.data files stay in the run's folder).
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import requests

from auth_throughput import CLOUDMAP_BIN, service_ids
from common import LOAD_BIN, build_load_clients, cpu_seconds, muster_and_workdir, percentile
from durability import Muster

PRELOAD_BATCH = 1000


def batch_body(first, count, prefix, services):
    changes = [
        {"op": "register", "service": f"{prefix}{n % services}", "id": f"i-{n}",
         "instance": {"ipv4": f"10.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}", "port": 8080}}
        for n in range(first, first + count)
    ]  # fmt: skip
    return {"changes": changes}


def preload(m, instances):
    """`instances` instances, 20 per service (so 100,000 leave room in the namespace's
    10,000 services for the loads' own), through REST batches."""
    url = f"http://127.0.0.1:{m.http_port}/v1/namespaces/internal/batch"
    services = max(1, instances // 20)
    with requests.Session() as session:
        for first in range(0, instances, PRELOAD_BATCH):
            count = min(PRELOAD_BATCH, instances - first)
            r = session.post(url, json=batch_body(first, count, "s", services), timeout=60)
            r.raise_for_status()


def rest_batches(m, writers, count, first, batch, services):
    """`count` new instances in batches of `batch` from `writers` threads; latencies of
    the requests."""
    url = f"http://127.0.0.1:{m.http_port}/v1/namespaces/internal/batch"
    starts = list(range(first, first + count, batch))
    latencies, lock = [], threading.Lock()

    def writer(k):
        with requests.Session() as session:
            for start in starts[k::writers]:
                body = batch_body(start, min(batch, first + count - start), "s", services)
                sent = time.monotonic()
                session.post(url, json=body, timeout=60).raise_for_status()
                with lock:
                    latencies.append(time.monotonic() - sent)

    began = time.monotonic()
    threads = [threading.Thread(target=writer, args=(k,)) for k in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - began
    return {"per_second": count / seconds, "p50_ms": percentile(latencies, 0.5) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000}


def profiled(m, work, api):
    """`perf record --call-graph dwarf` of muster's process until the returned stop() is called."""
    data = work / f"perf-{api.replace(' ', '-')}.data"
    perf = subprocess.Popen(
        ["perf", "record", "--call-graph", "dwarf,16384", "-F", "1000", "-e", "cpu-clock", "-p", str(m.proc.pid), "-o", str(data)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1)  # perf attaches to every thread first

    def stop():
        perf.send_signal(signal.SIGINT)
        perf.wait(timeout=60)
        report = subprocess.run(
            ["perf", "report", "-i", str(data), "--stdio", "--no-children", "--sort", "symbol", "--percent-limit", "1", "-g", "none"],
            capture_output=True, text=True,
        )  # fmt: skip
        top = [line for line in report.stdout.splitlines() if line.strip() and not line.startswith("#")]
        print(f"perf of {api} ({data}):")
        print("\n".join("  " + " ".join(line.split()).rstrip(" -") for line in top[:30]))

    return stop


def one(m, api, writers, count, first, batch, services, profile=None):
    """One load of `count` new instances through `api`, with muster's CPU per change."""
    stop = profiled(m, profile, api) if profile else None
    before = cpu_seconds(m.proc.pid)
    if api == "rest batch":
        out = rest_batches(m, writers, count, first, batch, services)
    else:
        if api == "cloudmap":
            cmd = [str(CLOUDMAP_BIN), "--service-ids", ",".join(m.services), "--key", "AKID", "--secret", "unused"]
        else:
            cmd = [str(LOAD_BIN), "--services", str(services)]
        cmd += ["--addr", f"127.0.0.1:{m.http_port}", "--writers", str(writers), "--count", str(count), "--first", str(first)]
        out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        if out["errors"]:
            raise SystemExit(f"{api}: {out['errors']} writes failed: {out}")
    out["cpu_us"] = 1e6 * (cpu_seconds(m.proc.pid) - before) / count
    if stop:
        stop()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=100_000, help="instances loaded before measuring")
    parser.add_argument("--count", type=int, default=10_000, help="changes per load")
    parser.add_argument("--writers", type=int, default=16, help="connections per load")
    parser.add_argument("--batch", type=int, default=50, help="changes per REST batch")
    parser.add_argument(
        "--services", type=int, default=100,
        help="the preloaded services the REST loads write into (20 instances each at first): 100 makes them "
        "grow by count/100 per load; instances/20 keeps them at ~20, so only the registry's size differs between sizes",
    )  # fmt: skip
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--data-dir", help="a folder for muster's data_dir (its log), e.g. a tmpfs: /dev/shm")
    parser.add_argument("--profile", action="store_true", help="perf record each API's first load")
    args = parser.parse_args()
    build_load_clients()
    binary, work = muster_and_workdir("muster-change-cost-")
    m = Muster(binary, work / "muster")
    if args.data_dir:
        m.data_dir = Path(tempfile.mkdtemp(prefix="muster-change-cost-data-", dir=args.data_dir))
        m.config.write_text(m.config.read_text().replace(str(work / "muster" / "data"), str(m.data_dir)))
    m.start()
    try:
        began = time.monotonic()
        preload(m, args.instances)
        print(f"{args.instances:,} instances loaded through REST batches in {time.monotonic() - began:.1f} s")
        m.services = service_ids(m)
        apis = ("cloudmap", "rest", "rest batch")
        rows = {api: [] for api in apis}
        first = 10_000_000
        for repeat in range(args.repeat):
            for api in apis:
                profile = work if args.profile and repeat == 0 else None
                rows[api].append(one(m, api, args.writers, args.count, first, args.batch, args.services, profile))
                first += args.count
        print(f"{args.count:,} new instances per load into {args.services} services, {args.writers} writers, REST batches of {args.batch}; median of {args.repeat}")
        print("| API | changes/s | request p50 | request p99 | muster CPU per change (each run) |")
        print("|---|---|---|---|---|")
        for api in apis:
            runs = rows[api]
            cpu = [r["cpu_us"] for r in runs]
            print(
                f"| {api} | {statistics.median(r['per_second'] for r in runs):,.0f} | {statistics.median(r['p50_ms'] for r in runs):.1f} ms "
                f"| {statistics.median(r['p99_ms'] for r in runs):.1f} ms | {statistics.median(cpu):.1f} µs ({', '.join(f'{c:.1f}' for c in cpu)}) |"
            )
    finally:
        m.stop()
        if args.data_dir:
            shutil.rmtree(m.data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
