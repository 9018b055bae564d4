"""A real etcd cluster on loopback for the replicated-registry tests (Debian's etcd-server
and etcdctl, installed by scripts/install-test-tools.sh).

:class:`EtcdCluster` starts N members (3 by default) with free client and peer ports and
data dirs under the test's tmp dir, waits until ``etcdctl endpoint health`` says every
member is healthy, and can stop, kill and restart members and compact the history.
:func:`etcd_toml` is the ``[etcd]`` table a muster replica needs to use it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from harness import _free_tcp_port, terminate, toml_value

START_TIMEOUT = 20.0


def etcd_toml(endpoints, prefix="/muster/", request_timeout="2s", dial_timeout="1s"):
    return (
        "[etcd]\n"
        f"endpoints = {toml_value(list(endpoints))}\n"
        f"prefix = {toml_value(prefix)}\n"
        f"request_timeout = {toml_value(request_timeout)}\n"
        f"dial_timeout = {toml_value(dial_timeout)}\n"
    )


class EtcdCluster:
    def __init__(self, workdir: Path, members: int = 3):
        for tool in ("etcd", "etcdctl"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} not found: run scripts/install-test-tools.sh")
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        used = set()
        self.names = [f"e{i + 1}" for i in range(members)]
        self.client_ports, self.peer_ports = [], []
        for _ in self.names:
            for ports in (self.client_ports, self.peer_ports):
                port = _free_tcp_port(exclude=used)
                used.add(port)
                ports.append(port)
        self.token = f"muster-{uuid.uuid4().hex[:8]}"
        self.procs = [None] * members
        self.logs = [None] * members

    @property
    def endpoints(self):
        return [f"http://127.0.0.1:{p}" for p in self.client_ports]

    def endpoint(self, i):
        return self.endpoints[i]

    def command(self, i):
        cluster = ",".join(
            f"{n}=http://127.0.0.1:{p}" for n, p in zip(self.names, self.peer_ports)
        )
        client = f"http://127.0.0.1:{self.client_ports[i]}"
        peer = f"http://127.0.0.1:{self.peer_ports[i]}"
        return [
            "etcd",
            "--name", self.names[i],
            "--data-dir", str(self.dir / self.names[i]),
            "--listen-client-urls", client,
            "--advertise-client-urls", client,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", cluster,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", self.token,
            "--logger", "zap",
            "--log-level", "warn",
        ]

    def start_member(self, i):
        self.logs[i] = open(self.dir / f"{self.names[i]}.log", "ab")
        self.procs[i] = subprocess.Popen(
            self.command(i), stdout=self.logs[i], stderr=subprocess.STDOUT
        )

    def start(self):
        for i in range(len(self.names)):
            self.start_member(i)
        self.wait_healthy()
        return self

    def wait_healthy(self, members=None, timeout=START_TIMEOUT):
        members = range(len(self.names)) if members is None else members
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            for i in members:
                proc = self.procs[i]
                if proc is not None and proc.poll() is not None:
                    raise RuntimeError(f"etcd {self.names[i]} exited:\n{self.log_tail(i)}")
            endpoints = ",".join(self.endpoints[i] for i in members)
            r = self.etcdctl("endpoint", "health", endpoints=endpoints, check=False)
            last = r.stdout + r.stderr
            if r.returncode == 0:
                return
            time.sleep(0.2)
        raise RuntimeError(f"etcd did not become healthy: {last}")

    def stop_member(self, i, sig=signal.SIGTERM):
        proc = self.procs[i]
        if proc is None:
            return
        if sig == signal.SIGKILL:
            proc.kill()
            proc.wait(timeout=10)
        else:
            terminate(proc)
        self.logs[i].close()
        self.procs[i] = None

    def stop(self):
        for i in range(len(self.names)):
            self.stop_member(i)

    def etcdctl(self, *args, endpoints=None, check=True, timeout=10):
        endpoints = endpoints or ",".join(
            e for e, p in zip(self.endpoints, self.procs) if p is not None
        )
        env = dict(os.environ, ETCDCTL_API="3")
        r = subprocess.run(
            ["etcdctl", f"--endpoints={endpoints}", "--command-timeout=5s", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
        )
        if check and r.returncode != 0:
            raise RuntimeError(f"etcdctl {' '.join(args)}: {r.stdout}{r.stderr}")
        return r

    def revision(self):
        r = self.etcdctl("endpoint", "status", "-w", "json")
        return max(s["Status"]["header"]["revision"] for s in json.loads(r.stdout))

    def leader(self):
        """The index of the member that leads now (endpoint status of the running ones)."""
        r = self.etcdctl("endpoint", "status", "-w", "json")
        for status in json.loads(r.stdout):
            s = status["Status"]
            if s["leader"] == s["header"]["member_id"]:
                return self.endpoints.index(status["Endpoint"])
        raise RuntimeError(f"no member leads: {r.stdout}")

    def compact(self, revision=None):
        revision = revision or self.revision()
        self.etcdctl("compact", str(revision), "--physical")
        return revision

    def keys(self, prefix):
        r = self.etcdctl("get", prefix, "--prefix", "--keys-only")
        return [line for line in r.stdout.splitlines() if line.strip()]

    def log_tail(self, i, lines=30):
        try:
            text = (self.dir / f"{self.names[i]}.log").read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
