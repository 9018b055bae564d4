#!/usr/bin/env python3
"""Active health checks at scale: muster's CPU and memory while it checks ``--instances``
instances (default 5,000) every ``--interval`` (default 1s), with HTTP checks and with TCP
checks (issue 5).

For each kind in ``--kinds`` (default ``none,http,tcp``; ``none`` registers the same
instances without a check, the baseline):

1. start ``--server-procs`` processes of ``tests/interop/check_servers.py`` (asyncio; HTTP
   answers 200 with keep-alive, TCP accepts and closes) that together listen on every instance's
   address: 127.0.1.1 .. 127.0.1.250, ports ``--base-port`` and up, one (ip, port) per
   instance, so every check is a real request to a distinct target;
2. start a fresh muster (target/release/muster, or $MUSTER_BIN) and register the
   instances through REST (50 services), each with ``"check": {"http": "/healthz",
   "interval": ...}`` or ``{"tcp": true, ...}`` (thresholds 2, timeout the default 80%);
3. wait ``--warmup`` seconds (every check has started; HTTP connections are pooled), then
   measure over ``--window`` seconds: muster's CPU (utime+stime from /proc/PID/stat, as a
   percentage of one core), its VmRSS/VmHWM, threads and open fds at the end, the checks
   it ran (muster_health_checks_total), the requests or connections the servers saw,
   and the health transitions (none expected: every target stays up).

With ``--hang-procs K``, after the HTTP window K of the server processes are stopped
(SIGSTOP: their targets hang, as behind a partition that drops packets) and the script
follows for 25 s how fast the hung instances turn unhealthy and how often the others are
still checked (see ``hang``).

Also printed: muster's threads' time waiting for a CPU (/proc/PID/task/*/schedstat) and
the kernel's CPU pressure, since the machine may be shared. Over loopback, much of the
kernel's work for the servers' side of each connection runs in muster's context and is
counted in its CPU, so the figures are on the high side of what remote targets cost.

Prints numbers; asserts nothing about time.

    .venv/bin/python bench/health_scale.py [--instances 5000] [--interval 1s] [--window 45] [--kinds none,http,tcp] [--server-procs 2 --hang-procs 1]
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import cpu_seconds  # first: it puts tests/interop on sys.path
import check_servers
from harness import Muster

SERVICES = 50


def run_queue_wait(pid):
    """Seconds the threads of ``pid`` have waited for a CPU (/proc/PID/task/*/schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total / 1e9


def cpu_pressure():
    """The kernel's CPU pressure (share of time some task waited for a CPU), or None."""
    try:
        return float(re.search(r"some avg10=(\S+)", Path("/proc/pressure/cpu").read_text()).group(1))
    except (FileNotFoundError, AttributeError):
        return None


def status(pid):
    text = Path(f"/proc/{pid}/status").read_text()
    out = {k: int(re.search(rf"^{k}:\s+(\d+)", text, re.M).group(1)) for k in ("VmRSS", "VmHWM", "Threads")}
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def counter(metrics_text, name, **labels):
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(rf"^{re.escape(name)}(?:\{{{re.escape(selector)}\}})? (\S+)$", metrics_text, re.M)
    return float(found.group(1)) if found else 0.0


class Servers:
    """check_servers.py processes listening on every target address."""

    def __init__(self, kind, targets, procs):
        self.procs = []
        for n in range(procs):
            share = targets[n::procs]
            p = subprocess.Popen(
                [sys.executable, check_servers.__file__, kind, *share],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                text=True,
            )
            line = p.stdout.readline().strip()
            if line != "ready":
                raise SystemExit(f"check server {n} did not start ({line!r}); are ports {targets[0]}.. free?")
            self.procs.append(p)

    def served(self, procs=None):
        """Requests (HTTP) or connections (TCP) served so far, summed."""
        total = 0
        for p in self.procs if procs is None else procs:
            if p.poll() is not None:
                raise SystemExit(f"check server {p.pid} exited with status {p.returncode} (see its message above)")
            p.send_signal(signal.SIGUSR1)
            total += int(p.stdout.readline())
        return total

    def cpu(self):
        return sum(cpu_seconds(p.pid) for p in self.procs)

    def close(self):
        for p in self.procs:
            p.terminate()
            p.wait()


def register_all(m, targets, check):
    def put(i_target):
        i, target = i_target
        ip, port = target.rsplit(":", 1)
        body = {"ipv4": ip, "port": int(port)}
        if check:
            body["check"] = check
        request = urllib.request.Request(
            m.url(f"/v1/namespaces/internal/services/scale{i % SERVICES}/instances/i-{i}"),
            data=json.dumps(body).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            response.read()

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, enumerate(targets)))


def measure(kind, args, targets):
    check = {
        "none": None,
        "http": {"http": "/healthz", "interval": args.interval},
        "tcp": {"tcp": True, "interval": args.interval},
    }[kind]
    servers = Servers("tcp" if kind == "tcp" else "http", targets, args.server_procs) if check else None
    # The targets listen on loopback, which [health] denies to checks by default.
    workdir = Path(tempfile.mkdtemp(prefix=f"muster-health-scale-{kind}-"))
    m = Muster(workdir, '[health]\nallow = ["127.0.0.0/8"]\n').start()
    pid = m.proc.pid
    try:
        started = time.monotonic()
        register_all(m, targets, check)
        registered = time.monotonic() - started
        time.sleep(args.warmup)
        def sample():
            """What the window is measured between: CPU, run-queue wait, metrics, work done."""
            return {
                "cpu": cpu_seconds(pid),
                "waited": run_queue_wait(pid),
                "metrics": m.get("/metrics").text,
                "served": servers.served() if servers else 0,
                "server_cpu": servers.cpu() if servers else 0.0,
                "t": time.monotonic(),
            }

        before = sample()
        time.sleep(args.window)
        after = sample()
        proc = status(pid)
        window = after["t"] - before["t"]

        def delta(name, **labels):
            return counter(after["metrics"], name, **labels) - counter(before["metrics"], name, **labels)

        passed, failed = delta("muster_health_checks_total", result="pass"), delta("muster_health_checks_total", result="fail")
        cpu = (after["cpu"] - before["cpu"]) / window
        checks = passed + failed
        row = {
            "kind": kind,
            "instances": len(targets),
            "registration_s": round(registered, 1),
            "window_s": round(window, 1),
            "muster_cpu_pct_of_one_core": round(cpu * 100, 2),
            "checks_per_s": round(checks / window),
            "failed_checks": int(failed),
            "cpu_us_per_check": round(cpu * window / checks * 1e6, 1) if checks else None,
            "server_saw_per_s": round((after["served"] - before["served"]) / window) if servers else None,
            "server_cpu_pct": round((after["server_cpu"] - before["server_cpu"]) / window * 100, 1) if servers else None,
            "transitions": int(
                counter(after["metrics"], "muster_health_transitions_total", result="unhealthy")
                + counter(after["metrics"], "muster_health_transitions_total", result="healthy")
            ),
            "muster_waited_for_cpu_ms_per_s": round((after["waited"] - before["waited"]) / window * 1000),
            "cpu_pressure_some_avg10": cpu_pressure(),
            "rss_mib": round(proc["VmRSS"] / 1024, 1),
            "hwm_mib": round(proc["VmHWM"] / 1024, 1),
            "threads": proc["Threads"],
            "fds": proc["fds"],
        }
        if kind == "http" and args.hang_procs:
            row["hang"] = hang(m, servers, args)
        return row
    finally:
        m.stop()
        if servers:
            servers.close()


def hang(m, servers, args):
    """SIGSTOP ``--hang-procs`` of the server processes (their targets accept into the
    backlog and never answer: every check of them times out, holding one of muster's
    concurrent-check slots for the whole timeout) and follow, every 2.5 s for 25 s: the
    checks that pass and fail per second, the requests the still-healthy targets see per
    second (their check rate: 1 per instance per interval if nothing waits for a slot),
    and how many instances have turned unhealthy."""
    stopped, healthy = servers.procs[: args.hang_procs], servers.procs[args.hang_procs :]
    hung = sum(len(p.args) - 3 for p in stopped)
    out = {"hung_instances": hung, "samples": []}

    def sample():
        text = m.get("/metrics").text
        return (
            time.monotonic(),
            counter(text, "muster_health_checks_total", result="pass"),
            counter(text, "muster_health_checks_total", result="fail"),
            counter(text, "muster_health_transitions_total", result="unhealthy"),
            servers.served(healthy),
        )

    for p in stopped:
        p.send_signal(signal.SIGSTOP)
    started = previous = sample()
    try:
        while previous[0] - started[0] < 25:
            time.sleep(2.5)
            now = sample()
            dt = now[0] - previous[0]
            out["samples"].append(
                {
                    "t_s": round(now[0] - started[0], 1),
                    "pass_per_s": round((now[1] - previous[1]) / dt),
                    "fail_per_s": round((now[2] - previous[2]) / dt),
                    "healthy_targets_saw_per_s": round((now[4] - previous[4]) / dt),
                    "unhealthy": int(now[3]),
                }
            )
            if "all_unhealthy_after_s" not in out and now[3] >= hung:
                out["all_unhealthy_after_s"] = round(now[0] - started[0], 1)
            previous = now
    finally:
        for p in stopped:
            p.send_signal(signal.SIGCONT)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--instances", type=int, default=5000)
    parser.add_argument("--interval", default="1s")
    parser.add_argument("--window", type=float, default=45, help="seconds measured")
    parser.add_argument("--warmup", type=float, default=8, help="seconds after registering, before measuring")
    parser.add_argument("--kinds", default="none,http,tcp")
    parser.add_argument("--server-procs", type=int, default=2)
    parser.add_argument("--base-port", type=int, default=41000)
    parser.add_argument(
        "--hang-procs", type=int, default=0, help="after the http window, SIGSTOP this many server processes and follow for 25 s"
    )
    args = parser.parse_args()
    ips = [f"127.0.1.{n}" for n in range(1, 251)]
    per_ip = -(-args.instances // len(ips))
    targets = [f"{ip}:{args.base_port + p}" for p in range(per_ip) for ip in ips][: args.instances]
    print(f"{args.instances} instances on {len(ips)} addresses x {per_ip} ports, interval {args.interval}; "
          f"load average {os.getloadavg()}, {os.cpu_count()} CPUs")
    for kind in args.kinds.split(","):
        row = measure(kind, args, targets)
        print(json.dumps(row))
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
