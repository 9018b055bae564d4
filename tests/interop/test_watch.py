"""Watching for changes (issue 19 item 6; docs/rest.md, "Watching for changes"): blocking
queries on a service (Consul's ``?index=N&wait=``) and the ``/v1/watch`` server-sent-events
stream, read with curl and requests (clients we did not write).
"""

import json
import subprocess
import threading
import time

import requests

from etcd_cluster import etcd_toml
from harness import namespace_toml, wait_until
from test_auth import new_token
from test_http_limits import with_http

NS = "internal"
WEB = f"/v1/namespaces/{NS}/services/web"


def body(last_octet, **extra):
    return {"ipv4": f"10.8.0.{last_octet}", "port": 8080, **extra}


def index_of(response):
    """The index a service GET answers with: header and JSON agree."""
    header = int(response.headers["X-Muster-Index"])
    if response.status_code == 200:
        assert response.json()["index"] == header, response.text
    return header


def curl(*args, timeout=15):
    """Runs curl; returns (headers, body) of its answer (-D - puts the headers first; text
    mode reads CRLF as LF)."""
    out = subprocess.run(
        ["curl", "-sS", "-D", "-", *args], capture_output=True, text=True, timeout=timeout, check=True
    ).stdout
    head, _, rest = out.partition("\n\n")
    headers = dict(line.split(": ", 1) for line in head.split("\n")[1:] if ": " in line)
    return {k.lower(): v for k, v in headers.items()}, rest


def test_a_blocking_query_answers_on_a_change_and_at_wait(muster):
    m = muster()
    m.put_instance(NS, "web", "a", body(1))
    first = m.get(WEB)
    index = index_of(first)
    assert first.json()["instances"][0]["healthy"] is True

    # curl waits; a change to the service answers it within well under a second.
    proc = subprocess.Popen(
        ["curl", "-sS", "-D", "-", m.url(f"{WEB}?index={index}&wait=20s")],
        stdout=subprocess.PIPE, text=True,
    )
    time.sleep(0.5)
    assert proc.poll() is None, "answered although nothing changed"
    changed_at = time.monotonic()
    m.set_health(NS, "web", "a", False)
    out, _ = proc.communicate(timeout=5)
    latency = time.monotonic() - changed_at
    assert latency < 0.5, f"answered {latency:.3f} s after the change"
    head, _, payload = out.partition("\n\n")
    view = json.loads(payload)
    assert view["instances"][0]["healthy"] is False
    assert view["index"] > index
    assert f"x-muster-index: {view['index']}" in head.lower()

    # Nothing changes in web (only another service does): it answers at wait, same index.
    now = view["index"]
    def other_changes():
        time.sleep(0.2)
        m.put_instance(NS, "db", "x", body(9))
    threading.Thread(target=other_changes).start()
    started = time.monotonic()
    r = m.get(f"{WEB}?index={now}&wait=1s")
    elapsed = time.monotonic() - started
    assert r.status_code == 200 and index_of(r) == now
    # wait plus at most wait/16 of jitter.
    assert 1.0 <= elapsed < 1.0 + 1 / 16 + 0.5, elapsed

    # Index 0, or one above the current (a restart's), answers at once.
    for stale in (0, now + 1000):
        started = time.monotonic()
        r = m.get(f"{WEB}?index={stale}&wait=10s")
        assert r.status_code == 200 and index_of(r) == now
        assert time.monotonic() - started < 0.5

    # A service that does not exist carries an index too, and can be waited on.
    missing = m.get(f"/v1/namespaces/{NS}/services/api")
    assert missing.status_code == 404 and missing.json()["field"] == "service"
    gone = index_of(missing)
    def appear():
        time.sleep(0.3)
        m.put_instance(NS, "api", "x", body(7))
    threading.Thread(target=appear).start()
    r = m.get(f"/v1/namespaces/{NS}/services/api?index={gone}&wait=10s")
    assert r.status_code == 200 and index_of(r) > gone


def test_bad_parameters_get_400_naming_the_field(muster):
    m = muster()
    for query, field in [
        ("index=abc", "index"),
        ("index=-1", "index"),
        ("index=1&wait=soon", "wait"),
        ("index=1&wait=11m", "wait"),
        ("index=1&index=2", "index"),
        ("index=1&stale=1", "stale"),
    ]:
        headers, payload = curl(m.url(f"{WEB}?{query}"))
        assert json.loads(payload)["field"] == field, (query, payload)
    r = m.get("/v1/watch?namespace=internal", headers={"Last-Event-ID": "x"})
    assert r.status_code == 400 and r.json()["field"] == "Last-Event-ID", r.text
    r = m.get("/v1/watch?service=web")
    assert r.status_code == 400 and r.json()["field"] == "service", r.text
    r = m.get("/v1/watch?namespace=nope")
    assert r.status_code == 404 and r.json()["field"] == "namespace", r.text
    r = m.get("/v1/watch?namespace=internal&index=z")
    assert r.status_code == 400 and r.json()["field"] == "index", r.text


class Events:
    """An SSE stream read with requests: ``next()`` gives (id, event, data)."""

    def __init__(self, m, query, headers=None):
        self.response = requests.get(m.url(f"/v1/watch?{query}"), stream=True, timeout=5, headers=headers)
        assert self.response.status_code == 200, self.response.text
        assert self.response.headers["Content-Type"] == "text/event-stream"
        self.lines = self.response.iter_lines(decode_unicode=True)

    def next(self):
        fields = {}
        for line in self.lines:
            if line == "":
                if "event" in fields:
                    return int(fields["id"]), fields["event"], json.loads(fields["data"])
                fields = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
        raise AssertionError("the stream ended")

    def close(self):
        self.response.close()


def test_the_stream_sends_each_change_in_order_and_resumes(muster):
    m = muster()
    stream = Events(m, "namespace=internal")
    path = m.instance_path(NS, "web", "a")
    m.put_instance(NS, "web", "a", body(1))
    m.set_health(NS, "web", "a", False)
    assert m.put(path + "/drain").status_code == 200
    m.delete_instance(NS, "web", "a")
    seen = [stream.next() for _ in range(6)]
    stream.close()
    assert [event for _, event, _ in seen] == [
        "service_created", "registered", "unhealthy", "drained", "deregistered", "service_deleted"
    ]
    ids = [i for i, _, _ in seen]
    assert ids == sorted(ids) and len(set(ids)) == len(ids), ids
    for i, event, data in seen:
        assert data["index"] == i and data["event"] == event and data["namespace"] == NS
        assert data["service"] == "web"
    _, _, unhealthy = seen[2]
    assert unhealthy["instance"] == "a" and unhealthy["source"] == "api"
    assert unhealthy["reason"] == "reported unhealthy (api)"
    assert unhealthy["time"].endswith("Z")

    # Resumed with curl after "registered": the rest again, in order.
    out = subprocess.run(
        ["curl", "-sSN", "--max-time", "1", "-H", f"Last-Event-ID: {ids[1]}", m.url("/v1/watch?namespace=internal&service=web")],
        capture_output=True, text=True,
    ).stdout
    resumed = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("event: ")]
    assert resumed == ["unhealthy", "drained", "deregistered", "service_deleted"], out

    # An index the ring no longer holds (0: before the start) gets "missed".
    stream = Events(m, "namespace=internal&index=0")
    i, event, data = stream.next()
    stream.close()
    assert event == "missed" and data["index"] == i == ids[-1], data

    # A service filter leaves other services out.
    stream = Events(m, "namespace=internal&service=db")
    m.put_instance(NS, "web", "b", body(2))
    m.put_instance(NS, "db", "x", body(3))
    _, event, data = stream.next()
    assert event == "service_created" and data["service"] == "db"
    _, event, data = stream.next()
    assert event == "registered" and data["instance"] == "x"
    stream.close()


def test_the_caps_answer_503(muster):
    m = muster(start=False)
    with_http(m, "max_blocking_queries = 2\nmax_watch_streams = 1\n")
    m.start()
    m.put_instance(NS, "web", "a", body(1))
    index = index_of(m.get(WEB))
    answers = []
    def block():
        answers.append(requests.get(m.url(f"{WEB}?index={index}&wait=20s"), timeout=30))
    waiters = [threading.Thread(target=block) for _ in range(2)]
    for w in waiters:
        w.start()
    wait_until(lambda: m.metric("muster_http_watchers", kind="blocking") == 2, timeout=5,
               message="two blocked queries")
    r = m.get(f"{WEB}?index={index}&wait=20s")
    assert r.status_code == 503 and r.headers["Retry-After"] == "1", r.text
    assert "max_blocking_queries" in r.json()["error"]
    # A change releases them.
    m.set_health(NS, "web", "a", False)
    for w in waiters:
        w.join(timeout=5)
    assert [a.status_code for a in answers] == [200, 200]
    assert m.metric("muster_http_watchers", kind="blocking") == 0

    stream = Events(m, "namespace=internal")
    r = m.get("/v1/watch?namespace=internal")
    assert r.status_code == 503 and "max_watch_streams" in r.json()["error"], r.text
    assert m.metric("muster_http_watchers_refused_total", kind="stream") == 1
    assert m.metric("muster_http_watchers", kind="stream") == 1, "the open stream holds the place"
    stream.close()
    wait_until(lambda: m.metric("muster_http_watchers", kind="stream") == 0, timeout=5,
               message="the stream's place given back")
    again = Events(m, "namespace=internal")
    again.close()


def test_watching_needs_read_and_sends_only_what_the_token_may_read(muster):
    admin, admin_table = new_token("admin", ["admin"])
    reader, reader_table = new_token("reader", [f"read:{NS}/web"])
    m = muster(admin_table + "\n" + reader_table)
    m.http.headers["Authorization"] = f"Bearer {admin}"
    as_reader = {"Authorization": f"Bearer {reader}"}
    assert requests.get(m.url("/v1/watch?namespace=internal"), timeout=5).status_code == 401
    r = requests.get(m.url("/v1/watch?namespace=internal&service=db"), headers=as_reader, timeout=5)
    assert r.status_code == 403, r.text
    r = requests.get(m.url(f"/v1/namespaces/{NS}/services/db?index=1&wait=1s"), headers=as_reader, timeout=5)
    assert r.status_code == 403, r.text
    stream = Events(m, "namespace=internal", headers=as_reader)
    m.put_instance(NS, "db", "x", body(3))
    m.put_instance(NS, "web", "a", body(1))
    _, event, data = stream.next()
    assert (event, data["service"]) == ("service_created", "web"), data
    _, event, data = stream.next()
    assert (event, data["service"], data["instance"]) == ("registered", "web", "a"), data
    stream.close()


def test_on_etcd_a_change_on_one_replica_wakes_watchers_of_another_with_the_same_index(muster, etcd_cluster):
    a, b = (muster(namespace_toml() + etcd_toml(etcd_cluster.endpoints)) for _ in range(2))
    for m in (a, b):
        wait_until(lambda m=m: m.get("/readyz").status_code == 200, timeout=10, message="replica ready")
    a.put_instance(NS, "web", "x", body(1))
    wait_until(lambda: b.get(WEB).status_code == 200, timeout=5, message="b has web")
    index = index_of(b.get(WEB))
    assert index == index_of(a.get(WEB)), "both replicas number etcd's changes alike"
    stream = Events(b, "namespace=internal&service=web")
    proc = subprocess.Popen(["curl", "-sS", b.url(f"{WEB}?index={index}&wait=20s")], stdout=subprocess.PIPE, text=True)
    time.sleep(0.3)
    assert proc.poll() is None
    changed_at = time.monotonic()
    a.set_health(NS, "web", "x", False)
    out, _ = proc.communicate(timeout=5)
    assert time.monotonic() - changed_at < 1.0
    view = json.loads(out)
    assert view["instances"][0]["healthy"] is False and view["index"] > index
    i, event, data = stream.next()
    stream.close()
    assert (event, data["instance"], i) == ("unhealthy", "x", view["index"]), data
    assert index_of(a.get(WEB)) == view["index"]
