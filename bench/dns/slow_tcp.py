"""Slow TCP clients against muster while dnsperf measures UDP at a fixed rate (issue 17,
goal 2: one slow TCP client never delays UDP answers).

Two kinds of client, each on its own connection, opened at the start of the run and
opened again whenever muster closes one (as a persistent attacker would):

- **stuffers** send pipelined queries as fast as muster takes them and never read an
  answer, so muster's responses fill the socket's send buffer, then its own output
  buffer; from then on muster stops reading that connection, and the client's sends
  block (here: fail with EAGAIN, retried every few milliseconds);
- **tricklers** send a query one byte every `TRICKLE_PAUSE` seconds, so muster holds a
  half-read message until `message_timeout` closes the connection.

Connections come from 127.0.0.2 upwards, `PER_SOURCE` per address, under muster's
`max_connections_per_source`. While they run, muster's VmRSS is sampled; the run's
figures are the peak, what the clients sent, and how often muster closed them. The
harness compares the UDP latency percentiles of runs with them against runs without
(`bench.py`, `--slow-tcp`).
"""

import errno
import socket
import struct
import time

import dns.message

from namespace import NAMESPACE, service_name
from servers import memory_kib

LABEL = "muster+slow-tcp"
PER_SOURCE = 32
TRICKLE_PAUSE = 0.1
SAMPLE_EVERY = 0.05
# How many queries a stuffer writes per send (one 2-byte length and ~40 bytes each).
BATCH = 64


class SlowClients:
    def __init__(self, muster, stuffers, tricklers, services):
        self.muster = muster
        self.stuffers = stuffers
        self.tricklers = tricklers
        queries = []
        for n in range(BATCH):
            wire = dns.message.make_query(f"{service_name(n % services)}.{NAMESPACE}.", "A").to_wire()
            queries.append(struct.pack("!H", len(wire)) + wire)
        self.batch = b"".join(queries)
        self.trickle_query = queries[0]
        self.opened = 0

    def _connect(self):
        source = f"127.0.0.{2 + self.opened // PER_SOURCE}"
        self.opened += 1
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((source, 0))
        s.settimeout(2)
        s.connect(("127.0.0.1", self.muster.port))
        s.setblocking(False)
        return s

    def run(self, deadline):
        """Keeps the clients busy until `deadline` (time.monotonic()); returns the run's
        figures."""
        self.opened = 0
        stuffers = [self._connect() for _ in range(self.stuffers)]
        tricklers = [[self._connect(), 0] for _ in range(self.tricklers)]
        sent_bytes = closed_stuffers = closed_tricklers = 0
        rss = []
        next_trickle = next_sample = time.monotonic()
        try:
            while (now := time.monotonic()) < deadline:
                for k, s in enumerate(stuffers):
                    sent = _send(s, self.batch)
                    if sent is None:
                        closed_stuffers += 1
                        stuffers[k] = self._connect()
                    sent_bytes += sent or 0
                if now >= next_trickle:
                    next_trickle = now + TRICKLE_PAUSE
                    for entry in tricklers:
                        s, at = entry
                        at %= len(self.trickle_query)
                        sent = _send(s, self.trickle_query[at : at + 1])
                        if sent is None or _closed_by_peer(s):
                            closed_tricklers += 1
                            entry[0], entry[1] = self._connect(), 0
                        else:
                            entry[1] = at + sent
                if now >= next_sample:
                    next_sample = now + SAMPLE_EVERY
                    rss.append(memory_kib(self.muster.process.pid)["rss_kib"])
                time.sleep(0.002)
        finally:
            for s in stuffers:
                s.close()
            for s, _ in tricklers:
                s.close()
        return {
            "stuffers": self.stuffers,
            "tricklers": self.tricklers,
            "stuffed_bytes": sent_bytes,
            "stuffed_queries": sent_bytes * BATCH // len(self.batch),
            "stuffers_closed_by_muster": closed_stuffers,
            "tricklers_closed_by_muster": closed_tricklers,
            "rss_kib_peak": max(rss, default=0),
            "rss_kib_first": rss[0] if rss else 0,
        }


def _send(s, data):
    """Sends what the non-blocking `s` takes of `data`: bytes sent, or None (and `s`
    closed) if muster closed the connection."""
    try:
        return s.send(data)
    except (BlockingIOError, InterruptedError):
        return 0
    except OSError as error:
        if error.errno not in (errno.EPIPE, errno.ECONNRESET):
            raise
        s.close()
        return None


def _closed_by_peer(s):
    """Whether muster closed `s` (EOF or reset waiting to be read), then closes it; a
    trickler reads nothing else, as muster never answers half a message."""
    try:
        closed = s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        closed = True
    except BlockingIOError:
        closed = False
    if closed:
        s.close()
    return closed


LATENCIES = ("p50_us", "p99_us", "p999_us", "max_us")


def result(plain_rows, slow_rows, runs):
    """UDP latency of muster's fixed-rate runs without (`plain_rows`) and with
    (`slow_rows`) the slow clients, repeat by repeat, with what the clients did."""

    def figures(rows):
        return [{k: row.get(k) for k in ("qps", "lost", "cpu_us_per_query", *LATENCIES)} for row in rows]

    def median(rows, key):
        values = sorted(row[key] for row in rows if row.get(key) is not None)
        return values[len(values) // 2] if values else None

    return {
        "without": figures(plain_rows),
        "with": figures(slow_rows),
        "median_without": {k: median(plain_rows, k) for k in LATENCIES},
        "median_with": {k: median(slow_rows, k) for k in LATENCIES},
        "rss_kib_without": [row["memory_after_run"]["rss_kib"] for row in plain_rows],
        "clients": runs,
    }


def lines(slow):
    """The comparison as text."""
    out = []
    first = slow["clients"][0]
    out.append(
        f"  {first['stuffers']} connections sending queries and never reading, {first['tricklers']} sending a byte "
        f"every {TRICKLE_PAUSE:g} s (medians of {len(slow['with'])} repeats, µs):"
    )
    for name in ("without", "with"):
        m = slow[f"median_{name}"]
        each = "; ".join(
            ", ".join(f"{r[k]:.0f}" if r.get(k) is not None else "-" for k in LATENCIES) + f", lost {r['lost']}"
            for r in slow[name]
        )
        out.append(
            f"  {name:>7}: p50 {m['p50_us']:.0f}, p99 {m['p99_us']:.0f}, p99.9 {m['p999_us']:.0f}, max {m['max_us']:.0f}"
            f"   (each repeat p50, p99, p99.9, max: {each})"
        )
    for n, run in enumerate(slow["clients"], 1):
        out.append(
            f"  repeat {n}: {run['stuffed_queries']:,} queries stuffed, muster closed {run['stuffers_closed_by_muster']} "
            f"stuffers and {run['tricklers_closed_by_muster']} tricklers; VmRSS {run['rss_kib_first'] / 1024:.1f} -> peak "
            f"{run['rss_kib_peak'] / 1024:.1f} MiB (after a run without: "
            f"{slow['rss_kib_without'][n - 1] / 1024:.1f} MiB)"
        )
    return "\n".join(out)
