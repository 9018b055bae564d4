"""Replicas that agree (issue 15): muster replicas on one 3-member etcd cluster on loopback.

Every replica serves what any replica wrote, with the same SOA serial; racing writes on two
replicas end in one valid outcome; etcd losing a member keeps writes going, losing quorum
turns them into 503s while DNS keeps answering; a compacted history makes a replica reload.
Clients: requests (REST), boto3 (Cloud Map), dnspython and dig, etcdctl, knotd.
"""

import base64
import concurrent.futures
import json
import random
import signal
import subprocess
import threading
import time

import boto3
import botocore.config
import botocore.exceptions
import dns.rcode
import pytest
import requests
import urllib3

from etcd_cluster import etcd_toml
from harness import answer_rdata, metric_value, namespace_toml, parse_dig, wait_until
from peers import Knot

NS = "internal"
CONFIG = namespace_toml(services=[{"match": "*", "max_answers": 0}])


def body(last_octet, port=8080, **extra):
    return {"ipv4": f"10.1.0.{last_octet}", "port": port, **extra}


def replicas(muster, cluster, count, extra="", **etcd):
    started = [muster(CONFIG + extra + etcd_toml(cluster.endpoints, **etcd)) for _ in range(count)]
    for m in started:
        wait_ready(m)
    return started


def wait_ready(m, timeout=10):
    wait_until(
        lambda: m.get("/readyz").status_code == 200,
        timeout=timeout,
        message=f"replica on {m.http_port} ready",
    )


def addresses(m, name):
    r = m.dns_query(name, "A")
    if r.rcode() != dns.rcode.NOERROR:
        return None
    return sorted(answer_rdata(r, "A"))


def same_serial(*servers, zone=NS):
    """The SOA serial every server answers, when they all answer the same one."""
    serials = {m.soa_serial(zone) for m in servers}
    return serials.pop() if len(serials) == 1 else None


def cloudmap(m):
    return boto3.session.Session().client(
        "servicediscovery",
        endpoint_url=f"http://127.0.0.1:{m.http_port}",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=botocore.config.Config(
            inject_host_prefix=False,
            retries={"total_max_attempts": 1, "mode": "standard"},
            read_timeout=10,
        ),
    )


def test_a_write_on_one_replica_is_served_by_every_replica(muster, etcd_cluster):
    a, b, c = replicas(muster, etcd_cluster, 3)
    a.put_instance(NS, "web", "w1", body(1))
    # Read-your-writes on the replica that answered; the others within moments.
    assert addresses(a, "web.internal.") == ["10.1.0.1"]
    for m in (b, c):
        wait_until(lambda m=m: addresses(m, "web.internal.") == ["10.1.0.1"], timeout=2)
    for m in (a, b, c):
        dig = parse_dig(m.dig("web.internal.", "A"))
        assert dig.status == "NOERROR" and dig.rdata(rdtype="A") == ["10.1.0.1"], dig.text
    wait_until(lambda: same_serial(a, b, c), message="same serial")
    before = a.soa_serial()
    b.delete_instance(NS, "web", "w1")
    for m in (a, b, c):
        wait_until(lambda m=m: m.dns_query("web.internal.", "A").rcode() == dns.rcode.NXDOMAIN)
    serial = wait_until(lambda: same_serial(a, b, c), message="same serial after the delete")
    assert serial > before
    # The API shows the owner and health on every replica too.
    a.put_instance(NS, "web", "w2", body(2, healthy=False))
    for m in (a, b, c):
        wait_until(lambda m=m: any(i["id"] == "w2" for i in m.service(NS, "web")["instances"]))
        (instance,) = m.service(NS, "web")["instances"]
        assert instance["healthy"] is False, instance


class KnotTwoPrimaries(Knot):
    """knotd as a secondary of ``internal`` that lists several muster replicas as primaries
    (tried in order) and takes NOTIFYs from 127.0.0.1."""

    def configure(self, primary_ports):
        remotes = "".join(
            f"  - id: muster{i}\n    address: 127.0.0.1@{port}\n"
            for i, port in enumerate(primary_ports)
        )
        masters = ", ".join(f"muster{i}" for i in range(len(primary_ports)))
        (self.dir / "knot.conf").write_text(
            self.knot_head()
            + f"remote:\n{remotes}\n"
            + "acl:\n  - id: notify_from_muster\n    address: 127.0.0.1\n    action: notify\n\n"
            + f"zone:\n  - domain: {NS}\n    master: [{masters}]\n    acl: notify_from_muster\n"
            + f'    storage: "{self.dir}"\n    zonefile-sync: -1\n    zonefile-load: none\n'
            + "    journal-content: changes\n"
        )
        return self


def test_a_knot_secondary_follows_two_replicas_as_its_primaries(muster, etcd_cluster, tmp_path):
    knot = KnotTwoPrimaries(tmp_path / "knot")
    transfer = f'[transfer]\nallow = ["127.0.0.1"]\nnotify = ["127.0.0.1:{knot.port}"]\n'
    a, b = replicas(muster, etcd_cluster, 2, extra=transfer)
    knot.configure([a.dns_port, b.dns_port]).start(ready_zone=f"{NS}.")
    try:
        a.put_instance(NS, "web", "w1", body(1))
        b.put_instance(NS, "web", "w2", body(2))
        serial = wait_until(lambda: same_serial(a, b), message="replicas agree")

        def knot_has(wanted, serial):
            r = knot.query("web.internal.", "A")
            return knot.serial() == serial and sorted(answer_rdata(r, "A")) == wanted

        wait_until(lambda: knot_has(["10.1.0.1", "10.1.0.2"], serial), timeout=15, message="knot converged")
        # The first primary gone: the secondary follows the other (its NOTIFY, then a transfer).
        a.stop()
        b.delete_instance(NS, "web", "w1")
        serial = b.soa_serial()
        wait_until(lambda: knot_has(["10.1.0.2"], serial), timeout=20, message="knot followed b")
    finally:
        knot.stop()


def race(*calls):
    """Runs the calls at the same moment on threads; returns their results (or exceptions)."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(i, call):
        barrier.wait()
        try:
            results[i] = call()
        except Exception as error:  # noqa: BLE001 - the outcome is what is checked
            results[i] = error

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    return results


def error_code(outcome):
    if isinstance(outcome, botocore.exceptions.ClientError):
        return outcome.response["Error"]["Code"]
    return "ok" if not isinstance(outcome, Exception) else repr(outcome)


def test_racing_writes_on_two_replicas_end_in_one_valid_outcome(muster, etcd_cluster):
    a, b = replicas(muster, etcd_cluster, 2)
    sd_a, sd_b = cloudmap(a), cloudmap(b)
    for round_ in range(8):
        # Delete a namespace on one replica while the other registers into it.
        ns_id = sd_a.create_http_namespace(Name=f"race{round_}")["OperationId"]
        ns = next(n for n in sd_a.list_namespaces()["Namespaces"] if n["Name"] == f"race{round_}")
        wait_until(lambda: b.get(f"/v1/namespaces/race{round_}/services").status_code == 200)
        deleted, registered = race(
            lambda: sd_a.delete_namespace(Id=ns["Id"]),
            lambda: b.put(
                f"/v1/namespaces/race{round_}/services/api/instances/i1",
                json=body(1),
            ),
        )
        assert ns_id
        delete_ok = error_code(deleted) == "ok"
        register_ok = registered.status_code == 200
        assert delete_ok != register_ok, (error_code(deleted), registered.status_code, registered.text)
        if delete_ok:
            assert registered.status_code == 404, registered.text
        else:
            assert error_code(deleted) == "ResourceInUse", deleted
        for m in (a, b):
            wait_until(
                lambda m=m: (m.get(f"/v1/namespaces/race{round_}/services").status_code == 200)
                == register_ok,
                message="both replicas agree on the namespace",
            )
        # Create the same service on both: one creates it, the other is told it exists.
        if register_ok:
            outcomes = race(
                lambda: sd_a.create_service(Name="db", NamespaceId=ns["Id"]),
                lambda: sd_b.create_service(Name="db", NamespaceId=ns["Id"]),
            )
            codes = sorted(error_code(o) for o in outcomes)
            assert codes == ["ServiceAlreadyExists", "ok"], codes


def test_an_instance_owned_through_one_replica_is_owned_everywhere(muster, etcd_cluster, tmp_path):
    # A file source on replica b owns f1 there; the API on a may not take it over, and
    # etcd's instance replaces nothing that a local source owns elsewhere.
    static = tmp_path / "static.toml"
    static.write_text('[[instances]]\nnamespace = "internal"\nservice = "files"\nid = "f1"\nipv4 = "10.9.0.1"\nport = 80\n')
    a = replicas(muster, etcd_cluster, 1)[0]
    b = muster(CONFIG + f'[[sources.file]]\npath = "{static}"\n' + etcd_toml(etcd_cluster.endpoints))
    wait_ready(b)
    r = b.put_instance(NS, "files", "f1", body(5), check=False)
    assert r.status_code == 409, r.text
    # Two replicas register the same id at once: both are the API, the last write wins and
    # both replicas end with the same content.
    outcomes = race(
        lambda: a.put_instance(NS, "same", "x", body(1), check=False),
        lambda: b.put_instance(NS, "same", "x", body(2), check=False),
    )
    assert [o.status_code for o in outcomes] == [200, 200], [o.text for o in outcomes]
    wait_until(lambda: same_serial(a, b) and addresses(a, "same.internal.") == addresses(b, "same.internal."))
    assert addresses(a, "same.internal.") in (["10.1.0.1"], ["10.1.0.2"])


LIMITS = """
[limits]
instances_per_service = 4
"""


def test_the_limits_hold_for_writes_through_any_replica(muster, etcd_cluster):
    a, b = replicas(muster, etcd_cluster, 2, extra=LIMITS)
    a.put_instance(NS, "web", "i-0", body(1))
    a.put_instance(NS, "web", "i-1", body(2))
    wait_until(lambda: addresses(b, "web.internal.") == ["10.1.0.1", "10.1.0.2"])
    b.put_instance(NS, "web", "i-2", body(3))
    b.put_instance(NS, "web", "i-3", body(4))
    wait_until(lambda: len(addresses(a, "web.internal.") or []) == 4)
    for m in (a, b):
        r = m.put_instance(NS, "web", "i-4", body(5), check=False)
        assert (r.status_code, r.json().get("field")) == (409, "limits.instances_per_service"), r.text
    # A namespace's tags are one value written under a compare: 8 calls of 45 tags at once
    # through two replicas (50 is the most), exactly one wins.
    arn = next(n["Arn"] for n in cloudmap(a).list_namespaces()["Namespaces"] if n["Name"] == NS)

    def tag(n):
        tags = [{"Key": f"c{n}-{i}", "Value": "v"} for i in range(45)]
        try:
            cloudmap((a, b)[n % 2]).tag_resource(ResourceARN=arn, Tags=tags)
            return "ok"
        except botocore.exceptions.ClientError as e:
            return e.response["Error"]["Code"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(tag, range(8)))
    assert sorted(results) == ["TooManyTagsException"] * 7 + ["ok"], results
    for m in (a, b):
        count = lambda m=m: len(cloudmap(m).list_tags_for_resource(ResourceARN=arn)["Tags"])  # noqa: E731
        wait_until(lambda count=count: count() == 45, message="45 tags on every replica")
    assert len(b.service(NS, "web")["instances"]) == 4


def test_writes_go_on_without_one_member_and_get_503_without_quorum(muster, etcd_cluster):
    a, b = replicas(muster, etcd_cluster, 2)
    a.put_instance(NS, "web", "w1", body(1))
    # One follower down: the other two are a quorum and keep their leader, so writes go
    # on without a pause. (Killing the leader pauses writes for an election, 1-2 s or
    # more on a loaded machine: that is etcd's behaviour, not what this test is about.)
    leader = etcd_cluster.leader()
    follower, other = [i for i in range(3) if i != leader]
    etcd_cluster.stop_member(follower, signal.SIGKILL)
    for i, m in enumerate((a, b, a)):
        m.put_instance(NS, "web", f"k{i}", body(10 + i))
    wait_until(lambda: same_serial(a, b) and addresses(b, "web.internal.") == addresses(a, "web.internal."))
    served = addresses(a, "web.internal.")
    assert len(served) == 4, served
    # Two of three down: no quorum. Writes get 503 within the request timeout (2 s);
    # DNS on every replica keeps answering what it had.
    etcd_cluster.stop_member(other, signal.SIGKILL)
    for m in (a, b):
        started = time.monotonic()
        r = m.put_instance(NS, "web", "lost", body(99), check=False)
        took = time.monotonic() - started
        assert r.status_code == 503, r.text
        assert "error" in r.json(), r.text
        assert took < 2.5, f"answered after {took:.2f} s"
        started = time.monotonic()
        sd = cloudmap(m)
        service_id = next(s["Id"] for s in sd.list_services()["Services"] if s["Name"] == "web")
        started = time.monotonic()
        with pytest.raises(botocore.exceptions.ClientError) as raised:
            sd.register_instance(
                ServiceId=service_id, InstanceId="lost2",
                Attributes={"AWS_INSTANCE_IPV4": "10.1.0.98"},
            )
        assert raised.value.response["Error"]["Code"] == "ServiceUnavailable"
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert time.monotonic() - started < 2.5
        assert addresses(m, "web.internal.") == served
        assert m.get("/readyz").status_code == 200
        wait_until(lambda m=m: "etcd: unreachable" in m.get("/healthz?verbose").text, timeout=5)
        assert metric_value(m.get("/metrics").text, "muster_etcd_up") == 0
    # Quorum back: writes resume and the replicas converge.
    etcd_cluster.start_member(follower)
    etcd_cluster.start_member(other)
    etcd_cluster.wait_healthy()
    wait_until(lambda: a.put_instance(NS, "web", "back", body(50), check=False).status_code == 200, timeout=15)
    b.put_instance(NS, "web", "back2", body(51))
    wait_until(lambda: same_serial(a, b), timeout=5)
    for m in (a, b):
        wait_until(lambda m=m: "etcd: reachable" in m.get("/healthz?verbose").text, timeout=5)
        # A write answered 503 after its attempt timed out may still have been taken by
        # etcd (the one member left had it in its log): it may show up, nothing else.
        now = set(addresses(m, "web.internal."))
        assert set(served) | {"10.1.0.50", "10.1.0.51"} <= now <= set(served) | {
            "10.1.0.50", "10.1.0.51", "10.1.0.98", "10.1.0.99"
        }, now


def test_the_first_write_after_quorum_returns_is_served_at_once(muster, etcd_cluster):
    # Quorum lost long enough for every replica's watch to back off to its ceiling, then
    # back with one member still down: each replica's first write commits and is served
    # at once, though the watch's first try may go to the member that is still down.
    a, b = replicas(muster, etcd_cluster, 2)
    a.put_instance(NS, "web", "w1", body(1))
    leader = etcd_cluster.leader()
    down = [i for i in range(3) if i != leader]
    for i in down:
        etcd_cluster.stop_member(i, signal.SIGKILL)
    for m in (a, b):
        wait_until(lambda m=m: "etcd: unreachable" in m.get("/healthz?verbose").text, timeout=10)
    time.sleep(4)
    etcd_cluster.start_member(down[0])
    etcd_cluster.wait_healthy(members=[leader, down[0]])
    for i, m in enumerate((a, b, a, b)):
        started = time.monotonic()
        m.put_instance(NS, "web", f"after{i}", body(60 + i))
        took = time.monotonic() - started
        assert took < 1.5, f"the write through replica {'ab'[i % 2]} took {took:.2f} s"
        assert f"10.1.0.{60 + i}" in addresses(m, "web.internal.")


def test_a_drain_through_one_replica_holds_on_every_replica(muster, etcd_cluster):
    a, b = replicas(muster, etcd_cluster, 2)
    a.put_instance(NS, "web", "d1", body(1))
    a.put_instance(NS, "web", "d2", body(2))
    drain = "/v1/namespaces/internal/services/web/instances/d1/drain"
    assert a.put(drain).status_code == 200
    wait_until(lambda: same_serial(a, b))
    assert addresses(b, "web.internal.") == ["10.1.0.2"]
    assert b.delete(drain).status_code == 200
    wait_until(lambda: same_serial(a, b))
    assert sorted(addresses(a, "web.internal.")) == ["10.1.0.1", "10.1.0.2"]


def test_a_dead_instance_is_deregistered_once_for_every_replica(muster, etcd_cluster):
    a, b = replicas(muster, etcd_cluster, 2)
    a.put_instance(NS, "web", "dead", body(1, heartbeat_ttl="2s", deregister_after="1s"))
    a.put_instance(NS, "web", "kept", body(2))
    # Its lease lapses at 2 s (out of DNS), then 1 s to go: deregistered on both.
    def ids(m):
        return [i["id"] for i in m.service(NS, "web")["instances"]]

    for m in (a, b):
        wait_until(lambda m=m: ids(m) == ["kept"], timeout=8, message="the dead instance deregistered")
    assert addresses(b, "web.internal.") == ["10.1.0.2"]
    counted = sum(m.metric("muster_health_deregistered_total") for m in (a, b))
    assert counted == 1, "deregistered by more than one replica, or none"


def never_sent(error):
    """Whether a request failed before it reached the server (connection refused)."""
    reason = getattr(error.args[0] if error.args else None, "reason", None)
    return isinstance(reason, urllib3.exceptions.NewConnectionError)


def test_a_replica_killed_in_a_write_storm_comes_back_with_every_acknowledged_write(
    muster, etcd_cluster
):
    servers = replicas(muster, etcd_cluster, 3)
    acked = {}  # id -> last acknowledged address, or None once deleted
    lock = threading.Lock()
    stop = threading.Event()

    def writer(number):
        rng = random.Random(number)
        session = requests.Session()
        ids = [f"s{number}-{i}" for i in range(20)]
        while not stop.is_set():
            m = servers[rng.randrange(len(servers))]
            iid = rng.choice(ids)
            try:
                if rng.random() < 0.25:
                    r = session.delete(m.url(m.instance_path(NS, "storm", iid)), timeout=5)
                    ok, value = r.status_code in (200, 404), None
                else:
                    octet = rng.randrange(1, 250)
                    r = session.put(m.url(m.instance_path(NS, "storm", iid)), json=body(octet), timeout=5)
                    ok, value = r.status_code == 200, f"10.1.0.{octet}"
            except requests.RequestException as error:
                if never_sent(error):
                    # The replica is down: nothing was sent, the id's state is known.
                    time.sleep(0.01)
                    continue
                # In flight when its replica died: its own id goes unchecked from now on.
                with lock:
                    acked[iid] = "unknown"
                continue
            # A 5xx may come after etcd took the write (an attempt that timed out); one
            # from a replica that has not read etcd yet was never sent to it.
            unsure = r.status_code >= 500 and "has not read the registry" not in r.text
            if ok or unsure:
                with lock:
                    if acked.get(iid) != "unknown":
                        acked[iid] = "unknown" if unsure else value

    threads = [threading.Thread(target=writer, args=(n,), daemon=True) for n in range(6)]
    for t in threads:
        t.start()
    victim = servers[2]
    for _ in range(3):
        time.sleep(0.7)
        victim.stop(signal.SIGKILL)
        time.sleep(0.3)
        victim.start()
    time.sleep(0.5)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    for m in servers:
        wait_ready(m)
    wait_until(lambda: same_serial(*servers), timeout=5, message="replicas converge")
    for m in servers:
        listed = {i["id"]: i["ipv4"] for i in m.service(NS, "storm")["instances"]}
        for iid, value in acked.items():
            if value == "unknown":
                continue
            assert listed.get(iid) == value, (m.http_port, iid, value, listed.get(iid))
    assert sum(1 for v in acked.values() if v not in (None, "unknown")) > 10


def test_a_replica_reloads_when_its_revision_was_compacted(muster, etcd_cluster):
    a, b = replicas(muster, etcd_cluster, 2)
    a.put_instance(NS, "web", "w1", body(1))
    a.put_instance(NS, "web", "w2", body(2))
    wait_until(lambda: addresses(b, "web.internal.") == ["10.1.0.1", "10.1.0.2"])
    # Stopped: b's revision is compacted away while it is down.
    b.stop()
    a.delete_instance(NS, "web", "w1")
    a.put_instance(NS, "web", "w3", body(3))
    etcd_cluster.compact()
    b.start()
    wait_ready(b)
    wait_until(lambda: addresses(b, "web.internal.") == ["10.1.0.2", "10.1.0.3"])
    assert same_serial(a, b) or b.soa_serial() >= a.soa_serial()


def test_a_running_replica_cut_off_past_a_compaction_reloads_without_a_gap(muster, etcd_cluster):
    # b reaches etcd through one member only; while that member is down the others go on,
    # and the history b would resume from is compacted: its watch is cancelled and it
    # reloads the whole prefix, answering the old state until the new one is swapped in.
    a = replicas(muster, etcd_cluster, 1)[0]
    b = muster(CONFIG + etcd_toml([etcd_cluster.endpoint(2)]))
    wait_ready(b)
    a.put_instance(NS, "web", "w1", body(1))
    wait_until(lambda: addresses(b, "web.internal.") == ["10.1.0.1"])
    etcd_cluster.stop_member(2)
    a.put_instance(NS, "web", "w2", body(2))
    a.delete_instance(NS, "web", "w1")
    for i in range(5):
        a.put_instance(NS, "churn", f"c{i}", body(100 + i))
    etcd_cluster.compact()
    assert addresses(b, "web.internal.") == ["10.1.0.1"]  # the last state, not SERVFAIL
    etcd_cluster.start_member(2)
    wait_until(lambda: addresses(b, "web.internal.") == ["10.1.0.2"], timeout=15)
    wait_until(lambda: same_serial(a, b), timeout=5)
    assert b.metric("muster_etcd_reloads_total") == 2


def test_import_and_export_move_the_api_state_between_the_log_and_etcd(muster, etcd_cluster):
    local = muster(CONFIG)
    sd = cloudmap(local)
    sd.create_http_namespace(Name="shop", Tags=[{"Key": "team", "Value": "a"}])
    local.put_instance(NS, "web", "w1", body(1, attributes={"zone": "a"}))
    local.put_instance(NS, "web", "w2", body(2, healthy=False))
    local.put_instance("shop", "cart", "c1", body(3))
    # More records than one etcd transaction holds: imported in several.
    bulk = [
        {"op": "register", "service": "bulk", "id": f"b{i}", "instance": body(i % 250 + 1)}
        for i in range(300)
    ]
    r = local.http.post(local.url(f"/v1/namespaces/{NS}/batch"), json={"changes": bulk}, timeout=10)
    assert r.status_code == 200, r.text
    local.stop()
    etcd = etcd_toml(etcd_cluster.endpoints)
    local.extra_toml = CONFIG + etcd
    local.write_config()
    run = lambda *args: subprocess.run(
        [str(local.bin), "etcd", *args, "--config", str(local.config_path)],
        capture_output=True, text=True, timeout=30,
    )
    r = run("import")
    assert r.returncode == 0, r.stderr
    assert "imported" in r.stdout
    # A second import finds the prefix taken and refuses.
    r = run("import")
    assert r.returncode == 1 and "empty" in r.stderr, r.stderr
    replica = muster(CONFIG + etcd)
    wait_ready(replica)
    assert addresses(replica, "web.internal.") == ["10.1.0.1"]  # w2 is unhealthy
    instances = {i["id"]: i for i in replica.service(NS, "web")["instances"]}
    assert instances["w1"]["attributes"] == {"zone": "a"} and not instances["w2"]["healthy"]
    assert len(replica.service(NS, "bulk")["instances"]) == 300
    replica.put_instance("shop", "cart", "c2", body(4))
    # Export into an empty data_dir: a local muster serves the same state.
    exported = muster(CONFIG + etcd, start=False)
    r = subprocess.run(
        [str(exported.bin), "etcd", "export", "--config", str(exported.config_path)],
        capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [str(exported.bin), "etcd", "export", "--config", str(exported.config_path)],
        capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 1 and "empty" in r.stderr, r.stderr
    exported.extra_toml = CONFIG
    exported.write_config()
    exported.start()
    assert addresses(exported, "web.internal.") == ["10.1.0.1"]
    carts = sorted(i["id"] for i in exported.service("shop", "cart")["instances"])
    assert carts == ["c1", "c2"]
    tags = cloudmap(exported).list_tags_for_resource(
        ResourceARN=next(n["Arn"] for n in cloudmap(exported).list_namespaces()["Namespaces"] if n["Name"] == "shop")
    )["Tags"]
    assert tags == [{"Key": "team", "Value": "a"}]


def test_a_dns_update_to_one_replica_is_served_by_every_replica(muster, etcd_cluster):
    from test_dns_update import config as update_config, nsupdate

    a, b = replicas(muster, etcd_cluster, 2, extra=update_config())
    rc, out = nsupdate(a, ["update add u1.web.internal 60 A 10.1.0.61"])
    assert rc == 0, out
    # Answered once etcd committed it and this replica serves it; the other follows.
    assert addresses(a, "u1.web.internal.") == ["10.1.0.61"]
    wait_until(lambda: addresses(b, "u1.web.internal.") == ["10.1.0.61"], timeout=2)
    # Owned by the update key on every replica: deleted through the other one.
    rc, out = nsupdate(b, ["update delete u1.web.internal A"])
    assert rc == 0, out
    assert addresses(b, "u1.web.internal.") is None
    wait_until(lambda: addresses(a, "u1.web.internal.") is None, timeout=2)
    wait_until(lambda: same_serial(a, b))


# -- batches (docs/rest.md, "Batches"): one etcd transaction each -------------------------

BATCH = f"/v1/namespaces/{NS}/batch"
# What one etcd transaction always holds (docs/etcd.md): an instance, and the service
# record it may change, are two writes each.
MAX_BATCH = 63


def batch(m, changes):
    return m.http.post(m.url(BATCH), json={"changes": changes}, timeout=10)


def registration(service, iid, address):
    return {"op": "register", "service": service, "id": iid, "instance": {"ipv4": address, "port": 8080}}


def mod_revisions(cluster, prefix="/muster/ns/"):
    """Every key under the prefix, with the revision that last wrote it (etcdctl)."""
    out = cluster.etcdctl("get", prefix, "--prefix", "-w", "json").stdout
    kvs = json.loads(out).get("kvs", [])
    return {base64.b64decode(kv["key"]).decode(): kv["mod_revision"] for kv in kvs}


def test_a_batch_through_one_replica_is_one_transaction_served_whole_by_another(muster, etcd_cluster):
    a, b = replicas(muster, etcd_cluster, 2)
    # The largest batch, every item in a service of its own.
    changes = [registration(f"s{n}", f"i{n}", f"10.2.0.{n}") for n in range(MAX_BATCH)]
    seen = []  # what b served while the batch was being written: all or nothing
    done = threading.Event()

    def watch_b():
        while True:
            stop = done.is_set()
            listed = b.get(f"/v1/namespaces/{NS}/services").json()["services"]
            seen.append(len(listed))
            if stop:
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=watch_b, daemon=True)
    watcher.start()
    r = batch(a, changes)
    assert r.status_code == 200, r.text
    revision = r.json()["revision"]
    wait_until(lambda: b.soa_serial() >= revision, message="b applied the batch")
    done.set()
    watcher.join()
    assert set(seen) <= {0, MAX_BATCH} and MAX_BATCH in seen, sorted(set(seen))
    assert addresses(b, "s62.internal.") == ["10.2.0.62"]
    # One transaction: every record of the batch was written at the one revision (as was
    # the serial marker, /muster/ns/).
    records = {k: rev for k, rev in mod_revisions(etcd_cluster).items() if k.startswith("/muster/ns/internal/")}
    written = [k for k, rev in records.items() if rev == revision]
    assert len(written) == MAX_BATCH, written
    # Another batch replaces and removes in one go too.
    changes = [registration(f"s{n}", f"i{n}", f"10.3.0.{n}") for n in range(40)]
    changes += [{"op": "deregister", "service": f"s{n}", "id": f"i{n}"} for n in range(40, MAX_BATCH)]
    r = batch(b, changes)
    assert r.status_code == 200, r.text
    revision = r.json()["revision"]
    wait_until(lambda: a.soa_serial() >= revision)
    assert addresses(a, "s0.internal.") == ["10.3.0.0"]
    assert a.dns_query("s50.internal.", "A").rcode() == dns.rcode.NXDOMAIN


def test_an_over_large_or_refused_batch_changes_nothing_on_any_replica(muster, etcd_cluster):
    a, b = replicas(muster, etcd_cluster, 2)
    a.put_instance(NS, "web", "w0", body(1))
    wait_until(lambda: same_serial(a, b), message="same serial")
    before, serial = mod_revisions(etcd_cluster), a.soa_serial()
    # One more than a transaction always holds: refused up front, naming the limit.
    too_many = [registration("web", f"i{n}", "10.2.0.1") for n in range(MAX_BATCH + 1)]
    r = batch(a, too_many)
    assert r.status_code == 400 and r.json()["field"] == "changes", r.text
    assert f"1 to {MAX_BATCH} changes" in r.json()["error"], r.text
    # Refused by the registry (w9 does not exist), and naming one instance twice.
    r = batch(b, [registration("web", "w1", "10.2.0.1"), {"op": "deregister", "service": "web", "id": "w9"}])
    assert r.status_code == 404 and r.json()["field"] == "changes[1].id", r.text
    r = batch(a, [registration("web", "w1", "10.2.0.1"), registration("web", "w1", "10.2.0.2")])
    assert r.status_code == 400 and r.json()["field"] == "changes[1].id", r.text
    assert mod_revisions(etcd_cluster) == before, "nothing was written to etcd"
    for m in (a, b):
        assert m.soa_serial() == serial
        assert addresses(m, "web.internal.") == ["10.1.0.1"]


def test_racing_batches_on_two_replicas_each_apply_whole(muster, etcd_cluster):
    a, b = replicas(muster, etcd_cluster, 2)
    ids = range(50)
    for round_ in range(5):
        first = [registration("web", f"i{n}", f"10.2.{round_}.{n}") for n in ids]
        second = [registration("web", f"i{n}", f"10.3.{round_}.{n}") for n in ids]
        outcomes = race(lambda: batch(a, first), lambda: batch(b, second))
        assert [o.status_code for o in outcomes] == [200, 200], [o.text for o in outcomes]
        wait_until(lambda: same_serial(a, b), message="same serial")
        for m in (a, b):
            served = addresses(m, "web.internal.")
            prefixes = {address.rsplit(".", 2)[0] for address in served}
            # The batch committed last stands whole: never a mix of the two.
            assert len(served) == len(ids) and len(prefixes) == 1, served
