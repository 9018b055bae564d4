"""The servers under test: start each pinned to one core, wait until it answers, stop it.

Every server listens on 127.0.0.1 only, on a free port chosen here, with its files in the
run's temporary folder. A server that does not start, or exits early, is an error that
names it and shows the end of its log; nothing is skipped.

CPU and memory are read from /proc for the whole process tree a server started (NSD
forks a server child and xfrd; Knot and muster are one process with threads, which
/proc/PID/stat already sums).
"""

import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

import dns.message
import dns.query
import dns.rcode

from namespace import NAMESPACE, NEGATIVE_TTL, TTL

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
START_TIMEOUT = 300  # seconds; 100,000 instances load in a few seconds on every server


class ServerError(RuntimeError):
    pass


def free_port():
    """A port free on 127.0.0.1 for both UDP and TCP (DNS servers bind both)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            candidate = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", candidate))
                except OSError:
                    continue
        return candidate
    raise ServerError("no free port on 127.0.0.1")


def _stat_fields(pid):
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    # The command name is in parentheses and may contain spaces; fields follow it.
    return text[text.rindex(")") + 2 :].split()


def process_tree(root):
    """`root` and every descendant still alive."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            parent = int(_stat_fields(entry)[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    tree, pending = [], [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, []))
    return tree


def cpu_seconds(root):
    """utime + stime of every process in the tree (each already sums its threads)."""
    total = 0
    for pid in process_tree(root):
        try:
            fields = _stat_fields(pid)
        except OSError:
            continue
        # Fields 14 and 15 of /proc/PID/stat; `fields` starts at field 3.
        total += int(fields[11]) + int(fields[12])
    return total / CLOCK_TICKS


def memory_kib(root):
    """VmRSS and Pss summed over the tree (Pss splits pages that forked processes share)."""
    rss = pss = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss += int(line.split()[1])
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        pss += int(line.split()[1])
        except OSError:
            continue
    return {"rss_kib": rss, "pss_kib": pss}


def query(port, name, rdtype, timeout=0.5):
    request = dns.message.make_query(name, rdtype, use_edns=0)
    return dns.query.udp(request, "127.0.0.1", port=port, timeout=timeout)


def query_whole(port, name, rdtype, timeout=0.5):
    """`query`, again over TCP when the UDP answer is truncated: a service of 1,000
    instances answered whole (max_answers = 0) never fits in UDP, and its truncated
    answer holds no records."""
    request = dns.message.make_query(name, rdtype, use_edns=0)
    response, _ = dns.query.udp_with_fallback(request, "127.0.0.1", port=port, timeout=timeout)
    return response


class Server:
    """One server process pinned to `core`, started by `start()`."""

    name = "server"

    def __init__(self, workdir, core):
        self.workdir = os.path.join(workdir, self.name)
        os.makedirs(self.workdir, exist_ok=True)
        self.core = core
        self.port = free_port()
        self.process = None
        self.log_path = os.path.join(self.workdir, "server.log")
        self.load_seconds = None

    def command(self):
        raise NotImplementedError

    def write_config(self, filename, text):
        self.config_path = os.path.join(self.workdir, filename)
        with open(self.config_path, "w") as f:
            f.write(text)

    def env(self):
        return None

    def ready(self):
        """True once the server answers the probe name; subclasses add conditions."""
        try:
            response = query_whole(self.port, self.probe[0], self.probe[1], timeout=0.2)
        except (dns.exception.Timeout, OSError):
            return False
        return response.rcode() == dns.rcode.NOERROR and len(response.answer) > 0

    def start(self, probe):
        """Starts the server and waits until `probe` (name, type) answers; times the load."""
        self.probe = probe
        log = open(self.log_path, "wb")
        started = time.monotonic()
        self.process = subprocess.Popen(
            ["taskset", "-c", str(self.core), *self.command()],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env(),
            # Its own process group for the SIGKILL fallback, but the harness's session, so
            # it shares the harness's scheduler autogroup and priority (see bench.py).
            process_group=0,
        )
        log.close()
        while time.monotonic() - started < START_TIMEOUT:
            if self.process.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.process.returncode} while starting:\n{self.log_tail()}")
            if self.ready():
                self.load_seconds = time.monotonic() - started
                return self
            time.sleep(0.02)
        self.stop()
        raise ServerError(f"{self.name} did not answer {probe} within {START_TIMEOUT} s:\n{self.log_tail()}")

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def cpu_seconds(self):
        if not self.alive():
            raise ServerError(f"{self.name} died:\n{self.log_tail()}")
        return cpu_seconds(self.process.pid)

    def memory_kib(self):
        return memory_kib(self.process.pid)

    def log_tail(self, lines=20):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self):
        """SIGTERM, then SIGKILL to the process group this server was started in."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


class Muster(Server):
    name = "muster"

    def __init__(self, workdir, core, binary, instances_json, max_answers, label="muster", extra_toml="", rule_toml="", data_root=None):
        """`label` names this muster in the results (and its folder); `extra_toml` is
        appended to its configuration (`bench/dns/rrl.py` adds `[dns.rrl]`), `rule_toml`
        to its catch-all service rule (`bench/dns/locality.py` adds `locality`);
        `data_root`, when given, holds its data_dir (its log) instead of its folder."""
        self.name = label
        super().__init__(workdir, core)
        data_dir = tempfile.mkdtemp(prefix=f"{label}-data-", dir=data_root) if data_root else f"{self.workdir}/data"
        self.binary = binary
        self.http_port = free_port()
        self.instances_path = os.path.join(self.workdir, "instances.json")
        with open(self.instances_path, "w") as f:
            f.write(instances_json)
        self.write_config(
            "muster.toml",
            f"""data_dir = "{data_dir}"

[dns]
listen = ["127.0.0.1:{self.port}"]

[http]
listen = "127.0.0.1:{self.http_port}"

[[namespaces]]
name = "{NAMESPACE}"
ttl = {TTL}
negative_ttl = {NEGATIVE_TTL}

[[namespaces.services]]
match = "*"
max_answers = {max_answers}
{rule_toml}
[[sources.file]]
path = "{self.instances_path}"

# The churn load writes 1,000/s from one address: no per-principal write limit (it
# would cap it at the default [auth] write_rate).
[auth]
write_rate = 0
{extra_toml}""",
        )

    def command(self):
        return [self.binary, "serve", "--config", self.config_path]

    def env(self):
        # muster as shipped: its default log filter, no MUSTER_* overrides from our shell.
        return {k: v for k, v in os.environ.items() if not k.startswith("MUSTER_")}

    def http(self, method, path, body=None, timeout=5):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}",
            data=body,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()
        except (urllib.error.URLError, OSError):
            return None, b""

    def ready(self):
        status, _ = self.http("GET", "/readyz", timeout=1)
        return status == 200 and super().ready()


class Knot(Server):
    name = "knot"

    def __init__(self, workdir, core, zone_path, transfer=False):
        """`transfer`: allow AXFR from 127.0.0.1 (bench/dns/axfr.py)."""
        super().__init__(workdir, core)
        acl = "\nacl:\n  - id: local\n    address: 127.0.0.1\n    action: transfer\n" if transfer else ""
        # One UDP and one TCP worker; RRL is a module Knot loads only when configured.
        self.write_config(
            "knot.conf",
            f"""server:
    rundir: "{self.workdir}"
    listen: 127.0.0.1@{self.port}
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1

database:
    storage: "{self.workdir}/db"

log:
  - target: stderr
    any: warning

template:
  - id: default
    storage: "{self.workdir}"
    journal-content: none
    zonefile-sync: -1
{acl}
zone:
  - domain: {NAMESPACE}.
    file: "{zone_path}"
{"    acl: local" if transfer else ""}
""",
        )

    def command(self):
        return ["knotd", "--config", self.config_path]


class Nsd(Server):
    name = "nsd"

    def __init__(self, workdir, core, zone_path, transfer=False):
        """`transfer`: allow AXFR from 127.0.0.1 (bench/dns/axfr.py)."""
        super().__init__(workdir, core)
        # One server process, response rate limiting off (its default of 200 qps per
        # source block throttles a loopback benchmark), no database, no remote control.
        self.write_config(
            "nsd.conf",
            f"""server:
    server-count: 1
    ip-address: 127.0.0.1@{self.port}
    do-ip6: no
    username: ""
    chroot: ""
    database: ""
    zonesdir: "{self.workdir}"
    zonelistfile: "{self.workdir}/zone.list"
    xfrdfile: "{self.workdir}/xfrd.state"
    xfrdir: "{self.workdir}"
    pidfile: "{self.workdir}/nsd.pid"
    logfile: "{self.workdir}/nsd.log"
    verbosity: 0
    rrl-ratelimit: 0
    rrl-whitelist-ratelimit: 0

remote-control:
    control-enable: no

zone:
    name: {NAMESPACE}.
    zonefile: "{zone_path}"
{"    provide-xfr: 127.0.0.1 NOKEY" if transfer else ""}
""",
        )

    def command(self):
        return ["nsd", "-d", "-c", self.config_path]


class Floor(Server):
    """examples/udp_floor.rs: receive, set QR, send back. Answers any name."""

    name = "floor"

    def __init__(self, workdir, core, binary):
        super().__init__(workdir, core)
        self.binary = binary

    def command(self):
        return [self.binary, f"127.0.0.1:{self.port}"]

    def ready(self):
        try:
            query(self.port, self.probe[0], self.probe[1], timeout=0.2)
        except (dns.exception.Timeout, OSError):
            return False
        return True
