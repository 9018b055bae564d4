"""muster at scale (issue 17, goal 3): memory, load time, CPU per query, the cost of one
change and a zone transfer, at each size given, with Knot DNS's memory on the same zone.

    .venv/bin/python bench/dns/scale.py                                  # 10,000 x 10
    .venv/bin/python bench/dns/scale.py --size 100000x10 --size 1000x1000 # a million, twice

Each size is S services x K instances (`SxK`). The instances are loaded through the file
source (one JSON file, muster's `[[sources.file]]`): that is how a million instances
reach muster at start in one sync, where the REST API would take one durable write each
(minutes at 1M). For each size, muster alone on core 0:

- load: start → `/readyz` 200 and the last service answering (servers.Server.start);
- memory: VmRSS and VmHWM (the peak, parsing included) right after the load, and
  VmRSS again after the dnsperf run (the allocator returns freed pages after a delay,
  so this is what the process keeps);
- CPU per query: dnsperf on core 1 at saturation (bench/dns/load.py), muster with its
  default `max_answers` = 8, as shipped (with 1,000 instances a service, all of them
  would not fit a UDP answer); printed as a ratio to the same run at the baseline size
  (1,000 x 4 unless --baseline says otherwise), measured in this invocation;
- one change: --changes REST PUTs, one after the other on one keep-alive connection,
  each giving the API instance `scale-probe` of the middle service a new address (a
  durable write answered once it is in DNS): muster's CPU per change (less its idle
  CPU, measured for 5 s before) and the round trip's p50/p99. The service has K file instances, so this is what rebuilding one
  service of K instances costs, next to the whole namespace;
- AXFR: kdig's transfer of the zone over TCP (time, messages, records);
- Knot DNS 3 (one UDP worker) loading the same records from a zone file: its load time
  and VmRSS, and muster's RSS as a ratio to it; and Knot's CPU per query on the same
  query file, as a ratio to Knot's own at the baseline size (what a server whose lookup
  is a tree of its own pays for cache misses at that size: the yardstick for muster's);
- with --profile, one more dnsperf run of muster at each size under `perf record`
  (bench/dns/profiling.py), its top entries printed.

Data (JSON, zone file, query file) goes to a folder under /tmp, deleted at the end
unless --keep. Needs knotd, kdig and dnsperf (`bench/dns/run` installs them); the
release binary must be built (`cargo test --release --no-run` builds it).
"""

import argparse
import http.client
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import load
import namespace
import profiling
from bench import own_session, prioritize
from servers import Knot, Muster, cpu_seconds, query

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
CORE = 0
PROBE_ID = "scale-probe"
IDLE_SECONDS = 5


def say(message):
    print(f"[scale {time.strftime('%H:%M:%S')}] {message}", flush=True)


def size(text):
    services, _, instances = text.partition("x")
    try:
        parsed = (int(services), int(instances))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected SERVICESxINSTANCES, e.g. 10000x10") from None
    if min(parsed) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: both counts must be at least 1")
    return parsed


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="bench/dns/scale.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=size, action="append", help="SERVICESxINSTANCES; repeat for several (default 10000x10)")
    parser.add_argument("--baseline", type=size, default=(1000, 4), help="the size CPU per query is compared with (default 1000x4)")
    parser.add_argument("--duration", type=int, default=10, help="seconds of each measured dnsperf run (default 10)")
    parser.add_argument("--repeat", type=int, default=1, help="dnsperf runs per size; the median CPU/q is reported (default 1)")
    parser.add_argument("--changes", type=int, default=200, help="REST PUTs timed at each size (default 200)")
    parser.add_argument("--no-knot", action="store_true", help="leave Knot out")
    parser.add_argument("--profile", action="store_true", help="one more muster run per size under perf record; its top entries printed")
    parser.add_argument("--muster-bin", default=os.path.join(ROOT, "target/release/muster"))
    parser.add_argument("--keep", action="store_true", help="keep the data folder under /tmp")
    parser.add_argument("--out", help="also write the results as JSON here")
    parser.add_argument("--nice", type=int, default=-20 if os.geteuid() == 0 else 0, help="priority of the harness and servers (default -20 as root)")
    args = parser.parse_args(argv)
    args.size = args.size or [(10000, 10)]
    if args.changes < 1 or args.repeat < 1 or args.duration < 1:
        parser.error("--changes, --repeat and --duration must be at least 1")
    return args


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def write_instances(path, services, instances):
    """The file source's JSON, written a service at a time (a million entries would make
    one string of ~100 MB in memory)."""
    with open(path, "w") as f:
        f.write('{"instances":[')
        for s in range(services):
            svc = namespace.service_name(s)
            entries = (
                f'{{"namespace":"{namespace.NAMESPACE}","service":"{svc}","id":"{namespace.instance_id(k)}",'
                f'"ipv4":"{namespace.address(s, k, instances)}","port":{namespace.port(k)}}}'
                for k in range(instances)
            )
            f.write(("," if s else "") + ",".join(entries))
        f.write("]}")


def write_zone(path, services, instances):
    with open(path, "w") as f:
        f.write(namespace.zone_file(services, instances, 1))


class ScaleMuster(Muster):
    """bench/dns's muster with its instances file written here, and zone transfers
    allowed from 127.0.0.1."""

    def __init__(self, workdir, binary, services, instances):
        super().__init__(workdir, CORE, binary, "", 8, f"muster-{services}x{instances}", extra_toml='\n[transfer]\nallow = ["127.0.0.1"]\n')
        write_instances(self.instances_path, services, instances)


def memory(server):
    pid = server.process.pid
    return {"rss_mib": status_kib(pid, "VmRSS") / 1024, "hwm_mib": status_kib(pid, "VmHWM") / 1024}


def query_file(workdir, services):
    """The dnsperf query file for `services` services, written once per invocation."""
    path = os.path.join(workdir, f"queries-{services}.txt")
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(namespace.queries(services, 100_000, 1))
    return path


def cpu_per_query(server, services, workdir, args):
    query_file_path = query_file(workdir, services)
    rows = []
    for n in range(args.repeat):
        load.warm_up(server, query_file_path, 1, 8, 200)
        row = load.run(server, query_file_path, workdir, f"{server.name}-{n}", args.duration, 8, 200)
        say(f"{server.name}: {row['qps']:,.0f} qps, {row['cpu_us_per_query']:.2f} µs/q, lost {row['lost']}")
        rows.append(row)
    return {
        "cpu_us_per_query": statistics.median(r["cpu_us_per_query"] for r in rows),
        "qps": statistics.median(r["qps"] for r in rows),
        "runs": [{k: r[k] for k in ("qps", "cpu_us_per_query", "lost", "response_bytes")} for r in rows],
    }


def change_cost(server, services, count):
    """`count` REST PUTs of one API instance into the middle service, each a new address."""
    svc = namespace.service_name(services // 2)
    path = f"/v1/namespaces/{namespace.NAMESPACE}/services/{svc}/instances/{PROBE_ID}"
    connection = http.client.HTTPConnection("127.0.0.1", server.http_port, timeout=30)
    latencies = []
    # What muster spends idle (the file source rereads its file every 5 s), over as long
    # as the PUTs take, is not the changes' cost.
    idle_before, idle_started = cpu_seconds(server.process.pid), time.perf_counter()
    time.sleep(IDLE_SECONDS)
    idle_rate = (cpu_seconds(server.process.pid) - idle_before) / (time.perf_counter() - idle_started)
    cpu_before, started = cpu_seconds(server.process.pid), time.perf_counter()
    for n in range(count):
        body = json.dumps({"ipv4": f"10.255.{n // 250 % 250}.{n % 250 + 1}", "port": 9000})
        started = time.perf_counter()
        connection.request("PUT", path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - started)
        if response.status != 200:
            raise RuntimeError(f"PUT {path} answered {response.status}")
    cpu = cpu_seconds(server.process.pid) - cpu_before - idle_rate * (time.perf_counter() - started)
    connection.close()
    answer = query(server.port, f"{PROBE_ID}.{svc}.{namespace.NAMESPACE}.", "A", timeout=2)
    last = f"10.255.{(count - 1) // 250 % 250}.{(count - 1) % 250 + 1}"
    if [r.address for rrset in answer.answer for r in rrset] != [last]:
        raise RuntimeError(f"after the PUTs {PROBE_ID}.{svc} answers {answer.answer}, not {last}")
    latencies.sort()
    return {
        "cpu_us_per_change": max(0.0, cpu) / count * 1e6,
        "idle_cpu_share": idle_rate,
        "p50_ms": latencies[len(latencies) // 2] * 1e3,
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1e3,
    }


def axfr(server):
    started = time.perf_counter()
    out = subprocess.run(
        ["kdig", "@127.0.0.1", "-p", str(server.port), "+tcp", "+timeout=120", f"{namespace.NAMESPACE}.", "AXFR"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    took = time.perf_counter() - started
    tail = out[-500:]
    found = re.search(r"Received (\d+) B \((\d+) messages, (\d+) records\)", tail)
    if not found:
        raise RuntimeError(f"kdig's AXFR did not finish:\n{tail}")
    size_bytes, messages, records = (int(v) for v in found.groups())
    return {"seconds": took, "bytes": size_bytes, "messages": messages, "records": records}


def measure_muster(args, workdir, services, instances, full):
    say(f"muster: writing {services:,} x {instances:,} instances")
    server = ScaleMuster(workdir, args.muster_bin, services, instances)
    probe = (f"{namespace.service_name(services - 1)}.{namespace.NAMESPACE}.", "A")
    server.start(probe)
    try:
        result = {"load_seconds": server.load_seconds, **memory(server)}
        say(f"muster {services}x{instances}: ready in {server.load_seconds:.2f} s, VmRSS {result['rss_mib']:.1f} MiB, VmHWM {result['hwm_mib']:.1f} MiB")
        result["dns"] = cpu_per_query(server, services, workdir, args)
        if args.profile:
            result["profile"] = profiling.record(server, query_file(workdir, services), workdir, f"{services}x{instances}", args.duration, 8, 200)
            say(f"muster {services}x{instances} profile:\n{profiling.lines(result['profile'])}")
        # The allocator returns what the load freed after a delay: the figure that stays.
        result["settled_rss_mib"] = memory(server)["rss_mib"]
        say(f"muster {services}x{instances}: VmRSS {result['settled_rss_mib']:.1f} MiB after the queries")
        if full:
            result["change"] = change_cost(server, services, args.changes)
            say(f"muster: one change {result['change']['cpu_us_per_change']:.0f} µs CPU, p50 {result['change']['p50_ms']:.2f} ms, p99 {result['change']['p99_ms']:.2f} ms")
            result["axfr"] = axfr(server)
            say(f"muster: AXFR {result['axfr']['records']:,} records in {result['axfr']['seconds']:.2f} s")
            result["after"] = memory(server)
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)
    return result


def measure_knot(args, workdir, services, instances):
    zone_path = os.path.join(workdir, f"zone-{services}x{instances}")
    write_zone(zone_path, services, instances)
    knot = Knot(workdir, CORE, zone_path)
    # An instance's own name: a service's 1,000 A records do not fit a UDP answer.
    last = namespace.service_name(services - 1)
    knot.start((f"{namespace.instance_id(instances - 1)}.{last}.{namespace.NAMESPACE}.", "A"))
    try:
        result = {"load_seconds": knot.load_seconds, **memory(knot)}
        say(f"knot {services}x{instances}: ready in {knot.load_seconds:.2f} s, VmRSS {result['rss_mib']:.1f} MiB")
        result["dns"] = cpu_per_query(knot, services, workdir, args)
    finally:
        knot.stop()
        os.remove(zone_path)
        shutil.rmtree(knot.workdir, ignore_errors=True)
    return result


def main(argv):
    args = parse_args(argv)
    for tool in ("dnsperf", "kdig", "taskset") + (() if args.no_knot else ("knotd",)):
        if shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin") is None:
            sys.exit(f"scale: {tool} not found (bench/dns/run installs what the DNS benchmarks need)")
    os.environ["PATH"] += ":/usr/sbin"
    own_session()
    prioritize(args.nice)
    workdir = tempfile.mkdtemp(prefix="muster-scale-", dir="/tmp")
    results = {"baseline": None, "sizes": []}
    try:
        services, instances = args.baseline
        results["baseline"] = {"services": services, "instances": instances, **measure_muster(args, workdir, services, instances, False)}
        if not args.no_knot:
            results["baseline"]["knot"] = measure_knot(args, workdir, services, instances)
        for services, instances in args.size:
            row = {"services": services, "instances": instances, "muster": measure_muster(args, workdir, services, instances, True)}
            if not args.no_knot:
                row["knot"] = measure_knot(args, workdir, services, instances)
            results["sizes"].append(row)
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    base = results["baseline"]
    print(f"\nCPU/q baseline: {base['services']:,} x {base['instances']:,} = {base['services'] * base['instances']:,} instances, "
          f"{base['dns']['cpu_us_per_query']:.2f} µs/q ({base['dns']['qps']:,.0f} qps), VmRSS {base['rss_mib']:.1f} MiB"
          + (f"; Knot {base['knot']['dns']['cpu_us_per_query']:.2f} µs/q ({base['knot']['dns']['qps']:,.0f} qps)" if "knot" in base else ""))  # fmt: skip
    print("| size | instances | load s | VmRSS MiB at ready, settled | VmHWM MiB | Knot MiB (load s) | settled RSS/Knot | CPU µs/q (x baseline) | Knot CPU µs/q (x its baseline) | change µs CPU, p50/p99 ms | AXFR s (records) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for row in results["sizes"]:
        m = row["muster"]
        knot = row.get("knot")
        knot_cell = f"{knot['rss_mib']:.1f} ({knot['load_seconds']:.2f})" if knot else "-"
        ratio = f"{m['settled_rss_mib'] / knot['rss_mib']:.2f}" if knot else "-"
        cpu = m["dns"]["cpu_us_per_query"]
        knot_cpu = "-"
        if knot and "knot" in base:
            k = knot["dns"]["cpu_us_per_query"]
            knot_cpu = f"{k:.2f} ({k / base['knot']['dns']['cpu_us_per_query']:.2f})"
        print(
            f"| {row['services']:,} x {row['instances']:,} | {row['services'] * row['instances']:,} | {m['load_seconds']:.2f} | "
            f"{m['rss_mib']:.1f}, {m['settled_rss_mib']:.1f} | {m['hwm_mib']:.1f} | {knot_cell} | {ratio} | {cpu:.2f} ({cpu / base['dns']['cpu_us_per_query']:.2f}) | {knot_cpu} | "
            f"{m['change']['cpu_us_per_change']:.0f}, {m['change']['p50_ms']:.2f}/{m['change']['p99_ms']:.2f} | "
            f"{m['axfr']['seconds']:.2f} ({m['axfr']['records']:,}) |"
        )  # fmt: skip
    if args.out:
        with open(args.out, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main(sys.argv[1:])
