#!/usr/bin/env python3
"""DNS UPDATE (RFC 2136) throughput: how many instances per second signed UPDATEs register.

Starts its own muster (the release binary, or MUSTER_BIN) with one [[update.keys]] key,
then registers --count new instances (A at i<N>.<svc>.internal, spread over 100 services)
with dnspython's dns.update signed by dns.tsig (HMAC-SHA256), in three shapes:

- one:     one instance per UPDATE, one client, over UDP (answer waits for the fsync);
- clients: one instance per UPDATE, --clients clients at once over UDP (UPDATEs are
           applied one at a time, so this shows what queueing behind that costs);
- batch:   --batch instances per UPDATE over TCP (one Change::Batch, one fsync each).

Each UPDATE is answered NOERROR only once durable and served; every one is checked.
Printed per shape: updates (instances) per second, messages per second, p50/p99 latency
per message, and muster's CPU per instance (utime+stime, /proc/PID/stat).

    cargo build --release
    .venv/bin/python bench/dns_update.py        # --count 2000 --clients 8 --batch 100
"""

import argparse
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update

from common import cpu_seconds  # first: it puts tests/interop on sys.path
from harness import Muster

SECRET = "c2VjcmV0IHNlY3JldCBzZWNyZXQgc2VjcmV0IQ=="
KEYRING = dns.tsigkeyring.from_text({"bench": SECRET})
CONFIG = f"""
[[transfer.tsig_keys]]
name = "bench"
secret = "{SECRET}"
[update]
max_records = 4096
[[update.keys]]
name = "bench"
"""


def message(shape, names):
    u = dns.update.UpdateMessage("internal", keyring=KEYRING, keyalgorithm="hmac-sha256")
    for name, address in names:
        u.add(name, 5, "A", address)
    return u


def send(m, u, tcp):
    started = time.perf_counter()
    if tcp:
        r = dns.query.tcp(u, "127.0.0.1", port=m.dns_port, timeout=30)
    else:
        r = dns.query.udp(u, "127.0.0.1", port=m.dns_port, timeout=30)
    if r.rcode() != dns.rcode.NOERROR:
        raise SystemExit(f"UPDATE answered {dns.rcode.to_text(r.rcode())}")
    return (time.perf_counter() - started) * 1000


def names(shape, count):
    return [
        (f"i{n}.{shape}-{n % 100}", f"10.{n // 65536 % 256}.{n // 256 % 256}.{n % 256}")
        for n in range(count)
    ]


def run(m, shape, count, clients, batch):
    todo = names(shape, count)
    size = batch if shape == "batch" else 1
    messages = [message(shape, todo[i:i + size]) for i in range(0, count, size)]
    tcp = shape == "batch"
    workers = clients if shape == "clients" else 1
    cpu = cpu_seconds(m.proc.pid)
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        latencies = list(pool.map(lambda u: send(m, u, tcp), messages))
    took = time.perf_counter() - started
    cpu = cpu_seconds(m.proc.pid) - cpu
    latencies.sort()
    return {
        "shape": shape,
        "instances": count,
        "messages": len(messages),
        "clients": workers,
        "updates_per_s": round(count / took),
        "messages_per_s": round(len(messages) / took),
        "p50_ms": round(latencies[len(latencies) // 2], 2),
        "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 2),
        "cpu_us_per_instance": round(cpu / count * 1e6, 1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        m = Muster(Path(workdir), CONFIG)
        m.start()
        try:
            for shape in ("one", "clients", "batch"):
                print(json.dumps(run(m, shape, args.count, args.clients, args.batch)), flush=True)
        finally:
            m.stop()


if __name__ == "__main__":
    main()
