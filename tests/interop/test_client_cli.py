"""The client commands (issue 20, docs/cli.md): the release binary's `muster ls`, `show`,
`register`, `deregister`, `health`, `drain`, `undrain`, `watch`, `dig` and `completions` against a
running muster. What the writes changed is checked with clients we did not write
(dnspython for DNS, requests for the REST view); exit codes against the table of
docs/cli.md, including a server we did not write that answers 5xx or not as muster.

One muster (module-scoped) with a bearer token serves every test; each test uses its own
services so they do not depend on one another's order.
"""

import http.server
import json
import os
import queue
import socket
import subprocess
import threading
import time

import dns.edns
import dns.message
import dns.query
import pytest

from harness import answer_rdata, muster_bin, namespace_toml
from test_auth import new_token
from test_http_limits import make_certificate, with_http

NS = "internal"


@pytest.fixture(scope="module")
def server(module_muster, tmp_path_factory):
    token, table = new_token("cli", ["admin"])
    m = module_muster(namespace_toml(services=[{"match": "big*", "max_answers": 0}]) + table)
    m.token = token
    m.token_file = tmp_path_factory.mktemp("client") / "token"
    m.token_file.write_text(token + "\n")
    m.http.headers["Authorization"] = f"Bearer {token}"  # the harness's own requests
    return m


def client_env(**extra):
    """The environment without the user's muster settings or client config."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MUSTER_")}
    env.pop("XDG_CONFIG_HOME", None)
    env["HOME"] = "/nonexistent"
    env.update(extra)
    return env


def cli(m, *args, token=True, env=None, timeout=20):
    """Runs `muster ARGS --server ... [--token-file ...] --dns ...` against `m`."""
    argv = [str(muster_bin()), *args]
    if m is not None:
        argv += ["--server", f"127.0.0.1:{m.http_port}"]
        if token:
            argv += ["--token-file", str(m.token_file)]
        if args[0] == "dig":
            argv += ["--dns", f"127.0.0.1:{m.dns_port}"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          env=env or client_env())


def ok(p):
    assert p.returncode == 0, f"exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p.stdout


def a_records(m, name):
    return sorted(answer_rdata(m.dns_query(name, "A"), "A"))


def test_register_then_ls_and_show_as_tables_and_json(server):
    m = server
    ok(cli(m, "register", f"{NS}/shop/i-1", "--ip", "10.1.0.1", "--ip", "fd00::1", "--port", "8080",
           "--attr", "zone=a", "--named-port", "grpc=9090"))
    out = ok(cli(m, "register", f"{NS}/shop/task/ABC:1", "--ip", "10.1.0.2", "--port", "8081"))
    assert out.startswith(f"registered {NS}/shop/task/ABC:1 (revision "), out
    # DNS, asked by dnspython: both addresses; the SRV names the second by its label.
    assert a_records(m, f"shop.{NS}") == ["10.1.0.1", "10.1.0.2"]
    srv = answer_rdata(m.dns_query(f"_grpc._tcp.shop.{NS}", "SRV"), "SRV")
    assert srv == [f"1 1 9090 i-1.shop.{NS}."], srv

    lines = ok(cli(m, "ls")).splitlines()
    assert lines[0].split() == ["NAMESPACE", "SERVICES", "INSTANCES"]
    assert any(line.split()[0] == NS for line in lines[1:]), lines
    services = json.loads(ok(cli(m, "ls", NS, "-o", "json")))
    shop = next(s for s in services["services"] if s["name"] == "shop")
    assert (shop["instances"], shop["healthy"]) == (2, 2)
    table = ok(cli(m, "ls", f"{NS}/shop")).splitlines()
    assert table[0].split()[:3] == ["ID", "ADDRESS", "PORT"]
    assert table[1].split()[:4] == ["i-1", "10.1.0.1,fd00::1", "8080", "healthy"]
    assert table[2].split()[:4] == ["task/ABC:1", "10.1.0.2", "8081", "healthy"]

    shown = ok(cli(m, "show", f"{NS}/shop"))
    assert "max_answers=8" in shown and "when_all_unhealthy=serve_all" in shown, shown
    assert "task-abc-1-" in shown, "the DNS label of an id that is not one"
    instance = json.loads(ok(cli(m, "show", f"{NS}/shop/task/ABC:1", "-o", "json")))
    assert instance == m.service(NS, "shop")["instances"][1]
    one = ok(cli(m, "show", f"{NS}/shop/i-1"))
    assert any(line.split() == ["attributes", "zone=a"] for line in one.splitlines()), one


def test_health_drain_and_deregister_change_dns(server):
    m = server
    for i in (1, 2):
        ok(cli(m, "register", f"{NS}/pay/p-{i}", "--ip", f"10.2.0.{i}"))
    assert a_records(m, f"pay.{NS}") == ["10.2.0.1", "10.2.0.2"]
    ok(cli(m, "health", f"{NS}/pay/p-2", "down"))
    assert a_records(m, f"pay.{NS}") == ["10.2.0.1"]
    assert m.service(NS, "pay")["instances"][1]["reported_healthy"] is False
    ok(cli(m, "health", f"{NS}/pay/p-2", "up"))
    ok(cli(m, "drain", f"{NS}/pay/p-1"))
    assert a_records(m, f"pay.{NS}") == ["10.2.0.2"]
    answer = json.loads(ok(cli(m, "undrain", f"{NS}/pay/p-1", "-o", "json")))
    assert answer["draining"] is False and answer["revision"] > 0, answer
    assert a_records(m, f"pay.{NS}") == ["10.2.0.1", "10.2.0.2"]
    ok(cli(m, "deregister", f"{NS}/pay/p-2"))
    assert a_records(m, f"pay.{NS}") == ["10.2.0.1"]
    again = cli(m, "deregister", f"{NS}/pay/p-2")
    assert again.returncode == 5, again
    assert "404" in again.stderr and "does not exist" in again.stderr, again.stderr


def test_dig_explains_who_was_served_and_why(server):
    m = server
    for i, extra in enumerate([[], [], ["--attr", "weight=0"], [], []], 1):
        ok(cli(m, "register", f"{NS}/api/a-{i}", "--ip", f"10.3.0.{i}", "--port", "80", *extra))
    ok(cli(m, "drain", f"{NS}/api/a-4"))
    ok(cli(m, "health", f"{NS}/api/a-5", "down"))
    report = json.loads(ok(cli(m, "dig", f"api.{NS}", "-o", "json")))
    assert report["rcode"] == "NOERROR" and report["transport"] == "UDP", report
    # What muster's DNS said, as dnspython hears it.
    assert sorted(r.split()[-1] for r in report["answer"]) == a_records(m, f"api.{NS}")
    verdicts = {v["id"]: (v["served"], v["reason"]) for v in report["instances"]}
    assert verdicts["a-1"] == (True, "healthy") and verdicts["a-2"] == (True, "healthy")
    assert verdicts["a-3"][0] is False and "weight 0" in verdicts["a-3"][1]
    assert verdicts["a-4"] == (False, "draining")
    assert verdicts["a-5"][0] is False and "reported unhealthy" in verdicts["a-5"][1]

    table = ok(cli(m, "dig", f"api.{NS}", "SRV"))
    assert f";; api.{NS}. SRV: NOERROR, aa, 2 answer records, over UDP" in table, table
    rows = {line.split()[0]: line for line in table.splitlines() if line.startswith("a-")}
    assert "left out" in rows["a-4"] and "draining" in rows["a-4"], table
    assert "served" in rows["a-1"], table

    # Every instance unhealthy: serve_all fails open, and dig says so.
    for i in (1, 2, 3):
        ok(cli(m, "health", f"{NS}/api/a-{i}", "down"))
    report = json.loads(ok(cli(m, "dig", f"api.{NS}", "-o", "json")))
    verdicts = {v["id"]: (v["served"], v["reason"]) for v in report["instances"]}
    assert verdicts["a-1"][0] and "fails open" in verdicts["a-1"][1], verdicts
    assert verdicts["a-4"] == (False, "draining")
    # Outside every namespace: a note, exit 0 (an answer came: REFUSED).
    outside = json.loads(ok(cli(m, "dig", "example.com", "-o", "json")))
    assert outside["rcode"] == "REFUSED" and "outside every namespace" in outside["notes"][0]


def test_dig_names_the_zone_a_zone_aware_answer_came_from(muster):
    m = muster(namespace_toml(services=[{"match": "web", "locality": "prefer_zone"}])
               + '[[zones]]\nname = "zone-a"\ncidrs = ["127.0.0.0/8"]\n'
               + '[[zones]]\nname = "zone-b"\ncidrs = ["10.2.0.0/16"]\n')
    for iid, ip, zone in [("a-1", "10.1.0.1", "zone-a"), ("a-2", "10.1.0.2", "zone-a"),
                          ("b-1", "10.2.0.1", "zone-b")]:
        m.put_instance(NS, "web", iid, {"ipv4": ip, "attributes": {"AVAILABILITY_ZONE": zone}})
    # dnspython, from 127.0.0.1 (zone-a): only zone-a's instances.
    assert a_records(m, f"web.{NS}") == ["10.1.0.1", "10.1.0.2"]
    report = json.loads(ok(cli(m, "dig", f"web.{NS}", "-o", "json", token=False)))
    verdicts = {v["id"]: (v["served"], v["reason"]) for v in report["instances"]}
    assert verdicts["a-1"] == (True, "healthy") and verdicts["a-2"] == (True, "healthy"), verdicts
    assert verdicts["b-1"] == (
        False, "servable; in zone-b, and this client was answered from zone-a (locality = prefer_zone)")

    # --subnet: asked as a client in zone-b, through an EDNS Client Subnet option. dnspython,
    # with the same option, gets zone-b's instance, and muster echoes the zone's prefix.
    query = dns.message.make_query(f"web.{NS}", "A", use_edns=0,
                                   options=[dns.edns.ECSOption("10.2.7.0", 24)])
    response = dns.query.udp(query, "127.0.0.1", port=m.dns_port, timeout=2)
    assert sorted(answer_rdata(response, "A")) == ["10.2.0.1"]
    assert [o.scopelen for o in response.options if isinstance(o, dns.edns.ECSOption)] == [16]
    report = json.loads(ok(cli(m, "dig", f"web.{NS}", "--subnet", "10.2.7.0/24", "-o", "json",
                               token=False)))
    assert report["subnet"] == "10.2.7.0/24", report
    assert [r.split()[-1] for r in report["answer"]] == ["10.2.0.1"], report
    verdicts = {v["id"]: (v["served"], v["reason"]) for v in report["instances"]}
    assert verdicts["b-1"] == (True, "healthy"), verdicts
    assert verdicts["a-1"] == (
        False, "servable; in zone-a, and this client was answered from zone-b (locality = prefer_zone)")
    assert report["notes"][0] == (
        "asked as a client in 10.2.7.0/24 (EDNS Client Subnet); the answer holds for 10.2.0.0/16")
    # Host bits are cut to the prefix; the table says the same.
    table = ok(cli(m, "dig", f"web.{NS}", "--subnet", "10.2.7.9/24", token=False))
    assert ";; asked as a client in 10.2.7.0/24" in table, table
    assert cli(m, "dig", f"web.{NS}", "--subnet", "10.2.7.0/33", token=False).returncode == 2


def test_https_with_a_ca_file_from_flag_environment_or_config(muster, tmp_path):
    """muster's TLS listener with a self-signed certificate: trusted through --ca-file,
    MUSTER_CA_FILE or ca_file; without it the system's roots do not know it (exit 4)."""
    cert, key, _ = make_certificate("cli")
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    m = muster(start=False)
    with_http(m, f'tls_cert = "{tmp_path / "cert.pem"}"\ntls_key = "{tmp_path / "key.pem"}"\n')
    m.url = lambda path: f"https://127.0.0.1:{m.http_port}{path}"
    m.http.verify = str(tmp_path / "cert.pem")
    m.http.trust_env = False
    m.start()
    base = ["--server", f"https://127.0.0.1:{m.http_port}"]
    ca = str(tmp_path / "cert.pem")
    ok(run_client("register", f"{NS}/tls/t-1", "--ip", "10.7.0.1", *base, "--ca-file", ca))
    seen = m.get(f"/v1/namespaces/{NS}/services/tls")  # requests, over TLS
    assert seen.status_code == 200 and "10.7.0.1" in seen.text, seen.text
    listed = json.loads(ok(run_client("ls", f"{NS}/tls", "-o", "json", *base,
                                      env=client_env(MUSTER_CA_FILE=ca))))
    assert [i["id"] for i in listed["instances"]] == ["t-1"], listed
    (tmp_path / "client.toml").write_text(f'ca_file = "{ca}"\n')
    ok(run_client("show", f"{NS}/tls/t-1", *base, "--client-config", str(tmp_path / "client.toml")))
    untrusted = run_client("ls", *base)
    assert untrusted.returncode == 4 and "certificate" in untrusted.stderr.lower(), untrusted
    (tmp_path / "empty.pem").write_text("not a certificate\n")
    p = run_client("ls", *base, "--ca-file", str(tmp_path / "empty.pem"))
    assert p.returncode == 1 and "no PEM certificate" in p.stderr, p
    # Plain HTTP to the TLS port is not an answer either.
    assert run_client("ls", "--server", f"http://127.0.0.1:{m.http_port}").returncode == 4


def run_client(*args, env=None):
    return subprocess.run([str(muster_bin()), *args], capture_output=True, text=True, timeout=20,
                          env=env or client_env())


def test_dig_goes_over_tcp_when_the_answer_is_truncated(server):
    m = server
    for i in range(120):  # through requests: 120 runs of the client would be slow
        r = m.put(m.instance_path(NS, "bigsvc", f"b-{i}"), json={"ipv4": f"10.4.0.{i + 1}"})
        assert r.status_code == 200, r.text
    report = json.loads(ok(cli(m, "dig", f"bigsvc.{NS}", "-o", "json")))
    assert report["transport"].startswith("TCP"), report["transport"]
    assert len(report["answer"]) == 120
    assert all(v["served"] for v in report["instances"])


def test_max_answers_leaves_out_servable_instances(server):
    m = server
    for i in range(10):
        ok(cli(m, "register", f"{NS}/many/m-{i}", "--ip", f"10.5.0.{i + 1}"))
    report = json.loads(ok(cli(m, "dig", f"many.{NS}", "-o", "json")))
    served = [v for v in report["instances"] if v["served"]]
    cut = [v for v in report["instances"] if not v["served"]]
    assert len(served) == 8 and len(cut) == 2, report["instances"]
    assert all("max_answers: 8 of the 10" in v["reason"] for v in cut), cut


class Follower:
    """A `muster watch` process whose stdout and stderr lines arrive on queues."""

    def __init__(self, m, *args):
        argv = [str(muster_bin()), "watch", *args, "--server", f"127.0.0.1:{m.http_port}",
                "--token-file", str(m.token_file)]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=client_env())
        self.out, self.err = queue.Queue(), queue.Queue()
        for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=lambda s=stream, q=lines: [q.put(line) for line in s], daemon=True).start()

    def lines(self, until, timeout=5.0):
        """stdout lines up to the first for which ``until(line)`` holds."""
        got, deadline = [], time.monotonic() + timeout
        while not got or not until(got[-1]):
            try:
                got.append(self.out.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"no line after {got}; stderr: {list(self.err.queue)}")
        return got

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=5)


def test_watch_prints_a_line_per_change(server):
    m = server
    scripts = Follower(m, f"{NS}/feed", "-o", "json")
    people = Follower(m, NS)
    try:
        for follower in (scripts, people):
            line = follower.err.get(timeout=5)
            assert "watching" in line, f"the stream did not open: {line}"
        ok(cli(m, "register", f"{NS}/feed/f-1", "--ip", "10.7.0.1"))
        ok(cli(m, "register", f"{NS}/other/o-1", "--ip", "10.7.0.2"))
        ok(cli(m, "drain", f"{NS}/feed/f-1"))
        ok(cli(m, "health", f"{NS}/feed/f-1", "down"))
        ok(cli(m, "deregister", f"{NS}/feed/f-1"))
        events = [json.loads(line) for line in scripts.lines(lambda line: '"deregistered"' in line)]
        assert {e["service"] for e in events} == {"feed"}, "only the service asked for"
        kinds = [e["event"] for e in events if e["instance"] == "f-1"]
        assert kinds[0] == "registered" and kinds[-1] == "deregistered", kinds
        assert kinds.index("drained") < kinds.index("unhealthy"), kinds
        assert [e["index"] for e in events] == sorted(e["index"] for e in events)
        # The table for people: time, index, event, ns/svc/id, source, reason; every service.
        table = people.lines(lambda line: " deregistered " in line)
        row = next(line for line in table if " registered " in line and "/other/" in line)
        assert row.split()[2:5] == ["registered", f"{NS}/other/o-1", "api"], row
        assert any(" unhealthy " in line and "reported unhealthy" in line for line in table), table
    finally:
        scripts.stop()
        people.stop()


def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_server_says_where_it_looked():
    port = closed_port()
    p = subprocess.run([str(muster_bin()), "ls", "--server", f"127.0.0.1:{port}"],
                       capture_output=True, text=True, timeout=20, env=client_env())
    assert p.returncode == 4, p
    assert f"cannot reach muster at http://127.0.0.1:{port}" in p.stderr, p.stderr
    assert "MUSTER_ADDR" in p.stderr, p.stderr
    # The URL form, with a trailing slash: the same, and the cause is named.
    p = subprocess.run([str(muster_bin()), "ls", "--server", f"http://127.0.0.1:{port}/"],
                       capture_output=True, text=True, timeout=20, env=client_env())
    assert p.returncode == 4 and "refused" in p.stderr.lower(), p.stderr
    # DNS: nothing listens on the port.
    p = subprocess.run([str(muster_bin()), "dig", "web.internal", "--dns", f"127.0.0.1:{port}",
                        "--server", f"127.0.0.1:{port}"],
                       capture_output=True, text=True, timeout=20, env=client_env())
    assert p.returncode == 4 and f"no DNS answer from 127.0.0.1:{port}" in p.stderr, p.stderr


def test_exit_codes_for_usage_and_refusals(server):
    m = server
    for args in (["show", NS], ["register", f"{NS}/x", "--ip", "10.0.0.1"],
                 ["register", f"{NS}/x/y", "--ip", "10.0.0.1", "--attr", "novalue"],
                 ["register", f"{NS}/x/y", "--ip", "not-an-ip"], ["health", f"{NS}/x/y", "sideways"]):
        p = cli(m, *args)
        assert p.returncode == 2, (args, p)
    p = cli(m, "show", f"{NS}/nosuch")
    assert p.returncode == 5 and "404" in p.stderr and "service" in p.stderr, p.stderr
    p = cli(m, "register", f"{NS}/x/y", "--ip", "10.0.0.1", "--heartbeat-ttl", "forever")
    assert p.returncode == 5 and "heartbeat_ttl" in p.stderr, p.stderr
    p = cli(m, "ls", "nosuchns")
    assert p.returncode == 5 and "namespace" in p.stderr, p.stderr
    p = cli(m, "ls", "--client-config", "/nonexistent/client.toml")
    assert p.returncode == 1 and "/nonexistent/client.toml" in p.stderr, p.stderr


def test_tokens_from_flag_environment_and_client_config(server, tmp_path):
    m = server
    p = cli(m, "register", f"{NS}/tok/t-1", "--ip", "10.6.0.1", token=False)
    assert p.returncode == 5 and "401" in p.stderr and "--token-file" in p.stderr, p.stderr
    # dig without a token: the DNS answer is printed, the explanation is refused.
    p = cli(m, "dig", f"tok.{NS}", token=False)
    assert p.returncode == 5 and "401" in p.stderr and f";; tok.{NS}. A: NXDOMAIN" in p.stdout, p
    ok(cli(m, "register", f"{NS}/tok/t-1", "--ip", "10.6.0.1", token=False,
           env=client_env(MUSTER_TOKEN=m.token)))
    # The client config: server and token file, with nothing on the command line.
    config = tmp_path / "muster" / "client.toml"
    config.parent.mkdir()
    config.write_text(f'server = "http://127.0.0.1:{m.http_port}"\ntoken_file = "{m.token_file}"\n')
    argv = [str(muster_bin()), "register", f"{NS}/tok/t-2", "--ip", "10.6.0.2"]
    env = client_env(XDG_CONFIG_HOME=str(tmp_path))
    ok(subprocess.run(argv, capture_output=True, text=True, timeout=20, env=env))
    assert a_records(m, f"tok.{NS}") == ["10.6.0.1", "10.6.0.2"]
    # The flag beats the environment, which beats the config file.
    wrong = f"127.0.0.1:{closed_port()}"
    ls = [str(muster_bin()), "ls", NS]
    ok(subprocess.run(ls + ["--server", f"127.0.0.1:{m.http_port}"], capture_output=True,
                      text=True, timeout=20, env={**env, "MUSTER_ADDR": wrong}))
    p = subprocess.run(ls, capture_output=True, text=True, timeout=20, env={**env, "MUSTER_ADDR": wrong})
    assert p.returncode == 4 and wrong in p.stderr, p.stderr
    config.write_text('server = "x"\nbogus = 1\n')
    p = subprocess.run(ls, capture_output=True, text=True, timeout=20, env=env)
    assert p.returncode == 1 and "bogus" in p.stderr, p.stderr


class Answering(http.server.BaseHTTPRequestHandler):
    """A server that is not muster: 503 with muster's error shape for lists, 200 with HTML
    for a service."""

    def do_GET(self):
        if "/services/" not in self.path:
            body, status, kind = b'{"error": "the log cannot be written"}', 503, "application/json"
        else:
            body, status, kind = b"<html>hello</html>", 200, "text/html"
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_5xx_or_an_answer_not_muster_s_exits_6():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Answering)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        address = f"127.0.0.1:{httpd.server_address[1]}"
        p = subprocess.run([str(muster_bin()), "ls", "--server", address],
                           capture_output=True, text=True, timeout=20, env=client_env())
        assert p.returncode == 6 and "503" in p.stderr and "cannot be written" in p.stderr, p
        p = subprocess.run([str(muster_bin()), "show", "a/b", "--server", address],
                           capture_output=True, text=True, timeout=20, env=client_env())
        assert p.returncode == 6 and "not JSON" in p.stderr, p
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_completions_parse_in_their_shell():
    p = subprocess.run([str(muster_bin()), "completions", "bash"], capture_output=True, text=True, timeout=10)
    script = ok(p)
    for command in ("register", "deregister", "drain", "dig", "--server", "--output"):
        assert command in script, command
    check = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, timeout=10)
    assert check.returncode == 0, check.stderr
    # zsh and fish: generated from the same definitions (neither shell is installed here).
    zsh = ok(subprocess.run([str(muster_bin()), "completions", "zsh"], capture_output=True, text=True, timeout=10))
    assert zsh.startswith("#compdef muster") and "register" in zsh
    fish = ok(subprocess.run([str(muster_bin()), "completions", "fish"], capture_output=True, text=True, timeout=10))
    assert '-a "dig"' in fish and "complete -c muster" in fish
    # A reader that stops early ends the command quietly (SIGPIPE), without a panic.
    done = subprocess.run(f"{muster_bin()} completions bash | head -1", shell=True, capture_output=True,
                          text=True, timeout=10)
    assert done.stdout and "panicked" not in done.stderr, done.stderr
