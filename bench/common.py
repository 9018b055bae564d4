"""What the bench/ scripts share, so each is written once.

Importing it puts tests/interop on sys.path (once, here), so a script can then
`from harness import Muster` (and check_servers, moto_ecs, peers, etcd_cluster): the
scripts in bench/ run as `python bench/NAME.py`, which puts bench/ itself on the path.

Also here: the percentile the scripts print, a process's CPU seconds, the std-only load
clients of bench/load/ (built with cargo) and the header of the scripts that measure a
release binary they start themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "interop"))

# bench/load's durable-write client (src/bin/durability_load.rs), once build_load_clients() ran.
LOAD_BIN = REPO / "target" / "release" / "durability_load"


def percentile(values, fraction):
    """The value at `fraction` (0 to 1) of `values` sorted: no interpolation, the largest
    at 1."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def build_load_clients():
    """Builds bench/load's clients into target/release/: std only, seconds the first time;
    cargo does nothing when they are current."""
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "muster-load"], cwd=REPO, check=True)


def durable_writes(http_port, writers, count, **flags):
    """Runs the durability_load client against 127.0.0.1:`http_port` (`flags`: its other
    flags, e.g. first=, keys=, services=) and returns its JSON line; exits when a write
    was refused."""
    cmd = [str(LOAD_BIN), "--addr", f"127.0.0.1:{http_port}", "--writers", str(writers), "--count", str(count)]
    for flag, value in flags.items():
        cmd += [f"--{flag}", str(value)]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
    if out["errors"]:
        sys.exit(f"{out['errors']} writes failed: {out}")
    return out


def muster_and_workdir(prefix, holds="data"):
    """The muster to measure (MUSTER_BIN, or target/release/muster) and a fresh directory
    for the run under target/, both printed with the kernel, CPUs and load average: the
    figures depend on what else runs on the machine."""
    binary = Path(os.environ.get("MUSTER_BIN", REPO / "target" / "release" / "muster"))
    work = Path(tempfile.mkdtemp(prefix=prefix, dir=REPO / "target"))
    print(f"muster {binary} ({time.ctime(binary.stat().st_mtime)}); {holds} in {work}")
    print(f"{os.uname().sysname} {os.uname().release}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    return binary, work
