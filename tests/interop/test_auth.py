"""Authentication, authorization, write limits and the audit log (issue 14 B), with
clients we did not write: the AWS CLI and boto3 sign Cloud Map requests with SigV4,
requests and curl send REST bearer tokens. Tokens come from `muster token new`.

One muster (module-scoped) holds three access keys and four tokens:

- AKIDADMIN (inline secret): servicediscovery:* everywhere;
- AKIDDISCOVER (secret in a file): only DiscoverInstances;
- AKIDDEV (secret in an environment variable): servicediscovery:* on dev.*;
- tokens admin (admin), reader (read), deployer (read:prod.example,
  register:prod.example/web-*), prober (health:prod.example/*).
"""

import datetime
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import boto3
import botocore.config
import botocore.exceptions
import pytest
import requests

from harness import Muster, metric_value, muster_bin, namespace_toml, new_token, toml_value, wait_until

AWS = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "aws"
PROD, DEV = "prod.example", "dev.example"
DEV_SECRET_ENV = "MUSTER_TEST_DEV_SECRET"
KEYS = {"AKIDADMIN": "admin/secret+1", "AKIDDISCOVER": "discover-secret-2", "AKIDDEV": "dev-secret-3"}
TOKEN_SCOPES = {
    "admin": ["admin"],
    "reader": ["read"],
    "deployer": [f"read:{PROD}", f"register:{PROD}/web-*"],
    "prober": [f"health:{PROD}/*"],
}
NAMESPACES = namespace_toml("internal") + namespace_toml(PROD) + namespace_toml(DEV)


def keys_toml(secret_file):
    return f"""
[[auth.access_keys]]
id = "AKIDADMIN"
secret = {toml_value(KEYS["AKIDADMIN"])}
[[auth.access_keys.allow]]
actions = ["servicediscovery:*"]

[[auth.access_keys]]
id = "AKIDDISCOVER"
secret_file = {toml_value(str(secret_file))}
[[auth.access_keys.allow]]
actions = ["servicediscovery:DiscoverInstances"]

[[auth.access_keys]]
id = "AKIDDEV"
secret_env = "{DEV_SECRET_ENV}"
[[auth.access_keys.allow]]
actions = ["servicediscovery:*"]
namespaces = ["dev.*"]
"""


@pytest.fixture(scope="module")
def setup(module_muster, tmp_path_factory):
    """The shared muster, its tokens, and a service web in each namespace (by AKIDADMIN)."""
    secret_file = tmp_path_factory.mktemp("secrets") / "discover"
    secret_file.write_text(KEYS["AKIDDISCOVER"] + "\n")
    os.environ[DEV_SECRET_ENV] = KEYS["AKIDDEV"]
    tokens, tables = {}, []
    for name, scopes in TOKEN_SCOPES.items():
        tokens[name], table = new_token(name, scopes)
        tables.append(table)
    m = module_muster(NAMESPACES + keys_toml(secret_file) + "\n".join(tables))
    admin = sd(m, "AKIDADMIN")
    services = {}
    for ns in admin.list_namespaces()["Namespaces"]:
        services[ns["Name"]] = admin.create_service(
            Name="web", NamespaceId=ns["Id"], DnsConfig={"DnsRecords": [{"Type": "A", "TTL": 5}]}
        )["Service"]["Id"]
    for ns in (PROD, DEV):
        admin.register_instance(ServiceId=services[ns], InstanceId="i-1", Attributes={"AWS_INSTANCE_IPV4": "10.1.0.1"})
    yield m, tokens, services
    del os.environ[DEV_SECRET_ENV]


# --------------------------------------------------------------------------------------
# Clients


def sd(m, key, secret=None, retries=1, clock_skew=None):
    """boto3 servicediscovery client signing with `key` (its configured secret by default)."""
    client = boto3.session.Session().client(
        "servicediscovery",
        endpoint_url=f"http://127.0.0.1:{m.http_port}",
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=KEYS.get(key, "whatever") if secret is None else secret,
        config=botocore.config.Config(inject_host_prefix=False, retries={"total_max_attempts": retries, "mode": "standard"}),
    )
    return client


def error_of(call):
    """The (code, HTTP status, message) of a ClientError raised by `call()`."""
    with pytest.raises(botocore.exceptions.ClientError) as raised:
        call()
    response = raised.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Message"]


# The AWS CLI with its clock moved by SKEW_MINUTES (the real CLI, in this process's Python,
# with botocore's clock function wrapped before the CLI runs).
CLI_WITH_SKEW = """
import datetime, os, sys
import botocore.auth
real = botocore.auth.get_current_datetime
skew = datetime.timedelta(minutes=int(os.environ.get("SKEW_MINUTES", "0")))
botocore.auth.get_current_datetime = lambda *a, **k: real(*a, **k) + skew
from awscli.clidriver import main
sys.exit(main())
"""


def cli(m, key, *args, secret=None, skew_minutes=0):
    """Runs `aws servicediscovery ARGS` signing with `key`; returns (exit status, stdout, stderr)."""
    assert AWS.exists() or shutil.which("aws"), "the AWS CLI is not installed (scripts/install-test-tools.sh)"
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": key,
        "AWS_SECRET_ACCESS_KEY": KEYS.get(key, "whatever") if secret is None else secret,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_DISABLE_HOST_PREFIX_INJECTION": "true",
        "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
        "AWS_MAX_ATTEMPTS": "1",
        "SKEW_MINUTES": str(skew_minutes),
    }
    env.pop("AWS_SESSION_TOKEN", None)
    cmd = [sys.executable, "-c", CLI_WITH_SKEW, "servicediscovery", *args,
           "--endpoint-url", f"http://127.0.0.1:{m.http_port}", "--output", "json"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    return done.returncode, done.stdout, done.stderr


# --------------------------------------------------------------------------------------
# Cloud Map: SigV4 and permissions


def test_aws_cli_good_wrong_unknown_and_skewed_credentials(setup):
    m, _, services = setup
    rc, out, err = cli(m, "AKIDADMIN", "list-namespaces")
    assert rc == 0, err
    assert sorted(n["Name"] for n in json.loads(out)["Namespaces"]) == sorted(["internal", PROD, DEV])

    rc, _, err = cli(m, "AKIDADMIN", "list-namespaces", secret="not-the-secret")
    assert rc != 0 and "(InvalidSignatureException)" in err, err
    assert "does not match the signature you provided" in err

    rc, _, err = cli(m, "AKIDNOBODY", "list-namespaces")
    assert rc != 0 and "(UnrecognizedClientException)" in err, err
    assert "The security token included in the request is invalid." in err

    rc, _, err = cli(m, "AKIDADMIN", "list-namespaces", skew_minutes=-10)
    assert rc != 0 and "(InvalidSignatureException)" in err, err
    assert re.search(r"Signature expired: \d{8}T\d{6}Z is now earlier than \d{8}T\d{6}Z \(\d{8}T\d{6}Z - 5 min\.\)", err), err
    rc, _, err = cli(m, "AKIDADMIN", "list-namespaces", skew_minutes=10)
    assert rc != 0 and "Signature not yet current" in err, err
    rc, _, err = cli(m, "AKIDADMIN", "list-namespaces", skew_minutes=-4)
    assert rc == 0, f"4 minutes of skew is within AWS's 5: {err}"


def test_aws_cli_permissions_by_action_and_namespace(setup):
    m, _, services = setup
    discover = ["discover-instances", "--namespace-name", PROD, "--service-name", "web"]
    rc, out, err = cli(m, "AKIDDISCOVER", *discover)
    assert rc == 0, err
    assert [i["InstanceId"] for i in json.loads(out)["Instances"]] == ["i-1"]
    register = ["register-instance", "--service-id", services[PROD], "--instance-id", "i-cli",
                "--attributes", "AWS_INSTANCE_IPV4=10.1.0.9"]
    rc, _, err = cli(m, "AKIDDISCOVER", *register)
    assert rc != 0 and "(AccessDeniedException)" in err, err
    assert "servicediscovery:RegisterInstance" in err
    # AKIDDEV may do anything, but only in dev.*.
    rc, _, err = cli(m, "AKIDDEV", *register)
    assert rc != 0 and "(AccessDeniedException)" in err, err
    rc, _, err = cli(m, "AKIDDEV", "register-instance", "--service-id", services[DEV], "--instance-id", "i-cli",
                     "--attributes", "AWS_INSTANCE_IPV4=10.2.0.9")
    assert rc == 0, err
    assert m.dns_query(f"i-cli.web.{DEV}", "A").answer, "the allowed write is in DNS"
    assert not m.dns_query(f"i-cli.web.{PROD}", "A").answer, "the refused one is not"


def test_boto3_errors_by_name_with_aws_statuses(setup):
    m, _, services = setup
    assert sd(m, "AKIDADMIN").get_service(Id=services[PROD])["Service"]["Name"] == "web"
    code, status, message = error_of(lambda: sd(m, "AKIDADMIN", secret="wrong").get_service(Id=services[PROD]))
    assert (code, status) == ("InvalidSignatureException", 400), message
    code, status, message = error_of(lambda: sd(m, "AKIDNOBODY").get_service(Id=services[PROD]))
    assert (code, status, message) == ("UnrecognizedClientException", 400, "The security token included in the request is invalid.")
    code, status, _ = error_of(lambda: sd(m, "AKIDDISCOVER").get_service(Id=services[PROD]))
    assert (code, status) == ("AccessDeniedException", 400)
    code, status, _ = error_of(lambda: sd(m, "AKIDDEV").deregister_instance(ServiceId=services[PROD], InstanceId="i-1"))
    assert (code, status) == ("AccessDeniedException", 400)
    code, _, _ = error_of(lambda: sd(m, "AKIDDISCOVER").create_private_dns_namespace(Name="new.example", Vpc="vpc-1"))
    assert code == "AccessDeniedException"
    # Unsigned: no Authorization header at all.
    unsigned = requests.post(
        f"http://127.0.0.1:{m.http_port}/",
        headers={"X-Amz-Target": "Route53AutoNaming_v20170314.ListNamespaces", "Content-Type": "application/x-amz-json-1.1"},
        data="{}",
        timeout=5,
    )
    assert unsigned.status_code == 400 and unsigned.json()["__type"] == "MissingAuthenticationTokenException"


def test_boto3_with_its_clock_ten_minutes_off(setup, monkeypatch):
    m, _, services = setup
    import botocore.auth

    real = botocore.auth.get_current_datetime
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *a, **k: real(*a, **k) - datetime.timedelta(minutes=10))
    code, status, message = error_of(lambda: sd(m, "AKIDADMIN").get_service(Id=services[PROD]))
    assert (code, status) == ("InvalidSignatureException", 400)
    assert message.startswith("Signature expired: "), message


def test_lists_show_only_what_the_key_may_list(setup):
    m, _, services = setup
    dev = sd(m, "AKIDDEV")
    assert [n["Name"] for n in dev.list_namespaces()["Namespaces"]] == [DEV]
    assert [s["Id"] for s in dev.list_services()["Services"]] == [services[DEV]]
    admin_ops = sd(m, "AKIDADMIN").list_operations()["Operations"]
    dev_ops = dev.list_operations()["Operations"]
    assert dev_ops and len(dev_ops) < len(admin_ops)
    for op in dev_ops:
        dev.get_operation(OperationId=op["Id"])
    prod_op = next(o for o in admin_ops if o["Id"] not in {d["Id"] for d in dev_ops})
    code, _, _ = error_of(lambda: dev.get_operation(OperationId=prod_op["Id"]))
    assert code == "AccessDeniedException"
    code, _, _ = error_of(lambda: sd(m, "AKIDDISCOVER").list_namespaces())
    assert code == "AccessDeniedException", "no ListNamespaces anywhere"


# --------------------------------------------------------------------------------------
# REST: bearer tokens


def instance(ns, svc, iid):
    return f"/v1/namespaces/{ns}/services/{svc}/instances/{iid}"


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_rest_tokens_none_unknown_wrong_scope_right_scope(setup):
    m, tokens, _ = setup
    body = {"ipv4": "10.1.0.20", "port": 80}
    none = m.put(instance(PROD, "web-a", "i-1"), json=body)
    assert none.status_code == 401 and none.headers["WWW-Authenticate"].startswith("Bearer")
    assert set(none.json()) <= {"error", "field"} and none.json()["error"]
    unknown = m.put(instance(PROD, "web-a", "i-1"), json=body, headers=bearer("mst_not-a-token"))
    assert unknown.status_code == 401 and 'error="invalid_token"' in unknown.headers["WWW-Authenticate"]
    wrong_scope = m.put(instance(PROD, "web-a", "i-1"), json=body, headers=bearer(tokens["reader"]))
    assert wrong_scope.status_code == 403 and "error" in wrong_scope.json()
    right = m.put(instance(PROD, "web-a", "i-1"), json=body, headers=bearer(tokens["deployer"]))
    assert right.status_code == 200, right.text
    assert m.dns_query(f"web-a.{PROD}", "A").answer
    # Health is its own scope.
    health = instance(PROD, "web-a", "i-1") + "/health"
    assert m.put(health, json={"healthy": False}, headers=bearer(tokens["deployer"])).status_code == 403
    assert m.put(health, json={"healthy": False}, headers=bearer(tokens["prober"])).status_code == 200
    assert m.delete(instance(PROD, "web-a", "i-1"), headers=bearer(tokens["admin"])).status_code == 200


def test_rest_namespace_and_service_globs(setup):
    m, tokens, _ = setup
    deployer = bearer(tokens["deployer"])
    body = {"ipv4": "10.1.0.30"}
    assert m.put(instance(PROD, "web-b", "i-1"), json=body, headers=deployer).status_code == 200
    assert m.put(instance(PROD, "api", "i-1"), json=body, headers=deployer).status_code == 403, "service glob"
    assert m.put(instance(DEV, "web-b", "i-1"), json=body, headers=deployer).status_code == 403, "namespace glob"
    assert m.put(instance(PROD.upper(), "WEB-B", "i-2"), json=body, headers=deployer).status_code == 200, "case"
    listed = m.get("/v1/namespaces", headers=deployer).json()["namespaces"]
    assert [n["name"] for n in listed] == [PROD], "lists only what the token may read"
    assert m.get(f"/v1/namespaces/{DEV}/services", headers=deployer).status_code == 403
    assert m.get(f"/v1/namespaces/{PROD}/services/web-b", headers=deployer).status_code == 200
    everything = m.get("/v1/namespaces", headers=bearer(tokens["reader"])).json()["namespaces"]
    assert sorted(n["name"] for n in everything) == sorted(["internal", PROD, DEV])
    assert m.get("/v1/namespaces", headers=bearer(tokens["prober"])).status_code == 403, "no read scope"
    for iid in ("i-1", "i-2"):
        assert m.delete(instance(PROD, "web-b", iid), headers=deployer).status_code == 200


def test_rest_with_curl(setup):
    m, tokens, _ = setup
    url = f"http://127.0.0.1:{m.http_port}" + instance(PROD, "web-c", "i-1")

    def curl(*args):
        done = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", *args], capture_output=True, text=True, timeout=10)
        return done.stdout

    data = ["-X", "PUT", "-H", "Content-Type: application/json", "-d", '{"ipv4": "10.1.0.40"}', url]
    assert curl(*data) == "401"
    assert curl("-H", "Authorization: Bearer nope", *data) == "401"
    assert curl("-H", f"Authorization: Bearer {tokens['prober']}", *data) == "403"
    assert curl("-H", f"Authorization: Bearer {tokens['deployer']}", *data) == "200"
    assert curl("-H", f"Authorization: bearer {tokens['admin']}", "-X", "DELETE", url) == "200"


def test_metrics_need_read_and_probes_stay_open(setup):
    m, tokens, _ = setup
    assert m.get("/healthz").status_code == 200
    assert m.get("/readyz").status_code == 200
    assert m.get("/metrics").status_code == 401
    assert m.get("/metrics", headers=bearer(tokens["deployer"])).status_code == 403, "read on one namespace is not enough"
    metrics = m.get("/metrics", headers=bearer(tokens["reader"]))
    assert metrics.status_code == 200
    assert metric_value(metrics.text, "muster_auth_denied_total") is not None, metrics.text


def test_audit_lines_and_no_secrets_in_the_log(setup):
    m, tokens, services = setup
    m.put(instance(PROD, "web-d", "i-1"), json={"ipv4": "10.1.0.50"}, headers=bearer(tokens["deployer"]))
    m.put(instance(DEV, "web-d", "i-1"), json={"ipv4": "10.1.0.50"}, headers=bearer(tokens["deployer"]))
    m.delete(instance(PROD, "web-d", "i-1"))
    sd(m, "AKIDADMIN").register_instance(ServiceId=services[PROD], InstanceId="i-audit", Attributes={"AWS_INSTANCE_IPV4": "10.1.0.51"})
    error_of(lambda: sd(m, "AKIDDISCOVER").deregister_instance(ServiceId=services[PROD], InstanceId="i-audit"))
    error_of(lambda: sd(m, "AKIDADMIN", secret="wrong").deregister_instance(ServiceId=services[PROD], InstanceId="i-audit"))
    sd(m, "AKIDADMIN").discover_instances(NamespaceName=PROD, ServiceName="web")  # a read: not audited

    def lines():
        return audit_lines(m)

    want = [
        {"api": "rest", "principal": "token:deployer", "operation": "register", "resource": f"{PROD}/web-d/i-1", "result": "ok", "status": "200"},
        {"api": "rest", "principal": "token:deployer", "operation": "register", "resource": f"{DEV}/web-d/i-1", "result": "refused", "status": "403", "error": "forbidden"},
        {"api": "rest", "principal": "anonymous", "operation": "deregister", "resource": f"{PROD}/web-d/i-1", "result": "refused", "status": "401", "error": "unauthenticated"},
        {"api": "cloudmap", "principal": "key:AKIDADMIN", "operation": "RegisterInstance", "resource": f"{PROD}/web/i-audit", "result": "ok", "status": "200"},
        {"api": "cloudmap", "principal": "key:AKIDDISCOVER", "operation": "DeregisterInstance", "resource": f"{PROD}/web/i-audit", "result": "refused", "status": "400", "error": "AccessDeniedException"},
        {"api": "cloudmap", "principal": "anonymous", "operation": "DeregisterInstance", "result": "refused", "status": "400", "error": "InvalidSignatureException"},
    ]

    def found():
        have = lines()
        return all(any(w.items() <= line.items() for line in have) for w in want)

    wait_until(found, message=f"audit lines {want}")
    for line in lines():
        assert re.fullmatch(r"127\.0\.0\.1:\d+", line["source"]), line
        assert line["operation"] not in ("DiscoverInstances", "ListNamespaces"), "reads are not audited"
    log = m.log_path.read_text()
    for secret in [*KEYS.values(), *tokens.values()]:
        assert secret not in log, "a secret or token reached the log"


AUDIT_FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def audit_lines(m):
    """The audit lines of m's log, as dicts of their fields (quotes removed)."""
    out = []
    for line in m.log_path.read_text().splitlines():
        if "muster::audit" in line:
            out.append({k: v[1:-1] if v.startswith('"') else v for k, v in AUDIT_FIELD.findall(line)})
    return out


# --------------------------------------------------------------------------------------
# Rate limits, reloads, start-up


def test_write_rate_limit_429_after_the_burst(muster):
    token, table = new_token("fast", ["admin"])
    m = muster(NAMESPACES + "[auth]\nwrite_rate = 1\nwrite_burst = 5\n" + table
               + '[[auth.access_keys]]\nid = "AKIDADMIN"\nsecret = "admin/secret+1"\n'
               + '[[auth.access_keys.allow]]\nactions = ["servicediscovery:*"]\n')
    def put(i):
        return m.put(instance(PROD, "web", f"i-{i}"), json={"ipv4": "10.3.0.1"}, headers=bearer(token))

    assert [put(i).status_code for i in range(5)] == [200] * 5, "the burst"
    throttled = next((r for r in (put(i) for i in range(5, 20)) if r.status_code != 200), None)
    assert throttled is not None and throttled.status_code == 429, "429 after the burst"
    assert int(throttled.headers["Retry-After"]) >= 1 and "error" in throttled.json()
    assert m.get(f"/v1/namespaces/{PROD}/services/web", headers=bearer(token)).status_code == 200, "reads are not limited"
    # Cloud Map: the same principal idea per access key, ThrottlingException (429).
    admin = sd(m, "AKIDADMIN")
    ns = next(n["Id"] for n in admin.list_namespaces()["Namespaces"] if n["Name"] == DEV)
    service = admin.create_service(Name="api", NamespaceId=ns, DnsConfig={"DnsRecords": [{"Type": "A", "TTL": 5}]})["Service"]["Id"]
    # Until the first refusal: on a loaded machine a call may take long enough that the
    # bucket refills a token or two meanwhile, so no fixed count is sure to empty it.
    codes = []
    for i in range(40):
        try:
            admin.register_instance(ServiceId=service, InstanceId=f"i-{i}", Attributes={"AWS_INSTANCE_IPV4": "10.4.0.1"})
            codes.append("ok")
        except botocore.exceptions.ClientError as e:
            codes.append((e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]))
            break
    assert codes[-1] == ("ThrottlingException", 429), codes
    # boto3 retries a ThrottlingException by itself, with backoff, and then succeeds.
    retrying = sd(m, "AKIDADMIN", retries=6)
    answer = retrying.register_instance(ServiceId=service, InstanceId="i-retried", Attributes={"AWS_INSTANCE_IPV4": "10.4.0.2"})
    assert answer["ResponseMetadata"]["RetryAttempts"] >= 1
    # One summary line per principal per interval, with a count: not a line per refusal.
    throttled_lines = [line for line in audit_lines(m) if line.get("result") == "throttled"]
    assert throttled_lines and all(int(line["count"]) >= 1 for line in throttled_lines)
    assert len(throttled_lines) <= 2 * 2, throttled_lines


def test_failed_authentication_costs_its_source_a_write_on_every_route(muster):
    # Wrong credentials on a read, a heartbeat, a batch or a Cloud Map read each take a
    # token from the source's bucket before they are refused: once it is empty, 429, so
    # no client tries tokens or keys faster than the write rate. The real token's own
    # bucket is untouched.
    token, table = new_token("ops", ["admin"])
    config = (NAMESPACES + "[auth]\nwrite_rate = 1\nwrite_burst = 3\n" + table
              + '[[auth.access_keys]]\nid = "AKIDADMIN"\nsecret = "admin/secret+1"\n'
              + '[[auth.access_keys.allow]]\nactions = ["servicediscovery:*"]\n')
    wrong = {"Authorization": "Bearer not-the-token"}
    web = f"/v1/namespaces/{PROD}/services/web"

    def rest(m, call):
        return call(m).status_code

    clients = {}

    def cloudmap(m):
        client = clients.setdefault(m.http_port, sd(m, "AKIDADMIN", secret="not-the-secret"))
        try:
            client.list_namespaces()
        except botocore.exceptions.ClientError as e:
            return e.response["ResponseMetadata"]["HTTPStatusCode"]
        return 200

    routes = {
        "read": lambda m: rest(m, lambda m: m.get(web, headers=wrong)),
        "heartbeat": lambda m: rest(m, lambda m: m.put(f"{web}/instances/i-1/heartbeat", headers=wrong)),
        "batch": lambda m: rest(m, lambda m: m.http.post(
            m.url(f"/v1/namespaces/{PROD}/batch"), headers=wrong, timeout=5,
            json={"changes": [{"op": "deregister", "service": "web", "id": "i-1"}]})),
        "cloudmap": cloudmap,
    }
    for route, call in routes.items():
        m = muster(config)
        statuses = []
        while len(statuses) < 40 and 429 not in statuses:
            statuses.append(call(m))
        refused = 400 if route == "cloudmap" else 401  # Cloud Map's InvalidSignatureException
        assert statuses[:3] == [refused] * 3 and statuses[-1] == 429, (route, statuses)
        assert set(statuses[:-1]) == {refused}, (route, statuses)
        assert m.get(f"/v1/namespaces/{PROD}/services", headers=bearer(token)).status_code == 200, route
        m.stop()


def test_anonymous_writers_are_limited_per_source(muster):
    m = muster(NAMESPACES + "[auth]\nwrite_rate = 1\nwrite_burst = 3\n")
    statuses = [m.put(instance(PROD, "web", f"i-{i}"), json={"ipv4": "10.5.0.1"}).status_code for i in range(5)]
    assert statuses[:3] == [200] * 3 and statuses[3:] == [429, 429], statuses


def test_sighup_adds_a_token_and_removes_one(muster):
    old, old_table = new_token("old", ["admin"])
    new, new_table = new_token("new", ["register"])
    m = muster(NAMESPACES + old_table)
    path = instance(PROD, "web", "i-1")
    assert m.put(path, json={"ipv4": "10.6.0.1"}, headers=bearer(new)).status_code == 401
    m.extra_toml = NAMESPACES + new_table
    m.write_config()
    m.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: m.put(path, json={"ipv4": "10.6.0.1"}, headers=bearer(new)).status_code == 200,
               timeout=5, message="the token added by SIGHUP works")
    assert m.put(path, json={"ipv4": "10.6.0.2"}, headers=bearer(old)).status_code == 401, "the removed one does not"
    assert m.proc.poll() is None


def test_refuses_to_start_exposed_without_credentials(tmp_path):
    config = tmp_path / "exposed.toml"
    config.write_text(f'data_dir = "{tmp_path}/data"\n[dns]\nlisten = ["127.0.0.1:0"]\n[http]\nlisten = "0.0.0.0:0"\n')
    started = subprocess.run([str(muster_bin()), "serve", "--config", str(config)], capture_output=True, text=True, timeout=20)
    assert started.returncode == 1, started.stderr
    assert "auth.allow_anonymous" in started.stderr and "0.0.0.0:0" in started.stderr
    checked = subprocess.run([str(muster_bin()), "check-config", str(config)], capture_output=True, text=True, timeout=20)
    assert checked.returncode == 1 and "auth.allow_anonymous" in checked.stderr


def test_allow_anonymous_opens_an_exposed_listener(tmp_path, monkeypatch):
    m = Muster(tmp_path / "m", NAMESPACES + "[auth]\nallow_anonymous = true\n")
    monkeypatch.setenv("MUSTER_HTTP_LISTEN", f"0.0.0.0:{m.http_port}")
    try:
        m.start()
        assert m.put(instance(PROD, "web", "i-1"), json={"ipv4": "10.7.0.1"}).status_code == 200
    finally:
        m.stop()


def test_the_quickstart_stays_open_on_loopback(muster):
    m = muster()
    assert m.put(instance("internal", "web", "i-1"), json={"ipv4": "10.8.0.1"}).status_code == 200
    assert m.get("/metrics").status_code == 200
    assert sd(m, "anything", secret="goes").list_namespaces()["Namespaces"]
    line = next(line for line in audit_lines(m) if line.get("operation") == "register")
    assert line["principal"] == "anonymous" and line["result"] == "ok"
