"""moto's server as the AWS endpoint of the ECS source's tests and benchmark.

:class:`MotoServer` runs ``moto_server`` on a free loopback port. :class:`Ecs` drives it with
boto3 the way a user's tooling and AWS itself would: it creates clusters, task definitions,
an SQS queue fed by an EventBridge rule for "ECS Task State Change", runs and stops tasks,
and publishes the task state events that moto does not emit, in the documented format
(see tests/fixtures/ecs/*.json).

moto quirks handled here (see shared/reference/testing-with-moto.md):
- tasks move one lifecycle step per DescribeTasks (RUNNING -> DEACTIVATING -> ... STOPPED)
  unless told otherwise: :meth:`MotoServer.reset` pins them at RUNNING;
- task ``version`` and ``healthStatus`` are null; StopTask jumps to STOPPED.

EC2 launch type in moto 5.2.5 (bridge and host networking):
- RegisterContainerInstance takes an ``instanceIdentityDocument`` naming an instance that
  moto's EC2 runs (RunInstances); DescribeContainerInstances answers its
  ``ec2InstanceId`` and, for an unknown one, a ``MISSING`` failure with a shortened ARN.
- RunTask/StartTask with launch type EC2 set ``containerInstanceArn``, but moto's tasks
  never report ``networkBindings`` (nor more than the first container), so dynamic host
  ports exist only in the events these tests publish; a fixed ``hostPort`` is reserved
  per container instance (and a mapping with ``hostPort: 0`` reserves "0": leave
  ``hostPort`` out for a dynamic port).
- moto's instances have a private IPv4 and no IPv6.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import boto3
import requests

from harness import terminate

REGION = "us-east-1"
ACCOUNT = "123456789012"
QUEUE = "muster-ecs-events"
RULE = "muster-ecs-task-state"
# The environment muster runs with: static credentials first in the standard chain, and
# no profile or instance metadata to probe.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_REGION": REGION,
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_CONFIG_FILE": "/nonexistent",
    "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def moto_server_bin():
    """moto_server from the virtualenv this Python runs in, else from PATH."""
    beside = Path(os.sys.executable).with_name("moto_server")
    found = str(beside) if beside.exists() else shutil.which("moto_server")
    if found is None:
        raise RuntimeError("moto_server not found: run scripts/install-test-tools.sh (tests/interop/requirements.txt)")
    return found


class MotoServer:
    """One moto_server process on 127.0.0.1."""

    def __init__(self, log_path: Path, port=None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.proc = None

    def start(self, timeout=30):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [moto_server_bin(), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                requests.get(self.url + "/moto-api/", timeout=1)
                self.reset()
                return self
            except requests.RequestException:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"moto_server did not answer within {timeout} s")

    def reset(self):
        """Forget every resource, and keep tasks RUNNING until they are stopped."""
        requests.post(self.url + "/moto-api/reset", timeout=10).raise_for_status()
        pin = {"model_name": "ecs::task", "transition": {"progression": "manual", "times": 10**9}}
        requests.post(self.url + "/moto-api/state-manager/set-transition", json=pin, timeout=10).raise_for_status()

    def stop(self):
        if self.proc is not None:
            terminate(self.proc)


class SlowProxy:
    """An HTTP proxy in front of moto that holds back every call of one AWS operation
    (``X-Amz-Target`` or query ``Action``) for ``delay`` seconds, so tests can show what
    a slow API does to the rest. Use as a context manager; ``url`` is the endpoint."""

    HOP = {"connection", "content-length", "content-encoding", "transfer-encoding", "keep-alive"}

    def __init__(self, upstream, operation, delay):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                target = self.headers.get("X-Amz-Target", "")
                if target.endswith("." + operation) or f"Action={operation}".encode() in body:
                    time.sleep(delay)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in proxy.HOP | {"host"}}
                r = requests.request(self.command, upstream + self.path, headers=headers, data=body, timeout=60)
                self.send_response(r.status_code)
                for key, value in r.headers.items():
                    if key.lower() not in proxy.HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_POST = do_PUT = do_DELETE = forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def iso(t=None):
    t = datetime.now(timezone.utc) if t is None else t
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Ecs:
    """boto3 clients against one moto server, and the steps tests take."""

    def __init__(self, url):
        kw = dict(endpoint_url=url, region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test")
        self.url = url
        self.ecs = boto3.client("ecs", **kw)
        self.ec2 = boto3.client("ec2", **kw)
        self.sqs = boto3.client("sqs", **kw)
        self.events = boto3.client("events", **kw)
        self.queue_url = None
        self._network = None

    # -- set-up ---------------------------------------------------------------------

    def create_queue(self):
        """The queue and the EventBridge rule that feeds it; returns the queue URL."""
        self.queue_url = self.sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        pattern = {"source": ["aws.ecs"], "detail-type": ["ECS Task State Change"]}
        self.events.put_rule(Name=RULE, EventPattern=json.dumps(pattern))
        arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:{QUEUE}"
        self.events.put_targets(Rule=RULE, Targets=[{"Id": "muster", "Arn": arn}])
        return self.queue_url

    def create_cluster(self, name):
        return self.ecs.create_cluster(clusterName=name)["cluster"]["clusterArn"]

    def register(self, family, port=8080, health_check=False, tags=None, container="app"):
        """A Fargate (awsvpc) task definition; every container has cpu and memory (moto
        sums them)."""
        definition = {
            "name": container,
            "image": "public.ecr.aws/nginx/nginx:latest",
            "cpu": 256,
            "memory": 512,
            "essential": True,
            "portMappings": [{"containerPort": port}],
        }
        if health_check:
            definition["healthCheck"] = {"command": ["CMD-SHELL", "true"], "interval": 5}
        extra = {"tags": [{"key": k, "value": v} for k, v in tags.items()]} if tags else {}
        answer = self.ecs.register_task_definition(
            family=family,
            networkMode="awsvpc",
            requiresCompatibilities=["FARGATE"],
            cpu="256",
            memory="512",
            containerDefinitions=[definition],
            **extra,
        )
        return answer["taskDefinition"]["taskDefinitionArn"]

    def register_ec2(self, family, mappings, mode="bridge"):
        """An EC2 task definition in ``mode`` (bridge or host) whose one container has
        ``mappings``: ``(container port, host port or None for a dynamic one, name or
        None)`` triples."""
        port_mappings = []
        for container_port, host_port, name in mappings:
            mapping = {"containerPort": container_port, "protocol": "tcp"}
            if host_port is not None:
                mapping["hostPort"] = host_port
            if name is not None:
                mapping["name"] = name
            port_mappings.append(mapping)
        definition = {
            "name": "app",
            "image": "public.ecr.aws/nginx/nginx:latest",
            "cpu": 64,
            "memory": 128,
            "essential": True,
            "portMappings": port_mappings,
        }
        answer = self.ecs.register_task_definition(
            family=family, networkMode=mode, requiresCompatibilities=["EC2"], containerDefinitions=[definition]
        )
        return answer["taskDefinition"]["taskDefinitionArn"]

    def container_instance(self, cluster):
        """Runs an EC2 instance and registers it in ``cluster``; returns
        ``(container instance ARN, EC2 instance id, its private IPv4)``."""
        image = self.ec2.describe_images()["Images"][0]["ImageId"]
        instance = self.ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="m5.large")
        instance = instance["Instances"][0]
        document = json.dumps({"instanceId": instance["InstanceId"], "region": REGION})
        registered = self.ecs.register_container_instance(cluster=cluster, instanceIdentityDocument=document)
        arn = registered["containerInstance"]["containerInstanceArn"]
        return arn, instance["InstanceId"], instance["PrivateIpAddress"]

    def start(self, cluster, family, service, container_instance):
        """Starts one task of ``family`` as ECS service ``service`` on
        ``container_instance`` (EC2 launch type); returns it as StartTask describes it."""
        answer = self.ecs.start_task(
            cluster=cluster, taskDefinition=family, group=f"service:{service}", containerInstances=[container_instance]
        )
        assert not answer["failures"], answer["failures"]
        return answer["tasks"][0]

    def network(self):
        if self._network is None:
            subnets = [s["SubnetId"] for s in self.ec2.describe_subnets()["Subnets"]]
            groups = [g["GroupId"] for g in self.ec2.describe_security_groups()["SecurityGroups"]]
            self._network = {"awsvpcConfiguration": {"subnets": subnets[:1], "securityGroups": groups[:1]}}
        return self._network

    def run(self, cluster, family, service, count=1):
        """Runs ``count`` tasks of ``family`` as ECS service ``service``; returns them
        (as RunTask describes them, ENI address included)."""
        tasks = []
        while count > 0:
            n = min(count, 10)  # RunTask's limit
            answer = self.ecs.run_task(
                cluster=cluster,
                taskDefinition=family,
                group=f"service:{service}",
                count=n,
                launchType="FARGATE",
                networkConfiguration=self.network(),
            )
            assert not answer["failures"], answer["failures"]
            tasks.extend(answer["tasks"])
            count -= n
        return tasks

    def stop(self, cluster, task):
        self.ecs.stop_task(cluster=cluster, task=task["taskArn"], reason="test")

    # -- events -----------------------------------------------------------------------

    @staticmethod
    def ipv4(task):
        for attachment in task.get("attachments", []):
            for detail in attachment.get("details", []):
                if detail["name"] == "privateIPv4Address":
                    return detail["value"]
        raise AssertionError(f"task without an ENI address: {task['taskArn']}")

    def detail(self, task, last="RUNNING", desired="RUNNING", version=1, health=None):
        """The ``detail`` of an "ECS Task State Change" event for ``task``, shaped like
        tests/fixtures/ecs/ecs-task-state-change.*.json."""
        address = self.ipv4(task)
        now = iso()
        detail = {
            "attachments": [
                {
                    "id": task["attachments"][0]["id"],
                    "type": "eni",
                    "status": "ATTACHED" if last != "STOPPED" else "DELETED",
                    "details": [{"name": "privateIPv4Address", "value": address}],
                }
            ],
            "availabilityZone": f"{REGION}a",
            "clusterArn": task["clusterArn"],
            "containers": [
                {
                    "containerArn": c.get("containerArn", ""),
                    "lastStatus": last,
                    "name": c["name"],
                    "taskArn": task["taskArn"],
                    "networkInterfaces": [{"privateIpv4Address": address}],
                }
                for c in task.get("containers", [])
            ],
            "createdAt": now,
            "launchType": "FARGATE",
            "desiredStatus": desired,
            "group": task["group"],
            "lastStatus": last,
            "taskArn": task["taskArn"],
            "taskDefinitionArn": task["taskDefinitionArn"],
            "updatedAt": now,
            "version": version,
        }
        if health is not None:
            detail["healthStatus"] = health
        if desired == "STOPPED":
            detail["stoppingAt"] = now
            detail["stopCode"] = "ServiceSchedulerInitiated"
        return detail

    def ec2_detail(self, task, bindings=(), last="RUNNING", desired="RUNNING", version=1):
        """The ``detail`` of an "ECS Task State Change" event for an EC2 launch type task:
        no ENI, its ``containerInstanceArn``, and the container's ``networkBindings``
        (``(container port, host port)`` pairs, reported for IPv4 and IPv6 as the agent
        does), shaped like tests/fixtures/ecs/ecs-task-state-change.bridge.json."""
        now = iso()
        network_bindings = [
            {"bindIP": ip, "containerPort": container_port, "hostPort": host_port, "protocol": "tcp"}
            for container_port, host_port in bindings
            for ip in ("0.0.0.0", "::")
        ]
        detail = {
            "attachments": [],
            "availabilityZone": f"{REGION}a",
            "clusterArn": task["clusterArn"],
            "containerInstanceArn": task["containerInstanceArn"],
            "containers": [
                {
                    "containerArn": c.get("containerArn", ""),
                    "lastStatus": last,
                    "name": c["name"],
                    "taskArn": task["taskArn"],
                    "networkBindings": network_bindings,
                    "networkInterfaces": [],
                }
                for c in task.get("containers", [])
            ],
            "createdAt": now,
            "launchType": "EC2",
            "desiredStatus": desired,
            "group": task["group"],
            "lastStatus": last,
            "taskArn": task["taskArn"],
            "taskDefinitionArn": task["taskDefinitionArn"],
            "updatedAt": now,
            "version": version,
        }
        if desired == "STOPPED":
            detail["stoppingAt"] = now
            detail["stopCode"] = "ServiceSchedulerInitiated"
        return detail

    def publish(self, *details):
        """PutEvents through EventBridge (source aws.ecs), which the rule sends to SQS."""
        for i in range(0, len(details), 10):
            entries = [
                {
                    "Source": "aws.ecs",
                    "DetailType": "ECS Task State Change",
                    "Resources": [d["taskArn"]],
                    "Detail": json.dumps(d),
                }
                for d in details[i : i + 10]
            ]
            answer = self.events.put_events(Entries=entries)
            assert answer["FailedEntryCount"] == 0, answer

    def queue_depth(self):
        """Messages still in the queue, visible or in flight."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def ecs_toml(clusters, endpoint, queue_url=None, interval="1h", extra=""):
    """A ``[[sources.ecs]]`` table for the namespace ``internal``."""
    lines = [
        "[[sources.ecs]]",
        "clusters = [" + ", ".join(f'"{c}"' for c in clusters) + "]",
        'namespace = "internal"',
        f'region = "{REGION}"',
        f'endpoint_url = "{endpoint}"',
        f'reconcile_interval = "{interval}"',
    ]
    if queue_url:
        lines.append(f'queue_url = "{queue_url}"')
    return "\n".join(lines) + "\n" + extra
