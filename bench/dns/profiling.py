"""Where a server's CPU goes under load: `perf record` during one extra dnsperf run.

The machine's virtual CPUs expose no hardware counters (`perf stat -e instructions true`
says "not supported"), so samples come from the `cpu-clock` software event, which needs
none. The profiled run is separate from the measured ones (sampling costs the server a
little) and its table is not reported as a benchmark figure.
"""

import os
import re
import subprocess
import threading

import load

FREQUENCY = 1999


class ProfileError(RuntimeError):
    pass


def record(server, query_file, workdir, label, seconds, clients, outstanding, flags=("-e",), during=None, transport="udp"):
    """perf samples of `server`'s whole process during a saturation run; the top entries."""
    data = os.path.join(workdir, f"perf-{label}.data")
    perf = subprocess.Popen(
        ["perf", "record", "-e", "cpu-clock", "-F", str(FREQUENCY), "-p", str(server.process.pid), "-o", data, "--", "sleep", str(seconds + 1)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    # perf needs a moment to attach to every thread before the load starts.
    threading.Event().wait(0.5)
    row = load.run(
        server, query_file, workdir, f"{label}-profile", seconds, clients, outstanding,
        flags=flags, during=during, transport=transport,
    )  # fmt: skip
    _, errors = perf.communicate(timeout=seconds + 30)
    if perf.returncode != 0 or not os.path.exists(data):
        raise ProfileError(f"perf record failed ({perf.returncode}):\n{errors[-2000:]}")
    symbols = report(data, "dso,sym", 0)
    result = {
        "qps_while_profiled": row["qps"],
        "by_thread": report(data, "comm", 0.5),
        "by_dso": report(data, "dso", 0.5),
        "by_area": by_area(symbols),
        "by_symbol": [entry for entry in symbols if entry[0] >= 0.4],
    }
    os.remove(data)
    return result


_LINE = re.compile(r"^\s*([\d.]+)%\s+(.*)$")


def report(data, sort, percent_limit):
    """`perf report --sort <sort>` as [(percent, entry)], largest first."""
    command = ["perf", "report", "-i", data, "--stdio", "--no-children", "--sort", sort, "--percent-limit", str(percent_limit)]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        raise ProfileError(f"perf report failed:\n{out.stderr[-2000:]}")
    entries = []
    for line in out.stdout.splitlines():
        if line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match:
            entries.append([float(match.group(1)), " ".join(match.group(2).split())])
    return entries


# Where a sample's symbol belongs, first match wins (self time, not inclusive).
AREAS = (
    ("kernel (UDP, syscalls, scheduler)", re.compile(r"\[kernel")),
    ("allocator (malloc/free)", re.compile(r"libc.*\b(_?_?libc_)?(malloc|free|cfree|realloc|calloc|_int_\w+|malloc_consolidate|tcache\w*|unlink_chunk)")),
    ("memcpy/memmove/memcmp", re.compile(r"libc.*__mem")),
    ("libc other (syscall wrappers)", re.compile(r"libc")),
    ("muster", re.compile(r"\[\.\] <?muster::")),
    ("hickory_proto (parse, encode)", re.compile(r"hickory_proto")),
    ("hickory_server / hickory_net", re.compile(r"hickory_(server|net)")),
    ("tokio", re.compile(r"tokio")),
    ("imbl (zone maps)", re.compile(r"imbl")),
    ("axum / hyper (REST)", re.compile(r"axum|hyper|tower")),
    ("alloc / core (Vec, String, hashing)", re.compile(r"alloc::|core::|hashbrown|std::")),
)


def by_area(symbols):
    """Self time summed by area of the code, [(percent, area)], largest first."""
    totals = {}
    for percent, entry in symbols:
        area = next((name for name, pattern in AREAS if pattern.search(entry)), "other")
        totals[area] = totals.get(area, 0.0) + percent
    return sorted(([round(p, 1), a] for a, p in totals.items()), reverse=True)


def lines(profile, top=25):
    """A short printed summary."""
    out = [f"  (perf cpu-clock at {FREQUENCY} Hz; {profile['qps_while_profiled']:,.0f} qps while profiled)"]
    out.append("  by thread: " + ", ".join(f"{entry} {percent:.1f}%" for percent, entry in profile["by_thread"][:8]))
    out.append("  by object: " + ", ".join(f"{entry} {percent:.1f}%" for percent, entry in profile["by_dso"][:8]))
    out.append("  by area:   " + ", ".join(f"{area} {percent:.1f}%" for percent, area in profile["by_area"]))
    for percent, entry in profile["by_symbol"][:top]:
        out.append(f"  {percent:5.1f}%  {entry}")
    return "\n".join(out)
