"""Replicas that share duties on etcd (issue 15): member leases, and the ECS source run
once, by the replica that holds the election, with a failover that keeps every running
task in DNS.

Clients: etcdctl (the member keys), boto3 against moto (ECS, SQS, EventBridge), dnspython.
"""

import random
import signal
import subprocess
import threading
import time

import dns.rcode

from etcd_cluster import etcd_toml
from harness import answer_rdata, namespace_toml, wait_until
from moto_ecs import ecs_toml
from test_health_checks import HTTP_CHECK, LOOPBACK, servers  # noqa: F401 (servers: the fixture)

NS = namespace_toml(services=[{"match": "*", "max_answers": 0}])
# The default lease TTL: a dead leader's election is over within it (the issue: <= 5 s).
LEASE_TTL = 3


def ready(m, timeout=20):
    wait_until(lambda: m.get("/readyz").status_code == 200, timeout=timeout, message=f"{m.http_port} ready")


def member_keys(cluster, prefix="/muster/"):
    out = subprocess.run(
        ["etcdctl", "--endpoints", ",".join(cluster.endpoints), "get", "--prefix", "--keys-only", f"{prefix}members/"],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout
    return sorted(line.rsplit("/", 1)[1] for line in out.splitlines() if line.strip())


def a_set(m, name="api.internal"):
    r = m.dns_query(name, "A")
    return sorted(answer_rdata(r, "A")) if r.rcode() == dns.rcode.NOERROR else dns.rcode.to_text(r.rcode())


def test_members_hold_leases_and_a_dead_one_drops_out_within_the_ttl(muster, etcd_cluster):
    toml = NS + etcd_toml(etcd_cluster.endpoints)
    a = muster(toml + 'replica_id = "replica-a"\n')
    b = muster(toml + 'replica_id = "replica-b"\n')
    c = muster(toml)  # the default id: hostname and a random suffix
    for m in (a, b, c):
        ready(m)
        wait_until(lambda m=m: m.metric("muster_etcd_members") == 3, timeout=5, message="3 members")
    keys = member_keys(etcd_cluster)
    assert len(keys) == 3 and {"replica-a", "replica-b"} <= set(keys), keys
    # SIGKILL: nobody revokes the lease; etcd expires it.
    killed = time.monotonic()
    b.stop(signal.SIGKILL)
    for m in (a, c):
        wait_until(lambda m=m: m.metric("muster_etcd_members") == 2, timeout=LEASE_TTL + 2, message="b gone")
    took = time.monotonic() - killed
    assert took <= LEASE_TTL + 2, took
    assert "replica-b" not in member_keys(etcd_cluster)
    # A graceful stop revokes the lease: gone at once.
    a.stop()
    wait_until(lambda: c.metric("muster_etcd_members") == 1, timeout=1, message="a gone at once")


def test_a_lease_ttl_out_of_bounds_is_refused(muster, etcd_cluster):
    m = muster(NS + etcd_toml(etcd_cluster.endpoints) + 'lease_ttl = "500ms"\n', start=False)
    out = subprocess.run(
        [str(m.bin), "check-config", str(m.config_path)], capture_output=True, text=True, timeout=10
    )
    assert out.returncode != 0 and "etcd.lease_ttl" in out.stderr + out.stdout, out


def ecs_replicas(muster, aws, cluster, tasks):
    """Runs `tasks` tasks of ECS service api, then two replicas with the ECS source; returns
    the tasks, the leader and the other replica."""
    aws.create_cluster("prod")
    aws.register("api", port=8080)
    started = aws.run("prod", "api", "api", count=tasks)
    queue = aws.create_queue()
    toml = NS + ecs_toml(["prod"], aws.url, queue, "1h") + etcd_toml(cluster.endpoints)
    replicas = [muster(toml + f'replica_id = "r{i}"\n') for i in range(2)]
    for m in replicas:
        ready(m)
    leader = wait_until(lambda: leader_of(replicas), timeout=5, message="one leader")
    return started, leader, next(m for m in replicas if m is not leader)


def leader_of(replicas):
    leaders = [m for m in replicas if m.metric("muster_ecs_leader") == 1]
    return leaders[0] if len(leaders) == 1 else None


def test_the_ecs_source_runs_on_one_replica_and_every_replica_serves_it(muster, aws, etcd_cluster):
    tasks, leader, other = ecs_replicas(muster, aws, etcd_cluster, 2)
    replicas = (leader, other)
    wanted = sorted(aws.ipv4(t) for t in tasks)
    for m in replicas:
        wait_until(lambda m=m: a_set(m) == wanted, timeout=5, message="both serve the tasks")
        (instance, _) = m.service("internal", "api")["instances"]
        assert instance["source"] == "ecs:prod", instance
    # The other replica neither polls ECS nor reads the queue.
    for operation in ("ListTasks", "DescribeTasks"):
        assert leader.metric("muster_ecs_api_calls_total", operation=operation) >= 1
        assert other.metric("muster_ecs_api_calls_total", operation=operation) == 0, operation
    # An event read by the leader reaches DNS on the other.
    aws.stop("prod", tasks[0])
    aws.publish(aws.detail(tasks[0], desired="STOPPED", version=2))
    wait_until(lambda: a_set(other) == [aws.ipv4(tasks[1])], timeout=3, message="the stop reaches the other")
    # (A receive is counted when its long poll returns: the leader's returned the event.)
    assert leader.metric("muster_ecs_api_calls_total", operation="ReceiveMessage") >= 1
    assert other.metric("muster_ecs_api_calls_total", operation="ReceiveMessage") == 0
    assert other.metric("muster_ecs_leader") == 0


def test_killing_the_ecs_leader_keeps_every_running_task_in_dns(muster, aws, etcd_cluster):
    initial, leader, survivor = ecs_replicas(muster, aws, etcd_cluster, 4)
    wait_until(lambda: a_set(survivor) == sorted(aws.ipv4(t) for t in initial), timeout=5)

    lock = threading.Lock()
    serving = {aws.ipv4(t): t for t in initial}  # in DNS, and must stay until stopped
    starting = {}  # started; in DNS once seen there
    stopped = set()
    missing = []
    done = threading.Event()

    def poll():
        while not done.is_set():
            try:
                answer = a_set(survivor)
            except Exception as error:  # a timeout is a miss too
                answer = repr(error)
            with lock:
                must = set(serving)
                for address in list(starting):
                    if isinstance(answer, list) and address in answer:
                        serving[address] = starting.pop(address)
            if not isinstance(answer, list) or not must <= set(answer):
                missing.append((time.monotonic(), answer, sorted(must - set(answer if isinstance(answer, list) else []))))
            time.sleep(0.02)

    version = {t["taskArn"]: 1 for t in initial}

    def storm(seconds):
        end = time.monotonic() + seconds
        rng = random.Random(15)
        while time.monotonic() < end:
            if rng.random() < 0.5:
                (task,) = aws.run("prod", "api", "api")
                version[task["taskArn"]] = 1
                with lock:
                    starting[aws.ipv4(task)] = task
                aws.publish(aws.detail(task))
            else:
                with lock:
                    if len(serving) <= 2:
                        continue
                    address, task = rng.choice(sorted(serving.items()))
                    del serving[address]
                    stopped.add(address)
                # As ECS does: desired STOPPED first (ListTasks no longer lists it), then
                # the event that says so.
                aws.stop("prod", task)
                version[task["taskArn"]] += 1
                aws.publish(aws.detail(task, desired="STOPPED", version=version[task["taskArn"]]))
            time.sleep(0.15)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        storm(3)
        killed = time.monotonic()
        leader.stop(signal.SIGKILL)
        storm_thread = threading.Thread(target=storm, args=(4,), daemon=True)
        storm_thread.start()
        wait_until(lambda: survivor.metric("muster_ecs_leader") == 1, timeout=5 + 1, message="survivor leads")
        took = time.monotonic() - killed
        print(f"ECS leader SIGKILLed -> the other leads in {took:.2f} s")
        assert took <= 5, f"takeover took {took:.1f} s"
        assert survivor.metric("muster_ecs_leader_transitions_total") == 1
        storm_thread.join()

        def converged():
            with lock:
                wanted = sorted(set(serving) | set(starting))
            return a_set(survivor) == wanted

        # Every stop intent applied, every started task in DNS: events, and the new
        # leader's reconcile.
        wait_until(converged, timeout=10, message="the survivor converged")
    finally:
        done.set()
        poller.join()
    assert not missing, f"running tasks left DNS: {missing[:5]}"
    with lock:
        assert not (set(a_set(survivor)) & stopped)
        assert len(stopped) >= 2, stopped


def test_a_deposed_ecs_leader_s_pending_write_never_lands(muster, aws, etcd_cluster):
    aws.create_cluster("prod")
    aws.register("api", port=8080)
    (kept,) = aws.run("prod", "api", "api")
    queue = aws.create_queue()
    source = NS + ecs_toml(["prod"], aws.url, queue, "1h")
    # The first leader reaches etcd through member e1 only, and gives a write 20 s: pausing
    # e1 cuts it off (as a partition would) while its write outlives its lease.
    old = muster(source + etcd_toml(etcd_cluster.endpoints[:1], request_timeout="20s") + 'replica_id = "old"\n')
    ready(old)
    wait_until(lambda: old.metric("muster_ecs_leader") == 1, timeout=5, message="old leads")
    new = muster(source + etcd_toml(etcd_cluster.endpoints[1:]) + 'replica_id = "new"\n')
    ready(new)
    wait_until(lambda: a_set(new) == [aws.ipv4(kept)], timeout=5, message="new serves the task")
    e1 = etcd_cluster.procs[0]
    e1.send_signal(signal.SIGSTOP)
    try:
        # A task starts; the old leader reads its event and its write hangs on e1.
        (late,) = aws.run("prod", "api", "api")
        aws.publish(aws.detail(late))
        wait_until(lambda: old.metric("muster_ecs_events_received_total") >= 1, timeout=5, message="old got the event")
        # The task stops at once: the next leader's reconcile does not list it.
        aws.stop("prod", late)
        wait_until(lambda: new.metric("muster_ecs_leader") == 1, timeout=LEASE_TTL + 8, message="new leads")
        wait_until(
            lambda: new.metric("muster_ecs_api_calls_total", operation="ListTasks") >= 1,
            timeout=5,
            message="new reconciled",
        )
    finally:
        e1.send_signal(signal.SIGCONT)
    # Unfenced, the old leader's write would land moments after e1 is back (it keeps
    # trying for 20 s); fenced, etcd refuses it.
    end = time.monotonic() + 6
    while time.monotonic() < end:
        assert a_set(new) == [aws.ipv4(kept)], "the deposed leader's write landed"
        time.sleep(0.1)
    ids = [i["id"] for i in new.service("internal", "api")["instances"]]
    assert late["taskArn"].rsplit("/", 1)[1] not in ids, ids
    assert len(ids) == 1, ids
    assert old.metric("muster_ecs_leader") == 0
    assert new.metric("muster_ecs_leader") == 1


def test_each_check_runs_on_one_replica_and_moves_when_its_owner_dies(muster, etcd_cluster, servers):

    toml = NS + LOOPBACK + etcd_toml(etcd_cluster.endpoints)
    replicas = [muster(toml + f'replica_id = "r{i}"\n') for i in range(3)]
    for m in replicas:
        ready(m)
        wait_until(lambda m=m: m.metric("muster_etcd_members") == 3, timeout=5, message="3 members")
    targets = [servers.http() for _ in range(6)]
    for i, target in enumerate(targets):
        body = {"ipv4": target.ip, "port": target.port, "check": HTTP_CHECK}
        replicas[i % 3].put_instance("internal", "web", f"i-{i}", body)
    # Every check runs on exactly one replica.
    owned = wait_until(
        lambda: (lambda n: n if sum(n) == 6 else None)([m.metric("muster_health_checks_owned") for m in replicas]),
        timeout=5,
        message="6 checks owned in all",
    )
    # The probe rate per instance is one replica's: one check per interval.
    interval = 0.1  # HTTP_CHECK["interval"]
    before = [len(t.requests) for t in targets]
    time.sleep(3)
    for target, start in zip(targets, before):
        probes = len(target.requests) - start
        assert 3 / interval / 3 <= probes <= 3 / interval + 2, (probes, interval, owned)
    # Kill the replica that owns the most; break every target: each turns unhealthy on
    # every survivor (its check moved within the lease TTL).
    victim = max(range(3), key=lambda i: owned[i])
    replicas[victim].stop(signal.SIGKILL)
    survivors = [m for i, m in enumerate(replicas) if i != victim]
    for m in survivors:
        wait_until(lambda m=m: m.metric("muster_etcd_members") == 2, timeout=LEASE_TTL + 2, message="victim gone")
    wait_until(lambda: sum(m.metric("muster_health_checks_owned") for m in survivors) == 6, timeout=2)
    for target in targets:
        target.mode = 500
    for m in survivors:
        wait_until(
            lambda m=m: all(not i["healthy"] for i in m.service("internal", "web")["instances"]),
            timeout=5,
            message="every instance unhealthy on every survivor",
        )


def test_a_heartbeat_to_any_replica_counts_on_every_replica(muster, etcd_cluster):
    toml = NS + etcd_toml(etcd_cluster.endpoints)
    replicas = [muster(toml) for _ in range(3)]
    a, b, c = replicas
    for m in replicas:
        ready(m)
        wait_until(lambda m=m: m.metric("muster_etcd_members") == 3, timeout=5, message="3 members")
    # Below etcd's lease minimum: refused, naming the field, and nothing registered.
    r = a.put_instance("internal", "hb", "short", {"ipv4": "10.2.0.99", "heartbeat_ttl": "1500ms"}, check=False)
    assert r.status_code == 400 and "heartbeat_ttl" in r.text, r.text
    anchor = "10.2.0.100"
    a.put_instance("internal", "hb", "anchor", {"ipv4": anchor})
    # Six instances: each replica keeps some of their deadlines (rendezvous over three).
    beating = [f"10.2.0.{i}" for i in range(1, 7)]
    for i, ip in enumerate(beating):
        a.put_instance("internal", "hb", f"i{i}", {"ipv4": ip, "heartbeat_ttl": "2s"})
    everyone = sorted(beating + [anchor])
    stop = threading.Event()

    def beat():
        while not stop.is_set():
            for i in range(len(beating)):
                assert a.put(a.instance_path("internal", "hb", f"i{i}") + "/heartbeat").status_code == 200
            stop.wait(0.5)

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        # The other replicas learn the registrations through etcd's watch, a few ms later.
        for m in replicas:
            wait_until(lambda m=m: a_set(m, "hb.internal") == everyone, timeout=2, message="replicated")
        # Three TTLs of heartbeats to replica a alone: every replica serves all of them.
        until = time.monotonic() + 6
        while time.monotonic() < until:
            for m in replicas:
                assert a_set(m, "hb.internal") == everyone, m.http_port
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
    # Heartbeats stop: unhealthy on every replica, within the TTL, etcd's second of lease
    # granularity and its half-second expiry sweep.
    stopped = time.monotonic()
    for m in replicas:
        wait_until(lambda m=m: a_set(m, "hb.internal") == [anchor], timeout=6, message="expired everywhere")
    took = time.monotonic() - stopped
    assert took < 6, took
    # One heartbeat to another replica: healthy again there at once, and everywhere.
    assert b.put(b.instance_path("internal", "hb", "i0") + "/heartbeat").status_code == 200
    assert a_set(b, "hb.internal") == sorted([anchor, beating[0]])
    for m in replicas:
        wait_until(lambda m=m: a_set(m, "hb.internal") == sorted([anchor, beating[0]]), timeout=2)
    # ...and it expires again on every replica when nothing follows.
    for m in replicas:
        wait_until(lambda m=m: a_set(m, "hb.internal") == [anchor], timeout=6, message="expired again")
    print(f"\nheartbeats stopped -> unhealthy on all 3 replicas: {took:.2f} s (TTL 2 s)")
