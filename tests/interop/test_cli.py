"""The process as an operator meets it: --help, config errors, bind errors, SIGTERM, and
registrations surviving a restart (DESIGN.md "Interfaces": CLI; "Nothing acknowledged is lost").
"""

import signal
import socket
import subprocess
import time

from harness import answer_rdata, muster_bin, namespace_toml


def run(*args, timeout=10):
    return subprocess.run([str(muster_bin()), *args], capture_output=True, text=True, timeout=timeout)


def test_help():
    p = run("--help")
    assert p.returncode == 0, p.stderr
    assert "serve" in p.stdout
    p = run("serve", "--help")
    assert p.returncode == 0, p.stderr
    assert "--config" in p.stdout


def test_unknown_config_key_is_named(muster):
    m = muster(start=False)
    config = m.config_text()
    for bad in (
        config.replace("max_udp_payload = 1232\n", "max_udp_payload = 1232\nlisten_bogus = 1\n"),
        "datadir_bogus = 1\n" + config,
    ):
        m.config_path.write_text(bad)
        p = run("serve", "--config", str(m.config_path))
        out = p.stdout + p.stderr
        assert p.returncode != 0, f"muster accepted an unknown config key:\n{bad}"
        assert "bogus" in out, out


def test_unknown_namespace_key_is_named(muster):
    m = muster(namespace_toml(services=[{"match": "x*", "max_answerz": 3}]), start=False)
    p = run("serve", "--config", str(m.config_path))
    assert p.returncode != 0, "muster accepted an unknown config key"
    assert "max_answerz" in p.stdout + p.stderr, p.stdout + p.stderr


def test_bad_policy_value_rejected(muster):
    m = muster(namespace_toml(services=[{"match": "x*", "when_all_unhealthy": "sometimes"}]), start=False)
    p = run("serve", "--config", str(m.config_path))
    assert p.returncode != 0
    assert "sometimes" in p.stdout + p.stderr or "when_all_unhealthy" in p.stdout + p.stderr


def test_missing_config_file_fails(tmp_path):
    p = run("serve", "--config", str(tmp_path / "nope.toml"))
    assert p.returncode != 0
    assert "nope.toml" in p.stdout + p.stderr


def test_dns_port_in_use_fails_at_start(muster):
    m = muster(start=False)
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        blocker.bind(("127.0.0.1", m.dns_port))
        p = run("serve", "--config", str(m.config_path), timeout=15)
    finally:
        blocker.close()
    assert p.returncode != 0, "muster started although its DNS port was taken"
    assert str(m.dns_port) in p.stdout + p.stderr, p.stdout + p.stderr


def test_sigterm_exits_zero_promptly(muster):
    m = muster()
    m.put_instance("internal", "web", "i-1", {"ipv4": "10.0.0.5"})
    t0 = time.monotonic()
    status = m.stop(signal.SIGTERM, timeout=10)
    took = time.monotonic() - t0
    assert status == 0, f"exit status {status} after SIGTERM\n{m.log_tail()}"
    assert took < 5, f"SIGTERM took {took:.1f} s"


def test_a_sighup_as_soon_as_it_listens_does_not_kill_it(muster):
    # SIGHUP's default action ends a process. A supervisor (or a test) that sees the HTTP
    # port open and sends a reload at once must find muster listening for it. Five
    # starts, each signalled the moment its port accepts.
    m = muster(start=False)
    for attempt in range(5):
        proc = subprocess.Popen([str(muster_bin()), "serve", "--config", str(m.config_path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while not listening(m):
                assert proc.poll() is None and time.monotonic() < deadline, "muster did not start"
            proc.send_signal(signal.SIGHUP)
            time.sleep(0.3)
            assert proc.poll() is None, f"start {attempt}: muster ended ({proc.returncode}) on a SIGHUP"
            assert m.http.get(m.url("/healthz"), timeout=2).status_code == 200
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def listening(m):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", m.http_port)) == 0


def test_registrations_survive_restart(muster):
    m = muster()
    m.put_instance("internal", "web", "i-1", {"ipv4": "10.0.0.5", "port": 8080})
    m.put_instance("internal", "web", "i-2", {"ipv4": "10.0.0.6", "port": 8080})
    m.set_health("internal", "web", "i-2", False)
    m.put_instance("internal", "db", "d-1", {"ipv4": "10.0.0.9"})
    m.delete_instance("internal", "db", "d-1")
    serial = m.soa_serial()
    m.restart()
    assert answer_rdata(m.dns_query("web.internal", "A"), "A") == ["10.0.0.5"]
    insts = {i["id"]: i["healthy"] for i in m.service("internal", "web")["instances"]}
    assert insts == {"i-1": True, "i-2": False}
    assert m.dns_query("db.internal", "A").rcode() == 3  # NXDOMAIN
    assert m.soa_serial() >= serial, "SOA serial went backwards across a restart"


def test_registrations_survive_sigkill(muster):
    """An acknowledged write is durable: it survives kill -9 right after the 200."""
    m = muster()
    for i in range(20):
        m.put_instance("internal", "web", f"i-{i}", {"ipv4": f"10.0.1.{i + 1}"})
    m.stop(signal.SIGKILL)
    m.start()
    assert len(m.service("internal", "web")["instances"]) == 20
