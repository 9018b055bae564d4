"""muster against Knot DNS, NSD and a UDP echo floor, on the same data. Run it through
`bench/dns/run`, which installs the tools first; `bench/dns/run --help` lists the flags.

One run: generate S services x K instances; start each server alone on core 0 (taskset)
and time its load; check that all answer the probe names alike; then, for each server in
turn, one unmeasured warm-up and one measured dnsperf run on core 1 (saturation, and a
fixed rate with --rate); with --churn, one more muster run while REST changes are applied
(--churn-batch: many per request), then a staleness check, with the log's fsync times
from /metrics beside the writes' latency (bench/dns/histogram.py), and with
--churn-alone the same churn with no DNS load for muster's CPU per change; with --rrl RATE, a twin muster with response rate limiting,
measured interleaved with the first, and the amplification of a one-source flood with RRL
off and on (bench/dns/rrl.py); with --locality, a twin muster answering each client from
its zone, likewise (bench/dns/locality.py). Prints a table and writes
bench/results/<timestamp>.json.
"""

import argparse
import datetime
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import compare
import load
import locality
import namespace
import profiling
import report
import rrl
import shapes
import slow_tcp
from churn import Churn
from servers import Floor, Knot, Muster, Nsd, ServerError, query

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SERVER_CORE = 0
SERVERS = ("muster", "knot", "nsd", "floor")


def parse_args(argv):
    parser = argparse.ArgumentParser(prog="bench/dns/run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=1000, help="services in the namespace (default 1000)")
    parser.add_argument("--instances", type=int, default=4, help="instances per service (default 4)")
    parser.add_argument("--duration", type=int, default=10, help="seconds of each measured dnsperf run (default 10)")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of the unmeasured run before each (default 1)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each measurement, interleaved; the median by QPS is reported (default 1)")
    parser.add_argument(
        "--rate", type=int, default=20_000,
        help="also run each server at this fixed rate (dnsperf -Q), with latency percentiles; 0: no (default 20000)",
    )
    parser.add_argument("--churn", type=int, default=0, help="also run muster while applying N REST changes/s")
    parser.add_argument("--churn-clients", type=int, default=16, help="HTTP connections applying the churn (default 16)")
    parser.add_argument(
        "--churn-batch", type=int, default=1,
        help="changes per churn request: 1 sends PUT/DELETE (default), more send them together as POST /v1/namespaces/NS/batch",
    )
    parser.add_argument(
        "--data-dir",
        help="a folder for muster's data_dir (its log) instead of the run's temporary folder: e.g. a tmpfs "
        "(/dev/shm), to take the disk's fsync out of the churn's write latency",
    )
    parser.add_argument(
        "--churn-alone", action="store_true",
        help="also apply the churn once with no DNS load, for muster's CPU per change (its CPU over the run / changes)",
    )
    parser.add_argument(
        "--rrl", type=int, default=0,
        help="also run muster with [dns.rrl] responses_per_second = RATE (nothing exempt), interleaved with plain "
        "muster, and print the CPU/q ratio; RATE must leave every response unlimited (20000 does at 1,000 x 4). "
        "Adds the amplification of a one-source SRV flood with RRL off and on",
    )  # fmt: skip
    parser.add_argument(
        "--locality", action="store_true",
        help="also run muster with [[zones]] (3 zones x 4 subnets, dnsperf's 127.0.0.0/8 in z0) and locality = "
        "\"prefer_zone\" on every service, interleaved with plain muster (both with instances spread over the zones), "
        "print the CPU/q ratio, and check that it answered from the client's zone (z1 with --shape subnet)",
    )  # fmt: skip
    parser.add_argument("--flood-rrl", type=int, default=20, help="responses_per_second of the muster the amplification flood meets with RRL on (default 20)")
    parser.add_argument("--flood-queries", type=int, default=20_000, help="queries in the amplification flood (default 20000)")
    parser.add_argument("--flood-seconds", type=float, default=1.0, help="seconds the amplification flood takes (default 1)")
    parser.add_argument("--clients", type=int, default=8, help="dnsperf -c: sockets (default 8)")
    parser.add_argument("--outstanding", type=int, default=200, help="dnsperf -q: queries in flight (default 200)")
    parser.add_argument(
        "--shape", choices=sorted(shapes.SHAPES), default="plain",
        help="what the queries carry (bench/dns/shapes.py): plain (EDNS, no option; the default), no-edns, do, "
        "cookie, subnet, padding, mixed-case, or resolver (DO + COOKIE + mixed case)",
    )  # fmt: skip
    parser.add_argument(
        "--transport", choices=("udp", "tcp"), default="udp",
        help="dnsperf -m: udp (default), or tcp (-c connections, -q queries pipelined over them; the UDP floor is left out)",
    )
    parser.add_argument(
        "--slow-tcp", type=int, default=0,
        help="also run muster at the fixed rate (UDP) while N TCP connections send queries and never read the answers "
        "and N more send a query one byte at a time (bench/dns/slow_tcp.py), interleaved with the plain fixed-rate "
        "runs; prints UDP latency with and without them, and muster's peak memory",
    )  # fmt: skip
    parser.add_argument("--queries", type=int, default=100_000, help="lines in the query file (default 100000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset of " + ",".join(SERVERS))
    parser.add_argument("--max-answers", type=int, help="muster's max_answers (default: 8, or 0 = all when instances > 8)")
    parser.add_argument("--muster-bin", default=os.path.join(ROOT, "target/release/muster"))
    parser.add_argument("--floor-bin", default=os.path.join(ROOT, "target/release/examples/udp_floor"))
    parser.add_argument("--churn-bin", default=os.path.join(ROOT, "target/release/churn_load"), help="the churn client, built from bench/load/")
    parser.add_argument("--skip-build", action="store_true", help="use the binaries as they are (no cargo build)")
    parser.add_argument("--results", default=os.path.join(ROOT, "bench/results"), help="where the JSON goes")
    parser.add_argument(
        "--nice", type=int, default=-20 if os.geteuid() == 0 else 0,
        help="scheduling priority of the harness, the servers and dnsperf (default -20 as root: "
        "on a shared machine, builds at nice 0 then get ~1%% of the benchmark's cores)",
    )
    parser.add_argument("--profile", action="store_true", help="one more muster run (and churn run) under perf record; top entries reported")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (configs, zone, logs)")
    args = parser.parse_args(argv)
    args.servers = [s for s in args.servers.split(",") if s and not (s == "floor" and args.transport == "tcp")]
    unknown = set(args.servers) - set(SERVERS)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    if args.churn and "muster" not in args.servers:
        parser.error("--churn needs muster among --servers")
    if args.rrl and "muster" not in args.servers:
        parser.error("--rrl needs muster among --servers")
    if args.slow_tcp and ("muster" not in args.servers or not args.rate or args.transport != "udp"):
        parser.error("--slow-tcp needs muster among --servers, a --rate and --transport udp")
    if args.locality and "muster" not in args.servers:
        parser.error("--locality needs muster among --servers")
    if args.locality and args.instances < len(locality.ZONES):
        parser.error(f"--locality needs --instances {len(locality.ZONES)} or more, so that every zone has one")
    if args.services < 1 or args.instances < 1 or args.repeat < 1:
        parser.error("--services, --instances and --repeat must be at least 1")
    if args.max_answers is None:
        args.max_answers = 8 if args.instances <= 8 else 0
    return args


def say(message):
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def build(args):
    command = ["cargo", "build", "--release", "--bin", "muster", "--example", "udp_floor"]
    say(" ".join(command))
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        sys.exit("bench: FAILED: cargo build failed (above); fix the build, or measure a binary built elsewhere with --skip-build --muster-bin PATH --floor-bin PATH")
    if args.churn:
        # bench/load is std only, so it builds in seconds.
        command = ["cargo", "build", "--release", "-p", "muster-load", "--bin", "churn_load"]
        say(" ".join(command))
        if subprocess.run(command, cwd=ROOT).returncode != 0:
            sys.exit("bench: FAILED: cargo could not build the churn client (above)")


def core_busy():
    """Busy jiffies of cores 0 and 1 from /proc/stat (all but idle and iowait)."""
    busy = {}
    with open("/proc/stat") as f:
        for line in f:
            name, *values = line.split()
            if name in ("cpu0", "cpu1"):
                numbers = [int(v) for v in values[:8]]
                busy[name] = sum(numbers) - numbers[3] - numbers[4]
    return busy


def measure(server, args, query_file, workdir, label, rate=None, during=None):
    """Warm-up, then one measured run (with percentiles at a fixed rate); adds what else
    ran on the server's core."""
    load.warm_up(server, query_file, args.warmup, args.clients, args.outstanding, flags=shapes.dnsperf_flags(args.shape), transport=args.transport)
    before = core_busy()
    row = load.run(
        server, query_file, workdir, label, args.duration, args.clients, args.outstanding,
        rate=rate, flags=shapes.dnsperf_flags(args.shape), during=during, verbose=bool(rate), transport=args.transport,
    )  # fmt: skip
    after = core_busy()
    ticks = os.sysconf("SC_CLK_TCK")
    core0 = (after["cpu0"] - before["cpu0"]) / ticks
    row["label"] = label
    row["other_core0_share"] = max(0.0, core0 - row["server_cpu_seconds"]) / row["wall_seconds"]
    row["core1_share"] = (after["cpu1"] - before["cpu1"]) / ticks / row["wall_seconds"]
    row["memory_after_run"] = server.memory_kib()
    p99 = f", p99 {row['p99_us']:.0f} µs" if "p99_us" in row else ""
    say(f"{label} {row['mode']}: {row['qps']:,.0f} qps, {row['cpu_us_per_query']:.2f} µs/q, avg {row['avg_us']:.0f} µs{p99}, lost {row['lost']}")
    return row


def start(server, probe, servers_info):
    say(f"starting {server.name} on core {SERVER_CORE}, port {server.port}")
    server.start(probe)
    memory = server.memory_kib()
    servers_info[server.name] = {"load_seconds": server.load_seconds, "memory_after_load": memory, "port": server.port}
    say(f"{server.name} answers after {server.load_seconds:.2f} s, VmRSS {memory['rss_kib'] / 1024:.1f} MiB")
    return server


def muster_serial(muster):
    response = query(muster.port, f"{namespace.NAMESPACE}.", "SOA", timeout=2)
    return response.answer[0][0].serial


def start_servers(args, workdir, probe):
    """Starts each chosen server alone (so its load is timed without company), muster
    first: the zone file takes muster's SOA serial. Returns the started servers, their
    load figures, and how Knot and NSD answer differently from muster."""
    info, started = {}, []
    try:
        serial = 1
        if "muster" in args.servers:
            instances = namespace.muster_instances(args.services, args.instances, locality.attributes if args.locality else None)
            muster = Muster(workdir, SERVER_CORE, args.muster_bin, instances, args.max_answers, data_root=args.data_dir)
            started.append(start(muster, probe, info))
            serial = muster_serial(muster)
            for label, config in twins(args).items():
                twin = Muster(workdir, SERVER_CORE, args.muster_bin, instances, args.max_answers, label, **config)
                started.append(start(twin, probe, info))
        zone_path = os.path.join(workdir, "internal.zone")
        with open(zone_path, "w") as f:
            f.write(namespace.zone_file(args.services, args.instances, serial))
        for name, make in (("knot", lambda: Knot(workdir, SERVER_CORE, zone_path)),
                           ("nsd", lambda: Nsd(workdir, SERVER_CORE, zone_path)),
                           ("floor", lambda: Floor(workdir, SERVER_CORE, args.floor_bin))):  # fmt: skip
            if name in args.servers:
                started.append(start(make(), probe, info))
        notes = check_answers(args, started)
    except BaseException:
        for server in started:
            server.stop()
        raise
    return started, info, notes


def twins(args):
    """The twins of muster the flags ask for, by label, with what their configuration
    adds: each is muster with one feature on, measured interleaved with muster and
    compared with it (`report.twin_ratios`)."""
    chosen = {}
    if args.rrl:
        chosen[rrl.LABEL] = {"extra_toml": rrl.toml(args.rrl)}
    if args.locality:
        chosen[locality.LABEL] = {"extra_toml": locality.zones_toml(), "rule_toml": locality.RULE_TOML}
    return chosen


def check_answers(args, started):
    by_name = {s.name: s for s in started}
    others = [s for s in started if s.name in ("knot", "nsd")]
    if "muster" not in by_name or not others:
        return []
    probes = namespace.probe_names(args.services, args.instances)
    fatal, notes = compare.compare(by_name["muster"], others, probes)
    for note in notes:
        say(f"answer difference (policy, not data): {note}")
    if fatal:
        raise ServerError("servers do not answer alike:\n  " + "\n  ".join(fatal))
    say(f"muster, {', '.join(s.name for s in others)} answer the {len(probes)} probe names alike")
    return notes


def median_row(rows):
    """The run with the median QPS, listing every repeat's main figures."""
    chosen = dict(sorted(rows, key=lambda r: r["qps"])[len(rows) // 2])
    if len(rows) > 1:
        keys = ("qps", "cpu_us_per_query", "avg_us", "p99_us", "lost")
        chosen["repeats"] = [{k: r[k] for k in keys if k in r} for r in rows]
    return chosen


def measure_server(server, args, query_file, workdir, twins=()):
    """Every planned run of one server (and of muster's `twins`), `--repeat` times,
    interleaved so that drift over time hits each plan alike (with churn: plain, churn,
    plain, churn, ...; with a twin: muster, muster+rrl, muster, muster+rrl, ...)."""
    servers = [server, *twins]
    plans = [(s, s.name, None) for s in servers]
    if args.rate:
        plans += [(s, s.name, args.rate) for s in servers]
    slow = None
    if server.name == "muster" and args.slow_tcp:
        slow = slow_tcp.SlowClients(server, args.slow_tcp, args.slow_tcp, args.services)
        plans.append((server, slow_tcp.LABEL, args.rate))
    # Churn's plan comes last: its figures below are read from the last row.
    churn = None
    if server.name == "muster" and args.churn:
        churn = Churn(server, args.churn_bin, args.services, args.churn, clients=args.churn_clients, batch=args.churn_batch)
        plans.append((server, "muster+churn", None))
    results = {(label, rate): [] for _, label, rate in plans}
    alone = []
    for _ in range(args.repeat):
        if churn and args.churn_alone:
            alone.append(churn_alone(server, churn, args.duration))
        for target, label, rate in plans:
            during = {"muster+churn": churn and churn.run, slow_tcp.LABEL: slow and slow.run}.get(label)
            row = measure(target, args, query_file, workdir, label, rate=rate, during=during)
            if label == "muster+churn":
                row["mode"] = f"churn {args.churn}/s"
                row["during"]["verify"] = churn.verify()
                churn.cleanup()
            results[(label, rate)].append(row)
    churn_runs = [row.pop("during") for row in results.get(("muster+churn", None), [])]
    if slow:
        slow_runs = [row.pop("during") for row in results[(slow_tcp.LABEL, args.rate)]]
        slow_result = slow_tcp.result(results[(server.name, args.rate)], results[(slow_tcp.LABEL, args.rate)], slow_runs)
    rows = [median_row(results[(label, rate)]) for _, label, rate in plans]
    if slow:
        rows[[label for _, label, _ in plans].index(slow_tcp.LABEL)]["slow_tcp"] = slow_result
    if not churn:
        return rows, None
    base, churned = rows[0], rows[-1]
    return rows, {
        "runs": churn_runs,
        "stale_reads": sum(len(run["stale_reads"]) for run in churn_runs),
        "read_checks": sum(run["read_checks"] for run in churn_runs),
        "stale_after": sum(run["verify"]["stale"] for run in churn_runs),
        "services_checked_after": sum(run["verify"]["services_checked"] for run in churn_runs),
        "qps": churned["qps"],
        "baseline_qps": base["qps"],
        "qps_drop": 1 - churned["qps"] / base["qps"],
        "qps_runs": [row["qps"] for row in results[plans[-1][1:]]],
        "baseline_qps_runs": [row["qps"] for row in results[plans[0][1:]]],
        "cpu_us_per_query": churned["cpu_us_per_query"],
        "baseline_cpu_us_per_query": base["cpu_us_per_query"],
        "alone": alone,
    }


def churn_alone(server, churn, seconds):
    """The churn with no DNS load: muster's CPU over the run per change applied."""
    cpu_before = server.cpu_seconds()
    stats = churn.run(time.monotonic() + seconds)
    cpu = server.cpu_seconds() - cpu_before
    stats["cpu_seconds"] = cpu
    stats["cpu_us_per_change"] = cpu / stats["writes"] * 1e6 if stats["writes"] else None
    stats["verify"] = churn.verify()
    churn.cleanup()
    say(f"churn alone: {stats['achieved_per_s']:,.0f} changes/s, {stats['cpu_us_per_change']:.1f} µs of muster CPU per change")
    return stats


def profile_muster(server, args, query_file, workdir):
    flags = shapes.dnsperf_flags(args.shape)
    profiles = {
        "muster": profiling.record(
            server, query_file, workdir, "muster", args.duration, args.clients, args.outstanding,
            flags=flags, transport=args.transport,
        )  # fmt: skip
    }
    if args.churn:
        churn = Churn(server, args.churn_bin, args.services, args.churn, clients=args.churn_clients, batch=args.churn_batch)
        profiles["muster+churn"] = profiling.record(
            server, query_file, workdir, "muster+churn", args.duration, args.clients, args.outstanding,
            flags=flags, during=churn.run, transport=args.transport,
        )  # fmt: skip
        churn.cleanup()
    return profiles


def run(args, workdir):
    probe = (f"{namespace.service_name(args.services - 1)}.{namespace.NAMESPACE}.", "A")
    query_file = os.path.join(workdir, "queries.txt")
    with open(query_file, "w") as f:
        queries = namespace.queries(args.services, args.queries, args.seed)
        f.write(shapes.query_file_text(queries, args.shape, args.seed))
    instances = args.services * args.instances
    say(f"namespace: {args.services} services x {args.instances} instances = {instances:,} instances")
    started, info, notes = start_servers(args, workdir, probe)
    rows, churn_result, profiles, twin_results = [], None, {}, {}
    by_name = {s.name: s for s in started}
    twin_servers = [by_name[label] for label in twins(args)]
    try:
        for server in started:
            if server in twin_servers:
                continue  # measured with muster
            own_twins = twin_servers if server.name == "muster" else []
            server_rows, server_churn = measure_server(server, args, query_file, workdir, own_twins)
            rows += server_rows
            churn_result = churn_result or server_churn
            if server.name == "muster" and args.profile:
                profiles = profile_muster(server, args, query_file, workdir)
            if own_twins:
                twin_results = twin_figures(args, workdir, server, by_name, rows)
            # Stopped once measured, so the next server has its core to itself.
            for done in [server, *own_twins]:
                done.stop()
    finally:
        for server in started:
            server.stop()
    return info, rows, churn_result, notes, profiles, twin_results


def twin_figures(args, workdir, muster, by_name, rows):
    """What each twin adds once its runs and muster's are done, by feature: its ratios
    to muster and the checks that it did what it is there for."""
    results = {}
    if rrl.LABEL in by_name:
        results["rrl"] = measure_rrl(args, workdir, muster, by_name[rrl.LABEL], rows)
    if locality.LABEL in by_name:
        checked = locality.check(muster, by_name[locality.LABEL], args.services, args.instances, args.max_answers, args.shape)
        say(f"{locality.LABEL} answered from zone {checked['client_zone']}, muster from every zone")
        results["locality"] = locality.result(rows, checked)
    return results


def measure_rrl(args, workdir, muster, twin, rows):
    """What the limiter cost (muster+rrl's runs against muster's), whether it limited
    anything then, and the amplification of a one-source flood with RRL off and on."""
    result = {"rate": args.rrl, "limited": rrl.limited(twin), "ratios": report.twin_ratios(rows, rrl.LABEL), "amplification": {}}
    query = rrl.flood_query(args.services)
    say(f"amplification flood: {args.flood_queries} SRV queries from one address, RRL off")
    result["amplification"]["RRL off"] = rrl.amplification(muster.port, query, args.flood_queries, args.flood_seconds)
    flood = Muster(workdir, SERVER_CORE, args.muster_bin, namespace.muster_instances(args.services, args.instances),
                   args.max_answers, "muster+rrl-flood", rrl.toml(args.flood_rrl))  # fmt: skip
    probe = (f"{namespace.service_name(args.services - 1)}.{namespace.NAMESPACE}.", "A")
    start(flood, probe, {})
    try:
        say(f"amplification flood: the same, RRL at {args.flood_rrl}/s (slip 2)")
        label = f"RRL on ({args.flood_rrl}/s, slip 2)"
        result["amplification"][label] = rrl.amplification(flood.port, query, args.flood_queries, args.flood_seconds)
    finally:
        flood.stop()
    return result


def versions(args):
    def first_line(command):
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=10)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None

    help_run = subprocess.run(["dnsperf", "-h"], capture_output=True, text=True)
    dnsperf_help = help_run.stdout + help_run.stderr
    return {
        "knotd": first_line(["knotd", "--version"]),
        "nsd": first_line(["nsd", "-v"]),
        "dnsperf": next((line for line in dnsperf_help.splitlines() if line.startswith("Version")), None),
        # The checkout's commit; the binary was built from it unless --skip-build.
        "checkout_commit": first_line(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
        "checkout_src_dirty": bool(subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "src"], capture_output=True, text=True).stdout.strip()),
        "muster_bin": args.muster_bin,
        "built_here": not args.skip_build,
        "kernel": platform.release(),
        "cpus": os.cpu_count(),
        "cpu_model": next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), None),
    }


def own_session():
    """Continues in a child that leads a new session; the parent forwards signals to it.

    Linux groups tasks into scheduler autogroups by session, and nice only ranks tasks
    within one, so on a machine where builds run in other sessions a server would get half
    a core whatever its nice. A session of our own gets its own autogroup, whose nice we
    set; the servers and dnsperf stay in it.
    """
    child = os.fork()
    if child == 0:
        os.setsid()
        return
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda number, _frame: os.kill(child, number))
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except InterruptedError:
            continue
    sys.exit(os.waitstatus_to_exitcode(status))


def prioritize(nice):
    """Pins the harness (and the churn client) to dnsperf's core, and sets the priority
    that every server and dnsperf inherit, within the session and for its autogroup."""
    os.sched_setaffinity(0, {load.LOAD_CORE})
    os.setpriority(os.PRIO_PROCESS, 0, nice)
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(nice))
    except OSError as error:
        say(f"cannot set the autogroup's nice ({error}); other sessions compete at equal weight")


def main(argv):
    args = parse_args(argv)
    if (os.cpu_count() or 1) < 2:
        sys.exit("bench: needs at least 2 CPUs (server on core 0, dnsperf on core 1)")
    if not args.skip_build:
        build(args)
    own_session()
    prioritize(args.nice)
    needed = [args.muster_bin] * ("muster" in args.servers) + [args.floor_bin] * ("floor" in args.servers)
    for binary in needed + [args.churn_bin] * bool(args.churn):
        if not os.access(binary, os.X_OK):
            sys.exit(f"bench: {binary} is missing; build it (run without --skip-build)")
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    workdir = tempfile.mkdtemp(prefix="muster-bench-")
    if args.data_dir:
        args.data_dir = tempfile.mkdtemp(prefix="muster-bench-data-", dir=args.data_dir)
    began = time.monotonic()
    try:
        info, rows, churn_result, notes, profiles, twin_results = run(args, workdir)
    except (ServerError, load.LoadError, profiling.ProfileError) as error:
        sys.exit(f"bench: FAILED: {error}\n(files in {workdir})")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
            if args.data_dir:
                shutil.rmtree(args.data_dir, ignore_errors=True)
    report.classify(rows)
    ratio_table = report.ratios([r for r in rows if not r["label"].startswith("muster+")])
    result = {
        "timestamp": stamp,
        "command": "bench/dns/run " + " ".join(argv),
        "args": vars(args),
        "namespace": {"services": args.services, "instances_per_service": args.instances, "instances": args.services * args.instances, "muster_max_answers": args.max_answers},
        "versions": versions(args),
        "loadavg_at_end": open("/proc/loadavg").read().strip(),
        "servers": info,
        "runs": rows,
        "ratios": ratio_table,
        "churn": churn_result,
        "rrl": twin_results.get("rrl", {}),
        "locality": twin_results.get("locality", {}),
        "answer_differences": notes,
        "profiles": profiles,
        "elapsed_seconds": time.monotonic() - began,
    }
    path = report.write_json(result, args.results, stamp)
    print()
    print(f"{args.services} services x {args.instances} instances, {args.duration} s per run, dnsperf -m {args.transport} -c {args.clients} -q {args.outstanding} {' '.join(shapes.dnsperf_flags(args.shape))} (shape {args.shape}), server on core 0, dnsperf on core 1")
    print(report.table(rows))
    print("\nRatios (muster / other; below 1 is better for muster on CPU/q and latency, above 1 on QPS):")
    print(report.ratio_lines(ratio_table))
    print("\nLoad and memory:")
    print(report.load_lines(info))
    if churn_result:
        print("\nChurn:")
        print(report.churn_lines(churn_result))
    if "rrl" in twin_results:
        print("\nResponse rate limiting:")
        print(rrl.lines(twin_results["rrl"]))
    if "locality" in twin_results:
        print("\nZone-aware answers:")
        print(locality.lines(twin_results["locality"]))
    slow = next((r["slow_tcp"] for r in rows if "slow_tcp" in r), None)
    if slow:
        print("\nSlow TCP clients (UDP latency at the fixed rate, without and with them):")
        print(slow_tcp.lines(slow))
    for name, summary in profiles.items():
        print(f"\nProfile of {name} at saturation:")
        print(profiling.lines(summary))
    busy = [r for r in rows if r.get("other_core0_share", 0) > 0.10]
    if busy:
        print(
            "\nNote: other processes ran on core 0 during "
            + ", ".join(f"{r['label']} {r['mode']} ({r['other_core0_share']:.0%})" for r in busy)
            + f", in the server's idle time at lower priority (nice {args.nice} here); they share its caches,"
            " so absolute figures are noisier than on an idle machine."
        )
    print(f"\nResults: {os.path.relpath(path, ROOT)} ({result['elapsed_seconds']:.0f} s)")


if __name__ == "__main__":
    main(sys.argv[1:])
