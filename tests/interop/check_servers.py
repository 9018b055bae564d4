"""Real servers for muster's active health checks to probe, controlled by the test or
benchmark that started them (test_health_checks.py, bench/health_detection.py,
bench/health_scale.py).

In this process, on a background asyncio loop (:class:`Loop`):

- :class:`HttpTarget` answers every ``GET`` (HTTP/1.1, keep-alive) according to its
  ``mode``: ``"ok"`` (200), a status such as ``500``, ``"hang"`` (reads the request and
  never answers). ``slow(n, seconds)`` delays the next ``n`` answers. ``close_listener()``
  stops accepting (connections already open stay), ``reopen()`` listens again on the same
  address. Every request's arrival time (``time.monotonic()``) is in ``requests``.
- :class:`TcpTarget` accepts connections and counts them (``connections``); the peer
  closes. ``close_listener()``/``reopen()`` as above.

In a child process (:class:`ServerProcess`): the same HTTP server, so that a test can
really kill it (SIGKILL: the kernel refuses new connections) or make it hang (SIGSTOP: the
kernel still completes handshakes into the listen backlog and nothing answers).

``python3 check_servers.py http|tcp IP:PORT [IP:PORT ...]`` runs servers in the
foreground (what ServerProcess starts, and a load target for bench/health_scale.py); it
prints ``ready`` once every address listens and, on SIGUSR1, the number of requests (or
connections) served so far.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"
REASONS = {200: "OK", 500: "Internal Server Error", 503: "Service Unavailable", 404: "Not Found"}


def response(status):
    if status == 200:
        return OK
    reason = REASONS.get(status, "Status")
    return f"HTTP/1.1 {status} {reason}\r\nContent-Length: 0\r\n\r\n".encode()


def free_port(ip="127.0.0.1"):
    """A TCP port free on ``ip`` (nothing stops another process taking it before we bind)."""
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


class Loop:
    """An asyncio event loop in a daemon thread; ``run(coro)`` runs a coroutine on it."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="check-servers", daemon=True)
        self.thread.start()

    def run(self, coro, timeout=10):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn, *args):
        """Run ``fn(*args)`` on the loop and return its result."""

        async def call():
            return fn(*args)

        return self.run(call())

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


class _Target:
    """What HTTP and TCP targets share: an address, a listener that can be closed and
    reopened, the open connections."""

    protocol = None

    def __init__(self, loop: Loop, ip="127.0.0.1", port=None):
        self.loop = loop
        self.ip = ip
        self.port = port or free_port(ip)
        self.server = None
        self.conns = set()
        self.reopen()

    @property
    def address(self):
        return f"{self.ip}:{self.port}"

    def reopen(self):
        async def listen():
            self.server = await self.loop.loop.create_server(
                lambda: self.protocol(self), self.ip, self.port, reuse_address=True
            )

        self.loop.run(listen())
        return self

    def close_listener(self):
        """Stop accepting: new connections are refused; open ones stay."""
        self.loop.call(self.server.close)

    def drop_connections(self):
        """Abort every open connection (RST)."""
        self.loop.call(lambda: [c.transport.abort() for c in list(self.conns)])

    def close(self):
        self.close_listener()
        self.drop_connections()


class _HttpProtocol(asyncio.Protocol):
    def __init__(self, target):
        self.target = target
        self.buffer = b""

    def connection_made(self, transport):
        self.transport = transport
        self.target.conns.add(self)

    def connection_lost(self, exc):
        self.target.conns.discard(self)

    def data_received(self, data):
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            self.target.answer(self, head)


class HttpTarget(_Target):
    protocol = _HttpProtocol

    def __init__(self, loop, ip="127.0.0.1", port=None, mode="ok"):
        self.mode = mode
        self.requests = []  # arrival times
        self.heads = []  # the last few request heads, for Host-header checks
        self._slow = (0, 0.0)
        super().__init__(loop, ip, port)

    def slow(self, count, seconds):
        """Delay the next ``count`` answers by ``seconds`` (then answer 200)."""
        self._slow = (count, seconds)

    def answer(self, conn, head):
        self.requests.append(time.monotonic())
        self.heads = (self.heads + [head.decode("latin-1")])[-10:]
        count, seconds = self._slow
        if count > 0:
            self._slow = (count - 1, seconds)
            self.loop.loop.call_later(seconds, self._write, conn, OK)
        elif self.mode == "hang":
            pass
        elif self.mode == "ok":
            conn.transport.write(OK)
        else:
            conn.transport.write(response(int(self.mode)))

    @staticmethod
    def _write(conn, data):
        if not conn.transport.is_closing():
            conn.transport.write(data)

    def requests_since(self, t):
        return [r for r in self.requests if r >= t]


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, target):
        self.target = target

    def connection_made(self, transport):
        self.transport = transport
        self.target.conns.add(self)
        self.target.connections.append(time.monotonic())

    def connection_lost(self, exc):
        self.target.conns.discard(self)


class TcpTarget(_Target):
    protocol = _TcpProtocol

    def __init__(self, loop, ip="127.0.0.1", port=None):
        self.connections = []  # accept times
        super().__init__(loop, ip, port)


class ServerProcess:
    """``check_servers.py http IP:PORT`` in a child process, to kill or to stop."""

    def __init__(self, ip="127.0.0.1", port=None, kind="http"):
        self.ip = ip
        self.port = port or free_port(ip)
        self.kind = kind
        self.proc = None
        self.start()

    @property
    def address(self):
        return f"{self.ip}:{self.port}"

    def start(self):
        assert self.proc is None or self.proc.poll() is not None
        self.proc = subprocess.Popen(
            [sys.executable, __file__, self.kind, self.address],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            raise RuntimeError(f"server on {self.address} did not start: {line!r}")
        return self

    def kill(self):
        """SIGKILL and reap: from here on connections are refused."""
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        """SIGSTOP: the process hangs; the kernel still accepts into the backlog."""
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self):
        self.proc.send_signal(signal.SIGCONT)

    def close(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()


def _serve(kind, addresses):
    """The child process: listen on every address, print ``ready``, serve forever."""
    loop = asyncio.new_event_loop()
    counter = [0]

    class Http(asyncio.Protocol):
        buffer = b""

        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.buffer += data
            n = self.buffer.count(b"\r\n\r\n")
            if n:
                self.buffer = self.buffer[self.buffer.rfind(b"\r\n\r\n") + 4 :]
                counter[0] += n
                self.transport.write(OK * n)

    class Tcp(asyncio.Protocol):
        def connection_made(self, transport):
            counter[0] += 1
            transport.close()  # the check has its answer; free the fd without waiting for the peer

    def fail(loop, context):
        # Fail loudly, once: asyncio would log (e.g. EMFILE on accept) and retry forever.
        print(f"check_servers: {context.get('message')}: {context.get('exception')!r}", file=sys.stderr, flush=True)
        os._exit(70)

    loop.set_exception_handler(fail)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    protocol = Http if kind == "http" else Tcp
    for address in addresses:
        ip, port = address.rsplit(":", 1)
        loop.run_until_complete(loop.create_server(protocol, ip, int(port), reuse_address=True, backlog=1024))
    loop.add_signal_handler(signal.SIGUSR1, lambda: print(counter[0], flush=True))
    loop.add_signal_handler(signal.SIGTERM, os._exit, 0)  # no teardown of thousands of sockets
    print("ready", flush=True)
    loop.run_forever()


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("http", "tcp"):
        sys.exit(__doc__)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    _serve(sys.argv[1], sys.argv[2:])
