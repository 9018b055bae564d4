"""Crash test (issue 3, "nothing acknowledged is lost"): writers register, replace and
deregister instances through both APIs while muster is killed with SIGKILL at a random
moment, several times in a row; after every restart each acknowledged write is there with
its acknowledged content, in the REST API, in Cloud Map's ListInstances and
DiscoverInstances, and in DNS.

The model: every writer thread owns its own instance ids, so the writes to one id are
sequential. A write answered 2xx is acknowledged and must survive. The one write a thread
had in flight when muster died may or may not have reached the log; after the restart it
is looked up and must show either the state before it or the state it asked for, nothing
else. Every write changes the content (a new address, port and generation attribute), so
an older version coming back instead of the acknowledged one is caught too.

Clients: requests (REST PUT/DELETE), boto3 (RegisterInstance, DeregisterInstance,
ListInstances, DiscoverInstances) and dnspython.
"""

import random
import signal
import threading
import time

import boto3
import botocore.config
import botocore.exceptions
import dns.rcode
import requests

from harness import answer_rdata, namespace_toml, wait_until

NS = "internal"
SERVICES = [f"dur{i}" for i in range(6)]
THREADS = 8
IDS_PER_SERVICE = 12  # per thread: 8 * 6 * 12 = 576 instance ids in play
KILLS = 6
TTL = 7
# All of a service's instances in one answer, so DNS can be compared with the API.
# Writes go as fast as the writers can send them: the per-principal write rate (tested in
# test_auth.py) is off, so a 429 never stands in for a write the test means to make.
CONFIG = namespace_toml(services=[{"match": "*", "max_answers": 0}]) + "\n[auth]\nwrite_rate = 0\n"


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
            connect_timeout=2,
            read_timeout=10,
        ),
    )


class Writer(threading.Thread):
    """One client thread: a REST session and a boto3 client, writing to its own ids until
    told to stop or muster goes away."""

    def __init__(self, number, m, model, service_ids, seed):
        super().__init__(name=f"writer-{number}", daemon=True)
        self.number = number
        self.m = m
        self.model = model  # (service, id) -> expected content, None when absent
        self.service_ids = service_ids
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.http = requests.Session()
        self.sd = cloudmap(m)
        self.acked = 0
        self.max_revision = 0
        self.pending = None  # (key, content) of the write in flight when muster died
        self.failure = None  # an answer no correct muster gives

    def run(self):
        try:
            while not self.stop.is_set():
                self.write_one()
        except (requests.RequestException, botocore.exceptions.BotoCoreError):
            pass  # muster was killed: self.pending is the write in flight
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.failure = f"{type(e).__name__}: {e}"
        finally:
            self.http.close()

    def write_one(self):
        svc = self.rng.choice(SERVICES)
        iid = f"w{self.number}-{self.rng.randrange(IDS_PER_SERVICE)}"
        key = (svc, iid)
        before = self.model.get(key)
        op = self.rng.random()
        if before is not None and op < 0.2:
            self.pending = (key, None)
            if op < 0.1:
                r = self.http.delete(self.m.url(self.m.instance_path(NS, svc, iid)), timeout=10)
                self.check(r, key)
                self.max_revision = max(self.max_revision, r.json()["revision"])
            else:
                self.sd.deregister_instance(ServiceId=self.service_ids[svc], InstanceId=iid)
        else:
            ipv4 = f"10.{self.number}.{self.rng.randrange(256)}.{self.rng.randrange(1, 255)}"
            port = self.rng.randrange(1, 65536)
            generation = str(self.rng.getrandbits(48))
            if op < 0.6:
                healthy = self.rng.random() > 0.1
                attributes = {"gen": generation, "via": "rest"}
                content = {"ipv4": ipv4, "port": port, "attributes": attributes, "healthy": healthy}
                self.pending = (key, content)
                body = {"ipv4": ipv4, "port": port, "attributes": attributes, "healthy": healthy}
                r = self.http.put(self.m.url(self.m.instance_path(NS, svc, iid)), json=body, timeout=10)
                self.check(r, key)
                self.max_revision = max(self.max_revision, r.json()["revision"])
            else:
                attributes = {
                    "AWS_INSTANCE_IPV4": ipv4,
                    "AWS_INSTANCE_PORT": str(port),
                    "gen": generation,
                    "via": "cloudmap",
                }
                # Cloud Map keeps a re-registered instance's health.
                healthy = True if before is None else before["healthy"]
                content = {"ipv4": ipv4, "port": port, "attributes": attributes, "healthy": healthy}
                self.pending = (key, content)
                self.sd.register_instance(ServiceId=self.service_ids[svc], InstanceId=iid, Attributes=attributes)
        self.model[key] = self.pending[1]
        self.pending = None
        self.acked += 1

    def check(self, r, key):
        if r.status_code != 200:
            raise AssertionError(f"{r.request.method} {key}: {r.status_code} {r.text}")


# ---------------------------------------------------------------------------------------
# What muster holds, and what it must hold


def rest_instances(m, svc):
    """id -> the content fields of every instance of `svc`, as GET .../services/{svc} shows them."""
    r = m.get(f"/v1/namespaces/{NS}/services/{svc}")
    assert r.status_code == 200, f"GET {svc}: {r.status_code} {r.text}"
    return {
        i["id"]: {k: i[k] for k in ("ipv4", "port", "attributes", "healthy")}
        for i in r.json()["instances"]
    }


def cloudmap_attributes(content):
    """The Attributes Cloud Map shows: what was registered plus the reserved address keys."""
    shown = dict(content["attributes"])
    shown.setdefault("AWS_INSTANCE_IPV4", content["ipv4"])
    shown.setdefault("AWS_INSTANCE_PORT", str(content["port"]))
    return shown


def expected(model, svc):
    return {iid: c for (s, iid), c in model.items() if s == svc and c is not None}


def resolve_pending(m, writers, model):
    """A write in flight at the kill: either it is in the log or it is not, nothing else."""
    settled = 0
    for w in writers:
        if w.pending is None:
            continue
        (svc, iid), asked = w.pending
        actual = rest_instances(m, svc).get(iid)
        before = model.get((svc, iid))
        assert actual in (asked, before), (
            f"{svc}/{iid}: the write in flight at the kill asked for {asked}, the state before it "
            f"was {before}, muster has {actual}"
        )
        model[(svc, iid)] = actual
        settled += actual == asked and asked != before
        w.pending = None
    return settled


def verify(m, sd, model, max_revision, rng):
    r = wait_until(lambda: m.get("/readyz").status_code == 200, timeout=10, message="/readyz 200")
    assert r
    for svc in SERVICES:
        want = expected(model, svc)
        have = rest_instances(m, svc)
        lost = sorted(set(want) - set(have))
        resurrected = sorted(set(have) - set(want))
        assert not lost, f"{svc}: acknowledged registrations lost after the crash: {lost}"
        assert not resurrected, f"{svc}: acknowledged deregistrations undone after the crash: {resurrected}"
        for iid, content in want.items():
            assert have[iid] == content, f"{svc}/{iid}: acknowledged {content}, after the crash {have[iid]}"

        listed, token = {}, None
        for _ in range(100):
            page = sd.list_instances(ServiceId=m.service_ids[svc], MaxResults=100, **({"NextToken": token} if token else {}))
            listed.update({i["Id"]: i["Attributes"] for i in page["Instances"]})
            token = page.get("NextToken")
            if not token:
                break
        assert listed == {iid: cloudmap_attributes(c) for iid, c in want.items()}, f"{svc}: ListInstances differs"

        found = sd.discover_instances(NamespaceName=NS, ServiceName=svc, HealthStatus="ALL", MaxResults=1000)["Instances"]
        assert {i["InstanceId"]: (i["Attributes"], i["HealthStatus"]) for i in found} == {
            iid: (cloudmap_attributes(c), "HEALTHY" if c["healthy"] else "UNHEALTHY") for iid, c in want.items()
        }, f"{svc}: DiscoverInstances differs"

    for svc in rng.sample(SERVICES, 3):
        check_dns(m, svc, expected(model, svc), rng)
    serial = m.soa_serial(NS)
    assert serial >= max_revision, f"SOA serial {serial} went below an acknowledged revision {max_revision}"


def check_dns(m, svc, want, rng):
    """The service's A and SRV answers, and a sample of instance names, match the API."""
    healthy = {iid: c for iid, c in want.items() if c["healthy"]}
    served = healthy or want  # when_all_unhealthy = serve_all
    name = f"{svc}.{NS}"
    a = m.dns_query(name, "A", tcp=True)
    if not served:
        assert dns.rcode.to_text(a.rcode()) in ("NOERROR", "NXDOMAIN") and not a.answer
        return
    assert sorted(set(answer_rdata(a, "A"))) == sorted({c["ipv4"] for c in served.values()}), f"{name} A"
    assert {rrset.ttl for rrset in a.answer} == {TTL}
    srv = m.dns_query(name, "SRV", tcp=True)
    assert sorted(answer_rdata(srv, "SRV")) == sorted(f"1 1 {c['port']} {iid}.{name}." for iid, c in served.items()), f"{name} SRV"
    for iid in rng.sample(sorted(set(want) | {f"w0-{n}" for n in range(IDS_PER_SERVICE)}), 8):
        one = m.dns_query(f"{iid}.{name}", "A")
        if iid in served:
            assert answer_rdata(one, "A") == [served[iid]["ipv4"]], f"{iid}.{name}"
        else:
            assert dns.rcode.to_text(one.rcode()) == "NXDOMAIN", f"{iid}.{name}: not served, yet {one}"


def test_acknowledged_writes_survive_sigkill(muster):
    rng = random.Random()
    seed = rng.randrange(1 << 30)
    print(f"seed {seed}")
    rng.seed(seed)
    m = muster(CONFIG)
    sd = cloudmap(m)
    ns_id = next(n["Id"] for n in sd.list_namespaces()["Namespaces"] if n["Name"] == NS)
    records = {"DnsRecords": [{"Type": "A", "TTL": TTL}, {"Type": "SRV", "TTL": TTL}]}
    m.service_ids = {
        svc: sd.create_service(Name=svc, NamespaceId=ns_id, DnsConfig=records)["Service"]["Id"] for svc in SERVICES
    }
    model = {}
    acked = settled = 0
    max_revision = 0
    started = time.monotonic()
    for kill in range(KILLS):
        writers = [Writer(n, m, model, m.service_ids, rng.randrange(1 << 30)) for n in range(THREADS)]
        for w in writers:
            w.start()
        time.sleep(rng.uniform(0.5, 2.5))
        m.proc.send_signal(signal.SIGKILL)
        m.proc.wait(timeout=10)
        for w in writers:
            w.stop.set()
            w.join(timeout=30)
            assert not w.is_alive(), f"{w.name} did not stop"
            assert w.failure is None, f"{w.name}: {w.failure}"
        round_acked = sum(w.acked for w in writers)
        acked += round_acked
        max_revision = max([max_revision] + [w.max_revision for w in writers])
        assert round_acked > 0, "no write was acknowledged before the kill"

        m.start()
        sd = cloudmap(m)
        settled += resolve_pending(m, writers, model)
        verify(m, sd, model, max_revision, rng)
        print(f"kill {kill + 1}: {round_acked} writes acknowledged, {sum(c is not None for c in model.values())} instances live")

    print(f"{acked} acknowledged writes over {KILLS} SIGKILLs, {settled} unacknowledged ones landed; {time.monotonic() - started:.1f} s")
    assert acked >= 1000, f"only {acked} acknowledged writes: the test did not load muster"
    text = m.log_path.read_text()
    assert text.count("muster is serving") == KILLS + 1
