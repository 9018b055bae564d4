"""The interop suite's harness: runs the real muster binary and talks to it with clients we
did not write (dnspython, dig, kdig, requests). Fixtures that use it are in conftest.py.

:class:`Muster` is one server process with its own ports, config file, data_dir and log.
Its config is generated: ``data_dir``, ``[dns]`` and ``[http]`` on free loopback ports,
then the test's ``extra_toml``. When ``extra_toml`` holds no ``[[namespaces]]`` table,
the namespace ``internal`` with ``ttl = 5`` and ``negative_ttl = 1`` is added in front of
it (unless ``default_namespace=False``: a config without namespaces, as a pure Cloud Map
user writes); tests that need answer policies write the whole namespace with
:func:`namespace_toml`.

The binary is ``$MUSTER_BIN`` (default ``target/release/muster``); ``scripts/test`` builds it.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
DEFAULT_BIN = REPO / "target" / "release" / "muster"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
LOG_TAIL_LINES = 60


def namespace_toml(name="internal", ttl=5, negative_ttl=1, services=()):
    """TOML for one ``[[namespaces]]`` table with its ``[[namespaces.services]]`` policies.

    ``services`` is a sequence of dicts, e.g. ``{"match": "big*", "max_answers": 0}``.
    ``ttl``/``negative_ttl`` of None leave the key out (muster's default applies).
    """
    lines = ["[[namespaces]]", f"name = {toml_value(name)}"]
    if ttl is not None:
        lines.append(f"ttl = {toml_value(ttl)}")
    if negative_ttl is not None:
        lines.append(f"negative_ttl = {toml_value(negative_ttl)}")
    for policy in services:
        lines.append("")
        lines.append("[[namespaces.services]]")
        lines.extend(f"{k} = {toml_value(v)}" for k, v in policy.items())
    return "\n".join(lines) + "\n"


def toml_value(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {v!r}")


# --------------------------------------------------------------------------------------
# Ports


def _free_dns_port():
    """A port free on 127.0.0.1 for both TCP and UDP (DNS listens on both)."""
    for _ in range(50):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            try:
                udp.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
        finally:
            tcp.close()
            udp.close()
    raise RuntimeError("no port free for both TCP and UDP on 127.0.0.1")


def _free_tcp_port(exclude=()):
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        finally:
            s.close()
        if port not in exclude:
            return port


# --------------------------------------------------------------------------------------
# dig / kdig output


@dataclass
class DigResult:
    """The parts of dig's or kdig's text output that tests look at."""

    text: str
    status: str | None = None
    flags: set = field(default_factory=set)
    counts: dict = field(default_factory=dict)
    sections: dict = field(default_factory=dict)  # "ANSWER" -> [[name, ttl, class, type, rdata...]]

    def records(self, section="ANSWER", rdtype=None):
        rows = self.sections.get(section, [])
        if rdtype is not None:
            rows = [r for r in rows if len(r) > 3 and r[3].upper() == rdtype.upper()]
        return rows

    def rdata(self, section="ANSWER", rdtype=None):
        return [" ".join(r[4:]) for r in self.records(section, rdtype)]


_STATUS_RE = re.compile(r"->>HEADER<<-\s*opcode:\s*\w+[,;]\s*status:\s*([A-Z0-9]+)", re.I)
_FLAGS_RE = re.compile(r"^;;\s*flags:\s*([a-z ]*);(.*)$", re.I | re.M)
_COUNT_RE = re.compile(r"([A-Z]+):\s*(\d+)")
_SECTION_RE = re.compile(r"^;;\s*([A-Z]+)(?: PSEUDO)? SECTION:\s*$", re.M)


def parse_dig(text):
    """Parse the header and record sections of dig's or kdig's default output."""
    result = DigResult(text=text)
    m = _STATUS_RE.search(text)
    if m:
        result.status = m.group(1).upper()
    m = _FLAGS_RE.search(text)
    if m:
        result.flags = set(m.group(1).lower().split())
        result.counts = {k.upper(): int(v) for k, v in _COUNT_RE.findall(m.group(2))}
    section = None
    for line in text.splitlines():
        header = _SECTION_RE.match(line)
        if header:
            section = header.group(1).upper()
            result.sections.setdefault(section, [])
            continue
        if not line.strip() or line.startswith(";;"):
            section = None if not line.strip() else section
            continue
        if section in ("ANSWER", "AUTHORITY", "ADDITIONAL"):
            result.sections[section].append(line.split())
    return result


# --------------------------------------------------------------------------------------
# /metrics


class Sample(NamedTuple):
    """One sample of a Prometheus text exposition: ``name{labels} value``."""

    name: str
    labels: dict
    value: float


_METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\.)*)"')
_LABEL_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}
_NUMBER = r"[+-]?(?:[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+\.|Inf|NaN)"
# After the labels: the value, an optional timestamp, an optional OpenMetrics exemplar.
_VALUE_RE = re.compile(rf" ({_NUMBER})(?: {_NUMBER})?(?: # .*)?")


def parse_metrics(text):
    r"""Every sample of a Prometheus (or OpenMetrics) text exposition, in order.

    Comment lines (``# HELP``, ``# TYPE``, ``# EOF``) are skipped, label values unescaped
    (``\\``, ``\"``, ``\n``), timestamps and exemplars dropped. Any other line raises
    ValueError: what muster serves must parse as Prometheus would parse it.
    """
    return [_parse_sample(line) for line in text.splitlines() if line and not line.startswith("#")]


def _parse_sample(line):
    def malformed(why):
        return ValueError(f"malformed /metrics line ({why}): {line!r}")

    name = _METRIC_NAME_RE.match(line)
    if not name:
        raise malformed("no metric name")
    at = name.end()
    labels = {}
    if line.startswith("{", at):
        at += 1
        while not line.startswith("}", at):
            label = _LABEL_RE.match(line, at)
            if not label:
                raise malformed(f"no label at column {at}")
            key, raw = label.groups()
            if key in labels:
                raise malformed(f"label {key} twice")
            try:
                labels[key] = re.sub(r"\\(.)", lambda e: _LABEL_ESCAPES[e.group(1)], raw)
            except KeyError:
                raise malformed(f"unknown escape in label {key}") from None
            at = label.end()
            if line.startswith(",", at):
                at += 1
            elif not line.startswith("}", at):
                raise malformed(f"no comma or closing brace at column {at}")
        at += 1
    value = _VALUE_RE.fullmatch(line, at)
    if not value:
        raise malformed("no value")
    return Sample(name.group(), labels, float(value.group(1)))


def metric_value(text, name, **labels):
    """The value of the first sample of ``name`` in ``text`` whose labels include
    ``labels`` (compared as text), None when there is none."""
    wanted = {k: str(v) for k, v in labels.items()}
    for sample in parse_metrics(text):
        if sample.name == name and wanted.items() <= sample.labels.items():
            return sample.value
    return None


# --------------------------------------------------------------------------------------
# The server


class MusterStartError(Exception):
    pass


class Muster:
    """One muster process with its config, ports, data_dir and log file."""

    def __init__(self, workdir: Path, extra_toml: str = "", dns_port=None, http_port=None,
                 default_namespace=True):
        self.bin = muster_bin()
        self.default_namespace = default_namespace
        self.dir = workdir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.extra_toml = extra_toml
        # More keys of the [dns] table (e.g. 'nsid = "a"\n'); set before write_config().
        self.dns_settings = ""
        self.dns_port = dns_port or _free_dns_port()
        self.http_port = http_port or _free_tcp_port(exclude={self.dns_port})
        self.data_dir = self.dir / "data"
        self.config_path = self.dir / "muster.toml"
        self.log_path = self.dir / "muster.log"
        self.proc = None
        # Runs in the child before muster starts (e.g. to set resource limits).
        self.preexec_fn = None
        self.http = requests.Session()
        self.write_config()

    # -- lifecycle ------------------------------------------------------------------

    def config_text(self):
        head = (
            f"data_dir = {toml_value(str(self.data_dir))}\n\n"
            "[dns]\n"
            f'listen = ["127.0.0.1:{self.dns_port}"]\n'
            "max_udp_payload = 1232\n"
            f"{self.dns_settings}\n"
            "[http]\n"
            f'listen = "127.0.0.1:{self.http_port}"\n\n'
        )
        extra = self.extra_toml
        if self.default_namespace and "[[namespaces]]" not in extra:
            extra = namespace_toml() + "\n" + extra
        return head + extra

    def write_config(self):
        self.config_path.write_text(self.config_text())

    def start(self):
        """Start the process and wait until /healthz answers 200."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with open(self.log_path, "ab") as log:
            log.write(
                f"\n----- start {time.strftime('%H:%M:%S')}: {self.bin} serve --config {self.config_path}\n".encode()
            )
            log.flush()
            self.proc = subprocess.Popen(
                [str(self.bin), "serve", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                env={**os.environ, "NO_COLOR": "1"},  # plain text in muster.log
                preexec_fn=self.preexec_fn,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise MusterStartError(
                    f"muster exited with status {self.proc.returncode} before /healthz answered\n"
                    + self.log_tail()
                )
            try:
                if self.http.get(self.url("/healthz"), timeout=0.5).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.05)
        self.stop()
        raise MusterStartError(f"/healthz did not answer 200 within {START_TIMEOUT} s\n" + self.log_tail())

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """SIGTERM, wait, then SIGKILL. Returns the exit status (None if never started)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def restart(self):
        self.stop()
        return self.start()

    def log_tail(self, lines=LOG_TAIL_LINES):
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        tail = text.splitlines()[-lines:]
        return f"--- last {len(tail)} lines of {self.log_path} ---\n" + "\n".join(tail)

    # -- HTTP ---------------------------------------------------------------------------

    def url(self, path):
        return f"http://127.0.0.1:{self.http_port}{path}"

    def get(self, path, **kw):
        kw.setdefault("timeout", 5)
        return self.http.get(self.url(path), **kw)

    def put(self, path, **kw):
        kw.setdefault("timeout", 5)
        return self.http.put(self.url(path), **kw)

    def delete(self, path, **kw):
        kw.setdefault("timeout", 5)
        return self.http.delete(self.url(path), **kw)

    @staticmethod
    def instance_path(ns, svc, iid):
        return f"/v1/namespaces/{ns}/services/{svc}/instances/{iid}"

    def put_instance(self, ns, svc, iid, body, check=True):
        r = self.put(self.instance_path(ns, svc, iid), json=body)
        if check:
            assert r.status_code == 200, f"PUT {ns}/{svc}/{iid} {body}: {r.status_code} {r.text}"
        return r

    def delete_instance(self, ns, svc, iid, check=True):
        r = self.delete(self.instance_path(ns, svc, iid))
        if check:
            assert r.status_code == 200, f"DELETE {ns}/{svc}/{iid}: {r.status_code} {r.text}"
        return r

    def set_health(self, ns, svc, iid, healthy, check=True):
        r = self.put(self.instance_path(ns, svc, iid) + "/health", json={"healthy": healthy})
        if check:
            assert r.status_code == 200, f"PUT {ns}/{svc}/{iid}/health: {r.status_code} {r.text}"
        return r

    def cloudmap(self):
        """A boto3 Cloud Map client for this server (test credentials, no retries; the
        `data-` host prefix off, as an IP endpoint needs)."""
        import boto3
        import botocore.config

        return boto3.client(
            "servicediscovery",
            endpoint_url=self.url(""),
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=botocore.config.Config(inject_host_prefix=False, retries={"max_attempts": 1}),
        )

    def metric(self, name, **labels):
        """The value of the first sample of ``name`` in /metrics whose labels include
        ``labels``, 0.0 when there is none (a labelled series is often created at its first
        count). A test that needs the sample to exist asserts it with :func:`metric_value`.
        Python keywords as label names: ``m.metric(name, **{"class": "nxdomain"})``."""
        value = metric_value(self.get("/metrics").text, name, **labels)
        return 0.0 if value is None else value

    def service(self, ns, svc):
        r = self.get(f"/v1/namespaces/{ns}/services/{svc}")
        assert r.status_code == 200, f"GET service {ns}/{svc}: {r.status_code} {r.text}"
        return r.json()

    # -- DNS: raw exchange --------------------------------------------------------------

    def exchange(self, wire: bytes, tcp=False, timeout=2.0):
        """Send raw bytes, return the raw reply, or None when none came within timeout
        (or, over TCP, when the server closed the connection without a reply)."""
        if tcp:
            with socket.create_connection(("127.0.0.1", self.dns_port), timeout=timeout) as s:
                s.settimeout(timeout)
                s.sendall(struct.pack("!H", len(wire)) + wire)
                try:
                    head = _recv_exact(s, 2)
                    if head is None:
                        return None
                    return _recv_exact(s, struct.unpack("!H", head)[0])
                except (socket.timeout, ConnectionResetError):
                    return None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(timeout)
            s.connect(("127.0.0.1", self.dns_port))
            s.send(wire)
            try:
                return s.recv(65535)
            except (socket.timeout, ConnectionRefusedError):
                return None

    # -- DNS: dnspython ------------------------------------------------------------------

    def dns_query(
        self,
        name,
        rdtype="A",
        tcp=False,
        edns=True,
        payload=1232,
        edns_version=0,
        options=None,
        ednsflags=0,
        opcode=None,
        rd=True,
        timeout=2.0,
    ):
        """Ask with dnspython-built messages; return the parsed dns.message.Message.

        The reply's size in bytes is in ``.wire_len`` and its bytes in ``.wire``.
        Raises AssertionError when no reply comes.
        """
        q = dns.message.make_query(
            name,
            rdtype,
            use_edns=edns_version if edns else False,
            payload=payload if edns else None,
            options=options if edns else None,
            ednsflags=ednsflags if edns else 0,
            flags=dns.flags.RD if rd else 0,
        )
        if opcode is not None:
            q.set_opcode(opcode)
        wire = q.to_wire()
        raw = self.exchange(wire, tcp=tcp, timeout=timeout)
        assert raw is not None, (
            f"no reply to {name} {rdtype} over {'TCP' if tcp else 'UDP'}\n{self.log_tail(20)}"
        )
        r = dns.message.from_wire(raw)
        assert r.id == q.id, f"reply id {r.id} != query id {q.id}"
        assert r.flags & dns.flags.QR, "reply without QR flag"
        r.wire = raw
        r.wire_len = len(raw)
        r.query_wire = wire
        return r

    def soa(self, zone="internal"):
        r = self.dns_query(zone, "SOA")
        assert r.rcode() == dns.rcode.NOERROR, dns.rcode.to_text(r.rcode())
        rrset = r.find_rrset(r.answer, dns.name.from_text(zone), dns.rdataclass.IN, dns.rdatatype.SOA)
        return rrset

    def soa_serial(self, zone="internal"):
        return self.soa(zone)[0].serial

    # -- DNS: the real command-line clients -----------------------------------------------

    def dig(self, *args, check=True):
        """Run dig against this server; return stdout (dig exits 0 on NXDOMAIN too)."""
        cmd = ["dig", "@127.0.0.1", "-p", str(self.dns_port), "+time=2", "+tries=1", *args]
        return _run_client(cmd, check)

    def kdig(self, *args, check=True):
        """Run kdig against this server; return stdout."""
        cmd = ["kdig", "@127.0.0.1", "-p", str(self.dns_port), "+timeout=2", "+retry=0", *args]
        return _run_client(cmd, check)


def terminate(proc, timeout=10):
    """SIGTERM a helper process, SIGKILL it if it has not exited within ``timeout``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _run_client(cmd, check):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check:
        assert p.returncode == 0, f"{' '.join(cmd)} exited {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout


def _recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def muster_bin():
    path = Path(os.environ.get("MUSTER_BIN", DEFAULT_BIN))
    if not path.is_file() or not os.access(path, os.X_OK):
        pytest.exit(
            f"muster binary not found at {path}: build it with `cargo build --release` "
            "or point MUSTER_BIN at one (scripts/test does both)",
            returncode=3,
        )
    return path


# --------------------------------------------------------------------------------------
# Small assertions shared by the test files


def rcode_text(msg):
    return dns.rcode.to_text(msg.rcode())


def answer_rdata(msg, rdtype, name=None):
    """Text of every rdata of type ``rdtype`` in the answer section."""
    t = dns.rdatatype.from_text(rdtype) if isinstance(rdtype, str) else rdtype
    out = []
    for rrset in msg.answer:
        if rrset.rdtype == t and (name is None or rrset.name == dns.name.from_text(name)):
            out.extend(rd.to_text() for rd in rrset)
    return out


def section_rdata(section, rdtype):
    t = dns.rdatatype.from_text(rdtype)
    return [(rrset.name.to_text(), rd.to_text()) for rrset in section if rrset.rdtype == t for rd in rrset]


def assert_negative(msg, rcode, zone="internal", negative_ttl=1):
    """NXDOMAIN or NODATA shape: rcode, AA, empty answer, the zone's SOA in authority with
    TTL and minimum equal to the negative TTL."""
    assert msg.rcode() == rcode, f"rcode {rcode_text(msg)}, want {dns.rcode.to_text(rcode)}\n{msg}"
    assert msg.flags & dns.flags.AA, f"AA not set\n{msg}"
    assert not msg.answer, f"answer not empty\n{msg}"
    soas = [rr for rr in msg.authority if rr.rdtype == dns.rdatatype.SOA]
    assert len(soas) == 1, f"want one SOA in authority\n{msg}"
    soa = soas[0]
    assert soa.name == dns.name.from_text(zone), f"SOA owner {soa.name}, want {zone}"
    assert soa.ttl == negative_ttl, f"SOA TTL {soa.ttl}, want negative TTL {negative_ttl}"
    assert soa[0].minimum == negative_ttl, f"SOA minimum {soa[0].minimum}, want {negative_ttl}"


def new_token(name, scopes):
    """`muster token new NAME --scope ...`: the token and its [[auth.tokens]] table."""
    args = [str(muster_bin()), "token", "new", name]
    for scope in scopes:
        args += ["--scope", scope]
    done = subprocess.run(args, capture_output=True, text=True, timeout=10, check=True)
    token, table = done.stdout.split("\n", 1)
    assert token.startswith("mst_") and "[[auth.tokens]]" in table, done.stdout
    assert token not in table, "the config table holds only the hash"
    return token, table


def wait_until(predicate, timeout=2.0, interval=0.05, message="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} not met within {timeout} s (last: {last!r})")
        time.sleep(interval)
