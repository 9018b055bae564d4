"""Real DNS servers run next to muster on loopback: Knot DNS and BIND as secondaries of a
muster namespace (and Knot as a plain authoritative upstream), unbound as a resolver.

Each class writes its config into a directory of its own, starts the daemon in the
foreground on a free port, waits until it answers, and stops it. The binaries come from
Debian's packages (knot, bind9, unbound), which scripts/install-test-tools.sh installs.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype

from harness import _free_dns_port, terminate

START_TIMEOUT = 15.0


class Daemon:
    """A server process with a config in ``workdir``, listening on 127.0.0.1:``port``."""

    binary = ""

    def __init__(self, workdir: Path):
        if shutil.which(self.binary) is None:
            raise RuntimeError(f"{self.binary} not found: run scripts/install-test-tools.sh")
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = _free_dns_port()
        self.log_path = self.dir / f"{self.binary}.log"
        self.proc = None

    def command(self):
        raise NotImplementedError

    def start(self, ready_zone="."):
        """Starts the daemon and waits until it answers an SOA query for ``ready_zone``
        (any rcode: a secondary still loading answers SERVFAIL)."""
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            self.command(), stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.binary} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                self.query(ready_zone, "SOA", timeout=0.3)
                return self
            except Exception:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.binary} did not answer within {START_TIMEOUT} s:\n{self.log_tail()}")

    def stop(self):
        if self.proc is not None:
            terminate(self.proc)
            self.log.close()

    def log_tail(self, lines=40):
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def query(self, name, rdtype, timeout=2.0, rd=False, tcp=False):
        q = dns.message.make_query(name, rdtype)
        if not rd:
            q.flags &= ~dns.flags.RD
        send = dns.query.tcp if tcp else dns.query.udp
        return send(q, "127.0.0.1", port=self.port, timeout=timeout)

    def serial(self, zone="internal"):
        """The zone's SOA serial as this server answers it, or None."""
        try:
            r = self.query(zone + ".", "SOA", timeout=0.5)
        except Exception:
            return None
        if r.rcode() != dns.rcode.NOERROR:
            return None
        for rrset in r.answer:
            if rrset.rdtype == dns.rdatatype.SOA:
                return rrset[0].serial
        return None



def _tsig_block(key, style):
    if key is None:
        return ""
    name, secret = key
    if style == "knot":
        return f"key:\n  - id: {name}\n    algorithm: hmac-sha256\n    secret: {secret}\n\n"
    return f'key "{name}" {{ algorithm hmac-sha256; secret "{secret}"; }};\n'


class Knot(Daemon):
    """knotd with its config in ``knot.conf``."""

    binary = "knotd"

    def knot_head(self):
        """The server, log and database sections every knotd here has."""
        return (
            f'server:\n  rundir: "{self.dir}"\n  listen: 127.0.0.1@{self.port}\n\n'
            "log:\n  - target: stderr\n    any: info\n\n"
            f'database:\n  storage: "{self.dir}"\n\n'
        )

    def command(self):
        return ["knotd", "-c", str(self.dir / "knot.conf")]


class KnotSecondary(Knot):
    """knotd as a secondary of ``zone`` at muster's ``primary_port``, taking NOTIFYs from
    127.0.0.1; ``key`` = (name, base64 secret) signs transfers and NOTIFYs with TSIG."""

    def __init__(self, workdir, primary_port, zone="internal", key=None):
        super().__init__(workdir)
        key_ref = f"\n    key: {key[0]}" if key else ""
        (self.dir / "knot.conf").write_text(
            self.knot_head() + f"""{_tsig_block(key, "knot")}remote:
  - id: muster
    address: 127.0.0.1@{primary_port}{key_ref}

acl:
  - id: notify_from_muster
    address: 127.0.0.1
    action: notify{key_ref}

zone:
  - domain: {zone}
    master: muster
    acl: notify_from_muster
    storage: "{self.dir}"
    zonefile-sync: -1
    zonefile-load: none
    journal-content: changes
"""
        )



class KnotAuthoritative(Knot):
    """knotd serving ``zone`` from ``zone_text`` as an ordinary authoritative server (an
    upstream for muster's forwarding)."""

    def __init__(self, workdir, zone, zone_text):
        super().__init__(workdir)
        (self.dir / f"{zone}.zone").write_text(zone_text)
        (self.dir / "knot.conf").write_text(
            self.knot_head() + f"""zone:
  - domain: {zone}
    storage: "{self.dir}"
    file: "{zone}.zone"
"""
        )



class BindSecondary(Daemon):
    """named (BIND 9) as a secondary of ``zone`` at muster's ``primary_port``.

    ``serial-query-rate`` is raised from its default, which held every other NOTIFY of a
    change a few hundred milliseconds behind the one before (bench/zone_transfer.py)."""

    binary = "named"

    def __init__(self, workdir, primary_port, zone="internal", key=None):
        super().__init__(workdir)
        key_ref = f" key {key[0]}" if key else ""
        (self.dir / "named.conf").write_text(
            f"""options {{
  directory "{self.dir}";
  pid-file "{self.dir}/named.pid";
  session-keyfile "{self.dir}/session.key";
  managed-keys-directory "{self.dir}";
  listen-on port {self.port} {{ 127.0.0.1; }};
  listen-on-v6 {{ none; }};
  recursion no;
  dnssec-validation no;
  notify no;
  serial-query-rate 1000;
}};
controls {{ }};
{_tsig_block(key, "bind")}
zone "{zone}" {{
  type secondary;
  primaries port {primary_port} {{ 127.0.0.1{key_ref}; }};
  allow-notify {{ 127.0.0.1; }};
  file "{zone}.db";
}};
"""
        )

    def command(self):
        # -g: foreground, log to stderr; -n 1: one worker thread.
        return ["named", "-g", "-n", "1", "-c", str(self.dir / "named.conf")]


class Unbound(Daemon):
    """unbound as a resolver with a stub-zone for ``zone`` at muster's ``stub_port``."""

    binary = "unbound"

    def __init__(self, workdir, stub_port, zone="internal"):
        super().__init__(workdir)
        (self.dir / "unbound.conf").write_text(
            f"""server:
  interface: 127.0.0.1@{self.port}
  port: {self.port}
  do-daemonize: no
  username: ""
  chroot: ""
  directory: "{self.dir}"
  pidfile: "{self.dir}/unbound.pid"
  use-syslog: no
  logfile: ""
  verbosity: 1
  access-control: 127.0.0.0/8 allow
  do-not-query-localhost: no
  module-config: "iterator"
  domain-insecure: "{zone}"
  local-zone: "{zone}." nodefault
  num-threads: 1

stub-zone:
  name: "{zone}"
  stub-addr: 127.0.0.1@{stub_port}

remote-control:
  control-enable: no
"""
        )

    def command(self):
        return ["unbound", "-d", "-c", str(self.dir / "unbound.conf")]

    def start(self, ready_zone="internal."):
        return super().start(ready_zone)
