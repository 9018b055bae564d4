#!/usr/bin/env python3
"""Zone transfers to real secondaries: how fast a change reaches Knot DNS and BIND, and
what an AXFR of a large zone and an IXFR of a one-instance change cost.

Starts its own muster (the release binary, or --muster-bin), with [transfer] allowing
127.0.0.1 and NOTIFY to one knotd and one named secondary (the classes in
tests/interop/peers.py). Then:

1. Propagation: --trials times, registers a fresh address through the REST API and polls
   each secondary (UDP, every 1 ms) until it answers it. Reports change (PUT sent) ->
   secondary answering, p50/p99/max per secondary, and how many of the transfers were
   IXFR (muster_dns_transfers_total).
2. Size: loads --services x --instances instances from a file source, then times a
   dnspython AXFR (time to last message, bytes, messages), and an IXFR after one
   instance changes. Also the time until each secondary serves the big zone.

    .venv/bin/python bench/zone_transfer.py [--trials 200] [--services 10000 --instances 10]
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import dns.message
import dns.query

from common import REPO, percentile  # first: it puts tests/interop on sys.path
from harness import Muster
from peers import BindSecondary, KnotSecondary


def summary(values):
    return {
        "p50_ms": round(percentile(values, 0.5), 2),
        "p99_ms": round(percentile(values, 0.99), 2),
        "max_ms": round(max(values), 2),
        "mean_ms": round(statistics.mean(values), 2),
        "n": len(values),
    }


def transfers(m):
    text = urllib.request.urlopen(m.url("/metrics")).read().decode()
    found = re.findall(r'muster_dns_(transfers|notify)_total\{(?:kind|result)="(\w+)"\} (\d+)', text)
    return {f"{family}.{k}": int(v) for family, k, v in found}


def answers(port, qname, address):
    q = dns.message.make_query(qname, "A")
    try:
        r = dns.query.udp(q, "127.0.0.1", port=port, timeout=0.02)
    except Exception:
        return False
    return any(rd.to_text() == address for rrset in r.answer for rd in rrset)


def propagation(m, secondaries, trials, gap):
    results = {name: [] for name in secondaries}
    before = transfers(m)
    for i in range(trials):
        address = f"10.{200 + i // 65536}.{i // 256 % 256}.{i % 256}"
        started = time.perf_counter()
        m.put_instance("internal", "prop", "i-1", {"ipv4": address})
        pending = dict(secondaries)
        while pending:
            for name, secondary in list(pending.items()):
                if answers(secondary.port, "prop.internal.", address):
                    results[name].append((time.perf_counter() - started) * 1000)
                    del pending[name]
            if time.perf_counter() - started > 10:
                raise SystemExit(f"trial {i}: {sorted(pending)} did not answer {address} in 10 s")
            time.sleep(0.001)
        time.sleep(gap)
    after = transfers(m)
    return {
        "per_secondary": {name: summary(v) for name, v in results.items()},
        "all_ms": {name: [round(x) for x in v] for name, v in results.items()},
        "transfers": {k: after.get(k, 0) - before.get(k, 0) for k in after},
    }


def xfr_cost(m, rdtype, serial=None):
    """Time, size and message count of a transfer as kdig receives it (dnspython parses
    too slowly to time a large zone: it took ~40 ms a message)."""
    qtype = rdtype if serial is None else f"{rdtype}={serial}"
    started = time.perf_counter()
    out = subprocess.run(
        ["kdig", "@127.0.0.1", "-p", str(m.dns_port), "+tcp", "+timeout=60", "internal.", qtype],
        capture_output=True, text=True, check=True,
    ).stdout
    took = time.perf_counter() - started
    size, messages, records = re.search(r"Received (\d+) B \((\d+) messages, (\d+) records\)", out).groups()
    kdig_ms = float(re.search(r"in ([\d.]+) ms", out).group(1))
    return {
        "kdig_ms": kdig_ms,
        "wall_ms": round(took * 1000, 1),
        "messages": int(messages),
        "records": int(records),
        "bytes": int(size),
    }


def write_instances(path, services, instances):
    with open(path, "w") as f:
        for s in range(services):
            for i in range(instances):
                f.write(
                    f'[[instances]]\nnamespace = "internal"\nservice = "svc{s}"\nid = "i-{i}"\n'
                    f'ipv4 = "10.{s // 250 % 250}.{s % 250}.{i + 1}"\nport = 8080\n\n'
                )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--gap", type=float, default=0.15, help="seconds between changes (NOTIFY coalesces 100 ms)")
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--muster-bin", default=str(REPO / "target" / "release" / "muster"))
    parser.add_argument("--out", help="write the results as JSON here too")
    args = parser.parse_args()

    os.environ["MUSTER_BIN"] = args.muster_bin
    work = Path(tempfile.mkdtemp(prefix="muster-xfr-"))
    static = work / "static.toml"
    static.write_text("")
    m = Muster(work / "muster")
    secondaries = {
        "knot": KnotSecondary(work / "knot", m.dns_port),
        "bind": BindSecondary(work / "bind", m.dns_port),
    }
    notify = ", ".join(f'"127.0.0.1:{s.port}"' for s in secondaries.values())
    m.extra_toml = (
        f'[transfer]\nallow = ["127.0.0.1"]\nnotify = [{notify}]\n'
        f'[[sources.file]]\npath = "{static}"\n'
    )
    m.write_config()
    m.start()
    result = {"args": vars(args)}
    try:
        m.put_instance("internal", "prop", "i-1", {"ipv4": "10.199.0.1"})
        for s in secondaries.values():
            s.start()
        for name, s in secondaries.items():
            deadline = time.time() + 30
            while s.serial() != m.soa_serial():
                if time.time() > deadline:
                    raise SystemExit(f"{name} did not load the zone:\n{s.log_tail()}")
                time.sleep(0.05)
        result["propagation"] = propagation(m, secondaries, args.trials, args.gap)
        print(json.dumps(result["propagation"], indent=1))

        write_instances(static, args.services, args.instances)
        total = args.services * args.instances
        started = time.perf_counter()
        probe = f"svc{args.services - 1}.internal."
        while not answers(m.dns_port, probe, f"10.{(args.services - 1) // 250 % 250}.{(args.services - 1) % 250}.1"):
            time.sleep(0.05)
        loaded = time.perf_counter() - started
        serial = m.soa_serial()
        waits = {}
        for name, s in secondaries.items():
            while s.serial() != serial:
                if time.perf_counter() - started > 300:
                    raise SystemExit(f"{name} did not take the big zone:\n{s.log_tail()}")
                time.sleep(0.05)
            waits[name] = round((time.perf_counter() - started) * 1000)
        axfr = xfr_cost(m, "AXFR")
        m.put_instance("internal", "prop", "i-1", {"ipv4": "10.250.0.1", "port": 8080})
        ixfr = xfr_cost(m, "IXFR", serial=serial)
        result["big_zone"] = {
            "instances": total,
            "muster_load_ms": round(loaded * 1000),
            "secondary_serving_ms": waits,
            "axfr": axfr,
            "ixfr_one_instance": ixfr,
        }
        print(json.dumps(result["big_zone"], indent=1))
    finally:
        for s in secondaries.values():
            s.stop()
        m.stop()
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
