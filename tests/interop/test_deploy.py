"""deploy/ (issue 8): what a deployer takes from the repository works as shipped.

- The CloudFormation templates pass cfn-lint, and the muster config each one generates is
  the example in deploy/config/ (so checking and starting the examples checks the stacks);
  in each mode of the resolver template (Registry, ForwardTo) the resources it creates fit
  together (queues, forwarding targets, etcd members), its Rules require what the mode
  uses, and the etcd members' user data bootstraps a cluster the etcd examples share.
- Every deploy/config/*.toml passes `muster check-config`, and muster started with it
  (addresses and data_dir moved by the MUSTER_* overrides, AWS pointed at moto) answers
  /healthz and DNS as its mode promises.
- The systemd unit passes `systemd-analyze verify` without a warning, and muster runs with
  the unit's privileges (a non-root user with only CAP_NET_BIND_SERVICE, no new privileges).
- deploy/docker-build-steps.sh (the Dockerfile's steps without Docker) builds the image's
  file tree, and its entrypoint and health check work as the image's non-root user.

A tool that is missing fails the test: scripts/install-test-tools.sh installs them all.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import tomllib
from pathlib import Path

import dns.exception
import dns.message
import dns.rcode
import dns.rrset
import pytest
import requests

from cfn import broken_rules, evaluate, generated_configs, load_template, resources
from etcd_cluster import EtcdCluster
from harness import REPO, Muster, answer_rdata, muster_bin, wait_until
from moto_ecs import REGION

DEPLOY = REPO / "deploy"
CONFIGS = sorted((DEPLOY / "config").glob("*.toml"))
TEMPLATES = sorted(DEPLOY.glob("*.yaml"))
UNIT = DEPLOY / "systemd" / "muster.service"
# The image's fixed user (deploy/image/install.sh, USER in deploy/Dockerfile).
IMAGE_UID = 10001
# The examples' AWS values, replaced by moto's when they are started.
EXAMPLE_REGION = "eu-west-1"


def tool(name):
    """A command-line tool: beside this Python (the .venv) or on PATH; missing fails."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: run scripts/install-test-tools.sh")
    return found


def run(*cmd, **kw):
    kw.setdefault("timeout", 120)
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def as_root(*cmd):
    return cmd if os.geteuid() == 0 else ("sudo", "-n", *cmd)


# --------------------------------------------------------------------------------------
# CloudFormation


# The parameter values that make each template generate its example config.
EXAMPLE_PARAMS = {
    "AWS::Region": EXAMPLE_REGION,
    "Namespace": "internal",
    "Ttl": 5,
    "NegativeTtl": 1,
    "WatchedClusterArns": [f"arn:aws:ecs:{EXAMPLE_REGION}:123456789012:cluster/prod"],
    "VpcResolver": "10.0.0.2",
}


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_passes(template):
    p = run(tool("cfn-lint"), template)
    # 0: no errors, warnings or notes (2 would be errors, 4 warnings).
    assert p.returncode == 0, f"cfn-lint {template.name} exited {p.returncode}:\n{p.stdout}{p.stderr}"


def test_cfn_lint_catches_a_broken_template(tmp_path):
    broken = tmp_path / "broken.yaml"
    text = (DEPLOY / "ecs-resolver.yaml").read_text()
    listener = "Protocol: TCP_UDP\n      Port: 53\n      DefaultActions"
    assert listener in text
    broken.write_text(text.replace(listener, listener.replace("TCP_UDP", "DNS")))
    p = run(tool("cfn-lint"), broken)
    assert p.returncode & 2, f"cfn-lint accepted a listener protocol DNS:\n{p.stdout}"


def with_defaults(text, params):
    """params, with every parameter they leave out at its default."""
    defaults = {}
    for name, spec in text["Parameters"].items():
        if "Default" in spec:
            default = spec["Default"]
            defaults[name] = default.split(",") if spec["Type"] == "CommaDelimitedList" else default
    return {**defaults, **EXAMPLE_PARAMS, **params}


def stack(template, params):
    """The resources a template creates with these parameters (the rest at their defaults),
    every intrinsic function evaluated."""
    text = load_template(DEPLOY / template)
    return resources(text, with_defaults(text, params))


def rendered_configs(template, params):
    """{task definition: the muster config it passes, parsed} with these parameters."""
    out = {}
    for name, resource in stack(template, params).items():
        if resource["Type"] == "AWS::ECS::TaskDefinition":
            (container,) = resource["Properties"]["ContainerDefinitions"]
            env = {e["Name"]: e["Value"] for e in container["Environment"]}
            out[name] = tomllib.loads(env["MUSTER_CONFIG_TOML"])
    return out


# The resolver template's modes, as the parameters that select them; the examples'
# addresses (deploy/config/ecs-resolver-*.toml).
NETWORK = {"DnsAddressA": "10.0.0.53", "DnsAddressB": "10.0.16.53", "VpcCidr": "10.0.0.0/16", "ReconcileInterval": "60s"}
ETCD_MEMBERS = ["10.0.0.10", "10.0.16.10", "10.0.32.10"]
ETCD_ON_EC2 = {
    "Registry": "etcd-on-ec2",
    "EtcdAddressA": ETCD_MEMBERS[0],
    "EtcdAddressB": ETCD_MEMBERS[1],
    "EtcdAddressC": ETCD_MEMBERS[2],
    "EtcdSubnetC": "subnet-0cccccccccccccccc",
    "EtcdAmi": "ami-0123456789abcdef0",
}
ETCD_EXISTING = {"Registry": "etcd", "EtcdEndpoints": [f"http://{a}:2379" for a in ETCD_MEMBERS]}
TO_REPLICAS = {"ForwardTo": "replicas", "ReplicaAmi": "ami-0fedcba9876543210"}
RESOLVER_MODES = {
    "local": {},
    "local-to-replicas": TO_REPLICAS,
    "etcd": ETCD_EXISTING,
    "etcd-on-ec2": ETCD_ON_EC2,
    "etcd-on-ec2-to-replicas": {**ETCD_ON_EC2, **TO_REPLICAS},
}


@pytest.mark.parametrize(
    "mode, example, queue",
    [
        ("local", "ecs-resolver.toml", "muster-a"),
        ("etcd", "ecs-resolver-etcd.toml", "muster-events"),
        ("etcd-on-ec2", "ecs-resolver-etcd.toml", "muster-events"),
        ("etcd-on-ec2-to-replicas", "ecs-resolver-replicas.toml", "muster-events"),
    ],
)
def test_resolver_template_generates_the_example_config(mode, example, queue):
    url = f"https://sqs.{EXAMPLE_REGION}.amazonaws.com/123456789012/{queue}"
    params = {**NETWORK, **RESOLVER_MODES[mode], "QueueA": url, "QueueB": url}
    configs = rendered_configs("ecs-resolver.yaml", params)
    want = tomllib.loads((DEPLOY / "config" / example).read_text())
    assert configs["TaskDefinitionA"] == want, f"replica A generates\n{configs['TaskDefinitionA']}\nnot {example}"
    if mode.endswith("to-replicas"):
        # Replica B answers on its own address.
        assert want["dns"]["listen"] == [f"{NETWORK['DnsAddressA']}:53"]
        want["dns"]["listen"] = [f"{NETWORK['DnsAddressB']}:53"]
    assert configs["TaskDefinitionB"] == want


def test_sidecar_template_generates_the_example_config():
    configs = generated_configs(load_template(DEPLOY / "ecs-sidecar.yaml"))
    assert sorted(configs) == ["TaskDefinition"]
    have = tomllib.loads(evaluate(configs["TaskDefinition"], {**EXAMPLE_PARAMS, "ReconcileInterval": "15s"}))
    assert have == tomllib.loads((DEPLOY / "config" / "ecs-sidecar.toml").read_text())


@pytest.mark.parametrize("mode", RESOLVER_MODES)
def test_resolver_replicas_differ_only_in_their_queue_and_address(mode):
    configs = rendered_configs("ecs-resolver.yaml", {**NETWORK, **RESOLVER_MODES[mode]})
    assert sorted(configs) == ["TaskDefinitionA", "TaskDefinitionB"]
    a, b = configs["TaskDefinitionA"], configs["TaskDefinitionB"]
    queues = (a["sources"]["ecs"][0].pop("queue_url"), b["sources"]["ecs"][0].pop("queue_url"))
    # One queue per replica without etcd; with etcd one for the deployment.
    assert queues == (("{QueueA}", "{QueueB}") if mode.startswith("local") else ("{QueueA}", "{QueueA}"))
    listen = (a["dns"].pop("listen"), b["dns"].pop("listen"))
    if mode.endswith("to-replicas"):
        assert listen == (["10.0.0.53:53"], ["10.0.16.53:53"])
    else:
        assert listen == (["0.0.0.0:53"], ["0.0.0.0:53"])
    assert a == b
    assert ("etcd" in a) == (mode != "local" and not mode.startswith("local-"))


def by_type(resources_, kind):
    return {name: r["Properties"] for name, r in resources_.items() if r["Type"] == kind}


@pytest.mark.parametrize("mode", RESOLVER_MODES)
def test_resolver_mode_feeds_every_queue_and_lets_the_replicas_read_it(mode):
    res = stack("ecs-resolver.yaml", {**NETWORK, **RESOLVER_MODES[mode]})
    queues = {f"{{{name}.Arn}}" for name in by_type(res, "AWS::SQS::Queue")} - {"{DeadLetterQueue.Arn}"}
    assert queues == ({"{QueueA.Arn}", "{QueueB.Arn}"} if mode.startswith("local") else {"{QueueA.Arn}"})
    (rule,) = by_type(res, "AWS::Events::Rule").values()
    assert {target["Arn"] for target in rule["Targets"]} == queues
    (policy,) = by_type(res, "AWS::SQS::QueuePolicy").values()
    (send,) = policy["PolicyDocument"]["Statement"]
    assert set(send["Resource"]) == queues | {"{DeadLetterQueue.Arn}"}
    role = res["TaskRole"]["Properties"]
    (read,) = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"] if s["Sid"] == "OwnQueues"]
    assert set(read["Resource"]) == queues


@pytest.mark.parametrize("mode", RESOLVER_MODES)
def test_resolver_rule_targets_what_answers_dns(mode):
    res = stack("ecs-resolver.yaml", {**NETWORK, **RESOLVER_MODES[mode]})
    (rule,) = by_type(res, "AWS::Route53Resolver::ResolverRule").values()
    targets = sorted(t["Ip"] for t in rule["TargetIps"])
    assert targets == ["10.0.0.53", "10.0.16.53"]
    services = by_type(res, "AWS::ECS::Service")
    if mode.endswith("to-replicas"):
        assert not by_type(res, "AWS::ElasticLoadBalancingV2::LoadBalancer")
        interfaces = by_type(res, "AWS::EC2::NetworkInterface")
        assert sorted(i["PrivateIpAddress"] for i in interfaces.values()) == targets
        # Each interface is an instance's own, and each replica's service is placed on the
        # instance that holds its address (the user data sets the attribute).
        instances = by_type(res, "AWS::EC2::Instance")
        held = sorted(i["NetworkInterfaces"][0]["NetworkInterfaceId"] for i in instances.values() if "Replica" in str(i))
        assert held == ["{ReplicaInterfaceA}", "{ReplicaInterfaceB}"]
        (template,) = [lt for name, lt in by_type(res, "AWS::EC2::LaunchTemplate").items() if name.startswith("Replica")]
        assert '"muster-address": "$address"' in template["LaunchTemplateData"]["UserData"]
        placed = sorted(s["PlacementConstraints"][0]["Expression"] for s in services.values())
        assert placed == [f"attribute:muster-address == {ip}" for ip in targets]
        assert {s["LaunchType"] for s in services.values()} == {"EC2"}
    else:
        (lb,) = by_type(res, "AWS::ElasticLoadBalancingV2::LoadBalancer").values()
        assert sorted(m["PrivateIPv4Address"] for m in lb["SubnetMappings"]) == targets
        assert {s["LaunchType"] for s in services.values()} == {"FARGATE"}


@pytest.mark.parametrize("mode", ["etcd-on-ec2", "etcd-on-ec2-to-replicas"])
def test_etcd_on_ec2_is_three_members_in_three_subnets_with_a_volume_each(mode):
    res = stack("ecs-resolver.yaml", {**NETWORK, **RESOLVER_MODES[mode]})
    members = {n: i for n, i in by_type(res, "AWS::EC2::Instance").items() if n.startswith("Etcd")}
    placed = sorted((i["NetworkInterfaces"][0]["SubnetId"], i["NetworkInterfaces"][0]["PrivateIpAddress"]) for i in members.values())
    assert placed == sorted(zip(["{SubnetA}", "{SubnetB}", "subnet-0cccccccccccccccc"], ETCD_MEMBERS))
    attachments = by_type(res, "AWS::EC2::VolumeAttachment").values()
    assert sorted((a["InstanceId"], a["VolumeId"]) for a in attachments) == [
        (f"{{EtcdInstance{x}}}", f"{{EtcdVolume{x}}}") for x in "ABC"
    ]
    for x in "ABC":
        assert res[f"EtcdVolume{x}"]["DeletionPolicy"] == "Snapshot"


@pytest.mark.parametrize("mode", RESOLVER_MODES)
def test_resolver_rules_require_what_each_mode_uses(mode):
    """The parameters that may be empty (a mode that does not use them) are required by
    the template's Rules in the modes that do: each mode's parameters pass, and leaving
    out any one of those it adds to the defaults breaks a rule."""
    text = load_template(DEPLOY / "ecs-resolver.yaml")
    params = {**NETWORK, **RESOLVER_MODES[mode]}
    assert broken_rules(text, with_defaults(text, params)) == []
    for name in set(RESOLVER_MODES[mode]) - {"Registry", "ForwardTo"}:
        without = with_defaults(text, {k: v for k, v in params.items() if k != name})
        assert broken_rules(text, without), f"{mode} without {name}"


def test_no_etcd_resources_without_etcd_on_ec2():
    for mode in ("local", "etcd", "local-to-replicas"):
        names = stack("ecs-resolver.yaml", {**NETWORK, **RESOLVER_MODES[mode]})
        assert not [n for n in names if n.startswith("Etcd")], mode


# What src/sources/ecs/aws.rs calls, as IAM actions (DeleteMessageBatch is authorized as
# sqs:DeleteMessage). GetQueueAttributes is granted in resolver mode for operators' tools.
ECS_ACTIONS = {
    "ecs:ListTasks",
    "ecs:DescribeTasks",
    "ecs:DescribeContainerInstances",
    "ecs:DescribeTaskDefinition",
    "ec2:DescribeInstances",
}
SQS_ACTIONS = {"sqs:ReceiveMessage", "sqs:DeleteMessage"}


def test_the_ecs_source_calls_what_the_task_roles_allow():
    source = (REPO / "src" / "sources" / "ecs" / "aws.rs").read_text()
    called = set(re.findall(r'counted\("(\w+)"', source))
    assert called == {
        "ListTasks",
        "DescribeTasks",
        "DescribeContainerInstances",
        "DescribeTaskDefinition",
        "DescribeInstances",
        "ReceiveMessage",
        "DeleteMessageBatch",
    }


@pytest.mark.parametrize(
    "template, want",
    [
        ("ecs-resolver.yaml", ECS_ACTIONS | SQS_ACTIONS | {"sqs:GetQueueAttributes"}),
        # No queue: reconciles only.
        ("ecs-sidecar.yaml", ECS_ACTIONS),
    ],
)
def test_task_role_allows_only_what_muster_calls(template, want):
    role = load_template(DEPLOY / template)["Resources"]["TaskRole"]["Properties"]
    statements = [s for policy in role["Policies"] for s in policy["PolicyDocument"]["Statement"]]
    assert all(s["Effect"] == "Allow" for s in statements)
    actions = {a for s in statements for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert actions == want


# --------------------------------------------------------------------------------------
# Example configs: check-config, then start each and ask it


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: p.name)
def test_example_config_passes_check_config(config):
    p = run(muster_bin(), "check-config", config)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.strip() == f"{config}: ok"


def test_check_config_fails_on_a_bad_example(tmp_path):
    bad = tmp_path / "bad.toml"
    text = (DEPLOY / "config" / "ecs-sidecar.toml").read_text()
    bad.write_text(text.replace('reconcile_interval = "15s"', 'reconcile_interval = "15s"\nqueue = "typo"'))
    p = run(muster_bin(), "check-config", bad)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "queue" in p.stderr, p.stderr


class Example(Muster):
    """muster started with a config file as a deployer writes it; the addresses and
    data_dir come from the MUSTER_* overrides, as in a container."""

    def __init__(self, workdir, text):
        self.text = text
        super().__init__(workdir)

    def config_text(self):
        return self.text

    def overrides(self):
        return {
            "MUSTER_DNS_LISTEN": f"127.0.0.1:{self.dns_port}",
            "MUSTER_HTTP_LISTEN": f"127.0.0.1:{self.http_port}",
            "MUSTER_DATA_DIR": str(self.data_dir),
        }


@pytest.fixture
def start_example(tmp_path, monkeypatch):
    started = []

    def start(name, rewrite=lambda text: text):
        m = Example(tmp_path / name, rewrite((DEPLOY / "config" / name).read_text()))
        for key, value in m.overrides().items():
            monkeypatch.setenv(key, value)
        started.append(m)
        return m.start()

    yield start
    for m in started:
        m.stop()
        m.http.close()


def to_moto(aws, queue_url=None):
    """Rewrites an example config for moto: its region, its endpoint, its queue."""

    def rewrite(text):
        text = text.replace(EXAMPLE_REGION, REGION)
        text = text.replace("[[sources.ecs]]\n", f'[[sources.ecs]]\nendpoint_url = "{aws.url}"\n', 1)
        if queue_url is not None:
            text, n = re.subn(r'(?m)^queue_url = ".*"$', f'queue_url = "{queue_url}"', text)
            assert n == 1, "the example has no queue_url"
        return text

    return rewrite


def addresses(m, name="api.internal"):
    r = m.dns_query(name, "A", tcp=True)
    return sorted(answer_rdata(r, "A")) if r.rcode() == dns.rcode.NOERROR else dns.rcode.to_text(r.rcode())


def test_container_example_serves(start_example):
    m = start_example("container.toml")
    assert m.get("/healthz").status_code == 200
    m.put_instance("internal", "web", "i-1", {"ipv4": "10.0.0.5", "port": 8080})
    assert addresses(m, "web.internal") == ["10.0.0.5"]


def test_systemd_example_serves_its_static_file(start_example, tmp_path):
    static = tmp_path / "static.toml"
    # The shipped file as it is, then with an instance added.
    static.write_text((DEPLOY / "systemd" / "static.toml").read_text())
    m = start_example("systemd.toml", lambda t: t.replace("/etc/muster/static.toml", str(static)))
    wait_until(lambda: m.get("/readyz").status_code == 200, timeout=10, message="/readyz after the file is read")
    assert addresses(m, "db.internal") == "NXDOMAIN"
    with static.open("a") as f:
        f.write('[[instances]]\nnamespace = "internal"\nservice = "db"\nid = "db-1"\nipv4 = "10.0.0.9"\nport = 5432\n')
    wait_until(lambda: addresses(m, "db.internal") == ["10.0.0.9"], timeout=10, message="db.internal from the file")


def test_ecs_resolver_example_follows_tasks_and_events(start_example, aws):
    aws.create_cluster("prod")
    aws.register("api", port=8080)
    tasks = aws.run("prod", "api", "api", count=2)
    m = start_example("ecs-resolver.toml", to_moto(aws, aws.create_queue()))
    wait_until(lambda: m.get("/readyz").status_code == 200, timeout=20, message="/readyz after the first reconcile")
    assert addresses(m) == sorted(aws.ipv4(t) for t in tasks)
    # The stop intent arrives through EventBridge and the queue, long before a reconcile.
    aws.publish(aws.detail(tasks[0], desired="STOPPED", version=2))
    wait_until(lambda: addresses(m) == [aws.ipv4(tasks[1])], timeout=5, message="stopped task out of DNS")


class UserDataCluster(EtcdCluster):
    """Three etcd members started as the resolver template's user data starts them on
    EC2: Debian's etcd with the settings it writes to /etc/default/etcd, here as the
    environment, each member on its own loopback address (the data dir moved)."""

    def __init__(self, workdir, settings, addresses):
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.names = ["etcd-a", "etcd-b", "etcd-c"]
        self.addresses = addresses
        self.procs = [None] * 3
        self.logs = [None] * 3
        self.settings = settings

    @property
    def endpoints(self):
        return [f"http://{a}:2379" for a in self.addresses]

    def command(self, i):
        text = self.settings.replace("$member", self.names[i]).replace("$address", self.addresses[i])
        env = dict(line.split("=", 1) for line in text.splitlines())
        assert env.pop("ETCD_DATA_DIR") == "/var/lib/etcd/data"
        env["ETCD_DATA_DIR"] = str(self.dir / self.names[i])
        return ["env", *(f"{k}={v}" for k, v in env.items()), tool("etcd")]


def test_etcd_members_user_data_bootstraps_the_cluster_the_etcd_examples_use(tmp_path, start_example, aws):
    """Registry=etcd-on-ec2 end to end, but EC2: the members' settings from the rendered
    user data form one cluster, and two replicas started with the two etcd examples (their
    endpoints moved to it) share the registry in it."""
    base = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}"
    members = [f"{base}.{i}" for i in (2, 3, 4)]
    params = {**NETWORK, **ETCD_ON_EC2, "EtcdAddressA": members[0], "EtcdAddressB": members[1]}
    params |= {"EtcdAddressC": members[2], "AWS::StackName": "muster-deploy-test"}
    template = stack("ecs-resolver.yaml", params)["EtcdLaunchTemplate"]
    script = template["Properties"]["LaunchTemplateData"]["UserData"]
    assert not re.search(r"\{[A-Z][\w:]*\}", script), f"a CloudFormation variable is left:\n{script}"
    p = run("bash", "-n", input=script)
    assert p.returncode == 0, p.stderr
    settings = re.search(r"(?s)cat >/etc/default/etcd <<CONFIG\n(.*?)\nCONFIG\n", script).group(1)
    cluster = UserDataCluster(tmp_path / "etcd", settings, members)
    try:
        cluster.start()
        aws.create_cluster("prod")
        aws.register("api", port=8080)
        tasks = aws.run("prod", "api", "api", count=2)
        queue = aws.create_queue()

        def rewrite(text):
            for example, member in zip(ETCD_MEMBERS, members):
                assert f"http://{example}:2379" in text
                text = text.replace(f"http://{example}:2379", f"http://{member}:2379")
            return to_moto(aws, queue)(text)

        replicas = [start_example(name, rewrite) for name in ("ecs-resolver-etcd.toml", "ecs-resolver-replicas.toml")]
        running = sorted(aws.ipv4(t) for t in tasks)
        for m in replicas:
            wait_until(lambda m=m: m.get("/readyz").status_code == 200, timeout=20, message="/readyz")
            # One replica leads the ECS election and writes the tasks into etcd after its
            # first reconcile; with [etcd], readiness is the store's, so that may come later.
            wait_until(lambda m=m: addresses(m) == running, timeout=20, message="the tasks")
        replicas[0].put_instance("internal", "web", "i-1", {"ipv4": "10.0.0.5", "port": 8080})
        wait_until(lambda: addresses(replicas[1], "web.internal") == ["10.0.0.5"], timeout=5, message="web on B")
        assert "/muster/ns/internal/web/i-1" in cluster.keys("/muster/")
        serials = [m.dns_query("internal", "SOA").answer[0][0].serial for m in replicas]
        assert serials[0] == serials[1], serials
    finally:
        cluster.stop()


class Upstream:
    """A stand-in for the VPC resolver: answers every A question with 192.0.2.1."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.asked = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while not self.stopping.is_set():
            try:
                wire, peer = self.sock.recvfrom(4096)
                query = dns.message.from_wire(wire)
            except (TimeoutError, dns.exception.DNSException):
                continue
            self.asked.append(query.question[0].name.to_text())
            reply = dns.message.make_response(query)
            reply.answer.append(dns.rrset.from_text(query.question[0].name, 60, "IN", "A", "192.0.2.1"))
            self.sock.sendto(reply.to_wire(), peer)

    def close(self):
        self.stopping.set()
        self.thread.join()
        self.sock.close()


def test_ecs_sidecar_example_answers_the_namespace_and_forwards_the_rest(start_example, aws):
    aws.create_cluster("prod")
    aws.register("api", port=8080)
    task = aws.run("prod", "api", "api")[0]
    upstream = Upstream()
    try:

        def rewrite(text):
            text = to_moto(aws)(text)
            assert '"10.0.0.2:53"' in text
            return text.replace('"10.0.0.2:53"', f'"127.0.0.1:{upstream.port}"')

        m = start_example("ecs-sidecar.toml", rewrite)
        wait_until(lambda: m.get("/readyz").status_code == 200, timeout=20, message="/readyz after the first reconcile")
        assert addresses(m) == [aws.ipv4(task)]
        r = m.dns_query("example.com", "A")
        assert r.rcode() == dns.rcode.NOERROR and answer_rdata(r, "A") == ["192.0.2.1"], r
        assert upstream.asked == ["example.com."]
    finally:
        upstream.close()


# --------------------------------------------------------------------------------------
# systemd


def unit_settings(path):
    """{(section, key): [values]} of a unit file."""
    settings, section = {}, None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        settings.setdefault((section, key.strip()), []).append(value.strip())
    return settings


def test_unit_has_the_hardening_deployers_rely_on():
    s = unit_settings(UNIT)
    service = lambda key: s.get(("Service", key), [])  # noqa: E731
    assert service("DynamicUser") == ["yes"] or service("User"), "no DynamicUser= or User="
    assert "CAP_NET_BIND_SERVICE" in " ".join(service("AmbientCapabilities"))
    assert service("CapabilityBoundingSet") == ["CAP_NET_BIND_SERVICE"]
    assert service("NoNewPrivileges") == ["yes"]
    assert service("ProtectSystem") == ["strict"]
    assert service("StateDirectory") == ["muster"]
    assert service("Restart") == ["on-failure"]
    # The state directory is the data_dir, whatever the config file says.
    assert "MUSTER_DATA_DIR=%S/muster" in service("Environment")
    assert tomllib.loads((DEPLOY / "config" / "systemd.toml").read_text())["data_dir"] == "/var/lib/muster"


def test_systemd_analyze_verify_passes(tmp_path):
    analyze = tool("systemd-analyze")
    # verify insists that ExecStart's binary exists: point it at the one under test.
    unit = tmp_path / "muster.service"
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/muster", str(muster_bin())))
    p = run(analyze, "verify", unit)
    # verify exits 0 on unknown keys and bad values too; they are warnings on stderr.
    assert p.returncode == 0 and not p.stderr.strip(), f"systemd-analyze verify:\n{p.stdout}{p.stderr}"
    p = run(analyze, "security", "--offline=yes", unit)
    exposure = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", p.stdout)
    assert exposure, p.stdout + p.stderr
    assert float(exposure.group(1)) <= 2.0, p.stdout


def test_systemd_analyze_verify_catches_a_typo(tmp_path):
    unit = tmp_path / "muster.service"
    text = UNIT.read_text().replace("/usr/local/bin/muster", str(muster_bin()))
    unit.write_text(text.replace("ProtectSystem=", "ProtectSystems="))
    p = run(tool("systemd-analyze"), "verify", unit)
    assert "ProtectSystems" in p.stderr, p.stderr


def privileged_port():
    """A port below 1024 free on 127.0.0.1 for UDP and TCP (we probe as root)."""
    for port in range(950, 1024):
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u, socket.socket() as t:
                u.bind(("127.0.0.1", port))
                t.bind(("127.0.0.1", port))
            return port
        except PermissionError:
            return port  # not root: sudo runs muster; take the first and let it report
        except OSError:
            continue
    pytest.fail("no port below 1024 free on 127.0.0.1")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def shared_dir():
    """A directory another uid can use (pytest's tmp dirs are 0700), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="muster-deploy-"))
    path.chmod(0o755)
    yield path
    subprocess.run(as_root("rm", "-rf", str(path)), check=False)


class Probe(Muster):
    """harness.Muster's client side only, for a server started by serve_as."""

    def __init__(self, dns_port, http_port, log_path):
        self.dns_port, self.http_port, self.log_path = dns_port, http_port, log_path
        self.http = requests.Session()

    def answers(self, path):
        try:
            return self.get(path, timeout=1).status_code == 200
        except requests.RequestException:
            return False


@contextlib.contextmanager
def serve_as(uid, privileges, cmd, env):
    """Runs muster (cmd) as uid with setpriv's privileges; yields a Probe once /healthz
    answers; at the end SIGTERM, and it must exit 0. DNS on a port below 1024."""
    work = Path(env["MUSTER_DATA_DIR"]).parent
    subprocess.run(as_root("chown", f"{uid}:{uid}", env["MUSTER_DATA_DIR"]), check=True)
    dns_port, http_port = privileged_port(), free_port()
    env = {**env, "MUSTER_DNS_LISTEN": f"127.0.0.1:{dns_port}", "MUSTER_HTTP_LISTEN": f"127.0.0.1:{http_port}"}
    setpriv = [tool("setpriv"), f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *privileges]
    log = work / "muster.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            as_root("env", *(f"{k}={v}" for k, v in env.items()), *setpriv, *map(str, cmd)),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    m = Probe(dns_port, http_port, log)
    try:
        wait_until(lambda: proc.poll() is not None or m.answers("/healthz"), timeout=15, message="/healthz")
        assert proc.poll() is None, f"muster exited {proc.returncode}\n{log.read_text()}"
        yield m, env
    finally:
        subprocess.run(as_root("kill", "-TERM", str(proc.pid)), check=False)
        try:
            status = proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            subprocess.run(as_root("kill", "-KILL", str(proc.pid)), check=False)
            status = proc.wait()
        m.http.close()
    assert status == 0, f"exit status {status} after SIGTERM\n{log.read_text()}"


def test_muster_runs_with_the_units_privileges(shared_dir):
    """What the unit gives muster: a user of its own, the unit's ambient capabilities and
    no others, no new privileges."""
    s = unit_settings(UNIT)
    ambient = s[("Service", "AmbientCapabilities")][0].split()
    caps = "-all," + ",".join("+" + c.lower().removeprefix("cap_") for c in ambient)
    assert s[("Service", "NoNewPrivileges")] == ["yes"]
    privileges = [f"--inh-caps={caps}", f"--ambient-caps={caps}", f"--bounding-set={caps}", "--no-new-privs"]
    # The binary too: the checkout may be in a home directory other users cannot enter.
    binary = shared_dir / "muster"
    shutil.copy(muster_bin(), binary)
    static = shared_dir / "static.toml"
    static.write_text((DEPLOY / "systemd" / "static.toml").read_text())
    config = shared_dir / "muster.toml"
    config.write_text((DEPLOY / "config" / "systemd.toml").read_text().replace("/etc/muster/static.toml", str(static)))
    for path in (static, config):
        path.chmod(0o644)
    (shared_dir / "data").mkdir()
    env = {"MUSTER_DATA_DIR": str(shared_dir / "data")}
    with serve_as(61234, privileges, [binary, "serve", "--config", config], env) as (m, _):
        wait_until(lambda: m.answers("/readyz"), timeout=10, message="/readyz")
        assert m.dns_query("internal", "SOA").rcode() == dns.rcode.NOERROR


def test_resolved_drop_in_routes_the_systemd_example_namespace():
    text = (DEPLOY / "systemd" / "resolved.conf.d" / "muster.conf").read_text()
    settings = dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))
    config = tomllib.loads((DEPLOY / "config" / "systemd.toml").read_text())
    assert config["dns"]["listen"] == [settings["DNS"] + ":53"]
    assert settings["Domains"].split() == ["~" + ns["name"] for ns in config["namespaces"]]


# --------------------------------------------------------------------------------------
# The image, built without Docker


def test_dockerfile_runs_the_scripts_the_build_steps_script_runs():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    steps = (DEPLOY / "docker-build-steps.sh").read_text()
    for script in ("deploy/image/build.sh", "deploy/image/install.sh"):
        assert script in dockerfile and script in steps, script
    assert re.search(r"(?m)^USER 10001:10001$", dockerfile)
    assert 'ENTRYPOINT ["muster-entrypoint"]' in dockerfile
    assert 'CMD ["muster-healthcheck", "/healthz"]' in dockerfile


def test_docker_build_steps_make_an_image_that_serves_as_its_user(shared_dir):
    # The binary scripts/test built, not a second cargo build (CI's time budget).
    p = run(DEPLOY / "docker-build-steps.sh", "--prebuilt", muster_bin(), shared_dir, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    rootfs = shared_dir / "rootfs"
    bin_dir = rootfs / "usr" / "local" / "bin"
    assert "cap_net_bind_service=ep" in run(tool("getcap"), bin_dir / "muster").stdout
    assert (rootfs / "var" / "lib" / "muster").stat().st_uid == IMAGE_UID

    (shared_dir / "data").mkdir()
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        # As the ECS task definitions pass it (deploy/ecs-*.yaml).
        "MUSTER_CONFIG_TOML": (rootfs / "etc" / "muster" / "muster.toml").read_text(),
        "MUSTER_DATA_DIR": str(shared_dir / "data"),
    }
    # As Docker starts it: the image's user, no capabilities but the binary's own.
    with serve_as(IMAGE_UID, ["--inh-caps=-all"], [bin_dir / "muster-entrypoint"], env) as (m, env):
        for path in ("/healthz", "/readyz"):
            check = run(bin_dir / "muster-healthcheck", path, env=env)
            assert check.returncode == 0, check.stdout + check.stderr
        m.put_instance("internal", "web", "i-1", {"ipv4": "10.0.0.5"})
        assert answer_rdata(m.dns_query("web.internal", "A"), "A") == ["10.0.0.5"]
    # Nothing answers now: the health check says so.
    check = run(bin_dir / "muster-healthcheck", "/healthz", env=env)
    assert check.returncode == 1, check.stdout + check.stderr
