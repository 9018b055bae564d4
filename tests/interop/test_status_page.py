"""The status pages (docs/status.md) in a real browser: Debian's headless Chromium loads
each page from a running muster with data in it, and the tests read the DOM Chromium
rendered (``--dump-dom``) for the expected rows, the escaping of a hostile attribute and
the absence of secrets. The live update is checked in one page that stays loaded: an
instance behind an HTTP check whose server is stopped turns unhealthy on that page
without a reload, read through the Chrome DevTools protocol (a minimal WebSocket client
below: the protocol is JSON over a WebSocket, and the standard library has no client).
Access: 401/403 on the ``[http]`` listener without a token with unrestricted ``read``,
open on the ``[ops]`` listener. Screenshots of every page go to
``target/test-artifacts/status/`` (docs/status-service.png is one of them).

One muster serves every test of the module (CI's time budget).
"""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
import urllib.parse

import pytest
import requests

from harness import REPO, metric_value, namespace_toml, new_token, toml_value, wait_until

CHROMIUM = shutil.which("chromium")
ARTIFACTS = REPO / "target" / "test-artifacts" / "status"
HOSTILE = "<script>alert('pwned')</script>\"&"
TSIG_SECRET = base64.b64encode(b"status-page-tsig-secret-0123456").decode()
CHECK_QUERY_SECRET = "chk-s3cret-in-query"
# Chromium as root in a sandbox-less container, with nothing that reaches the network.
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars",
]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class HealthTarget:
    """A small HTTP server an instance's check asks; `stop()` makes the check fail."""

    def __init__(self):
        class Ok(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (the standard library's name)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


class Status:
    """The muster under test, its tokens, the check's target and the ops URL."""

    def __init__(self, m, ops, tokens, target, update_file):
        self.m, self.ops, self.tokens, self.target, self.file = m, ops, tokens, target, update_file

    def ops_url(self, path):
        return f"http://127.0.0.1:{self.ops}{path}"


@pytest.fixture(scope="module")
def status(module_muster, tmp_path_factory):
    if CHROMIUM is None:
        pytest.fail("chromium not found: run scripts/install-test-tools.sh")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tokens, tables = {}, []
    for name, scopes in {"admin": ["admin"], "reader": ["read"], "narrow": ["read:internal/web"]}.items():
        tokens[name], table = new_token(name, scopes)
        tables.append(table)
    files = tmp_path_factory.mktemp("status-files")
    static = files / "static.toml"
    static.write_text(
        '[[instances]]\nnamespace = "internal"\nservice = "db"\nid = "db-1"\nipv4 = "10.0.9.1"\nport = 5432\n'
    )
    ops = _free_port()
    target = HealthTarget()
    m = module_muster(
        namespace_toml()
        + f'\n[ops]\nlisten = "127.0.0.1:{ops}"\n'
        + '\n[health]\nallow = ["127.0.0.0/8"]\n'
        + f"\n[[sources.file]]\npath = {toml_value(str(static))}\n"
        + f'\n[[transfer.tsig_keys]]\nname = "ddns"\nsecret = "{TSIG_SECRET}"\n'
        + '\n[[update.keys]]\nname = "ddns"\n\n'
        + "\n".join(tables)
    )
    m.http.headers["Authorization"] = f"Bearer {tokens['admin']}"
    wait_until(lambda: m.get("/readyz").status_code == 200, timeout=5, message="/readyz 200")
    m.put_instance("internal", "web", "web-1", {"ipv4": "10.0.0.1", "port": 8080, "attributes": {"zone": "a"}})
    m.put_instance("internal", "web", "web-2", {"ipv4": "10.0.0.2", "ipv6": "fd00::2", "port": 8080,
                                                "attributes": {"note": HOSTILE}})
    m.put_instance("internal", "api", "api-1", {
        "ipv4": "127.0.0.1", "port": target.port,
        "check": {"http": f"/healthz?token={CHECK_QUERY_SECRET}", "interval": "200ms",
                  "unhealthy_threshold": 2, "healthy_threshold": 1},
    })
    m.put_instance("internal", "api", "api-anchor", {"ipv4": "10.0.1.1", "port": 9000})
    m.put_instance("internal", "api", "api-drained", {"ipv4": "10.0.1.2", "port": 9000})
    assert m.put("/v1/namespaces/internal/services/api/instances/api-drained/drain").status_code == 200
    # Some DNS traffic for the DNS page.
    for name in ("web.internal", "api.internal", "nothing.internal"):
        m.dns_query(name, "A")
    yield Status(m, ops, tokens, target, static)
    target.stop()


# --------------------------------------------------------------------------------------
# Chromium


def chromium(*args, timeout=30):
    with tempfile.TemporaryDirectory(prefix="status-chromium-") as profile:
        done = subprocess.run(
            [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=timeout,
        )
    assert done.returncode == 0, f"chromium {args}: {done.returncode}\n{done.stderr[-2000:]}"
    return done.stdout


def dump_dom(url):
    """The DOM after the page's script ran for a while (virtual time: no real wait)."""
    return chromium("--virtual-time-budget=2000", "--dump-dom", url)


def screenshot(url, name):
    path = ARTIFACTS / f"{name}.png"
    path.unlink(missing_ok=True)
    chromium("--virtual-time-budget=1000", "--window-size=1280,900", f"--screenshot={path}", url)
    assert path.stat().st_size > 10_000, f"{path} is {path.stat().st_size} bytes"
    return path


def row(dom, attribute, value):
    """The inner HTML of the table row `<tr attribute="value">`."""
    found = re.search(rf'<tr {attribute}="{re.escape(value)}">(.*?)</tr>', dom, re.S)
    assert found, f"no row {attribute}={value!r} in\n{dom[:4000]}"
    return found.group(1)


def cells(row_html):
    return [" ".join(re.sub(r"<[^>]+>", " ", c).split()) for c in re.findall(r"<td[^>]*>(.*?)</td>", row_html, re.S)]


def assert_no_secret(status, text, where):
    for secret in (*status.tokens.values(), TSIG_SECRET, CHECK_QUERY_SECRET):
        assert secret not in text, f"{where} shows a secret"
    for token in status.tokens.values():
        digest = hashlib.sha256(token.encode()).hexdigest()
        assert digest not in text, f"{where} shows a token's hash"


# --------------------------------------------------------------------------------------
# Each page, as Chromium renders it


def test_namespaces_page_lists_services_with_counts_serial_and_ttls(status):
    dom = dump_dom(status.ops_url("/ui/"))
    assert 'id="live-state">live<' in dom, "the live script did not run"
    web = cells(row(dom, "data-service", "web"))
    assert web[:5] == ["web", "2", "2", "0", "2"], web
    assert web[5] == "5 / 5 / 5 / -", web
    api = cells(row(dom, "data-service", "api"))
    assert api[0] == "api" and api[1] == "3" and api[3] == "1", api
    assert cells(row(dom, "data-service", "db"))[:3] == ["db", "1", "1"]
    serial = status.m.soa_serial()
    assert f"SOA serial <b>{serial}</b>" in dom
    assert "every source synced" in dom
    assert_no_secret(status, dom, "/ui/")
    screenshot(status.ops_url("/ui/"), "namespaces")


def test_service_page_shows_each_instance_and_its_dns_records(status):
    dom = dump_dom(status.ops_url("/ui/namespaces/internal/services/web"))
    one = cells(row(dom, "data-instance", "web-1"))
    assert one[:5] == ["web-1", "10.0.0.1", "8080", "api", "healthy"], one
    assert "zone=a" in one[9]
    # The records DNS serves for it, as dig shows them.
    records = one[10]
    assert "web.internal. 5 IN A 10.0.0.1" in records, records
    assert "_web._tcp.internal. 5 IN SRV 1 1 8080 web-1.web.internal." in records, records
    assert "web-1.web.internal. 5 IN A 10.0.0.1" in records, records
    dig = status.m.dig("web.internal", "A")
    assert "10.0.0.1" in dig
    two = cells(row(dom, "data-instance", "web-2"))
    assert two[1] == "10.0.0.2, fd00::2" and "web.internal. 5 IN AAAA fd00::2" in two[10], two
    assert_no_secret(status, dom, "service page")
    screenshot(status.ops_url("/ui/namespaces/internal/services/web"), "service-web")


def test_a_hostile_attribute_is_text_not_markup(status):
    dom = dump_dom(status.ops_url("/ui/namespaces/internal/services/web"))
    # Serialized DOM: the value is a text node, so its markup characters come back escaped,
    # and the only script element is muster's own.
    assert "note=&lt;script&gt;alert('pwned')&lt;/script&gt;\"&amp;" in dom, row(dom, "data-instance", "web-2")
    assert dom.count("<script") == 1 and '<script src="/ui/assets/live.js">' in dom
    raw = requests.get(status.ops_url("/ui/namespaces/internal/services/web"), timeout=5).text
    assert "alert(&#39;pwned&#39;)" in raw and "<script>alert" not in raw


def test_service_page_shows_checks_drain_and_hides_the_check_query(status):
    dom = dump_dom(status.ops_url("/ui/namespaces/internal/services/api"))
    checked = cells(row(dom, "data-instance", "api-1"))
    assert checked[4] == "healthy" and checked[6].startswith("HTTP GET /healthz?…"), checked
    assert "every 200ms, 2 to fail, 1 to pass" in checked[6], checked
    drained = cells(row(dom, "data-instance", "api-drained"))
    assert drained[8] == "draining" and drained[10] == "none: not served", drained
    assert_no_secret(status, dom, "api service page")


def test_sources_page_shows_each_source_synced(status):
    dom = dump_dom(status.ops_url("/ui/sources"))
    file = cells(row(dom, "data-source", f"file:{status.file}"))
    assert file[1:3] == ["file", "synced"] and file[4:7] == ["none", "1", "1"], file
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(\d+s ago\)", file[3]), file
    assert file[7].startswith(f"file:{status.file}: running (0 restarts)"), file
    api = cells(row(dom, "data-source", "api"))
    assert api[1:6] == ["api", "synced", "-", "-", "5"], api
    assert "Log:" in dom and "takes writes" in dom
    assert_no_secret(status, dom, "/ui/sources")

    # The file breaks: its last good state stays, the page says why, then that it recovered.
    source = f"file:{status.file}"
    good = status.file.read_text()
    metrics = status.ops_url("/metrics")
    assert metric_value(requests.get(metrics, timeout=5).text, "muster_source_synced", source=source) == 1
    status.file.write_text(good + "[[instances]]\nnamespace = ")
    try:
        wait_until(lambda: "failing;" in requests.get(status.ops_url("/ui/sources"), timeout=5).text,
                   timeout=5, message="the file's error on the page")
        # The served HTML (the DOM of this page is checked above; a second browser is slow).
        file = cells(row(requests.get(status.ops_url("/ui/sources"), timeout=5).text, "data-source", source))
        assert file[2] == "synced" and file[5] == "1", file
        assert file[4].startswith("not applied: ") and "(failing; " in file[4], file
    finally:
        status.file.write_text(good)
    wait_until(lambda: "recovered;" in requests.get(status.ops_url("/ui/sources"), timeout=5).text,
               timeout=8, message="the file read again")
    text = requests.get(metrics, timeout=5).text
    assert metric_value(text, "muster_source_synced", source=source) == 1, text
    last = metric_value(text, "muster_source_last_sync_timestamp_seconds", source=source)
    assert last is not None and abs(last - time.time()) < 10, last
    screenshot(status.ops_url("/ui/sources"), "sources")


def test_dns_page_counts_queries_by_rcode_and_type(status):
    before = dump_dom(status.ops_url("/ui/dns"))
    rcodes = dict((cells(r)[0], float(cells(r)[1])) for r in re.findall(r'<tr data-key="[A-Z]+">(.*?)</tr>', before))
    assert rcodes.get("NOERROR", 0) >= 2 and rcodes.get("NXDOMAIN", 0) >= 1, rcodes
    assert cells(row(before, "data-zone", "internal"))[0] == "internal."
    for _ in range(20):
        status.m.dns_query("web.internal", "A")
    after = dump_dom(status.ops_url("/ui/dns"))
    queries = lambda dom: float(re.search(r'id="queries">([\d.]+)<', dom).group(1))  # noqa: E731
    assert queries(after) >= queries(before) + 20
    assert_no_secret(status, after, "/ui/dns")
    screenshot(status.ops_url("/ui/dns"), "dns")


def test_access_needs_unrestricted_read_on_the_http_listener(status):
    m = status.m
    for path in ("/ui/", "/ui/sources", "/ui/dns", "/ui/namespaces/internal/services/web"):
        r = requests.get(m.url(path), timeout=5)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer"), (path, r.status_code)
        narrow = requests.get(m.url(path), headers={"Authorization": f"Bearer {status.tokens['narrow']}"}, timeout=5)
        assert narrow.status_code == 403, (path, narrow.status_code)
        ok = requests.get(m.url(path), headers={"Authorization": f"Bearer {status.tokens['reader']}"}, timeout=5)
        assert ok.status_code == 200 and "text/html" in ok.headers["Content-Type"], (path, ok.status_code)
        assert "script-src 'self'" in ok.headers["Content-Security-Policy"]
        assert_no_secret(status, ok.text, path)
        assert requests.get(status.ops_url(path), timeout=5).status_code == 200, path
    # Read-only: nothing under /ui/ takes a write.
    assert requests.post(status.ops_url("/ui/"), timeout=5).status_code == 405


# --------------------------------------------------------------------------------------
# Live: a loaded page follows the registry


class DevTools:
    """The Chrome DevTools protocol over one WebSocket (RFC 6455 client framing)."""

    def __init__(self, ws_url):
        url = urllib.parse.urlparse(ws_url)
        self.sock = socket.create_connection((url.hostname, url.port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET {url.path} HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        )
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            assert chunk, "DevTools closed the connection during the handshake"
            head += chunk
        head, self.buffer = head.split(b"\r\n\r\n", 1)
        assert b" 101 " in head.split(b"\r\n")[0], head
        self.ids = iter(range(1, 1_000_000))

    def _send(self, payload):
        header = bytearray([0x81])
        n = len(payload)
        if n < 126:
            header.append(0x80 | n)
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        header += mask
        self.sock.sendall(bytes(header) + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def _exact(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            assert chunk, "DevTools closed the connection"
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def _message(self):
        data = b""
        while True:
            first, second = self._exact(2)
            n = second & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._exact(8))[0]
            payload = self._exact(n)
            if first & 0x0F in (0x9, 0xA):  # ping, pong
                continue
            data += payload
            if first & 0x80:
                return data

    def call(self, method, **params):
        call_id = next(self.ids)
        self._send(json.dumps({"id": call_id, "method": method, "params": params}).encode())
        while True:
            message = json.loads(self._message())
            if message.get("id") == call_id:
                assert "error" not in message, message
                return message["result"]

    def evaluate(self, expression):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)["result"].get("value")

    def close(self):
        self.sock.close()


def open_page(url, profile):
    """Chromium with the page loaded and a DevTools connection to it."""
    proc = subprocess.Popen(
        [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
         "--window-size=1280,900", url],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 20
    port = None
    while port is None and time.monotonic() < deadline:
        line = proc.stderr.readline()
        found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
        port = found and int(found.group(1))
        assert line or proc.poll() is None, "chromium exited before DevTools listened"
    assert port, "chromium did not say where DevTools listens"
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # never block chromium on a full pipe

    def page():
        targets = requests.get(f"http://127.0.0.1:{port}/json/list", timeout=5).json()
        return next((t for t in targets if t["type"] == "page" and t["url"].startswith(url)), None)

    target = wait_until(page, timeout=10, message="the page's DevTools target")
    return proc, DevTools(target["webSocketDebuggerUrl"])


def test_a_killed_instance_turns_unhealthy_on_the_loaded_page(status, tmp_path):
    url = status.ops_url("/ui/namespaces/internal/services/api")
    proc, tools = open_page(url, tmp_path / "profile")
    try:
        health = 'document.querySelector(\'tr[data-instance="api-1"]\').children[4].textContent'
        wait_until(lambda: tools.evaluate("document.readyState") == "complete"
                   and tools.evaluate(health) == "healthy", timeout=10, message="the page shows api-1 healthy")
        # A mark in the page's JavaScript world: a reload would wipe it.
        tools.evaluate("window.loadedOnce = 'still the same page'")
        status.target.stop()
        api_saw = page_saw = None
        deadline = time.monotonic() + 10
        while (api_saw is None or page_saw is None) and time.monotonic() < deadline:
            now = time.monotonic()
            if api_saw is None and not status.m.service("internal", "api")["instances"][0]["check_ok"]:
                api_saw = now
            if page_saw is None and tools.evaluate(health) == "unhealthy":
                page_saw = now
            time.sleep(0.02)
        assert api_saw and page_saw, f"API saw it at {api_saw}, the page at {page_saw}"
        assert page_saw - api_saw < 1.0, f"the page showed it {page_saw - api_saw:.2f} s after the API"
        assert tools.evaluate("window.loadedOnce") == "still the same page", "the page was reloaded"
        why = tools.evaluate('document.querySelector(\'tr[data-instance="api-1"]\').children[5].textContent')
        assert why.startswith("2 consecutive checks failed: http://127.0.0.1:"), why
        assert "/healthz?…" in why and "cannot connect" in why, why
        rest_why = status.m.service("internal", "api")["instances"][0]["check_reason"]
        assert "/healthz?…" in rest_why and CHECK_QUERY_SECRET not in rest_why, rest_why
        assert tools.evaluate("document.getElementById('live-state').textContent") == "live"
        shot = tools.call("Page.captureScreenshot", format="png")["data"]
        (ARTIFACTS / "service-api-unhealthy.png").write_bytes(base64.b64decode(shot))
        assert_no_secret(status, tools.evaluate("document.documentElement.outerHTML"), "live page")
    finally:
        tools.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_changes_page_lists_recent_changes_newest_first(status):
    """After the live test: the check's verdict is the newest instance change."""
    dom = dump_dom(status.ops_url("/ui/changes"))
    rows = [cells(r) for r in re.findall(r'<tr data-index="\d+">(.*?)</tr>', dom, re.S)]
    events = [(r[2], r[3]) for r in rows]
    assert ("registered", "web-1 in web.internal") in events, events
    assert ("drained", "api-drained in api.internal") in events, events
    unhealthy = [r for r in rows if r[2] == "unhealthy" and r[3] == "api-1 in api.internal"]
    assert unhealthy and unhealthy[0][4] == "api", rows
    assert "/healthz?…" in unhealthy[0][5] and "cannot connect" in unhealthy[0][5], unhealthy
    indexes = [int(r[0]) for r in rows]
    assert indexes == sorted(indexes, reverse=True), indexes
    assert_no_secret(status, dom, "/ui/changes")
    screenshot(status.ops_url("/ui/changes"), "changes")
