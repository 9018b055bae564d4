#!/usr/bin/env python3
"""AXFR of a large namespace from muster, Knot DNS and NSD, side by side on the same data.

    .venv/bin/python bench/dns/axfr.py [--services 10000 --instances 10] [--repeat 5]

Starts the three servers at once on core 0 (taskset), each loading S x K instances (muster
from a file source with `[transfer] allow`, Knot and NSD from the zone file of
bench/dns/namespace.py with transfers allowed to 127.0.0.1), checks that each one's AXFR
holds the same records (SOA aside: its serial differs), then transfers the zone with kdig
on core 1, the servers taken in turn within each repeat (interleaved, so a noisy moment
hits all of them). Reports per server the medians of kdig's transfer time, the server's
CPU time per AXFR (/proc, its whole process tree), bytes and messages, and the ratios
muster/Knot and muster/NSD.

Then a slow secondary, twice: a client that asks for the AXFR and reads 4 KiB every
10 ms, for --slow-seconds, while the server's resident memory is sampled; it reports the
growth of each (peak during minus before). A server that kept the whole transfer in
memory for a slow reader would grow by about the zone's size each time.

Needs `knot`, `nsd` and `knot-dnsutils` (kdig): bench/dns/run installs them, or
`apt-get install knot nsd knot-dnsutils`.
"""

import argparse
import json
import os
import re
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import namespace  # noqa: E402
from servers import Knot, Muster, Nsd, ServerError  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SERVER_CORE = 0
CLIENT_CORE = 1


def kdig_axfr(port, capture=False):
    """One AXFR with kdig on the client core: kdig's own time, bytes, messages, records,
    and the records' text when `capture`."""
    out = subprocess.run(
        ["taskset", "-c", str(CLIENT_CORE), "kdig", "@127.0.0.1", "-p", str(port), "+tcp",
         "+timeout=60", "+nocomments" if capture else "+noall", "+stats", f"{namespace.NAMESPACE}.", "AXFR"],
        capture_output=True, text=True, check=True,
    ).stdout
    if capture:
        records = [line for line in out.splitlines() if line and not line.startswith(";")]
        return records
    found = re.search(r"Received (\d+) B \((\d+) messages, (\d+) records\)", out)
    took = re.search(r"in ([\d.]+) ms", out)
    if not found or not took:
        raise ServerError(f"kdig gave no transfer summary:\n{out[-2000:]}")
    size, messages, records = map(int, found.groups())
    return {"kdig_ms": float(took.group(1)), "bytes": size, "messages": messages, "records": records}


def normalized(records):
    """The zone as a sorted list of (owner, TTL, type, data), SOA left out."""
    rows = []
    for line in records:
        owner, ttl, _class, rtype, data = line.split(None, 4)
        if rtype != "SOA":
            rows.append((owner.lower(), int(ttl), rtype, data.lower()))
    return sorted(rows)


def slow_reader_growth(server, seconds):
    """Resident memory growth of `server` while one client reads its AXFR slowly."""
    before = server.memory_kib()["rss_kib"]
    query = bytearray(os.urandom(2))
    query += b"\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"
    for label in namespace.NAMESPACE.split("."):
        query += bytes([len(label)]) + label.encode()
    query += b"\x00\x00\xfc\x00\x01"
    peak, received = before, 0
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(struct.pack("!H", len(query)) + query)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += len(chunk)
            peak = max(peak, server.memory_kib()["rss_kib"])
            time.sleep(0.01)
    return {"rss_before_kib": before, "rss_peak_kib": peak, "growth_kib": peak - before, "read_bytes": received}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5, help="AXFRs per server, interleaved (default 5)")
    parser.add_argument("--servers", default="muster,knot,nsd")
    parser.add_argument("--slow-seconds", type=float, default=5.0, help="how long the slow reader reads (0: no slow reader)")
    parser.add_argument("--muster-bin", default=os.path.join(ROOT, "target/release/muster"))
    parser.add_argument("--out", help="also write the results as JSON here")
    args = parser.parse_args()
    names = args.servers.split(",")
    if "muster" not in names:
        sys.exit("--servers must include muster: the ratios are muster's")

    work = tempfile.mkdtemp(prefix="muster-axfr-")
    zone_path = os.path.join(work, "zone")
    with open(zone_path, "w") as f:
        f.write(namespace.zone_file(args.services, args.instances, serial=1))
    last = namespace.service_name(args.services - 1)
    probe = (f"{last}.{namespace.NAMESPACE}.", "A")
    max_answers = 0 if args.instances > 8 else 8
    make = {
        "muster": lambda: Muster(
            work, SERVER_CORE, args.muster_bin, namespace.muster_instances(args.services, args.instances),
            max_answers, extra_toml='[transfer]\nallow = ["127.0.0.1"]\n',
        ),
        "knot": lambda: Knot(work, SERVER_CORE, zone_path, transfer=True),
        "nsd": lambda: Nsd(work, SERVER_CORE, zone_path, transfer=True),
    }
    servers = {}
    try:
        for name in names:
            servers[name] = make[name]().start(probe)
            print(f"{name}: loaded {args.services * args.instances:,} instances in {servers[name].load_seconds:.2f} s", flush=True)
        reference = normalized(kdig_axfr(servers["muster"].port, capture=True))
        for name in names[1:]:
            theirs = normalized(kdig_axfr(servers[name].port, capture=True))
            if theirs != reference:
                missing = sorted(set(reference) - set(theirs))[:5]
                extra = sorted(set(theirs) - set(reference))[:5]
                raise ServerError(f"{name}'s AXFR differs from muster's: muster only {missing}, {name} only {extra}")
        print(f"every AXFR holds the same {len(reference):,} records (SOA aside)", flush=True)

        runs = {name: [] for name in names}
        for _ in range(args.repeat):
            for name, server in servers.items():
                cpu = server.cpu_seconds()
                result = kdig_axfr(server.port)
                result["server_cpu_ms"] = (server.cpu_seconds() - cpu) * 1000
                runs[name].append(result)
        summary = {}
        for name, results in runs.items():
            summary[name] = {
                key: statistics.median(r[key] for r in results)
                for key in ("kdig_ms", "server_cpu_ms", "bytes", "messages", "records")
            }
            summary[name]["each_kdig_ms"] = [r["kdig_ms"] for r in results]
            summary[name]["each_server_cpu_ms"] = [round(r["server_cpu_ms"]) for r in results]
        if args.slow_seconds > 0:
            for name, server in servers.items():
                # Twice: the first can fault in memory the allocator had not used yet.
                summary[name]["slow_reader"] = [slow_reader_growth(server, args.slow_seconds) for _ in range(2)]
    finally:
        for server in servers.values():
            server.stop()

    print(f"\nAXFR of {args.services:,} x {args.instances} instances, medians of {args.repeat} (interleaved); "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'server':8} {'kdig ms':>9} {'server CPU ms':>14} {'bytes':>12} {'messages':>9} {'slow readers: RSS growth':>26}")
    for name, s in summary.items():
        slow = s.get("slow_reader")
        growth = ", ".join(f"{run['growth_kib'] / 1024:.1f}" for run in slow) + " MiB" if slow else "-"
        print(f"{name:8} {s['kdig_ms']:9.1f} {s['server_cpu_ms']:14.1f} {s['bytes']:12,.0f} {s['messages']:9.0f} {growth:>26}")
    for name in names[1:]:
        m, o = summary["muster"], summary[name]
        print(f"muster/{name}: kdig time {m['kdig_ms'] / o['kdig_ms']:.2f}, server CPU {m['server_cpu_ms'] / max(o['server_cpu_ms'], 1e-9):.2f}, "
              f"bytes {m['bytes'] / o['bytes']:.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"args": vars(args), "summary": summary}, f, indent=1)


if __name__ == "__main__":
    main()
