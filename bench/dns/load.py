"""One measured dnsperf run against one server, and what it yields.

dnsperf 2.10 (Debian bookworm's) prints only the average, min, max and standard
deviation of latency. Its `-v` flag prints one line per completed query,
`> NOERROR svc1.internal A 0.000127` (latency in seconds, microsecond resolution), so the
percentiles here come from those lines, written to a file and read back after the run.
Printing costs dnsperf about a fifth of its throughput, which would make dnsperf the
bottleneck for Knot, NSD and the floor, so saturation runs go without `-v` (average
latency only) and the fixed-rate runs use it (average and percentiles).

Server CPU is utime+stime of the server's process tree (/proc) read just before dnsperf
starts and just after it exits, divided by the queries dnsperf saw completed.
"""

import os
import re
import subprocess
import time

LOAD_CORE = 1


class LoadError(RuntimeError):
    pass


def dnsperf_command(port, query_file, seconds, clients, outstanding, rate, flags, verbose, transport="udp"):
    """dnsperf's command line; `flags` shape the queries (shapes.dnsperf_flags)."""
    command = [
        "taskset", "-c", str(LOAD_CORE),
        "dnsperf",
        "-s", "127.0.0.1",
        "-p", str(port),
        "-d", query_file,
        "-l", str(seconds),
        "-c", str(clients),
        "-q", str(outstanding),
        "-t", "2",
    ]  # fmt: skip
    if rate:
        command += ["-Q", str(rate)]
    command += flags
    if verbose:
        command.append("-v")
    if transport != "udp":
        command += ["-m", transport]
    return command


_SUMMARY = {
    "sent": re.compile(r"Queries sent:\s+(\d+)"),
    "completed": re.compile(r"Queries completed:\s+(\d+)"),
    "lost": re.compile(r"Queries lost:\s+(\d+)"),
    "run_seconds": re.compile(r"Run time \(s\):\s+([\d.]+)"),
    "qps": re.compile(r"Queries per second:\s+([\d.]+)"),
    "avg_latency_s": re.compile(r"Average Latency \(s\):\s+([\d.]+)"),
    "response_bytes": re.compile(r"Average packet size:\s+request \d+, response (\d+)"),
}


def parse_summary(text):
    """The numbers of dnsperf's closing statistics; a missing one is an error."""
    summary = {}
    for key, pattern in _SUMMARY.items():
        match = pattern.search(text)
        if not match:
            raise LoadError(f"dnsperf output has no {key!r}:\n{text[-2000:]}")
        summary[key] = float(match.group(1)) if "." in match.group(1) else int(match.group(1))
    codes = re.search(r"Response codes:\s+(.*)", text)
    summary["rcodes"] = dict(
        (code, int(count)) for code, count in re.findall(r"([A-Z]+) (\d+) \(", codes.group(1) if codes else "")
    )
    return summary


def latency_percentiles(verbose_path):
    """avg, p50, p99, p99.9 and max latency in microseconds from `-v` lines."""
    latencies = []
    with open(verbose_path, errors="replace") as f:
        for line in f:
            if line.startswith("> "):
                try:
                    latencies.append(float(line.rsplit(None, 1)[1]))
                except (ValueError, IndexError):
                    continue
    if not latencies:
        return {}
    latencies.sort()

    def at(fraction):
        return latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] * 1e6

    return {
        "latency_samples": len(latencies),
        "avg_us": sum(latencies) / len(latencies) * 1e6,
        "p50_us": at(0.50),
        "p99_us": at(0.99),
        "p999_us": at(0.999),
        "max_us": latencies[-1] * 1e6,
    }


def run(server, query_file, workdir, label, seconds, clients, outstanding, rate=None, flags=("-e",), during=None, verbose=False, transport="udp"):
    """Runs dnsperf against `server` for `seconds`; `during` (a callable taking the
    deadline) runs alongside, for churn; `verbose` adds latency percentiles. Returns one
    result row."""
    verbose_path = os.path.join(workdir, f"dnsperf-{label}.out")
    command = dnsperf_command(server.port, query_file, seconds, clients, outstanding, rate, list(flags), verbose, transport)
    cpu_before = server.cpu_seconds()
    started = time.monotonic()
    with open(verbose_path, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        extra = during(started + seconds) if during else None
        # wait4 gives dnsperf's own CPU time: near one core's worth means dnsperf, not the
        # server, limited the rate.
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - started
    cpu = server.cpu_seconds() - cpu_before
    with open(verbose_path, errors="replace") as f:
        f.seek(max(0, os.path.getsize(verbose_path) - 4000))
        tail = f.read()
    if process.returncode != 0:
        raise LoadError(f"dnsperf against {server.name} exited {process.returncode}:\n{tail}")
    summary = parse_summary(tail)
    if summary["completed"] == 0:
        raise LoadError(f"{server.name} answered no query:\n{tail}")
    row = {
        "server": server.name,
        "label": label,
        "mode": f"rate {rate}" if rate else "saturation",
        "command": " ".join(command),
        "wall_seconds": elapsed,
        "server_cpu_seconds": cpu,
        "cpu_us_per_query": cpu / summary["completed"] * 1e6,
        "server_cpu_share": cpu / elapsed,
        "dnsperf_cpu_share": (usage.ru_utime + usage.ru_stime) / elapsed,
        "avg_us": summary["avg_latency_s"] * 1e6,
        **summary,
        **(latency_percentiles(verbose_path) if verbose else {}),
    }
    if extra is not None:
        row["during"] = extra
    os.remove(verbose_path)
    return row


def warm_up(server, query_file, seconds, clients, outstanding, flags=("-e",), transport="udp"):
    """An unmeasured run, so caches, page faults and socket buffers settle first."""
    command = dnsperf_command(server.port, query_file, seconds, clients, outstanding, None, list(flags), False, transport)
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise LoadError(f"dnsperf warm-up against {server.name} failed:\n{result.stdout}{result.stderr}")
