#!/usr/bin/env python3
"""Durability figures for issue 3, printed: what a durable write costs and how long a
restart takes.

1. Durable registrations per second (each answered only after its fdatasync) with 1 and
   32 concurrent writers: REST PUTs over keep-alive HTTP/1.1 from bench/load's
   durability_load (std-only Rust, built here with cargo), with p50/p90/p99 latency and,
   from /metrics, how many records shared each fsync (group commit).
2. Recovery of 100,000 instances (1,000 services x 100, registered through the REST API
   with 32 writers): the time from starting the process to /readyz 200 and to a correct
   DNS answer for a sample instance, with the data only in the log, and again after a
   compaction (enough replacements to pass the 64 MiB segment limit, so a snapshot
   replaces the log); the data_dir's size each time.

    cargo build --release
    .venv/bin/python bench/durability.py            # --instances 100000 --restarts 3

It starts target/release/muster itself (MUSTER_BIN to override) on free loopback ports
with a fresh data_dir, and stops it. Figures depend on the disk's fsync latency and on
what else runs on the machine; the header prints both the kernel and the load average.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

from common import build_load_clients, durable_writes, muster_and_workdir

SEGMENT_LIMIT = 64 << 20  # src/store/wal.rs
SERVICES = 1000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Muster:
    def __init__(self, binary: Path, workdir: Path):
        self.binary = binary
        self.dir = workdir
        self.data_dir = workdir / "data"
        workdir.mkdir(parents=True)
        self.dns_port, self.http_port = free_port(), free_port()
        self.config = workdir / "muster.toml"
        self.config.write_text(
            f'data_dir = "{self.data_dir}"\n\n[dns]\nlisten = ["127.0.0.1:{self.dns_port}"]\n\n'
            f'[http]\nlisten = "127.0.0.1:{self.http_port}"\n\n'
            # Large single services are what some runs measure.
            '[limits]\ninstances_per_service = 1000000\n\n[[namespaces]]\nname = "internal"\n'
            # This measures the store: the per-principal write limit (all these writes
            # come from one address) would otherwise cap the rate at [auth] write_rate.
            "\n[auth]\nwrite_rate = 0\n"
        )
        self.log = workdir / "muster.log"
        self.proc = None

    def start(self, sample=None):
        """Starts muster; returns (seconds to /readyz 200, seconds to a right DNS answer)."""
        started = time.monotonic()
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), "serve", "--config", str(self.config)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, "NO_COLOR": "1"},
            )
        while self.get("/readyz")[0] != 200:
            if self.proc.poll() is not None:
                sys.exit(f"muster exited with {self.proc.returncode}; see {self.log}")
            if time.monotonic() - started > 300:
                sys.exit("muster was not ready within 300 s")
            time.sleep(0.002)
        ready = time.monotonic() - started
        if sample is None:
            return ready, None
        name, address = sample
        while True:
            q = dns.message.make_query(name, "A")
            r = dns.query.udp(q, "127.0.0.1", port=self.dns_port, timeout=2)
            if r.rcode() == dns.rcode.NOERROR and any(rd.to_text() == address for rr in r.answer for rd in rr):
                return ready, time.monotonic() - started
            if time.monotonic() - started > 300:
                sys.exit(f"{name} did not answer {address}: {r}")
            time.sleep(0.002)

    def get(self, path):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=60)
            c.request("GET", path)
            r = c.getresponse()
            body = r.read().decode()
            c.close()
            return r.status, body
        except OSError:
            return None, None

    def stop(self):
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        if code != 0:
            sys.exit(f"muster exited with {code} on SIGTERM; see {self.log}")
        return time.monotonic() - started

    def metric(self, name):
        text = self.get("/metrics")[1]
        found = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.M)
        return float(found.group(1)) if found else 0.0

    def replayed(self):
        return int(re.findall(r"muster is serving .*replayed=(\d+)", self.log.read_text())[-1])

    def files(self):
        return {p.name: p.stat().st_size for p in sorted(self.data_dir.iterdir()) if p.is_file()}


def load(m, writers, count, **flags):
    """durable_writes against `m`, with how many records shared each fsync (group commit)."""
    before = (m.metric("muster_store_records_total"), m.metric("muster_store_fsync_seconds_count"),
              m.metric("muster_store_fsync_seconds_sum"))
    out = durable_writes(m.http_port, writers, count, **flags)
    after = (m.metric("muster_store_records_total"), m.metric("muster_store_fsync_seconds_count"),
             m.metric("muster_store_fsync_seconds_sum"))
    records, fsyncs, fsync_seconds = (a - b for a, b in zip(after, before))
    out["records_per_fsync"] = records / fsyncs if fsyncs else 0.0
    out["fsync_mean_ms"] = 1000 * fsync_seconds / fsyncs if fsyncs else 0.0
    return out


def size_text(files):
    total = sum(files.values())
    parts = ", ".join(f"{name} {size / 2**20:.1f} MiB" for name, size in files.items() if size > 8 and name != "LOCK")
    return f"{total / 2**20:.1f} MiB ({parts})"


def address(key):
    return f"10.{(key >> 16) & 255}.{(key >> 8) & 255}.{key & 255}"


def measure_restarts(m, restarts, key, port):
    """Median (ready, answer, stop) seconds over `restarts`; checks instance `key` came back
    with its last acknowledged port."""
    sample = (f"i-{key}.s{key % SERVICES}.internal", address(key))
    rows = []
    for _ in range(restarts):
        stop = m.stop()
        ready, answer = m.start(sample)
        rows.append((ready, answer, stop))
        service = json.loads(m.get(f"/v1/namespaces/internal/services/s{key % SERVICES}")[1])
        found = [i["port"] for i in service["instances"] if i["id"] == f"i-{key}"]
        if found != [port]:
            sys.exit(f"i-{key} came back with port {found}, acknowledged {port}")
    ready = sorted(r[0] for r in rows)
    answer = sorted(r[1] for r in rows)
    stop = sorted(r[2] for r in rows)
    return ready[len(ready) // 2], answer[len(answer) // 2], stop[len(stop) // 2], rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--single", type=int, default=3_000, help="writes with 1 writer")
    parser.add_argument("--concurrent", type=int, default=30_000, help="writes with 32 writers")
    parser.add_argument("--restarts", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the data_dir")
    args = parser.parse_args()
    build_load_clients()
    binary, work = muster_and_workdir("muster-durability-")

    # 1. Durable registrations per second.
    m = Muster(binary, work / "throughput")
    m.start()
    load(m, 4, 500, first=10_000_000)  # warm-up: connections, services created
    print("\ndurable REST PUTs (new instances, 100 services, one keep-alive connection per writer)")
    print(f"{'writers':>8} {'writes':>8} {'per s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'rec/fsync':>10} {'fsync ms':>9}")
    first = 0
    for writers, count in ((1, args.single), (32, args.concurrent)):
        r = load(m, writers, count, first=first)
        first += count
        print(f"{writers:>8} {r['acknowledged']:>8} {r['per_second']:>8.0f} {r['p50_ms']:>8.2f} {r['p90_ms']:>8.2f} "
              f"{r['p99_ms']:>8.2f} {r['max_ms']:>8.2f} {r['records_per_fsync']:>10.1f} {r['fsync_mean_ms']:>9.2f}")
    m.stop()

    # 2. Recovery of N instances: the log only, then after a compaction.
    n = args.instances
    m = Muster(binary, work / "recovery")
    m.start()
    r = load(m, 32, n, keys=n, services=SERVICES)
    print(f"\n{n} instances in {SERVICES} services registered with 32 writers in {r['seconds']:.1f} s ({r['per_second']:.0f}/s)")
    ready, answer, stop, rows = measure_restarts(m, args.restarts, n - 1, port=1)
    print(f"log only, {m.replayed()} records replayed; data_dir {size_text(m.files())}")
    print(f"  start -> /readyz 200: median {ready:.3f} s; -> i-{n - 1} answers in DNS: {answer:.3f} s; "
          f"SIGTERM -> exit {stop:.3f} s  (each: {', '.join(f'{a:.3f}' for a, _, _ in rows)})")

    wal = [size for name, size in m.files().items() if name.startswith("wal-")]
    per_record = max(wal) / n
    needed = math.ceil((SEGMENT_LIMIT - 8) / per_record) + 1000
    r = load(m, 32, needed, keys=n, services=SERVICES, **{"pass": 1})
    print(f"\n{needed} replacements ({per_record:.0f} bytes a record) to pass the {SEGMENT_LIMIT >> 20} MiB segment limit: "
          f"{r['seconds']:.1f} s ({r['per_second']:.0f}/s)")
    deadline = time.monotonic() + 120
    while "log compacted" not in m.log.read_text():
        if time.monotonic() > deadline:
            sys.exit(f"no compaction within 120 s: {m.files()}")
        time.sleep(0.1)
    last_key = (needed - 1) % n
    ready, answer, stop, rows = measure_restarts(m, args.restarts, last_key, port=2 + (needed - 1) // n)
    print(f"after compaction, {m.replayed()} records replayed; data_dir {size_text(m.files())}")
    print(f"  start -> /readyz 200: median {ready:.3f} s; -> i-{last_key} answers in DNS: {answer:.3f} s; "
          f"SIGTERM -> exit {stop:.3f} s  (each: {', '.join(f'{a:.3f}' for a, _, _ in rows)})")
    m.stop()
    if not args.keep:
        subprocess.run(["rm", "-rf", str(work)], check=True)


if __name__ == "__main__":
    main()
