#!/usr/bin/env python3
"""The ECS source, measured: event -> DNS latency, and the cost of a full reconcile.

Starts its own moto_server (the AWS endpoint) and muster (target/release/muster, or
$MUSTER_BIN) on free loopback ports, then:

1. Event latency, ``--events`` times (default 200): run a task in moto, PutEvents its
   RUNNING event through EventBridge -> SQS and time until ``<task id>.web.internal A``
   answers its address (dnspython, UDP, polled back to back); then PutEvents its stop
   intent (desiredStatus STOPPED, lastStatus RUNNING) and time until that name is
   NXDOMAIN. The clock starts just before the PutEvents call, so it includes
   EventBridge -> SQS delivery in moto, the long poll, the change and one DNS query.
2. Bridge latency, ``--bridge`` times (default: ``--events``): each time a new EC2
   instance is registered as a container instance, a bridge networking task started on
   it, and its RUNNING event (with a dynamic host port) put; the time until
   ``<task id>.web.internal A`` answers the instance's private IP includes muster's
   lookup of the container instance (DescribeContainerInstances, DescribeInstances, both
   in moto). The same run also times awsvpc tasks' RUNNING events, interleaved, so the
   two are compared under the same load.
3. Reconcile of ``--tasks`` tasks (default 1,000) in 50 services across 2 clusters: the
   wall time from muster's start to /readyz (first reconcile of both clusters, cold task
   definition cache), the AWS API calls it made (muster_ecs_api_calls_total), and the
   reconcile duration of the next, warm reconcile (muster_ecs_reconcile_duration_seconds).

Prints numbers; asserts nothing about time.

    .venv/bin/python bench/ecs_latency.py [--events 200] [--bridge 200] [--tasks 1000]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rcode

from common import percentile  # first: it puts tests/interop on sys.path
from harness import Muster, namespace_toml
from moto_ecs import CREDENTIALS, Ecs, MotoServer, ecs_toml

NS = namespace_toml(services=[{"match": "*", "max_answers": 0}])
DEADLINE = 10.0


def summary(name, values_ms):
    return (
        f"{name}: n={len(values_ms)}  p50 {percentile(values_ms, 0.5):.1f} ms  "
        f"p99 {percentile(values_ms, 0.99):.1f} ms  max {max(values_ms):.1f} ms  "
        f"mean {statistics.mean(values_ms):.1f} ms"
    )


def until(predicate, what):
    deadline = time.perf_counter() + DEADLINE
    while not predicate():
        if time.perf_counter() > deadline:
            raise SystemExit(f"{what}: not within {DEADLINE} s")


def answers(m, name, address):
    q = dns.message.make_query(name, "A")
    r = dns.query.udp(q, "127.0.0.1", port=m.dns_port, timeout=2)
    if address is None:
        return r.rcode() == dns.rcode.NXDOMAIN
    return any(rr.address == address for rrset in r.answer for rr in rrset)


def metrics(m):
    samples = {}
    for line in m.get("/metrics").text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples


def event_latency(workdir, server, events):
    server.reset()
    aws = Ecs(server.url)
    aws.create_cluster("bench")
    aws.register("web", port=8080)
    queue = aws.create_queue()
    m = Muster(workdir / "events", NS + ecs_toml(["bench"], server.url, queue, "1h")).start()
    try:
        until(lambda: m.get("/readyz").status_code == 200, "/readyz")
        appear, leave = [], []
        for i in range(events):
            task = aws.run("bench", "web", "web")[0]
            name = f"{task['taskArn'].rsplit('/', 1)[1]}.web.internal"
            address = aws.ipv4(task)
            started = time.perf_counter()
            aws.publish(aws.detail(task, version=1))
            until(lambda: answers(m, name, address), f"task {i} appearing")
            appear.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            aws.publish(aws.detail(task, desired="STOPPED", version=2))
            until(lambda: answers(m, name, None), f"task {i} leaving")
            leave.append((time.perf_counter() - started) * 1000)
        lag = metrics(m)
        print(summary("PutEvents(stop intent) -> address gone from DNS", leave))
        print(summary("PutEvents(RUNNING)     -> address in DNS       ", appear))
        applied = lag.get("muster_ecs_events_applied_total", 0)
        lag_sum = lag.get("muster_ecs_event_lag_seconds_sum", 0)
        print(f"muster_ecs_event_lag_seconds mean over {applied:.0f} events: {lag_sum / max(applied, 1) * 1000:.1f} ms")
    except BaseException:
        print(m.log_tail(), file=sys.stderr)
        raise
    finally:
        m.stop()


def bridge_latency(workdir, server, events):
    server.reset()
    aws = Ecs(server.url)
    aws.create_cluster("bench")
    aws.register_ec2("web", [(8080, None, "http")])
    aws.register("api", port=8080)
    queue = aws.create_queue()
    m = Muster(workdir / "bridge", NS + ecs_toml(["bench"], server.url, queue, "1h")).start()
    try:
        until(lambda: m.get("/readyz").status_code == 200, "/readyz")
        bridge, awsvpc = [], []
        for i in range(events):
            ci, _, address = aws.container_instance("bench")
            task = aws.start("bench", "web", "web", ci)
            name = f"{task['taskArn'].rsplit('/', 1)[1]}.web.internal"
            started = time.perf_counter()
            aws.publish(aws.ec2_detail(task, [(8080, 32768 + i % 28000)]))
            until(lambda: answers(m, name, address), f"bridge task {i} appearing")
            bridge.append((time.perf_counter() - started) * 1000)
            task = aws.run("bench", "api", "api")[0]
            name = f"{task['taskArn'].rsplit('/', 1)[1]}.api.internal"
            address = aws.ipv4(task)
            started = time.perf_counter()
            aws.publish(aws.detail(task, version=1))
            until(lambda: answers(m, name, address), f"awsvpc task {i} appearing")
            awsvpc.append((time.perf_counter() - started) * 1000)
        print(summary("PutEvents(RUNNING), awsvpc task             -> address in DNS", awsvpc))
        print(summary("PutEvents(RUNNING), bridge, new container instance -> in DNS", bridge))
        now = metrics(m)
        calls = {k.split('"')[1]: v for k, v in now.items() if k.startswith("muster_ecs_api_calls_total")}
        print(
            f"  container instance lookups: DescribeContainerInstances {calls.get('DescribeContainerInstances', 0):.0f}, "
            f"DescribeInstances {calls.get('DescribeInstances', 0):.0f} for {events} container instances"
        )
    except BaseException:
        print(m.log_tail(), file=sys.stderr)
        raise
    finally:
        m.stop()


def reconcile_cost(workdir, server, tasks):
    server.reset()
    aws = Ecs(server.url)
    clusters = ("blue", "green")
    for cluster in clusters:
        aws.create_cluster(cluster)
    per_service = tasks // 50
    for i in range(50):
        aws.register(f"svc{i:02d}", port=9000 + i)
        aws.run(clusters[i % 2], f"svc{i:02d}", f"svc{i:02d}", count=per_service)
    m = Muster(workdir / "reconcile", NS + ecs_toml(clusters, server.url, None, "5s"))
    started = time.perf_counter()
    m.start()
    try:
        until(lambda: m.get("/readyz").status_code == 200, "/readyz")
        ready = time.perf_counter() - started

        def reconciled(now):
            return all(
                now.get(f'muster_ecs_reconcile_duration_seconds_count{{cluster="{c}"}}', 0) >= 1 for c in clusters
            )

        # /readyz turns 200 when the syncs are applied, a moment before their metrics.
        until(lambda: reconciled(metrics(m)), "reconcile metrics")
        first = metrics(m)
        calls = {k: v for k, v in first.items() if k.startswith("muster_ecs_api_calls_total")}
        in_dns = sum(v for k, v in first.items() if k.startswith("muster_ecs_tasks{"))
        print(f"reconcile of {in_dns:.0f} tasks in 50 services across 2 clusters (cold cache):")
        print(f"  start -> /readyz 200: {ready * 1000:.0f} ms (process start, both clusters listed, described, synced)")
        for key, value in sorted(calls.items()):
            print(f"  {key} {value:.0f}")
        print(f"  API calls in all: {sum(calls.values()):.0f}")

        def durations(now):
            return {
                c: (
                    now.get(f'muster_ecs_reconcile_duration_seconds_sum{{cluster="{c}"}}', 0),
                    now.get(f'muster_ecs_reconcile_duration_seconds_count{{cluster="{c}"}}', 0),
                )
                for c in clusters
            }

        cold = durations(first)
        deadline = time.monotonic() + 30
        while True:
            after = metrics(m)
            warm = durations(after)
            if all(count >= 2 for _, count in warm.values()):
                break
            if time.monotonic() > deadline:
                raise SystemExit("no second reconcile within 30 s")
            time.sleep(0.2)
        for c in clusters:
            runs = warm[c][1] - cold[c][1]
            print(
                f"  cluster {c}: first reconcile {cold[c][0] * 1000:.0f} ms; later ones (task definitions cached) "
                f"{(warm[c][0] - cold[c][0]) / runs * 1000:.0f} ms on average over {runs:.0f}"
            )
        runs = sum(warm[c][1] - cold[c][1] for c in clusters)
        extra = {
            k.split('"')[1]: after[k] - first.get(k, 0) for k in after if k.startswith("muster_ecs_api_calls_total")
        }
        print(
            "  API calls per later reconcile of one cluster: "
            + ", ".join(f"{op} {n / runs:.1f}" for op, n in sorted(extra.items()) if n)
        )
        # The same calls from boto3, to tell moto's answer time from muster's own.
        started = time.perf_counter()
        arns = aws.ecs.list_tasks(cluster=clusters[0], desiredStatus="RUNNING")["taskArns"]
        for i in range(0, len(arns), 100):
            aws.ecs.describe_tasks(cluster=clusters[0], tasks=arns[i : i + 100])
        took = (time.perf_counter() - started) * 1000
        print(f"  the same ListTasks + DescribeTasks of cluster {clusters[0]} from boto3: {took:.0f} ms (moto's share)")
    finally:
        m.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--bridge", type=int, default=None, help="bridge task events (default: --events)")
    args = parser.parse_args()
    os.environ.update(CREDENTIALS)
    with tempfile.TemporaryDirectory(prefix="muster-ecs-bench-") as tmp:
        workdir = Path(tmp)
        server = MotoServer(workdir / "moto.log").start()
        try:
            if args.events:
                event_latency(workdir, server, args.events)
            bridge = args.events if args.bridge is None else args.bridge
            if bridge:
                bridge_latency(workdir, server, bridge)
            if args.tasks:
                reconcile_cost(workdir, server, args.tasks)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
