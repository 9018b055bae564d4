#!/usr/bin/env python3
"""1,000 watchers of one service: muster's memory per watcher, and change → every
watcher notified.

Starts target/release/muster (MUSTER_BIN for another) with room for the watchers
(`max_connections`, the per-source cap and the watcher caps raised), registers
internal/web/a, then for each kind of watcher:

- `sse`: N `GET /v1/watch?namespace=internal&service=web` streams;
- `blocking`: N blocking queries `GET .../services/web?index=I&wait=60s`, each sent
  again with the new index as soon as it is answered;

all on raw asyncio sockets of this one Python process. It reads muster's VmRSS before the
watchers connect and once they all wait (the difference / N is the memory per watcher),
then makes `--changes` changes (the instance's health, alternately down and up, by REST
PUT; the next one once every watcher has seen the last and waits again) and records, per
change, when each watcher saw it. "Notified" is from the PUT being sent to a watcher
reading the change, so it holds the durable write (fsync) and this client's own reading
of N sockets: the PUT's round trip is printed beside it, and the spread from the first
watcher notified to the last (the fan-out alone, with this client's reading).

    .venv/bin/python bench/watchers.py [--watchers 1000] [--changes 50] [--kinds sse,blocking]
"""

import argparse
import asyncio
import json
import re
import resource
import shutil
import time
import urllib.request

from common import muster_and_workdir, percentile
from harness import Muster

COMMAND = ".venv/bin/python bench/watchers.py --watchers 1000 --changes 50"
WEB = "/v1/namespaces/internal/services/web"
HTTP = """max_connections = 4096
max_connections_per_source = 4096
max_blocking_queries = 2048
max_watch_streams = 2048
"""


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def put(m, path, body):
    request = urllib.request.Request(
        m.url(path), data=json.dumps(body).encode(), method="PUT", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request) as response:
        response.read()


class Watcher:
    """One connection; `seen[k]` is when it read the k-th change."""

    def __init__(self, bench):
        self.bench = bench
        self.seen = []

    async def request(self, writer, target):
        writer.write(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        await writer.drain()

    async def head(self, reader):
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status != 200:
            raise RuntimeError(f"watcher answered {status}: {head!r}")
        return head

    def saw(self):
        self.seen.append(time.monotonic())
        self.bench.arrived()

    async def sse(self):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.bench.port)
        await self.request(writer, "/v1/watch?namespace=internal&service=web")
        await self.head(reader)
        self.bench.ready()
        while True:
            line = await reader.readline()
            if not line:
                return
            if line.startswith(b"id: "):
                self.saw()

    async def blocking(self, index):
        reader, writer = await asyncio.open_connection("127.0.0.1", self.bench.port)
        while True:
            await self.request(writer, f"{WEB}?index={index}&wait=60s")
            self.bench.ready()
            head = await self.head(reader)
            length = int(re.search(rb"(?i)content-length: (\d+)", head).group(1))
            await reader.readexactly(length)
            new = int(re.search(rb"(?i)x-muster-index: (\d+)", head).group(1))
            if new != index:
                self.saw()
            index = new


class Bench:
    """Counts watchers waiting and changes seen, so changes go one at a time."""

    def __init__(self, port, watchers):
        self.port = port
        self.n = watchers
        self.waiting = 0
        self.seen = 0
        self.all_waiting = asyncio.Event()
        self.all_seen = asyncio.Event()

    def ready(self):
        self.waiting += 1
        if self.waiting >= self.n:
            self.all_waiting.set()

    def arrived(self):
        self.seen += 1
        if self.seen >= self.n:
            self.all_seen.set()


async def measure(m, kind, watchers, changes):
    bench = Bench(m.http_port, watchers)
    index = int(urllib.request.urlopen(m.url(WEB)).headers["X-Muster-Index"])
    before = rss_mib(m.proc.pid)
    clients = [Watcher(bench) for _ in range(watchers)]
    tasks = []
    for i, client in enumerate(clients):
        tasks.append(asyncio.create_task(client.sse() if kind == "sse" else client.blocking(index)))
        if i % 100 == 99:
            await asyncio.sleep(0.05)  # under the listen backlog
    await asyncio.wait_for(bench.all_waiting.wait(), 60)
    await asyncio.sleep(1.0)  # the blocking queries' first requests reach their wait
    after = rss_mib(m.proc.pid)
    sent, round_trips = [], []
    for k in range(changes):
        bench.all_waiting.clear()
        bench.all_seen.clear()
        bench.waiting = 0 if kind == "blocking" else watchers
        bench.seen = 0
        path = Muster.instance_path("internal", "web", "a") + "/health"
        start = time.monotonic()
        await asyncio.to_thread(put, m, path, {"healthy": k % 2 == 1})
        round_trips.append(time.monotonic() - start)
        sent.append(start)
        await asyncio.wait_for(bench.all_seen.wait(), 30)
        if kind == "blocking":
            await asyncio.wait_for(bench.all_waiting.wait(), 30)
        await asyncio.sleep(0.05)
    for task in tasks:
        task.cancel()
    all_notified = [max(c.seen[k] for c in clients) - sent[k] for k in range(changes)]
    each = [c.seen[k] - sent[k] for c in clients for k in range(changes)]
    spread = [max(c.seen[k] for c in clients) - min(c.seen[k] for c in clients) for k in range(changes)]
    return {
        "kind": kind,
        "rss_before": before,
        "rss_after": after,
        "per_watcher_kib": (after - before) * 1024 / watchers,
        "all_p50": percentile(all_notified, 0.5) * 1000,
        "all_p99": percentile(all_notified, 0.99) * 1000,
        "each_p50": percentile(each, 0.5) * 1000,
        "each_p99": percentile(each, 0.99) * 1000,
        "spread_p50": percentile(spread, 0.5) * 1000,
        "spread_p99": percentile(spread, 0.99) * 1000,
        "put_p50": percentile(round_trips, 0.5) * 1000,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--kinds", default="sse,blocking")
    parser.add_argument("--keep", action="store_true", help="keep the data_dirs")
    args = parser.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    binary, work = muster_and_workdir("muster-watchers-")
    rows = []
    try:
        for kind in args.kinds.split(","):
            m = Muster(work / kind)
            m.bin = binary
            base = m.config_text()
            m.config_text = lambda base=base: base.replace("[http]\n", "[http]\n" + HTTP, 1)
            m.write_config()
            m.start()
            try:
                m.put_instance("internal", "web", "a", {"ipv4": "10.0.0.1", "port": 80})
                row = asyncio.run(measure(m, kind, args.watchers, args.changes))
            finally:
                m.stop()
            rows.append(row)
            print(f"  {kind}: {json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items()})}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work)
    print()
    print(f"{args.watchers} watchers of one service, {args.changes} changes:")
    print()
    print("| watchers | muster RSS before → with them | per watcher | PUT sent → every watcher notified p50 / p99 | → each watcher p50 / p99 | first → last watcher p50 / p99 | PUT round trip p50 |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {args.watchers} {r['kind']} | {r['rss_before']:.1f} → {r['rss_after']:.1f} MiB | {r['per_watcher_kib']:.1f} KiB | "
              f"{r['all_p50']:.1f} / {r['all_p99']:.1f} ms | {r['each_p50']:.1f} / {r['each_p99']:.1f} ms | "
              f"{r['spread_p50']:.1f} / {r['spread_p99']:.1f} ms | {r['put_p50']:.2f} ms |")
    print()
    print(f"reproduce: {COMMAND}")


if __name__ == "__main__":
    main()
