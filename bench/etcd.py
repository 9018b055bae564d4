#!/usr/bin/env python3
"""Replicated-registry figures for issue 15, printed: muster replicas on a 3-member etcd
cluster on loopback, against the local log.

1. Durable writes per second with 1 and 32 writers (REST PUTs of new instances over
   keep-alive HTTP/1.1, from bench/load's durability_load), local log vs etcd; with etcd also
   how many writes shared a transaction. Consul's KV, the anchor, does ~3.8k writes/s on
   3 servers.
2. Write -> every replica's DNS answer: a REST PUT on one of 3 replicas (in turn), then the
   other two are asked over UDP until they answer the new address; p50/p99/max from the
   write's response, and from its request.
3. A replica loading 100,000 instances from etcd: start -> /readyz 200 and -> a sample
   instance answered in DNS, and its resident memory (VmRSS, and the peak VmHWM).

    cargo build --release --features etcd
    .venv/bin/python bench/etcd.py              # --instances 100000 --visibility 300

It starts the etcd members (Debian's etcd) and muster (target/release/muster, MUSTER_BIN to
override) itself on free loopback ports, in a temporary directory under target/.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

from common import build_load_clients, durable_writes, muster_and_workdir, percentile  # first: it puts tests/interop on sys.path
from durability import Muster as LocalMuster
from etcd_cluster import EtcdCluster, etcd_toml


class Replica(LocalMuster):
    """A muster on etcd (or, with endpoints None, on its local log)."""

    def __init__(self, binary, workdir, endpoints=None):
        super().__init__(binary, workdir)
        if endpoints is not None:
            text = self.config.read_text() + "\n" + etcd_toml(endpoints, request_timeout="10s")
            self.config.write_text(text)

    def metric_sum(self, name):
        text = self.get("/metrics")[1]
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))

    def memory(self):
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return tuple(int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM"))

    def put(self, path, body):
        c = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=30)
        c.request("PUT", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        c.close()
        return r.status


def throughput(binary, work, endpoints, args):
    print(f"\ndurable REST PUTs of new instances (100 services, one keep-alive connection per writer)")
    print(f"{'store':>6} {'writers':>8} {'writes':>8} {'per s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'per txn':>8}")
    for store, eps in (("log", None), ("etcd", endpoints)):
        m = Replica(binary, work / f"throughput-{store}", eps)
        m.start()
        durable_writes(m.http_port, 4, 500, first=10_000_000)  # warm-up: connections, services created
        first = 0
        for writers, count in ((1, args.single), (32, args.concurrent)):
            txns = m.metric_sum('muster_etcd_request_seconds_count{operation="txn"}')
            r = durable_writes(m.http_port, writers, count, first=first)
            txns = m.metric_sum('muster_etcd_request_seconds_count{operation="txn"}') - txns
            first += count
            per_txn = f"{r['acknowledged'] / txns:.1f}" if txns else "-"
            print(f"{store:>6} {writers:>8} {r['acknowledged']:>8} {r['per_second']:>8.0f} {r['p50_ms']:>8.2f} "
                  f"{r['p90_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['max_ms']:>8.2f} {per_txn:>8}")
        m.stop()


def answers(m, name, address):
    q = dns.message.make_query(name, "A")
    r = dns.query.udp(q, "127.0.0.1", port=m.dns_port, timeout=1)
    return r.rcode() == dns.rcode.NOERROR and any(rd.to_text() == address for rr in r.answer for rd in rr)


def visibility(binary, work, endpoints, writes):
    replicas = [Replica(binary, work / f"visibility-{i}", endpoints) for i in range(3)]
    for m in replicas:
        m.start()
    from_response, from_request = [], []
    for n in range(writes):
        writer = replicas[n % 3]
        others = [m for m in replicas if m is not writer]
        address = f"10.200.{n // 250}.{n % 250 + 1}"
        sent = time.monotonic()
        status = writer.put(f"/v1/namespaces/internal/services/vis/instances/v{n}", {"ipv4": address, "port": 80})
        answered = time.monotonic()
        if status != 200:
            sys.exit(f"PUT answered {status}")
        if not answers(writer, f"v{n}.vis.internal.", address):
            sys.exit("the writing replica does not answer its own write")
        for m in others:
            while not answers(m, f"v{n}.vis.internal.", address):
                if time.monotonic() - answered > 10:
                    sys.exit(f"replica {m.http_port} did not show write {n} within 10 s")
            seen = time.monotonic()
            from_response.append(seen - answered)
            from_request.append(seen - sent)
    for m in replicas:
        m.stop()
    q = lambda xs, p: percentile(xs, p) * 1000  # noqa: E731
    print(f"\nwrite on one of 3 replicas -> another replica answers it in DNS ({writes} writes, {len(from_response)} observations)")
    print(f"  from the write's response: p50 {q(from_response, .5):.2f} ms, p99 {q(from_response, .99):.2f} ms, max {max(from_response) * 1000:.2f} ms")
    print(f"  from the write's request:  p50 {q(from_request, .5):.2f} ms, p99 {q(from_request, .99):.2f} ms, max {max(from_request) * 1000:.2f} ms")


def loading(binary, work, endpoints, n):
    writer = Replica(binary, work / "load-writer", endpoints)
    writer.start()
    r = durable_writes(writer.http_port, 32, n, keys=n, services=1000, first=0)
    print(f"\n{n} instances in 1000 services registered through one replica with 32 writers in {r['seconds']:.1f} s ({r['per_second']:.0f}/s)")
    writer.stop()
    key = n - 1
    sample = (f"i-{key}.s{key % 1000}.internal", f"10.{(key >> 16) & 255}.{(key >> 8) & 255}.{key & 255}")
    rows = []
    for attempt in range(3):
        m = Replica(binary, work / f"load-reader{attempt}", endpoints)
        ready, answer = m.start(sample)
        time.sleep(0.5)
        rss, peak = m.memory()
        rows.append((ready, answer, rss, peak, m.metric_sum("muster_etcd_load_seconds")))
        m.stop()
    mid = sorted(rows)[1]
    print(f"a new replica loading them (median of 3): start -> /readyz 200 {mid[0]:.2f} s, -> i-{key} answers in DNS {mid[1]:.2f} s "
          f"(reading the prefix: {mid[4]:.2f} s); memory VmRSS {mid[2]:.0f} MiB, peak VmHWM {mid[3]:.0f} MiB")
    for ready, answer, rss, peak, read in rows:
        print(f"  ready {ready:.2f} s, answer {answer:.2f} s, read {read:.2f} s, RSS {rss:.0f} MiB, peak {peak:.0f} MiB")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--instances", type=int, default=100_000)
    parser.add_argument("--single", type=int, default=2_000, help="writes with 1 writer")
    parser.add_argument("--concurrent", type=int, default=20_000, help="writes with 32 writers")
    parser.add_argument("--visibility", type=int, default=300, help="writes for the visibility figure")
    parser.add_argument("--skip", default="", help="comma list of parts to skip: throughput,visibility,load")
    args = parser.parse_args()
    build_load_clients()
    binary, work = muster_and_workdir("muster-etcd-", holds="work")
    skip = set(args.skip.split(","))
    for part, run in (
        ("throughput", lambda eps: throughput(binary, work, eps, args)),
        ("visibility", lambda eps: visibility(binary, work, eps, args.visibility)),
        ("load", lambda eps: loading(binary, work, eps, args.instances)),
    ):
        if part in skip:
            continue
        cluster = EtcdCluster(work / f"etcd-{part}").start()  # a fresh cluster per part
        try:
            run(cluster.endpoints)
        finally:
            cluster.stop()
    subprocess.run(["rm", "-rf", str(work)], check=True)


if __name__ == "__main__":
    main()
