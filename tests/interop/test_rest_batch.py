"""`POST /v1/namespaces/{ns}/batch` (docs/rest.md, "Batches") with requests and curl:
many registrations in one request, all or nothing, one revision, every bad item named by
its index, scopes per item, one write per item from the rate limit, and a restart that
brings the batch back from the log.
"""

import json
import subprocess

import pytest

from harness import answer_rdata, namespace_toml, new_token, toml_value, wait_until

NS = "internal"
BATCH = f"/v1/namespaces/{NS}/batch"


def register(service, iid, ipv4, **extra):
    return {"op": "register", "service": service, "id": iid, "instance": {"ipv4": ipv4, "port": 8080, **extra}}


def deregister(service, iid):
    return {"op": "deregister", "service": service, "id": iid}


def post(m, changes, **kw):
    kw.setdefault("timeout", 5)
    return m.http.post(m.url(BATCH), json={"changes": changes}, **kw)


def addresses(m, name):
    return sorted(answer_rdata(m.dns_query(name, "A"), "A"))


def assert_error(r, status, field):
    assert r.status_code == status, f"{r.status_code}: {r.text}"
    body = r.json()
    assert body.get("field") == field and body["error"], body
    return body


def test_a_batch_is_one_revision_and_in_dns_when_answered(muster):
    m = muster()
    m.put_instance(NS, "web", "old", {"ipv4": "10.0.0.9"})
    serial = m.soa_serial()
    changes = [register("web", f"i-{n}", f"10.0.0.{n}") for n in range(1, 6)]
    changes += [register("api", "a-1", "10.0.1.1"), deregister("web", "old")]
    r = post(m, changes)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["changes"] == 7
    assert body["revision"] == serial + 1, "one revision for the whole batch"
    assert m.soa_serial() == serial + 1
    assert addresses(m, "web.internal") == [f"10.0.0.{n}" for n in range(1, 6)]
    assert addresses(m, "api.internal") == ["10.0.1.1"]
    assert m.service(NS, "web")["instances"][0]["source"] == "api"


def test_a_bad_item_is_named_and_nothing_is_applied(muster):
    m = muster()
    serial = m.soa_serial()
    good = register("web", "i-1", "10.0.0.1")
    cases = [
        ([good, register("web", "i-2", "10.0.0")], 400, "changes[1].instance.ipv4"),
        ([good, register("web", "i-2", "10.0.0.2", port=0)], 400, "changes[1].instance.port"),
        ([good, register("bad_name!", "i-2", "10.0.0.2")], 400, "changes[1].service"),
        ([good, {"op": "register", "service": "web", "id": "i-2"}], 400, "changes[1].instance"),
        ([good, {**deregister("web", "i-2"), "instance": {"ipv4": "10.0.0.2"}}], 400, "changes[1].instance"),
        ([good, {"op": "move", "service": "web", "id": "i-2"}], 400, "changes[1]"),
        ([], 400, "changes"),
    ]
    for changes, status, field in cases:
        assert_error(post(m, changes), status, field)
    # Refused by the registry: deregistering what does not exist undoes the whole batch.
    assert_error(post(m, [good, deregister("web", "missing")]), 404, "changes[1].id")
    too_many = [register("web", f"i-{n}", "10.0.0.1") for n in range(1001)]
    assert_error(post(m, too_many), 400, "changes")
    assert m.soa_serial() == serial, "nothing was applied"
    assert m.get(f"/v1/namespaces/{NS}/services/web").status_code == 404


def test_an_instance_another_source_owns_refuses_the_batch(muster, tmp_path):
    static = tmp_path / "static.toml"
    static.write_text('[[instances]]\nnamespace = "internal"\nservice = "db"\nid = "d-1"\nipv4 = "10.0.2.1"\n')
    m = muster(f"[[sources.file]]\npath = {toml_value(str(static))}\n")
    wait_until(lambda: m.get("/readyz").status_code == 200, timeout=5, message="/readyz 200")
    serial = m.soa_serial()
    r = post(m, [register("web", "i-1", "10.0.0.1"), register("db", "d-1", "10.0.2.2")])
    assert_error(r, 409, "changes[1].id")
    assert m.soa_serial() == serial
    assert addresses(m, "db.internal") == ["10.0.2.1"]


def test_curl_posts_a_batch_and_a_restart_replays_it(muster):
    m = muster()
    body = json.dumps({"changes": [register("web", "i-1", "10.0.0.1"), register("web", "i-2", "10.0.0.2")]})
    done = subprocess.run(
        ["curl", "-sS", "-X", "POST", "-H", "Content-Type: application/json", "--data-binary", body, m.url(BATCH)],
        capture_output=True, text=True, timeout=10, check=True,
    )  # fmt: skip
    assert json.loads(done.stdout)["changes"] == 2, done.stdout
    m.restart()
    assert addresses(m, "web.internal") == ["10.0.0.1", "10.0.0.2"]


@pytest.fixture
def scoped(muster):
    token, table = new_token("deployer", [f"read:{NS}", f"register:{NS}/web-*"])
    m = muster(namespace_toml() + "\n[auth]\nwrite_rate = 1\nwrite_burst = 4\n" + table)
    return m, {"Authorization": f"Bearer {token}"}


def test_each_item_needs_its_scope_and_each_draws_a_write(scoped):
    m, auth = scoped
    outside = post(m, [register("web-a", "i-1", "10.0.0.1"), register("db", "i-2", "10.0.0.2")], headers=auth)
    assert_error(outside, 403, "changes[1].service")
    assert post(m, [register("web-a", "i-1", "10.0.0.1")]).status_code == 401
    three = [register("web-a", f"i-{n}", f"10.0.0.{n}") for n in range(1, 4)]
    assert post(m, three, headers=auth).status_code == 200
    # 4 in the bucket, 3 taken: four more need 3 s more of the rate (1/s).
    four = [register("web-b", f"i-{n}", f"10.0.0.{n}") for n in range(1, 5)]
    refused = post(m, four, headers=auth)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1, refused.text
    assert m.get(f"/v1/namespaces/{NS}/services/web-b", headers=auth).status_code == 404


def test_an_instance_named_twice_refuses_the_batch(muster):
    m = muster()
    m.put_instance(NS, "web", "i-1", {"ipv4": "10.0.0.9"})
    serial = m.soa_serial()
    cases = [
        [register("web", "i-1", "10.0.0.1"), register("web", "i-1", "10.0.0.2")],
        [register("web", "i-2", "10.0.0.2"), deregister("web", "i-3"), deregister("web", "i-2")],
        # Service names are case-insensitive: WEB is web.
        [deregister("web", "i-1"), register("api", "a-1", "10.0.1.1"), register("WEB", "i-1", "10.0.0.3")],
    ]
    for changes in cases:
        last = len(changes) - 1
        body = assert_error(post(m, changes), 400, f"changes[{last}].id")
        assert "changes[0]" in body["error"] or "changes[1]" in body["error"], body
    assert m.soa_serial() == serial, "nothing was applied"
    assert addresses(m, "web.internal") == ["10.0.0.9"]
    # The same id in two services is two instances.
    r = post(m, [register("web", "x", "10.0.0.4"), register("api", "x", "10.0.1.4")])
    assert r.status_code == 200, r.text
