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
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import threading
import time

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


def rest_batches(m, writers, count, first, batch):
    """`count` new instances in batches of `batch` from `writers` threads; latencies of
    the requests."""
    url = f"http://127.0.0.1:{m.http_port}/v1/namespaces/internal/batch"
    starts = list(range(first, first + count, batch))
    latencies, lock = [], threading.Lock()

    def writer(k):
        with requests.Session() as session:
            for start in starts[k::writers]:
                body = batch_body(start, min(batch, first + count - start), "b", 100)
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


def one(m, api, writers, count, first, batch):
    """One load of `count` new instances through `api`, with muster's CPU per change."""
    before = cpu_seconds(m.proc.pid)
    if api == "rest batch":
        out = rest_batches(m, writers, count, first, batch)
    else:
        if api == "cloudmap":
            cmd = [str(CLOUDMAP_BIN), "--service-ids", ",".join(m.services), "--key", "AKID", "--secret", "unused"]
        else:
            cmd = [str(LOAD_BIN), "--services", "100"]
        cmd += ["--addr", f"127.0.0.1:{m.http_port}", "--writers", str(writers), "--count", str(count), "--first", str(first)]
        out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        if out["errors"]:
            raise SystemExit(f"{api}: {out['errors']} writes failed: {out}")
    out["cpu_us"] = 1e6 * (cpu_seconds(m.proc.pid) - before) / count
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=100_000, help="instances loaded before measuring")
    parser.add_argument("--count", type=int, default=10_000, help="changes per load")
    parser.add_argument("--writers", type=int, default=16, help="connections per load")
    parser.add_argument("--batch", type=int, default=50, help="changes per REST batch")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    build_load_clients()
    binary, work = muster_and_workdir("muster-change-cost-")
    m = Muster(binary, work / "muster")
    m.start()
    try:
        began = time.monotonic()
        preload(m, args.instances)
        print(f"{args.instances:,} instances loaded through REST batches in {time.monotonic() - began:.1f} s")
        m.services = service_ids(m)
        apis = ("cloudmap", "rest", "rest batch")
        rows = {api: [] for api in apis}
        first = 10_000_000
        for _ in range(args.repeat):
            for api in apis:
                rows[api].append(one(m, api, args.writers, args.count, first, args.batch))
                first += args.count
        print(f"{args.count:,} new instances per load, {args.writers} writers, REST batches of {args.batch}; median of {args.repeat}")
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


if __name__ == "__main__":
    main()
