"""The ECS source (issue 4) against real AWS SDK calls: moto's server is the ECS, SQS and
EventBridge endpoint, boto3 creates clusters and task definitions and runs tasks, and the
"ECS Task State Change" events are published through EventBridge -> SQS in the documented
format (moto does not emit them). Answers are checked over DNS with dnspython.
"""

import time

import dns.rcode
import pytest

from harness import answer_rdata, namespace_toml, wait_until
from moto_ecs import CREDENTIALS, Ecs, MotoServer, SlowProxy, ecs_toml

# Every address in every answer, so sets of tasks can be compared.
NS = namespace_toml(services=[{"match": "*", "max_answers": 0}])


def a_set(m, name="api.internal"):
    r = m.dns_query(name, "A", tcp=True)
    return sorted(answer_rdata(r, "A")) if r.rcode() == dns.rcode.NOERROR else dns.rcode.to_text(r.rcode())


def start(muster, aws, clusters=("prod",), interval="1h", queue=True, extra=""):
    queue_url = aws.create_queue() if queue else None
    m = muster(NS + ecs_toml(clusters, aws.url, queue_url, interval, extra))
    wait_until(lambda: m.get("/readyz").status_code == 200, timeout=20, message="/readyz 200 after the first reconcile")
    return m


def described(aws, cluster, task):
    return aws.ecs.describe_tasks(cluster=cluster, tasks=[task["taskArn"]])["tasks"][0]


def test_readiness_waits_for_the_first_reconcile(muster, aws):
    # No cluster in moto yet: the reconcile fails, so the source never syncs.
    m = muster(NS + ecs_toml(["prod"], aws.url, interval="1s"))
    wait_until(
        lambda: m.metric("muster_ecs_api_errors_total", operation="ListTasks") >= 1,
        timeout=10,
        message="ListTasks fails (ClusterNotFoundException)",
    )
    r = m.get("/readyz")
    assert r.status_code == 503 and "ecs:prod" in r.text, r.text
    assert m.dns_query("api.internal", "A").rcode() == dns.rcode.SERVFAIL
    aws.create_cluster("prod")
    wait_until(lambda: m.get("/readyz").status_code == 200, timeout=10, message="ready once the cluster exists")


def test_tasks_enter_and_leave_the_moment_they_are_told_to_stop(muster, aws):
    aws.create_cluster("prod")
    aws.register("api", port=8080)
    tasks = aws.run("prod", "api", "api", count=2)
    first, second = (aws.ipv4(t) for t in tasks)
    m = start(muster, aws)
    assert a_set(m) == sorted([first, second])
    task_id = tasks[0]["taskArn"].rsplit("/", 1)[1]
    srv = answer_rdata(m.dns_query("api.internal", "SRV"), "SRV")
    assert f"1 1 8080 {task_id}.api.internal." in srv, srv
    instance = next(i for i in m.service("internal", "api")["instances"] if i["id"] == task_id)
    assert instance["source"] == "ecs:prod"
    attributes = dict(instance["attributes"])
    attributes.pop("AVAILABILITY_ZONE", None)  # moto leaves the task's zone out
    assert attributes == {
        "AWS_INSTANCE_IPV4": first,
        "AWS_INSTANCE_PORT": "8080",
        "ECS_CLUSTER_NAME": "prod",
        "ECS_SERVICE_NAME": "api",
        "ECS_TASK_DEFINITION_FAMILY": "api",
        "REGION": "us-east-1",
    }

    # The stop intent: ECS still runs the task (moto says RUNNING), DNS drops it now.
    aws.publish(aws.detail(tasks[0], desired="STOPPED", version=2))
    wait_until(lambda: a_set(m) == [second], timeout=3, message="stop intent removes the task")
    still = described(aws, "prod", tasks[0])
    assert (still["lastStatus"], still["desiredStatus"]) == ("RUNNING", "RUNNING")

    # The task stops for real, and a new one starts.
    aws.stop("prod", tasks[0])
    new = aws.run("prod", "api", "api")[0]
    aws.publish(
        aws.detail(tasks[0], last="STOPPED", desired="STOPPED", version=3),
        aws.detail(new, version=1),
    )
    wait_until(lambda: a_set(m) == sorted([second, aws.ipv4(new)]), timeout=3, message="new task in DNS")
    wait_until(lambda: aws.queue_depth() == 0, timeout=5, message="applied messages deleted")
    assert m.metric("muster_ecs_events_applied_total") == 3
    assert m.metric("muster_ecs_tasks", cluster="prod") == 2


def test_unhealthy_tasks_leave_and_health_checked_tasks_wait_for_healthy(muster, aws):
    aws.create_cluster("prod")
    aws.register("api", health_check=True)
    task = aws.run("prod", "api", "api")[0]
    m = start(muster, aws)
    # RUNNING, but its container health check has not reported HEALTHY.
    assert a_set(m) == "NXDOMAIN"
    aws.publish(aws.detail(task, version=2, health="HEALTHY"))
    wait_until(lambda: a_set(m) == [aws.ipv4(task)], timeout=3, message="HEALTHY task enters")
    aws.publish(aws.detail(task, version=3, health="UNHEALTHY"))
    wait_until(lambda: a_set(m) == "NXDOMAIN", timeout=3, message="UNHEALTHY task leaves")
    aws.publish(aws.detail(task, version=4, health="HEALTHY"))
    wait_until(lambda: a_set(m) == [aws.ipv4(task)], timeout=3, message="healthy again")


def test_duplicate_and_reordered_events_are_resolved_by_version(muster, aws):
    aws.create_cluster("prod")
    aws.register("api")
    a, b = aws.run("prod", "api", "api", count=2)
    m = start(muster, aws)
    # STOPPED (8) overtakes the stop intent (6) and a RUNNING event (5) that was delayed.
    aws.publish(aws.detail(a, last="STOPPED", desired="STOPPED", version=8))
    wait_until(lambda: a_set(m) == [aws.ipv4(b)], timeout=3, message="STOPPED removes the task")
    aws.publish(aws.detail(a, desired="STOPPED", version=6), aws.detail(a, version=5))
    # The same event delivered twice (SQS is at-least-once).
    aws.publish(aws.detail(b, version=3), aws.detail(b, version=3))
    wait_until(lambda: m.metric("muster_ecs_events_received_total") == 5, timeout=5, message="5 events received")
    wait_until(lambda: aws.queue_depth() == 0, timeout=5, message="all deleted")
    assert a_set(m) == [aws.ipv4(b)]
    assert m.metric("muster_ecs_events_ignored_total", reason="stale") == 2
    assert m.metric("muster_ecs_events_ignored_total", reason="duplicate") == 1
    assert m.metric("muster_ecs_events_applied_total") == 2


def test_missed_events_are_fixed_by_the_reconcile_and_counted_as_drift(muster, aws):
    aws.create_cluster("prod")
    aws.register("api")
    old = aws.run("prod", "api", "api")[0]
    m = start(muster, aws, interval="1s")
    assert m.metric("muster_ecs_reconcile_drift_total", cluster="prod", kind="added") == 0
    # A task starts and another stops; neither event ever arrives.
    new = aws.run("prod", "api", "api")[0]
    aws.stop("prod", old)
    wait_until(lambda: a_set(m) == [aws.ipv4(new)], timeout=5, message="reconcile catches up")
    assert m.metric("muster_ecs_reconcile_drift_total", cluster="prod", kind="added") == 1
    assert m.metric("muster_ecs_reconcile_drift_total", cluster="prod", kind="removed") == 1
    assert m.metric("muster_ecs_reconcile_duration_seconds_count", cluster="prod") >= 2


def test_without_the_queue_reconciles_go_on_and_events_resume(muster, aws):
    aws.create_cluster("prod")
    aws.register("api")
    old = aws.run("prod", "api", "api")[0]
    # A short long poll: the receive waiting when the queue goes fails within a second
    # (moto, like SQS, keeps a deleted queue's waiting receive open to its end).
    m = start(muster, aws, interval="1s", extra='long_poll = "1s"\n')
    aws.sqs.delete_queue(QueueUrl=aws.queue_url)
    wait_until(
        lambda: m.metric("muster_ecs_api_errors_total", operation="ReceiveMessage") >= 1,
        timeout=10,
        message="receive errors counted",
    )
    new = aws.run("prod", "api", "api")[0]
    aws.stop("prod", old)
    wait_until(lambda: a_set(m) == [aws.ipv4(new)], timeout=5, message="reconciles go on without SQS")
    assert m.proc.poll() is None
    # The queue comes back: events are the fast path again (moto still says RUNNING, so
    # only the stop intent can remove the task).
    aws.create_queue()
    aws.publish(aws.detail(new, desired="STOPPED", version=2))
    wait_until(lambda: a_set(m) == "NXDOMAIN", timeout=15, message="event applied after the queue returned")


def test_ecs_api_down_keeps_every_record(muster, monkeypatch, tmp_path):
    for key, value in CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    server = MotoServer(tmp_path / "moto.log").start()
    try:
        aws = Ecs(server.url)
        aws.create_cluster("prod")
        aws.register("api")
        tasks = aws.run("prod", "api", "api", count=3)
        m = start(muster, aws, interval="1s")
        before = a_set(m)
        assert before == sorted(aws.ipv4(t) for t in tasks)
        server.stop()
        wait_until(
            lambda: m.metric("muster_ecs_api_errors_total", operation="ListTasks") >= 2,
            timeout=15,
            message="failed reconciles counted",
        )
        assert a_set(m) == before, "a failed list must not withdraw records"
        assert m.get("/readyz").status_code == 200
        assert m.proc.poll() is None
    finally:
        server.stop()


@pytest.mark.parametrize("mode", ["delete", "keep"])
def test_malformed_messages_are_counted_and_deleted_or_kept(muster, aws, mode):
    aws.create_cluster("prod")
    m = start(muster, aws, extra=f'malformed = "{mode}"\n')
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody="this is not an event")
    other = '{"detail-type": "ECS Container Instance State Change", "detail": {}}'
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=other)
    wait_until(lambda: m.metric("muster_ecs_events_malformed_total") >= 1, timeout=5, message="malformed counted")
    wait_until(
        lambda: m.metric("muster_ecs_events_ignored_total", reason="other_event") == 1,
        timeout=5,
        message="other event ignored",
    )
    time.sleep(0.5)
    assert aws.queue_depth() == (0 if mode == "delete" else 1)
    assert m.proc.poll() is None


def test_a_thousand_tasks_in_fifty_services_across_two_clusters(muster, aws):
    clusters = ("blue", "green")
    expected = {}
    for cluster in clusters:
        aws.create_cluster(cluster)
    for i in range(50):
        service = f"svc{i:02d}"
        aws.register(service, port=9000 + i)
        cluster = clusters[i % 2]
        expected[service] = sorted(aws.ipv4(t) for t in aws.run(cluster, service, service, count=20))
    m = start(muster, aws, clusters=clusters)
    for service, addresses in expected.items():
        assert a_set(m, f"{service}.internal") == addresses, service
    for cluster in clusters:
        assert m.metric("muster_ecs_tasks", cluster=cluster) == 500
    # Per cluster: one ListTasks page (moto does not paginate) and 5 DescribeTasks of 100;
    # each task definition once.
    assert m.metric("muster_ecs_api_calls_total", operation="DescribeTasks") == 10
    assert m.metric("muster_ecs_api_calls_total", operation="DescribeTaskDefinition") == 50


# --------------------------------------------------------------------------------------
# Issue 18: bridge and host networking (EC2 launch type), named ports


def srv_set(m, name):
    return sorted(answer_rdata(m.dns_query(name, "SRV", tcp=True), "SRV"))


def task_id(task):
    return task["taskArn"].rsplit("/", 1)[1]


def lookups(m):
    return (
        m.metric("muster_ecs_api_calls_total", operation="DescribeContainerInstances"),
        m.metric("muster_ecs_api_calls_total", operation="DescribeInstances"),
    )


def test_bridge_tasks_are_reached_at_their_container_instance_on_their_host_ports(muster, aws):
    aws.create_cluster("prod")
    ci, ec2_id, address = aws.container_instance("prod")
    aws.register_ec2("web", [(8080, None, "http"), (9090, None, "grpc")])
    m = start(muster, aws)
    assert lookups(m) == (0, 0)
    web = aws.start("prod", "web", "web", ci)
    # Docker picked the host ports; only the event says which.
    aws.publish(aws.ec2_detail(web, [(8080, 32768), (9090, 32769)]))
    wait_until(lambda: a_set(m, "web.internal") == [address], timeout=5, message="bridge task in DNS")
    first = task_id(web)
    assert srv_set(m, "web.internal") == [f"1 1 32768 {first}.web.internal."]
    assert srv_set(m, "_http._tcp.web.internal") == [f"1 1 32768 {first}.web.internal."]
    assert srv_set(m, "_grpc._tcp.web.internal") == [f"1 1 32769 {first}.web.internal."]
    dig = m.dig("+noall", "+answer", "+additional", "_grpc._tcp.web.internal", "SRV")
    assert [f"{first}.web.internal.", "5", "IN", "A", address] in [line.split() for line in dig.splitlines()], dig
    instance = m.service("internal", "web")["instances"][0]
    assert instance["attributes"]["EC2_INSTANCE_ID"] == ec2_id
    assert instance["ports"] == {"grpc": {"port": 32769, "protocol": "tcp"}, "http": {"port": 32768, "protocol": "tcp"}}
    assert lookups(m) == (1, 1)

    # A second task on the same container instance: its address is cached.
    second = aws.start("prod", "web", "web", ci)
    aws.publish(aws.ec2_detail(second, [(8080, 32770), (9090, 32771)]))
    wait_until(lambda: len(srv_set(m, "web.internal")) == 2, timeout=5, message="second task in DNS")
    assert srv_set(m, "_grpc._tcp.web.internal") == sorted(
        [f"1 1 32769 {first}.web.internal.", f"1 1 32771 {task_id(second)}.web.internal."]
    )
    assert lookups(m) == (1, 1), "no new ECS or EC2 call for a cached container instance"
    assert m.metric("muster_ecs_container_instances") == 1

    # The stop intent removes it at once, as for awsvpc tasks.
    aws.publish(aws.ec2_detail(web, [(8080, 32768), (9090, 32769)], desired="STOPPED", version=2))
    wait_until(
        lambda: srv_set(m, "web.internal") == [f"1 1 32770 {task_id(second)}.web.internal."],
        timeout=3,
        message="stop intent removes the bridge task",
    )
    wait_until(lambda: aws.queue_depth() == 0, timeout=5, message="every message deleted, waiting ones too")
    assert m.metric("muster_ecs_tasks_skipped_total", reason="no_address") == 0


def test_host_and_bridge_tasks_on_the_reconcile_path(muster, aws):
    """moto's tasks carry no network bindings, so the reconcile path shows fixed ports:
    host networking (container port = host port) and a bridge task's fixed hostPort."""
    aws.create_cluster("prod")
    ci_a, _, address_a = aws.container_instance("prod")
    ci_b, _, address_b = aws.container_instance("prod")
    aws.register_ec2("hostnet", [(7000, None, "admin"), (7001, None, "data")], mode="host")
    aws.register_ec2("fixed", [(80, 31000, None)])
    on_b = aws.start("prod", "hostnet", "hostnet", ci_b)
    aws.start("prod", "fixed", "fixed", ci_a)
    m = start(muster, aws, interval="1s")
    assert a_set(m, "hostnet.internal") == [address_b]
    assert srv_set(m, "hostnet.internal") == [f"1 1 7000 {task_id(on_b)}.hostnet.internal."]
    assert srv_set(m, "_admin._tcp.hostnet.internal") == [f"1 1 7000 {task_id(on_b)}.hostnet.internal."]
    assert srv_set(m, "_data._tcp.hostnet.internal") == [f"1 1 7001 {task_id(on_b)}.hostnet.internal."]
    assert a_set(m, "fixed.internal") == [address_a]
    assert [r.split()[2] for r in srv_set(m, "fixed.internal")] == ["31000"]
    # Both container instances in one batch of each call, then served from the cache.
    assert lookups(m) == (1, 1)
    count = m.metric("muster_ecs_reconcile_duration_seconds_count", cluster="prod")
    wait_until(
        lambda: m.metric("muster_ecs_reconcile_duration_seconds_count", cluster="prod") >= count + 2,
        timeout=10,
        message="two more reconciles",
    )
    assert lookups(m) == (1, 1)
    assert m.metric("muster_ecs_container_instances") == 2
    # The task on B stops: B's address is dropped from the cache.
    aws.ecs.stop_task(cluster="prod", task=on_b["taskArn"], reason="test")
    wait_until(lambda: a_set(m, "hostnet.internal") == "NXDOMAIN", timeout=5, message="stopped task gone")
    wait_until(lambda: m.metric("muster_ecs_container_instances") == 1, timeout=5, message="cache trimmed")


def test_named_ports_of_awsvpc_tasks(muster, aws):
    aws.create_cluster("prod")
    arn = aws.ecs.register_task_definition(
        family="api",
        networkMode="awsvpc",
        requiresCompatibilities=["FARGATE"],
        cpu="256",
        memory="512",
        containerDefinitions=[
            {
                "name": "app",
                "image": "public.ecr.aws/nginx/nginx:latest",
                "cpu": 256,
                "memory": 512,
                "essential": True,
                "portMappings": [
                    {"containerPort": 8080, "name": "http"},
                    {"containerPort": 9090, "name": "grpc"},
                ],
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    assert arn
    task = aws.run("prod", "api", "api")[0]
    m = start(muster, aws)
    name = f"{task_id(task)}.api.internal."
    assert srv_set(m, "api.internal") == [f"1 1 8080 {name}"]
    assert srv_set(m, "_http._tcp.api.internal") == [f"1 1 8080 {name}"]
    assert srv_set(m, "_grpc._tcp.api.internal") == [f"1 1 9090 {name}"]
    assert m.dns_query("_grpc._udp.api.internal", "SRV").rcode() == dns.rcode.NXDOMAIN
    assert m.dns_query("_tcp.api.internal", "SRV").rcode() == dns.rcode.NOERROR
    assert lookups(m) == (0, 0), "awsvpc tasks need no container instance"


def test_a_container_instance_ecs_does_not_know_keeps_the_task_out(muster, aws):
    aws.create_cluster("prod")
    ci, _, _ = aws.container_instance("prod")
    aws.register_ec2("web", [(8080, None, None)])
    m = start(muster, aws)
    web = aws.start("prod", "web", "web", ci)
    event = aws.ec2_detail(web, [(8080, 32768)])
    event["containerInstanceArn"] = ci.rsplit("/", 1)[0] + "/0000deadbeef"
    aws.publish(event)
    wait_until(
        lambda: m.metric("muster_ecs_tasks_skipped_total", reason="no_address") == 1,
        timeout=5,
        message="counted as no_address",
    )
    assert a_set(m, "web.internal") == "NXDOMAIN"
    wait_until(lambda: aws.queue_depth() == 0, timeout=5, message="the message is deleted")
    assert lookups(m) == (1, 0), "no EC2 call for a container instance ECS does not know"


def test_a_slow_container_instance_lookup_holds_up_no_other_event(muster, aws):
    aws.create_cluster("prod")
    ci, _, address = aws.container_instance("prod")
    aws.register_ec2("web", [(8080, None, None)])
    aws.register("api")
    queue = aws.create_queue()
    with SlowProxy(aws.url, "DescribeContainerInstances", delay=3) as proxy:
        m = muster(NS + ecs_toml(["prod"], proxy.url, queue))
        wait_until(lambda: m.get("/readyz").status_code == 200, timeout=20, message="ready")
        web = aws.start("prod", "web", "web", ci)
        api = aws.run("prod", "api", "api")[0]
        started = time.monotonic()
        aws.publish(aws.ec2_detail(web, [(8080, 32768)]), aws.detail(api))
        wait_until(lambda: a_set(m) == [aws.ipv4(api)], timeout=2, message="the awsvpc task is not held up")
        assert a_set(m, "web.internal") == "NXDOMAIN", "the bridge task still waits for its lookup"
        wait_until(lambda: a_set(m, "web.internal") == [address], timeout=8, message="bridge task after its lookup")
        assert time.monotonic() - started >= 2.5
        wait_until(lambda: aws.queue_depth() == 0, timeout=5, message="both messages deleted")
