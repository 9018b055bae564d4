"""Response rate limiting in the DNS benchmark (`bench/dns/run --rrl RATE`).

Two figures:

- **Cost.** A second muster, `muster+rrl`, runs with `[dns.rrl] responses_per_second =
  RATE` and `exempt = []` (dnsperf queries from loopback, which RRL exempts by default,
  so the exemption is cleared to make every response go through the limiter). Its runs
  are interleaved with plain muster's, and the CPU per query of the two is printed as a
  ratio. RATE must be high enough that nothing is limited (checked from muster's
  metrics after the runs): then the ratio is the limiter's cost alone. dnsperf's 5% of
  names that do not exist are NXDOMAINs, which share one key per zone, so at 200,000
  qps that key sees ~10,000 responses a second: RATE 20,000 leaves room.
- **Amplification.** One source floods one SRV query (EDNS, payload 1232: what an
  attacker sends) at muster `--flood-queries` times over `--flood-seconds`, from one
  socket on dnsperf's core; bytes out / bytes in, counted by the client, with RRL off
  (plain muster) and on (a muster with `--flood-rrl` responses per second, slip 2, no
  exemption: the setting docs/security.md recommends for networks you do not control).
"""

import re
import socket
import threading
import time

import dns.flags
import dns.message

import report
from namespace import NAMESPACE, service_name

# The twin muster with RRL on, in the results.
LABEL = "muster+rrl"


def toml(rate):
    """The `[dns.rrl]` table of a muster under test (nothing exempt)."""
    return f"\n[dns.rrl]\nresponses_per_second = {rate}\nexempt = []\n"


def limited(muster):
    """Responses muster's RRL dropped and slipped so far (from /metrics)."""
    status, body = muster.http("GET", "/metrics")
    if status != 200:
        raise RuntimeError(f"{muster.name}: /metrics answered {status}")
    text = body.decode()
    total = {}
    for action in ("dropped", "slipped"):
        values = re.findall(r"^muster_dns_rrl_%s_total\{[^}]*\} (\d+)" % action, text, re.M)
        total[action] = sum(int(v) for v in values)
    return total


def flood_query(services):
    """The spoofed flood's query: the last service's SRV, with EDNS and a 1232-byte payload."""
    name = f"{service_name(services - 1)}.{NAMESPACE}."
    return dns.message.make_query(name, "SRV", use_edns=0, payload=1232).to_wire()


def amplification(port, query, count, seconds):
    """Floods `query` from one socket `count` times over `seconds`; returns bytes in and
    out and the replies by kind, counted as they come back (and for 1 s after)."""
    received = {"bytes": 0, "answers": 0, "truncated": 0}
    done = threading.Event()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.2)

        def receive():
            quiet_since = None
            while True:
                try:
                    reply = s.recv(65535)
                except (TimeoutError, socket.timeout):
                    if done.is_set():
                        quiet_since = quiet_since or time.monotonic()
                        if time.monotonic() - quiet_since > 1:
                            return
                    continue
                received["bytes"] += len(reply)
                # TC is bit 0x02 of the header's third byte (dns.flags.TC is 16-bit).
                truncated = len(reply) > 2 and reply[2] & (dns.flags.TC >> 8)
                received["truncated" if truncated else "answers"] += 1

        reader = threading.Thread(target=receive)
        reader.start()
        started = time.monotonic()
        batch = 100
        for n in range(0, count, batch):
            for _ in range(min(batch, count - n)):
                s.sendto(query, ("127.0.0.1", port))
            ahead = started + seconds * (n + batch) / count - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        elapsed = time.monotonic() - started
        done.set()
        reader.join()
    sent_bytes = count * len(query)
    return {
        "queries": count,
        "query_bytes": len(query),
        "seconds": elapsed,
        "bytes_in": sent_bytes,
        "bytes_out": received["bytes"],
        "answers": received["answers"],
        "truncated": received["truncated"],
        "unanswered": count - received["answers"] - received["truncated"],
        "factor": received["bytes"] / sent_bytes,
    }


def lines(result):
    out = []
    if result.get("ratios"):
        out.append(f"  RRL at {result['rate']:,}/s, nothing exempt; limited during the runs: "
                   f"{result['limited']['dropped']} dropped, {result['limited']['slipped']} slipped")
        out += report.twin_ratio_lines(LABEL, result["ratios"])
    for label, flood in result.get("amplification", {}).items():
        out.append(
            f"  amplification, {label}: {flood['queries']:,} x {flood['query_bytes']}-byte SRV queries from one "
            f"address in {flood['seconds']:.1f} s: {flood['answers']:,} answers, {flood['truncated']:,} TC, "
            f"{flood['unanswered']:,} unanswered; {flood['bytes_out'] / 1e6:.2f} MB out / "
            f"{flood['bytes_in'] / 1e6:.2f} MB in = {flood['factor']:.2f}x"
        )
    return "\n".join(out)
