#!/usr/bin/env python3
"""Active health checks, measured: from a failure to the DNS answer changing (issue 5).

Starts muster (target/release/muster, or $MUSTER_BIN) on free loopback ports and, per
failure kind, ``--instances`` real servers (each on its own 127.0.K.x address, in its own
service next to a check-less anchor so that fail-open never answers a failed instance).
Every instance is registered through REST with ``{"http": "/healthz"}`` or
``{"tcp": true}``, interval ``--interval-ms`` (100), both thresholds ``--threshold`` (2),
timeout the default 80% of the interval. Then, ``--trials`` times per kind, spread over
the instances (trials of different instances overlap):

1. wait until the instance is back in DNS, then a random 200-500 ms more (so the failure
   falls at a random point of the check schedule);
2. break it: ``http-500`` (the endpoint answers 500), ``http-killed`` (SIGKILL of the
   server process: connection refused), ``http-hang`` (SIGSTOP: the kernel still accepts,
   nothing answers, the check times out), ``tcp-closed`` (a TCP check; the listener is
   closed: refused), ``tcp-killed`` (a TCP check; SIGKILL);
3. a poller thread queries ``<svc>.internal A`` over UDP (dnspython) back to back for
   every instance whose failure is pending; detection latency = the first answer without
   the instance - the instant just before the failure was caused. The poll resolution
   (that answer - the previous one, which still held the instance) is printed too, and,
   independent of polling, the time to muster's log line for the transition (its
   timestamp against the wall clock read at the failure);
4. repair it (200 again, restart, SIGCONT, listen again) and start over.

For the kinds whose server runs in this process (http-500, tcp-closed) the server also
records when each check arrives, which splits the latency into: failure -> first
failing check (the check's phase: uniform over one interval), first -> last failing
check ((threshold - 1) intervals), last check's arrival -> DNS changed (muster's own
work: the check, the verdict, the registry change, plus the poll resolution).

With ``--background N``, muster also checks N more instances over HTTP every second
(servers and registration as in bench/health_scale.py) while the trials run.

Prints numbers; asserts nothing about time.

    .venv/bin/python bench/health_detection.py [--trials 60] [--instances 5] [--kinds http-500,http-killed,http-hang,tcp-closed,tcp-killed] [--background 5000]
"""

import argparse
import datetime
import os
import random
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype

from common import percentile  # first: it puts tests/interop on sys.path
from check_servers import HttpTarget, Loop, ServerProcess, TcpTarget
from harness import Muster
from health_scale import Servers, cpu_pressure, register_all, run_queue_wait

ANCHOR = "10.250.0.1"
KINDS = ["http-500", "http-killed", "http-hang", "tcp-closed", "tcp-killed"]


def stats(values):
    return (
        f"p50 {percentile(values, 0.5):6.1f}  p90 {percentile(values, 0.9):6.1f}  "
        f"p99 {percentile(values, 0.99):6.1f}  max {max(values):6.1f}  min {min(values):6.1f}  "
        f"mean {statistics.mean(values):6.1f}"
    )


class Poller(threading.Thread):
    """Queries DNS for every pending failure, back to back, until its address is gone."""

    def __init__(self, dns_port):
        super().__init__(daemon=True)
        self.dns_port = dns_port
        self.pending = {}  # trial -> dict(svc, ip, t0, last, done)
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.queries = 0

    def watch(self, trial, svc, ip, t0):
        pending = {"svc": svc, "ip": ip, "t0": t0, "last": t0, "done": threading.Event()}
        with self.lock:
            self.pending[trial] = pending
        return pending

    def run(self):
        while not self.stop.is_set():
            with self.lock:
                items = list(self.pending.items())
            if not items:
                time.sleep(0.0002)
                continue
            for trial, p in items:
                query = dns.message.make_query(f"{p['svc']}.internal.", dns.rdatatype.A)
                answer = dns.query.udp(query, "127.0.0.1", port=self.dns_port, timeout=2)
                now = time.monotonic()
                self.queries += 1
                if any(rr.address == p["ip"] for rrset in answer.answer for rr in rrset):
                    p["last"] = now
                    continue
                p["gone"] = now
                with self.lock:
                    del self.pending[trial]
                p["done"].set()


def make_target(kind, loop, ip):
    """(target, check body, break it, repair it)."""
    if kind == "http-500":
        target = HttpTarget(loop, ip)
        return target, {"http": "/healthz"}, lambda: setattr(target, "mode", 500), lambda: setattr(target, "mode", "ok")
    if kind in ("http-killed", "tcp-killed"):
        target = ServerProcess(ip, kind=kind.split("-")[0])
        return target, ({"http": "/healthz"} if kind == "http-killed" else {"tcp": True}), target.kill, target.start
    if kind == "http-hang":
        target = ServerProcess(ip)
        return target, {"http": "/healthz"}, target.stop, target.resume
    if kind == "tcp-closed":
        target = TcpTarget(loop, ip)
        return target, {"tcp": True}, target.close_listener, target.reopen
    raise SystemExit(f"unknown kind {kind}; known: {', '.join(KINDS)}")


def arrivals(target):
    """Check arrival times seen by an in-process target, or None."""
    if isinstance(target, HttpTarget):
        return target.requests
    if isinstance(target, TcpTarget):
        return target.connections
    return None


def run_kind(kind, m, loop, poller, args, number):
    results = []  # dicts: latency, resolution, action, phases
    lock = threading.Lock()
    trials = iter(range(args.trials))
    interval = args.interval_ms / 1000

    def worker(w):
        ip = f"127.0.{2 + number}.{10 + w}"
        svc = f"{kind}-{w}"
        target, check, fail, repair = make_target(kind, loop, ip)
        check = {**check, "interval": f"{args.interval_ms}ms", "healthy_threshold": args.threshold, "unhealthy_threshold": args.threshold}
        with lock:  # one requests.Session for every thread
            m.put_instance("internal", svc, "anchor", {"ipv4": ANCHOR, "port": 1})
            m.put_instance("internal", svc, "t", {"ipv4": ip, "port": target.port, "check": check})
        try:
            while True:
                with lock:
                    trial = next(trials, None)
                if trial is None:
                    return
                back_by = time.monotonic() + 10
                while ip not in [rr.address for rrset in m.dns_query(f"{svc}.internal", "A").answer for rr in rrset]:
                    if time.monotonic() > back_by:
                        raise RuntimeError(f"{kind} trial {trial}: {ip} not back in DNS within 10 s")
                    time.sleep(0.01)
                time.sleep(random.uniform(0.2, 0.5))
                t0, t0_wall = time.monotonic(), time.time()
                fail()
                acted = time.monotonic()
                p = poller.watch((kind, trial), svc, ip, t0)
                if not p["done"].wait(10):
                    raise RuntimeError(f"{kind} trial {trial}: {ip} still in DNS 10 s after the failure")
                row = {
                    "latency": (p["gone"] - t0) * 1000,
                    "resolution": (p["gone"] - p["last"]) * 1000,
                    "last_seen": (p["last"] - t0) * 1000,
                    "action": (acted - t0) * 1000,
                    "svc": svc,
                    "t0_wall": t0_wall,
                }
                seen = arrivals(target)
                if seen is not None:
                    before = [t for t in seen if t < acted]  # accepted before the listener closed
                    after = [t for t in seen if t0 <= t <= p["gone"]]
                    if kind == "http-500" and len(after) >= args.threshold:
                        row["phase"] = (after[0] - t0) * 1000
                        row["spread"] = (after[args.threshold - 1] - after[0]) * 1000
                        row["muster"] = (p["gone"] - after[args.threshold - 1]) * 1000
                    elif kind == "tcp-closed" and before:
                        # Refused connections never reach us: the first failing check is
                        # due one interval after the last accepted one (an estimate: a
                        # check that connects as the listener closes still passes).
                        first = before[-1] + interval
                        row["phase"] = (first - t0) * 1000
                        row["after_first"] = (p["gone"] - first) * 1000
                with lock:
                    results.append(row)
                repair()
        finally:
            target.close()

    errors = []

    def guarded(w):
        try:
            worker(w)
        except BaseException as error:  # a thread's exception would go unnoticed
            errors.append(f"{kind} instance {w}: {error!r}")

    threads = [threading.Thread(target=guarded, args=(w,)) for w in range(args.instances)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit("\n".join(errors))
    transitions(m.log_path, results)
    return results


LOG_LINE = re.compile(r"^(\S+Z)\s+INFO muster::health::scheduler: check changed health instance=internal/(\S+)/t healthy=false")


def transitions(log_path, rows):
    """Adds ``logged``: failure -> muster's log line for the unhealthy transition (written
    just before the registry applies it), which no DNS polling delays."""
    down = {}
    for line in Path(log_path).read_text(errors="replace").splitlines():
        if found := LOG_LINE.match(line):
            at = datetime.datetime.fromisoformat(found.group(1)).timestamp()
            down.setdefault(found.group(2), []).append(at)
    for row in rows:
        after = [t for t in down.get(row["svc"], []) if t >= row["t0_wall"]]
        if after:
            row["logged"] = (after[0] - row["t0_wall"]) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=60, help="per kind")
    parser.add_argument("--instances", type=int, default=5, choices=range(1, 241), metavar="1-240", help="per kind, failing in parallel")
    parser.add_argument("--interval-ms", type=int, default=100)
    parser.add_argument("--threshold", type=int, default=2, help="unhealthy and healthy threshold")
    parser.add_argument("--kinds", default="http-500,http-killed,http-hang,tcp-closed")
    parser.add_argument(
        "--background", type=int, default=0, help="meanwhile, this many more instances with HTTP checks every second (as in health_scale.py)"
    )
    args = parser.parse_args()
    kinds = args.kinds.split(",")

    workdir = Path(tempfile.mkdtemp(prefix="muster-health-detection-"))
    # The targets listen on loopback, which [health] denies to checks by default.
    m = Muster(workdir, '[health]\nallow = ["127.0.0.0/8"]\n').start()
    background = None
    if args.background:
        targets = [f"127.0.1.{1 + i % 250}:{42000 + i // 250}" for i in range(args.background)]
        background = Servers("http", targets, procs=2)
        register_all(m, targets, {"http": "/healthz", "interval": "1s"})
        time.sleep(3)
        print(f"background: {args.background} instances with HTTP checks every 1 s on 127.0.1.x:42000+")
    loop = Loop()
    poller = Poller(m.dns_port)
    poller.start()
    print(f"muster {m.bin} (pid {m.proc.pid}), dns 127.0.0.1:{m.dns_port}; load average before: {os.getloadavg()}")
    print(
        f"interval {args.interval_ms} ms, thresholds {args.threshold}, timeout {args.interval_ms * 4 // 5} ms (default); "
        f"{args.trials} trials per kind over {args.instances} instances\n"
    )
    try:
        for n, kind in enumerate(kinds):
            started, waited = time.monotonic(), run_queue_wait(m.proc.pid)
            rows = run_kind(kind, m, loop, poller, args, number=n)
            took = time.monotonic() - started
            waited = run_queue_wait(m.proc.pid) - waited
            print(
                f"{kind}: n={len(rows)} in {took:.0f} s; muster's threads waited for a CPU {waited / took * 1000:.0f} ms/s; "
                f"CPU pressure (some, avg10) {cpu_pressure()}%, load average {os.getloadavg()[0]:.1f}"
            )
            print(f"  failure -> DNS answer without it (ms): {stats([r['latency'] for r in rows])}")
            print(f"  poll resolution (ms):                  {stats([r['resolution'] for r in rows])}")
            print(f"  failure -> last answer still with it:  {stats([r['last_seen'] for r in rows])}  (a lower bound)")
            logged = [r["logged"] for r in rows if "logged" in r]
            print(f"  failure -> muster logs it unhealthy:   {stats(logged)}  (n={len(logged)}; wall clock, no polling)")
            print(f"  causing the failure took (ms):         max {max(r['action'] for r in rows):.1f}")
            if any("spread" in r for r in rows):
                split = [r for r in rows if "spread" in r]
                print(f"  failure -> first failing check (ms):   {stats([r['phase'] for r in split])}")
                print(f"  first -> last failing check (ms):      {stats([r['spread'] for r in split])}")
                print(f"  last failing check -> DNS (ms):        {stats([r['muster'] for r in split])}")
            if any("after_first" in r for r in rows):
                split = [r for r in rows if "after_first" in r]
                print(f"  failure -> first failing check (ms):   {stats([r['phase'] for r in split])}  (last accepted + interval)")
                print(f"  first failing check -> DNS (ms):       {stats([r['after_first'] for r in split])}")
            print()
    finally:
        poller.stop.set()
        print(f"load average after: {os.getloadavg()}; DNS queries by the poller: {poller.queries}")
        for line in m.get("/metrics").text.splitlines():
            if line.startswith(("muster_health_checks_total", "muster_health_transitions_total")):
                print(line)
        m.stop()
        loop.close()
        if background:
            background.close()


if __name__ == "__main__":
    main()
