"""The HTTP listeners under clients that misbehave (issue 14, A6 and B), with raw sockets,
requests, curl, boto3 and Python's ssl.

- Timeouts: a keep-alive connection is closed after ``idle_timeout`` while a request in
  flight is not; half-sent headers and silent connections are dropped after
  ``header_timeout``.
- Caps: ``max_connections`` and ``max_connections_per_source``; descriptor exhaustion
  (muster under a small open-files limit) neither spins nor lasts.
- TLS with a certificate the test makes, rotated on SIGHUP and when the files change.
- The ``[ops]`` listener; the Host check against DNS rebinding; JSON errors (404, 405,
  413, 415) in both APIs' shapes.
"""

import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import time

import boto3
import botocore.config
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from harness import metric_value, muster_bin, wait_until

TARGET = "Route53AutoNaming_v20170314."
AMZ_JSON = "application/x-amz-json-1.1"
BODY_LIMIT = 256 * 1024
INSTANCE = "/v1/namespaces/internal/services/web/instances/i-1"


def start(muster, http="", extra="", bin=None):
    """A muster with ``http`` added to its ``[http]`` table and ``extra`` after it. The
    harness's requests close their connections, so none is left open to count."""
    m = muster(extra, start=False)
    with_http(m, http)
    if bin is not None:
        m.bin = bin
    m.http.headers["Connection"] = "close"
    m.start()
    wait_until(lambda: open_connections(m) == 0, timeout=5, message="the harness's connection closed")
    return m


def open_connections(m, listener="api"):
    """Connections muster has open on ``listener``, besides the one asking (None when
    the asking one is refused)."""
    s = connect(m.http_port)
    try:
        send_request(s, "GET", "/metrics", headers={"Connection": "close"})
        _, _, body = read_response(s)
    except (AssertionError, OSError):
        return None
    finally:
        s.close()
    value = metric_value(body.decode(), "muster_http_connections", listener=listener)
    assert value is not None, f'muster_http_connections{{listener="{listener}"}} not in /metrics'
    return int(value) - (listener == "api")


def with_http(m, http):
    """From now on, ``m``'s configuration has ``http`` in its ``[http]`` table."""
    base = type(m).config_text(m)
    m.config_text = lambda: base.replace("[http]\n", "[http]\n" + http, 1)
    m.write_config()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def connect(port, source=None, timeout=5.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if source:
        s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    return s


def closed_within(s, seconds):
    """Seconds until the server closed ``s`` (EOF or reset), reading and discarding what
    it sends; None if it is still open after ``seconds``."""
    start = time.monotonic()
    deadline = start + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        s.settimeout(left)
        try:
            if not s.recv(65536):
                return time.monotonic() - start
        except socket.timeout:
            return None
        except (ConnectionResetError, BrokenPipeError):
            return time.monotonic() - start


def send_request(s, method, path, host="127.0.0.1", headers=None, body=b""):
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if body and "Content-Length" not in (headers or {}):
        lines.append(f"Content-Length: {len(body)}")
    s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)


def read_response(s):
    """(status, headers with lower-case names, body) of one response on ``s``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = s.recv(65536)
        assert chunk, "closed within a response body"
        body += chunk
    return status, headers, body


def fetch(method, url, **kw):
    """One request on a connection of its own, closed after it (requests would keep it
    open, and it would count against the caps)."""
    kw.setdefault("timeout", 5)
    kw["headers"] = {"Connection": "close", **kw.get("headers", {})}
    return requests.request(method, url, **kw)


# --------------------------------------------------------------------------------------
# Timeouts


def test_idle_keep_alive_is_closed_but_a_request_in_flight_is_not(muster):
    m = start(muster, 'header_timeout = "8s"\nidle_timeout = "1s"\n')
    s = connect(m.http_port)
    send_request(s, "GET", "/healthz")
    assert read_response(s)[0] == 200
    closed = closed_within(s, 5)
    assert closed is not None, "an idle keep-alive connection stayed open"
    assert 0.7 <= closed <= 3.0, closed

    # A request in flight: its head is in, its body trickles with pauses longer than the
    # idle timeout. The idle clock does not run while it is in flight.
    s = connect(m.http_port)
    body = json.dumps({"ipv4": "10.0.0.1", "port": 80}).encode()
    send_request(s, "PUT", INSTANCE, headers={"Content-Type": "application/json", "Content-Length": len(body)})
    for i in range(0, len(body), 10):
        time.sleep(1.5)
        s.sendall(body[i : i + 10])
    status, _, answer = read_response(s)
    assert status == 200, answer
    closed = closed_within(s, 5)
    assert closed is not None and 0.7 <= closed <= 3.0, closed

    # requests reconnects by itself when muster closed its idle connection.
    with requests.Session() as session:
        assert session.get(m.url("/healthz"), timeout=5).status_code == 200
        time.sleep(1.5)
        assert session.get(m.url("/healthz"), timeout=5).status_code == 200
    assert m.metric("muster_http_timeouts_total", listener="api", kind="idle") >= 2


def test_half_sent_headers_and_silent_connections_are_dropped(muster):
    m = start(muster, 'header_timeout = "1s"\n')
    opened = time.monotonic()
    silent = connect(m.http_port)
    half = connect(m.http_port)
    half.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    # A slowloris: a byte every 0.3 s keeps bytes moving but never finishes the head.
    trickle = connect(m.http_port)
    for byte in b"GET /healthz HTTP/1.1\r\n":
        try:
            trickle.send(bytes([byte]))
        except OSError:
            break
        time.sleep(0.3)
        if time.monotonic() - opened > 4:
            break
    for name, s in [("silent", silent), ("half-sent", half), ("trickling", trickle)]:
        closed = closed_within(s, 5)
        assert closed is not None, f"a {name} connection stayed open"
        held = time.monotonic() - opened
        assert held <= 3.5, f"a {name} connection was held {held:.1f} s"
    # curl, which sends its request at once, is unaffected.
    out = subprocess.run(["curl", "-s", m.url("/healthz")], capture_output=True, text=True, timeout=10)
    assert out.stdout.strip() == "ok", out
    assert m.metric("muster_http_timeouts_total", listener="api", kind="header") >= 3


# --------------------------------------------------------------------------------------
# Caps


def test_connection_caps_total_and_per_source(muster):
    m = start(muster, 'header_timeout = "30s"\nmax_connections = 6\nmax_connections_per_source = 3\n')
    first = [connect(m.http_port, source="127.0.0.1") for _ in range(3)]
    over_source = connect(m.http_port, source="127.0.0.1")
    assert closed_within(over_source, 2) is not None, "a 4th connection from one source was kept"
    second = [connect(m.http_port, source="127.0.0.2") for _ in range(3)]
    over_total = connect(m.http_port, source="127.0.0.3")
    assert closed_within(over_total, 2) is not None, "a 7th connection was kept"
    for s in first + second:
        assert closed_within(s, 0.1) is None, "an admitted connection was closed"

    # A place freed from a source is taken again, and the connection works.
    first.pop().close()
    again = wait_until(lambda: try_request(m.http_port, "127.0.0.1"), timeout=5, message="a freed place")
    assert again == 200
    for s in first + second:
        s.close()
    wait_until(lambda: open_connections(m) == 0, timeout=5, message="the connections closed")
    refused = "muster_http_connections_refused_total"
    assert m.metric(refused, listener="api", reason="max_connections_per_source") >= 1
    assert m.metric(refused, listener="api", reason="max_connections") >= 1


def try_request(port, source):
    s = connect(port, source=source)
    try:
        send_request(s, "GET", "/healthz")
        return read_response(s)[0]
    except (AssertionError, OSError):
        return None
    finally:
        s.close()


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_descriptor_exhaustion_neither_spins_nor_lasts(muster, tmp_path):
    limit = 64
    wrapper = tmp_path / "muster-nofile"
    wrapper.write_text(f'#!/bin/sh\nexec prlimit --nofile={limit}:{limit} {muster_bin()} "$@"\n')
    wrapper.chmod(0o755)
    m = start(muster, 'header_timeout = "2s"\n', bin=wrapper)
    pid = m.proc.pid
    held = [connect(m.http_port) for _ in range(limit + 20)]
    wait_until(lambda: len(os.listdir(f"/proc/{pid}/fd")) >= limit - 2, timeout=5, message="descriptors exhausted")

    before = cpu_seconds(pid)
    time.sleep(1.5)
    spent = cpu_seconds(pid) - before
    assert spent < 0.3, f"muster used {spent:.2f} s of CPU in 1.5 s while out of descriptors"

    # The header clock closes the silent connections; muster answers again while the
    # client still holds every socket it opened.
    wait_until(lambda: try_request(m.http_port, None) == 200, timeout=30, interval=0.5, message="HTTP again")
    errors = m.metric("muster_http_accept_errors_total", listener="api")
    assert 1 <= errors < 500, f"{errors} accept errors: a spinning accept loop makes thousands"
    for s in held:
        s.close()
    logged = m.log_path.read_text().count("HTTP accept failed")
    assert 1 <= logged <= 5, f"{logged} log lines about failed accepts"


# --------------------------------------------------------------------------------------
# TLS


def make_certificate(name):
    """A self-signed certificate for localhost and 127.0.0.1: (certificate PEM, key PEM,
    certificate DER)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    return cert_pem, key_pem, cert.public_bytes(serialization.Encoding.DER)


def install(path, data):
    """Replaces ``path`` atomically, as certificate tools do."""
    tmp = path.with_suffix(".new")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def served_certificate(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s, ctx.wrap_socket(s) as t:
        return t.getpeercert(binary_form=True)


def test_tls_serves_and_rotates_the_certificate(muster, tmp_path):
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert1, key1, der1 = make_certificate("one")
    install(cert_path, cert1)
    install(key_path, key1)
    ca1 = tmp_path / "ca1.pem"
    ca1.write_bytes(cert1)
    m = muster(start=False)
    with_http(m, f'header_timeout = "1s"\ntls_cert = "{cert_path}"\ntls_key = "{key_path}"\n')
    m.url = lambda path: f"https://127.0.0.1:{m.http_port}{path}"
    m.http.verify = str(ca1)
    m.http.trust_env = False  # or REQUESTS_CA_BUNDLE would win over verify
    m.start()
    base = f"https://127.0.0.1:{m.http_port}"

    assert requests.get(base + "/healthz", verify=str(ca1), timeout=5).text == "ok\n"
    assert served_certificate(m.http_port) == der1
    # Plain HTTP on the TLS port gets nowhere.
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{m.http_port}/healthz", timeout=5)
    # The handshake is on the header clock: a client that opens and says nothing is dropped.
    s = connect(m.http_port)
    s.sendall(b"\x16\x03\x01\x00")
    assert closed_within(s, 4) is not None, "a stalled TLS handshake stayed open"

    # Rotation: new files, SIGHUP, the new certificate without a restart.
    cert2, key2, der2 = make_certificate("two")
    install(cert_path, cert2)
    install(key_path, key2)
    m.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: served_certificate(m.http_port) == der2, timeout=5, message="the new certificate")
    ca2 = tmp_path / "ca2.pem"
    ca2.write_bytes(cert2)
    curl = subprocess.run(
        ["curl", "-s", "--cacert", str(ca2), base + "/healthz"], capture_output=True, text=True, timeout=10
    )
    assert curl.stdout == "ok\n", curl

    # A pair that does not load (the key is not the certificate's) keeps the one in force,
    # with one error line, not one per poll.
    cert3, _, _ = make_certificate("three")
    install(cert_path, cert3)
    m.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "TLS certificate not reloaded" in m.log_path.read_text(), timeout=5, message="the error")
    time.sleep(11)  # one poll of the files passes
    assert served_certificate(m.http_port) == der2
    assert m.log_path.read_text().count("TLS certificate not reloaded") == 1
    # m.metric would ask with the first certificate's CA: read /metrics trusting the one in force.
    metrics = fetch("GET", base + "/metrics", verify=str(ca2)).text
    assert metric_value(metrics, "muster_http_tls_reloads_total", result="error") == 1

    # Files changed without SIGHUP are picked up by the poll.
    cert4, key4, der4 = make_certificate("four")
    install(key_path, key4)
    install(cert_path, cert4)
    wait_until(lambda: served_certificate(m.http_port) == der4, timeout=15, interval=0.5, message="the polled certificate")
    ca4 = tmp_path / "ca4.pem"
    ca4.write_bytes(cert4)
    metrics = fetch("GET", base + "/metrics", verify=str(ca4)).text
    failures = metric_value(metrics, "muster_http_tls_handshake_failures_total")
    assert failures is not None and failures >= 1, failures


# --------------------------------------------------------------------------------------
# The ops listener


def test_ops_listener_serves_only_operations_with_its_own_bounds(muster):
    ops = free_port()
    m = start(
        muster,
        'header_timeout = "30s"\nmax_connections = 2\nmax_connections_per_source = 2\n',
        extra=f'[ops]\nlisten = "127.0.0.1:{ops}"\n',
    )
    url = f"http://127.0.0.1:{ops}"
    for path in ("/metrics", "/healthz", "/readyz"):
        assert fetch("GET", url + path).status_code == 200, path
    assert metric_value(fetch("GET", url + "/metrics", timeout=5).text, "muster_http_connections") is not None
    r = fetch("GET", url + "/v1/namespaces", timeout=5)
    assert r.status_code == 404 and "error" in r.json()
    r = fetch("PUT", url + INSTANCE, json={"ipv4": "10.0.0.1"}, timeout=5)
    assert r.status_code == 404, r.text
    r = fetch("POST", url + "/", headers={"X-Amz-Target": TARGET + "ListNamespaces", "Content-Type": AMZ_JSON}, data="{}", timeout=5)
    assert r.status_code == 404 and r.json()["__type"] == "UnknownOperationException"
    assert fetch("GET", m.url("/metrics")).status_code == 200

    # Same bounds, counted apart: full on ops, the API still takes connections.
    held = [connect(ops) for _ in range(2)]
    extra = connect(ops)
    assert closed_within(extra, 2) is not None, "a 3rd ops connection was kept"
    assert try_request(m.http_port, None) == 200
    for s in held:
        s.close()
    wait_until(lambda: open_connections(m, "ops") == 0, timeout=5, message="the ops connections closed")
    r = fetch("GET", url + "/healthz", headers={"Host": "evil.example"}, timeout=5)
    assert r.status_code == 403


# --------------------------------------------------------------------------------------
# DNS rebinding


def curl(*args):
    done = subprocess.run(["curl", "-s", "-w", "\n%{http_code}", *args], capture_output=True, text=True, timeout=10)
    body, _, code = done.stdout.rpartition("\n")
    return int(code), body


def test_host_check_stops_dns_rebinding(muster):
    m = start(muster, 'hosts = ["muster.internal"]\n')
    port = m.http_port
    # What a browser sends once evil.example is rebound to 127.0.0.1.
    rebound = ["--resolve", f"evil.example:{port}:127.0.0.1"]
    code, body = curl(*rebound, f"http://evil.example:{port}/v1/namespaces")
    assert code == 403, body
    error = json.loads(body)
    assert error["field"] == "Host" and "evil.example" in error["error"], error
    code, body = curl(
        *rebound, "-X", "PUT", "-H", "Content-Type: application/json", "-d", '{"ipv4": "6.6.6.6"}',
        f"http://evil.example:{port}{INSTANCE}",
    )
    assert code == 403, body
    assert requests.get(m.url("/v1/namespaces/internal/services/web"), timeout=5).status_code == 404

    r = requests.post(
        m.url("/"), data="{}", timeout=5,
        headers={"Host": f"evil.example:{port}", "X-Amz-Target": TARGET + "ListNamespaces", "Content-Type": AMZ_JSON},
    )
    assert r.status_code == 403 and r.headers["content-type"] == AMZ_JSON
    assert r.json()["__type"] == "AccessDeniedException" and "evil.example" in r.json()["Message"]

    for host in [f"127.0.0.1:{port}", "127.0.0.1", f"localhost:{port}", "[::1]:8054", "muster.internal", f"data-muster.internal:{port}"]:
        r = requests.get(m.url("/v1/namespaces"), headers={"Host": host}, timeout=5)
        assert r.status_code == 200, (host, r.text)
    for name in ("muster.internal", "data-muster.internal"):
        code, body = curl("--resolve", f"{name}:{port}:127.0.0.1", f"http://{name}:{port}/v1/namespaces")
        assert code == 200, (name, body)
    for host in ["muster.internal.evil.example", "data-evil.example", "localhost.evil.example"]:
        assert requests.get(m.url("/healthz"), headers={"Host": host}, timeout=5).status_code == 403, host

    # http.hosts follows a reload.
    with_http(m, 'hosts = ["muster.internal", "evil.example"]\n')
    m.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: curl(*rebound, f"http://evil.example:{port}/v1/namespaces")[0] == 200, timeout=5, message="reloaded hosts")
    assert m.metric("muster_http_requests_refused_total", reason="host") >= 5


# --------------------------------------------------------------------------------------
# Errors in JSON


def test_errors_answer_json_in_each_apis_shape(muster):
    m = start(muster)
    port = m.http_port
    rest_cases = [
        ("GET", "/v1/nope", {}, b"", 404, None),
        ("PATCH", "/v1/namespaces", {}, b"", 405, None),
        ("DELETE", "/healthz", {}, b"", 405, None),
        ("PUT", INSTANCE, {"Content-Type": "text/xml"}, b"<ipv4/>", 415, "Content-Type"),
        ("PUT", INSTANCE, {"Content-Type": "application/json", "Content-Length": BODY_LIMIT + 1}, b"", 413, "body"),
        ("GET", "/v1/namespaces/%FF/services", {}, b"", 400, "path"),
    ]
    for method, path, headers, body, status, field in rest_cases:
        s = connect(port)
        send_request(s, method, path, headers=headers, body=body)
        got, answer_headers, answer = read_response(s)
        s.close()
        assert got == status, (method, path, got, answer)
        assert answer_headers["content-type"].startswith("application/json"), (method, path, answer_headers)
        error = json.loads(answer)
        assert error["error"], error
        assert error.get("field") == field, (method, path, error)

    cloudmap_cases = [
        ("POST", "/nope", {"X-Amz-Target": TARGET + "ListNamespaces"}, b"{}", 404, "UnknownOperationException"),
        ("GET", "/", {}, b"", 405, "UnknownOperationException"),
        ("POST", "/", {"X-Amz-Target": TARGET + "ListNamespaces", "Content-Type": "text/plain"}, b"{}", 415, "UnsupportedMediaTypeException"),
        ("POST", "/", {"X-Amz-Target": TARGET + "ListNamespaces", "Content-Type": AMZ_JSON, "Content-Length": BODY_LIMIT + 1}, b"", 413, "RequestEntityTooLargeException"),
    ]
    for method, path, headers, body, status, kind in cloudmap_cases:
        s = connect(port)
        send_request(s, method, path, headers=headers, body=body)
        got, answer_headers, answer = read_response(s)
        s.close()
        assert got == status, (method, path, got, answer)
        assert answer_headers["content-type"] == AMZ_JSON, (method, path, answer_headers)
        error = json.loads(answer)
        assert error["__type"] == kind and error["Message"], error

    # A head over 64 KiB never reaches an API: hyper answers 431 (today: up to ~400 KiB).
    s = connect(port)
    send_request(s, "GET", "/healthz", headers={"X-Big": "a" * 100_000})
    assert read_response(s)[0] == 431
    s.close()

    # A chunked body is cut at the same size, in the same shape.
    big = json.dumps({"ipv4": "10.0.0.1", "attributes": {"k": "v" * BODY_LIMIT}}).encode()
    r = requests.put(m.url(INSTANCE), data=iter([big[i : i + 65536] for i in range(0, len(big), 65536)]), timeout=10)
    assert r.status_code == 413 and r.json()["field"] == "body", r.text

    # boto3 reads the shape: the error code and status come through.
    sd = boto3.client(
        "servicediscovery", endpoint_url=m.url(""), region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )
    with pytest.raises(sd.exceptions.ClientError) as raised:
        sd.tag_resource(ResourceARN="arn:aws:servicediscovery:us-east-1:123456789012:namespace/ns-x", Tags=[{"Key": "k", "Value": "v" * BODY_LIMIT}])
    error = raised.value.response
    assert error["Error"]["Code"] == "RequestEntityTooLargeException", error
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 413
    # Successes and the handlers' own errors are unchanged.
    assert requests.get(m.url("/v1/namespaces/nope/services"), timeout=5).json()["field"] == "namespace"
    assert requests.get(m.url("/readyz"), timeout=5).text == "ready\n"
