"""The Cloud Map API with clients we did not write: the AWS CLI and boto3.

The story of issue 3: create a namespace, a service with A+SRV records and TTL 7, register
three instances, discover them (every HealthStatus, query parameters), mark one
UNHEALTHY, deregister one, delete; every step is checked in the API's answer and in dig.
DiscoverInstances needs the `data-` host prefix off for an IP endpoint:
AWS_DISABLE_HOST_PREFIX_INJECTION=true (CLI) or Config(inject_host_prefix=False) (boto3).
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import requests

from harness import answer_rdata, parse_dig, rcode_text

AWS = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "aws"
ENV = {
    **os.environ,
    "AWS_ACCESS_KEY_ID": "test",
    "AWS_SECRET_ACCESS_KEY": "test",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_DISABLE_HOST_PREFIX_INJECTION": "true",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
}


def cli(m, *args, expect_error=None):
    """Runs `aws servicediscovery ARGS` against muster; returns parsed JSON output."""
    assert AWS.exists() or shutil.which("aws"), "the AWS CLI is not installed (scripts/install-test-tools.sh)"
    cmd = [str(AWS), "servicediscovery", *args, "--endpoint-url", f"http://127.0.0.1:{m.http_port}", "--output", "json"]
    done = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=60)
    if expect_error:
        assert done.returncode != 0, f"expected {expect_error}: {done.stdout}"
        assert expect_error in done.stderr, done.stderr
        return None
    assert done.returncode == 0, f"{' '.join(args)} failed: {done.stderr}"
    return json.loads(done.stdout) if done.stdout.strip() else {}


def client(m):
    return m.cloudmap()


def a_records(m, name):
    return sorted(answer_rdata(m.dns_query(name, "A"), "A"))


def discover_ids(m, health, **extra):
    args = ["discover-instances", "--namespace-name", "story.example", "--service-name", "web", "--health-status", health]
    for key, value in extra.items():
        args += [f"--{key}", value]
    out = cli(m, *args)
    return sorted(i["InstanceId"] for i in out["Instances"]), out["InstancesRevision"]


def test_story_with_the_aws_cli(muster):
    m = muster()
    op = cli(m, "create-private-dns-namespace", "--name", "story.example", "--vpc", "vpc-1",
             "--properties", "DnsProperties={SOA={TTL=3}}")["OperationId"]
    assert cli(m, "get-operation", "--operation-id", op)["Operation"]["Status"] == "SUCCESS"
    namespaces = cli(m, "list-namespaces")["Namespaces"]
    ns = next(n for n in namespaces if n["Name"] == "story.example")
    assert ns["Type"] == "DNS_PRIVATE" and ns["Id"].startswith("ns-")
    assert ns["Arn"] == f"arn:aws:servicediscovery:us-east-1:123456789012:namespace/{ns['Id']}"
    assert cli(m, "get-namespace", "--id", ns["Id"])["Namespace"]["Properties"]["DnsProperties"]["SOA"]["TTL"] == 3

    svc = cli(m, "create-service", "--name", "web", "--namespace-id", ns["Id"],
              "--dns-config", "RoutingPolicy=MULTIVALUE,DnsRecords=[{Type=A,TTL=7},{Type=SRV,TTL=7}]",
              "--health-check-custom-config", "FailureThreshold=1")["Service"]
    assert svc["Id"].startswith("srv-") and svc["DnsConfig"]["DnsRecords"] == [{"Type": "A", "TTL": 7}, {"Type": "SRV", "TTL": 7}]
    # A new service with no instances has no records, as in Route 53: NXDOMAIN with the
    # namespace's SOA TTL (3) for caching.
    empty = m.dns_query("web.story.example", "A")
    assert rcode_text(empty) == "NXDOMAIN" and not empty.answer and empty.authority[0].ttl == 3

    for i, stage in ((1, "prod"), (2, "prod"), (3, "canary")):
        cli(m, "register-instance", "--service-id", svc["Id"], "--instance-id", f"i-{i}",
            "--attributes", f"AWS_INSTANCE_IPV4=10.7.0.{i},AWS_INSTANCE_PORT=8080,stage={stage}")
    answer = m.dns_query("web.story.example", "A")
    assert sorted(answer_rdata(answer, "A")) == ["10.7.0.1", "10.7.0.2", "10.7.0.3"]
    assert {rrset.ttl for rrset in answer.answer} == {7}
    srv = parse_dig(m.dig("web.story.example", "SRV"))
    assert sorted(srv.rdata("ANSWER", "SRV")) == [f"1 1 8080 i-{i}.web.story.example." for i in (1, 2, 3)]
    assert sorted(srv.rdata("ADDITIONAL", "A")) == ["10.7.0.1", "10.7.0.2", "10.7.0.3"]
    assert a_records(m, "i-2.web.story.example") == ["10.7.0.2"]

    ids, revision = discover_ids(m, "ALL")
    assert ids == ["i-1", "i-2", "i-3"]
    assert discover_ids(m, "HEALTHY", **{"query-parameters": "stage=prod"})[0] == ["i-1", "i-2"]
    assert discover_ids(m, "ALL", **{"query-parameters": "stage=prod", "optional-parameters": "stage=none"})[0] == ["i-1", "i-2"]

    cli(m, "update-instance-custom-health-status", "--service-id", svc["Id"], "--instance-id", "i-2", "--status", "UNHEALTHY")
    assert a_records(m, "web.story.example") == ["10.7.0.1", "10.7.0.3"], "UNHEALTHY takes effect at once"
    assert rcode_text(m.dns_query("i-2.web.story.example", "A")) == "NXDOMAIN"
    assert discover_ids(m, "HEALTHY")[0] == ["i-1", "i-3"]
    assert discover_ids(m, "UNHEALTHY")[0] == ["i-2"]
    assert discover_ids(m, "HEALTHY_OR_ELSE_ALL")[0] == ["i-1", "i-3"]
    assert discover_ids(m, "ALL")[1] == revision, "health changes do not move InstancesRevision"
    health = cli(m, "get-instances-health-status", "--service-id", svc["Id"])["Status"]
    assert health == {"i-1": "HEALTHY", "i-2": "UNHEALTHY", "i-3": "HEALTHY"}

    cli(m, "deregister-instance", "--service-id", svc["Id"], "--instance-id", "i-3")
    assert a_records(m, "web.story.example") == ["10.7.0.1"]
    ids, new_revision = discover_ids(m, "ALL")
    assert ids == ["i-1", "i-2"] and new_revision != revision

    cli(m, "delete-service", "--id", svc["Id"], expect_error="ResourceInUse")
    cli(m, "delete-namespace", "--id", ns["Id"], expect_error="ResourceInUse")
    for i in (1, 2):
        cli(m, "deregister-instance", "--service-id", svc["Id"], "--instance-id", f"i-{i}")
    cli(m, "delete-service", "--id", svc["Id"])
    assert rcode_text(m.dns_query("web.story.example", "A")) == "NXDOMAIN"
    cli(m, "delete-namespace", "--id", ns["Id"])
    assert rcode_text(m.dns_query("web.story.example", "A")) == "REFUSED"
    cli(m, "get-namespace", "--id", ns["Id"], expect_error="NamespaceNotFound")


def test_story_with_boto3(muster):
    m = muster()
    sd = client(m)
    sd.create_private_dns_namespace(Name="story.example", Vpc="vpc-1")
    ns = next(n for n in sd.list_namespaces()["Namespaces"] if n["Name"] == "story.example")
    svc = sd.create_service(Name="web", NamespaceId=ns["Id"], HealthCheckCustomConfig={"FailureThreshold": 1},
                            DnsConfig={"DnsRecords": [{"Type": "A", "TTL": 7}, {"Type": "SRV", "TTL": 7}]})["Service"]
    for i in (1, 2, 3):
        sd.register_instance(ServiceId=svc["Id"], InstanceId=f"i-{i}",
                             Attributes={"AWS_INSTANCE_IPV4": f"10.8.0.{i}", "AWS_INSTANCE_PORT": "9000", "az": "a" if i < 3 else "b"})
    found = sd.discover_instances(NamespaceName="story.example", ServiceName="web", HealthStatus="ALL")
    assert sorted(i["InstanceId"] for i in found["Instances"]) == ["i-1", "i-2", "i-3"]
    assert {i["HealthStatus"] for i in found["Instances"]} == {"HEALTHY"}
    assert found["Instances"][0]["NamespaceName"] == "story.example"
    only_b = sd.discover_instances(NamespaceName="story.example", ServiceName="web", HealthStatus="ALL", QueryParameters={"az": "b"})
    assert [i["InstanceId"] for i in only_b["Instances"]] == ["i-3"]
    assert len(sd.discover_instances(NamespaceName="story.example", ServiceName="web", HealthStatus="ALL", MaxResults=2)["Instances"]) == 2
    revision = sd.discover_instances_revision(NamespaceName="story.example", ServiceName="web")["InstancesRevision"]
    assert revision == found["InstancesRevision"]

    for i in (1, 2, 3):
        sd.update_instance_custom_health_status(ServiceId=svc["Id"], InstanceId=f"i-{i}", Status="UNHEALTHY")
    assert a_records(m, "web.story.example") == ["10.8.0.1", "10.8.0.2", "10.8.0.3"], "all unhealthy: fail open"
    healthy_or_all = sd.discover_instances(NamespaceName="story.example", ServiceName="web", HealthStatus="HEALTHY_OR_ELSE_ALL")
    assert len(healthy_or_all["Instances"]) == 3
    assert sd.discover_instances(NamespaceName="story.example", ServiceName="web", HealthStatus="HEALTHY")["Instances"] == []

    got = sd.get_instance(ServiceId=svc["Id"], InstanceId="i-1")["Instance"]
    assert got["Attributes"]["AWS_INSTANCE_IPV4"] == "10.8.0.1"
    listed = sd.list_instances(ServiceId=svc["Id"], MaxResults=2)
    assert len(listed["Instances"]) == 2 and "NextToken" in listed
    rest = sd.list_instances(ServiceId=svc["Id"], NextToken=listed["NextToken"])
    assert len(rest["Instances"]) == 1

    sd.tag_resource(ResourceARN=svc["Arn"], Tags=[{"Key": "team", "Value": "core"}])
    assert sd.list_tags_for_resource(ResourceARN=svc["Arn"])["Tags"] == [{"Key": "team", "Value": "core"}]
    sd.untag_resource(ResourceARN=svc["Arn"], TagKeys=["team"])
    assert sd.list_tags_for_resource(ResourceARN=svc["Arn"])["Tags"] == []

    sd.update_service_attributes(ServiceId=svc["Id"], Attributes={"owner": "core"})
    assert sd.get_service_attributes(ServiceId=svc["Id"])["ServiceAttributes"]["Attributes"] == {"owner": "core"}
    sd.update_service(Id=svc["Id"], Service={"DnsConfig": {"DnsRecords": [{"Type": "A", "TTL": 30}, {"Type": "SRV", "TTL": 30}]}})
    assert {rrset.ttl for rrset in m.dns_query("web.story.example", "A").answer} == {30}
    with pytest.raises(sd.exceptions.InvalidInput):
        sd.update_service(Id=svc["Id"], Service={"DnsConfig": {"DnsRecords": [{"Type": "AAAA", "TTL": 30}]}})
    ops = sd.list_operations(Filters=[{"Name": "SERVICE_ID", "Values": [svc["Id"]], "Condition": "EQ"}])["Operations"]
    assert ops and all(o["Status"] == "SUCCESS" for o in ops)


def test_errors_are_cloud_map_errors(muster):
    m = muster()
    sd = client(m)
    with pytest.raises(sd.exceptions.ServiceNotFound) as e:
        sd.get_service(Id="srv-doesnotexist")
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    with pytest.raises(sd.exceptions.NamespaceNotFound):
        sd.create_service(Name="x", NamespaceId="ns-nope", DnsConfig={"DnsRecords": [{"Type": "A", "TTL": 1}]})
    ns = next(n for n in sd.list_namespaces()["Namespaces"] if n["Name"] == "internal")
    with pytest.raises(sd.exceptions.InvalidInput):
        sd.create_service(Name="bad name", NamespaceId=ns["Id"], DnsConfig={"DnsRecords": [{"Type": "A", "TTL": 1}]})
    with pytest.raises(sd.exceptions.InvalidInput):
        sd.create_service(Name="c", NamespaceId=ns["Id"], DnsConfig={"DnsRecords": [{"Type": "CNAME", "TTL": 1}]})
    svc = sd.create_service(Name="api", NamespaceId=ns["Id"], DnsConfig={"DnsRecords": [{"Type": "A", "TTL": 1}]})["Service"]
    with pytest.raises(sd.exceptions.ServiceAlreadyExists):
        sd.create_service(Name="api", NamespaceId=ns["Id"], DnsConfig={"DnsRecords": [{"Type": "A", "TTL": 1}]})
    with pytest.raises(sd.exceptions.InvalidInput):
        sd.register_instance(ServiceId=svc["Id"], InstanceId="i-1", Attributes={"AWS_INSTANCE_PORT": "80"})
    with pytest.raises(sd.exceptions.InvalidInput):
        sd.register_instance(ServiceId=svc["Id"], InstanceId="i-1", Attributes={"AWS_INSTANCE_IPV4": "10.0.0.300"})
    with pytest.raises(sd.exceptions.CustomHealthNotFound):
        sd.register_instance(ServiceId=svc["Id"], InstanceId="i-1", Attributes={"AWS_INSTANCE_IPV4": "10.0.0.1"})
        sd.update_instance_custom_health_status(ServiceId=svc["Id"], InstanceId="i-1", Status="UNHEALTHY")
    with pytest.raises(sd.exceptions.InstanceNotFound):
        sd.deregister_instance(ServiceId=svc["Id"], InstanceId="nope")
    with pytest.raises(sd.exceptions.InvalidInput):
        sd.delete_namespace(Id=ns["Id"])  # defined in the config file
    assert a_records(m, "api.internal") == ["10.0.0.1"], "the failed calls changed nothing"

    url = f"http://127.0.0.1:{m.http_port}/"
    for headers, body, kind, status in (
        ({"X-Amz-Target": "Route53AutoNaming_v20170314.Nope"}, "{}", "UnknownOperationException", 404),
        ({}, "{}", "UnknownOperationException", 404),
        ({"X-Amz-Target": "Route53AutoNaming_v20170314.GetService"}, "{not json", "SerializationException", 400),
        ({"X-Amz-Target": "Route53AutoNaming_v20170314.GetService"}, "[]", "SerializationException", 400),
        ({"X-Amz-Target": "Route53AutoNaming_v20170314.GetService"}, "{}", "InvalidInput", 400),
        ({"X-Amz-Target": "Route53AutoNaming_v20170314.GetService"}, '{"Id": 5}', "InvalidInput", 400),
    ):
        r = requests.post(url, data=body, headers={"Content-Type": "application/x-amz-json-1.1", **headers})
        assert r.status_code == status, (headers, body, r.text)
        assert r.json()["__type"] == kind and r.json()["Message"]
        assert r.headers["Content-Type"] == "application/x-amz-json-1.1"


def test_cloud_map_resources_survive_restart(muster):
    m = muster()
    sd = client(m)
    sd.create_http_namespace(Name="apps", Tags=[{"Key": "env", "Value": "prod"}])
    http_ns = next(n for n in sd.list_namespaces()["Namespaces"] if n["Name"] == "apps")
    api = sd.create_service(Name="api", NamespaceId=http_ns["Id"])["Service"]
    sd.register_instance(ServiceId=api["Id"], InstanceId="arn:task/1", Attributes={"AWS_INSTANCE_IPV4": "10.1.1.1", "v": "2"})
    sd.update_service_attributes(ServiceId=api["Id"], Attributes={"owner": "core"})
    before = sd.discover_instances(NamespaceName="apps", ServiceName="api", HealthStatus="ALL")
    m.restart()
    sd = client(m)
    assert sd.get_namespace(Id=http_ns["Id"])["Namespace"]["Type"] == "HTTP"
    assert sd.list_tags_for_resource(ResourceARN=http_ns["Arn"])["Tags"] == [{"Key": "env", "Value": "prod"}]
    assert sd.get_service(Id=api["Id"])["Service"]["Name"] == "api"
    assert sd.get_service_attributes(ServiceId=api["Id"])["ServiceAttributes"]["Attributes"] == {"owner": "core"}
    after = sd.discover_instances(NamespaceName="apps", ServiceName="api", HealthStatus="ALL")
    assert after["Instances"] == before["Instances"] and after["InstancesRevision"] == before["InstancesRevision"]
    # HTTP namespaces have no DNS.
    assert rcode_text(m.dns_query("api.apps", "A")) == "REFUSED"


def test_rest_and_cloud_map_share_one_model(muster):
    m = muster()
    sd = client(m)
    m.put_instance("internal", "web", "i-1", {"ipv4": "10.0.0.5", "port": 8080})
    found = sd.discover_instances(NamespaceName="internal", ServiceName="web", HealthStatus="ALL")["Instances"]
    assert found[0]["Attributes"] == {"AWS_INSTANCE_IPV4": "10.0.0.5", "AWS_INSTANCE_PORT": "8080"}
    svc = next(s for s in sd.list_services()["Services"] if s["Name"] == "web")
    sd.register_instance(ServiceId=svc["Id"], InstanceId="i-2", Attributes={"AWS_INSTANCE_IPV4": "10.0.0.6"})
    assert a_records(m, "web.internal") == ["10.0.0.5", "10.0.0.6"]
    ids = sorted(i["id"] for i in m.service("internal", "web")["instances"])
    assert ids == ["i-1", "i-2"]
