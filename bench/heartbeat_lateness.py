#!/usr/bin/env python3
"""Heartbeat expiry lateness: from an instance's deadline (its last heartbeat + TTL) to
the moment DNS stops answering it.

Registers N instances (each in its own service, next to a heartbeat-less one, so one
answer tells about one instance) with a heartbeat TTL and no further heartbeats, while a
poller thread queries DNS (dnspython, UDP) for each service past its deadline until its
address is gone. Lateness = first poll that saw it gone - deadline
(registration answered + TTL); registrations are spaced (--spacing-ms) so that few deadlines are pending at once and a
polling round stays near a millisecond, the measurement's resolution. The registry's own
view (deadline to expiry applied) is muster_health_expiry_lateness_seconds in /metrics.
With `--deregister-after D`, the instances are registered with that `deregister_after`
and the clock is the clean-up's: from deadline + D to the instance gone from the REST
API's view of its service (deregistered).

    python3 bench/heartbeat_lateness.py --instances 200 --ttl 1s [--deregister-after 1s] [--dns 127.0.0.1:8053] [--http 127.0.0.1:8054]
"""

import argparse
import json
import threading
import time
import urllib.request

import dns.message
import dns.query
import dns.rdatatype

from common import percentile


def seconds(text):
    return float(text.rstrip("ms")) / (1000 if text.endswith("ms") else 1)


def put(url, body=None):
    data = json.dumps(body).encode() if body is not None else b""
    request = urllib.request.Request(url, data=data, method="PUT", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request) as response:
        response.read()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=200)
    parser.add_argument("--ttl", default="1s")
    parser.add_argument("--dns", default="127.0.0.1:8053")
    parser.add_argument("--http", default="127.0.0.1:8054")
    parser.add_argument("--spacing-ms", type=float, default=20, help="between registrations, so few deadlines are pending at once")
    parser.add_argument("--deregister-after", help="time the clean-up of dead instances instead")
    args = parser.parse_args()
    ttl = seconds(args.ttl)
    after = seconds(args.deregister_after) if args.deregister_after else 0
    host, port = args.dns.rsplit(":", 1)
    base = f"http://{args.http}/v1/namespaces/internal/services"
    deadlines = {}
    lateness = {}
    done = threading.Event()

    def poll():
        while not done.is_set():
            for i, deadline in list(deadlines.items()):
                if i in lateness or time.monotonic() < deadline - 0.005:
                    continue
                if gone(i):
                    lateness[i] = (time.monotonic() - deadline) * 1000
            time.sleep(0.0005)

    def gone(i):
        if args.deregister_after:
            with urllib.request.urlopen(f"{base}/late{i}") as response:
                return all(x["id"] != "hb" for x in json.load(response)["instances"])
        query = dns.message.make_query(f"late{i}.internal.", dns.rdatatype.A)
        answer = dns.query.udp(query, host, port=int(port), timeout=2)
        return not any(rr.address == "10.251.0.1" for rrset in answer.answer for rr in rrset)

    poller = threading.Thread(target=poll)
    poller.start()
    for i in range(args.instances):
        # A second, heartbeat-less instance keeps fail-open from answering the expired one.
        put(f"{base}/late{i}/instances/anchor", {"ipv4": "10.250.0.1"})
        # Registering starts the deadline, as a heartbeat does.
        body = {"ipv4": "10.251.0.1", "heartbeat_ttl": args.ttl}
        if args.deregister_after:
            body["deregister_after"] = args.deregister_after
        put(f"{base}/late{i}/instances/hb", body)
        deadlines[i] = time.monotonic() + ttl + after
        time.sleep(args.spacing_ms / 1000)
    stop = time.monotonic() + ttl + after + 10
    while len(lateness) < args.instances and time.monotonic() < stop:
        time.sleep(0.05)
    done.set()
    poller.join()
    missing = args.instances - len(lateness)
    values = list(lateness.values())
    what = f"deregister_after {args.deregister_after}" if args.deregister_after else "gone from DNS"
    print(f"instances: {args.instances}, ttl {args.ttl}, not gone within 10 s: {missing}")
    print(f"deadline -> {what} (ms): p50 {percentile(values, 0.5):.1f}  p99 {percentile(values, 0.99):.1f}  max {max(values):.1f}  min {min(values):.1f}")


if __name__ == "__main__":
    main()
