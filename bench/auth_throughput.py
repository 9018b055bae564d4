#!/usr/bin/env python3
"""Durable write throughput with authentication on and off, side by side (issue 14).

Two musters run at once on free loopback ports, each with its own data_dir:

- off: no credentials, the APIs open (signatures are ignored, no token is needed);
- on:  an access key and a token: every Cloud Map request is SigV4-verified and
       authorized, every REST request's bearer token looked up and its scope checked.

Both have the write limit off (`write_rate = 0`: this measures verification, not the
limit) and write the audit log, as shipped. The loads alternate between them:

- Cloud Map RegisterInstance of new instances, signed by `aws-sigv4` in both modes
  (examples/cloudmap_load.rs, so the client's work is the same);
- REST PUT of new instances (bench/load's durability_load), with `Authorization: Bearer`
  to the one that checks it;

spread over 100 services each (a service's records are re-packed per batch, so one
growing service would make every write slower as the runs go on);

with 1 and 32 writers. Each write is answered after its fdatasync. Printed per row:
writes/s, p50 and p99 latency, and muster's CPU per write (utime+stime of its process
over the run, /proc/PID/stat), which is steadier than the rate on a shared machine.

    cargo build --release && cargo build --release --example cloudmap_load
    .venv/bin/python bench/auth_throughput.py        # --single 2000 --concurrent 20000 --repeat 3
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import statistics
import subprocess
import sys

import boto3
import botocore.config

from common import LOAD_BIN, REPO, build_load_clients, cpu_seconds, muster_and_workdir
from durability import Muster

CLOUDMAP_BIN = REPO / "target" / "release" / "examples" / "cloudmap_load"
KEY, SECRET, TOKEN = "AKIDBENCH", "bench/secret+key", "mst_bench-token-for-auth-throughput"
COMMAND = "cargo build --release && cargo build --release --example cloudmap_load && .venv/bin/python bench/auth_throughput.py"
CREDENTIALS = f"""
[[auth.tokens]]
name = "bench"
sha256 = "{hashlib.sha256(TOKEN.encode()).hexdigest()}"
scopes = ["admin"]

[[auth.access_keys]]
id = "{KEY}"
secret = "{SECRET}"
[[auth.access_keys.allow]]
actions = ["servicediscovery:*"]
"""


SERVICES = 100


def service_ids(m):
    """SERVICES new services in `internal` (writes are spread over them, as the REST
    load spreads its own, so no one service grows large)."""
    sd = boto3.client(
        "servicediscovery",
        endpoint_url=f"http://127.0.0.1:{m.http_port}",
        region_name="us-east-1",
        aws_access_key_id=KEY,
        aws_secret_access_key=SECRET,
        config=botocore.config.Config(inject_host_prefix=False),
    )
    namespace = next(n["Id"] for n in sd.list_namespaces()["Namespaces"] if n["Name"] == "internal")
    dns = {"DnsRecords": [{"Type": "A", "TTL": 5}]}
    return [sd.create_service(Name=f"cm{i}", NamespaceId=namespace, DnsConfig=dns)["Service"]["Id"] for i in range(SERVICES)]


def run(m, api, writers, count, first, checked):
    """One load against `m`; its JSON line plus muster's CPU µs per write."""
    if api == "cloudmap":
        cmd = [str(CLOUDMAP_BIN), "--service-ids", ",".join(m.services), "--key", KEY, "--secret", SECRET]
    else:
        cmd = [str(LOAD_BIN), "--services", str(SERVICES)]
        if checked:
            cmd += ["--token", TOKEN]
    cmd += ["--addr", f"127.0.0.1:{m.http_port}", "--writers", str(writers), "--count", str(count), "--first", str(first)]
    before = cpu_seconds(m.proc.pid)
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    out["cpu_us"] = 1e6 * (cpu_seconds(m.proc.pid) - before) / max(out["acknowledged"], 1)
    if out["errors"]:
        sys.exit(f"{api} {writers} writers: {out['errors']} writes failed: {out}")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--single", type=int, default=2_000, help="writes per run with 1 writer")
    parser.add_argument("--concurrent", type=int, default=20_000, help="writes per run with 32 writers")
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; medians are printed")
    parser.add_argument("--keep", action="store_true", help="keep the data_dirs")
    args = parser.parse_args()
    if not CLOUDMAP_BIN.exists():
        sys.exit(f"{CLOUDMAP_BIN} is missing: cargo build --release --example cloudmap_load")
    build_load_clients()
    binary, work = muster_and_workdir("muster-auth-")
    servers = {}
    for mode in ("off", "on"):
        m = Muster(binary, work / mode)
        if mode == "on":
            m.config.write_text(m.config.read_text() + CREDENTIALS)
        m.start()
        m.services = service_ids(m)
        servers[mode] = m
    results = {}
    first = 0
    try:
        for repeat in range(args.repeat):
            for api in ("cloudmap", "rest"):
                for writers, count in ((1, args.single), (32, args.concurrent)):
                    for mode in ("off", "on") if repeat % 2 == 0 else ("on", "off"):
                        out = run(servers[mode], api, writers, count, first, mode == "on")
                        first += count
                        results.setdefault((api, writers, mode), []).append(out)
                        print(f"  run {repeat + 1}: {api:8} {writers:2} writers, auth {mode:3}: "
                              f"{out['per_second']:6.0f}/s, p50 {out['p50_ms']:.2f} ms, p99 {out['p99_ms']:.2f} ms, "
                              f"{out['cpu_us']:.0f} µs CPU/write", flush=True)
    finally:
        for m in servers.values():
            m.stop()
        if not args.keep:
            shutil.rmtree(work)
    median = lambda rows, key: statistics.median(r[key] for r in rows)  # noqa: E731
    print()
    print(f"Medians of {args.repeat} runs ({args.single} writes with 1 writer, {args.concurrent} with 32):")
    print()
    print("| API | writers | auth off | auth on | on/off | CPU/write off | CPU/write on | p50 off / on | p99 off / on |")
    print("|---|---|---|---|---|---|---|---|---|")
    for api, label in (("cloudmap", "Cloud Map RegisterInstance (SigV4)"), ("rest", "REST PUT (bearer token)")):
        for writers in (1, 32):
            off, on = results[(api, writers, "off")], results[(api, writers, "on")]
            rate_off, rate_on = median(off, "per_second"), median(on, "per_second")
            print(f"| {label} | {writers} | {rate_off:,.0f}/s | {rate_on:,.0f}/s | {rate_on / rate_off:.2f} | "
                  f"{median(off, 'cpu_us'):.0f} µs | {median(on, 'cpu_us'):.0f} µs | "
                  f"{median(off, 'p50_ms'):.2f} / {median(on, 'p50_ms'):.2f} ms | "
                  f"{median(off, 'p99_ms'):.2f} / {median(on, 'p99_ms'):.2f} ms |")
    print()
    print(f"reproduce: {COMMAND}")


if __name__ == "__main__":
    main()
