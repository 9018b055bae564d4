#!/usr/bin/env python3
"""Time from a REST write's response to the DNS answer changing.

Starts nothing itself: point it at a running muster (default: the embedded default's
ports). Each write registers a fresh address for instance `i-1` of service `latency`;
right after the 200 arrives the script queries DNS (dnspython, UDP) until the new
address is answered. Prints p50/p99 of that gap, of the write itself, and how many
writes were already visible on the first query (read-your-writes). With `--drain`, the
writes drain `i-1` and return it in turn (`PUT`/`DELETE .../drain`, beside an `i-2`
that stays), and the answer must lose or regain its address.

Then it reads muster's own measure of the same writes from `/metrics`: the change → DNS
lag histogram (`muster_registry_publish_lag_seconds{cause="api"}`, from the write's
arrival at the registry to the publish of the snapshot and zone that serve it), the
difference of its buckets over the run, with p50/p99 interpolated within a bucket as
Prometheus's histogram_quantile does.

    python3 bench/rest_to_dns.py --writes 1000 [--drain] [--dns 127.0.0.1:8053] [--http 127.0.0.1:8054]
"""

import argparse
import ipaddress
import json
import statistics
import time
import urllib.request

import dns.message
import dns.query
import dns.rdatatype

from common import percentile


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writes", type=int, default=1000)
    parser.add_argument("--dns", default="127.0.0.1:8053")
    parser.add_argument("--http", default="127.0.0.1:8054")
    parser.add_argument("--namespace", default="internal")
    parser.add_argument("--drain", action="store_true", help="time drains and their reversal instead")
    args = parser.parse_args()
    dns_host, dns_port = args.dns.rsplit(":", 1)
    url = f"http://{args.http}/v1/namespaces/{args.namespace}/services/latency/instances/i-1"
    qname = f"latency.{args.namespace}."
    if args.drain:
        for iid, address in (("i-1", "10.200.0.1"), ("i-2", "10.200.0.2")):
            body = json.dumps({"ipv4": address, "port": 80}).encode()
            put = urllib.request.Request(url[: -len("i-1")] + iid, data=body, method="PUT")
            urllib.request.urlopen(put).read()

    lag_before = publish_lag(args.http)
    write_ms, visible_ms, first_try = [], [], 0
    for i in range(args.writes):
        if args.drain:
            # Even writes drain i-1 (its address must go), odd ones return it.
            address, wanted = "10.200.0.1", i % 2 == 1
            method = "DELETE" if wanted else "PUT"
            request = urllib.request.Request(url + "/drain", method=method)
        else:
            address, wanted = str(ipaddress.IPv4Address("10.200.0.1") + i), True
            body = json.dumps({"ipv4": address, "port": 80}).encode()
            request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": "application/json"})
        started = time.perf_counter()
        with urllib.request.urlopen(request) as response:
            response.read()
        acknowledged = time.perf_counter()
        attempts = 0
        while True:
            attempts += 1
            answer = dns.query.udp(dns.message.make_query(qname, dns.rdatatype.A), dns_host, port=int(dns_port), timeout=2)
            answered = any(rr.address == address for rrset in answer.answer for rr in rrset)
            if answered == wanted:
                break
            if time.perf_counter() - acknowledged > 5:
                raise SystemExit(f"write {i}: {address} still {'un' if wanted else ''}answered after 5 s")
        seen = time.perf_counter()
        first_try += attempts == 1
        write_ms.append((acknowledged - started) * 1000)
        visible_ms.append((seen - acknowledged) * 1000)

    print(f"writes: {args.writes}")
    print(f"visible on the first query after the response: {first_try}/{args.writes}")
    print(f"response -> DNS answer changed (ms, includes one UDP query): p50 {percentile(visible_ms, 0.5):.3f}  p99 {percentile(visible_ms, 0.99):.3f}  max {max(visible_ms):.3f}")
    print(f"PUT round trip (ms): p50 {percentile(write_ms, 0.5):.3f}  p99 {percentile(write_ms, 0.99):.3f}  mean {statistics.mean(write_ms):.3f}")
    lag = {le: n - lag_before.get(le, 0) for le, n in publish_lag(args.http).items()}
    count = lag.get(float("inf"), 0)
    print(f"muster_registry_publish_lag_seconds{{cause=\"api\"}}: {count:.0f} changes; "
          f"p50 {bucket_quantile(lag, 0.5) * 1000:.3f} ms  p99 {bucket_quantile(lag, 0.99) * 1000:.3f} ms")


def publish_lag(http):
    """The API cause's cumulative buckets of the change → DNS lag: {le: count}."""
    with urllib.request.urlopen(f"http://{http}/metrics") as response:
        text = response.read().decode()
    buckets = {}
    for line in text.splitlines():
        if line.startswith("muster_registry_publish_lag_seconds_bucket{") and 'cause="api"' in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(le)] = float(line.rsplit(" ", 1)[1])
    return buckets


def bucket_quantile(buckets, q):
    """histogram_quantile(q) of cumulative buckets: linear within the bucket it falls in."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]]
    if total == 0:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for le in bounds:
        if buckets[le] >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - below) / max(buckets[le] - below, 1e-12)
        lower, below = le, buckets[le]
    return lower


if __name__ == "__main__":
    main()
