"""DNS UPDATE (RFC 2136) as a registration source, driven by BIND's nsupdate and checked
with dig: signed with a key of [[update.keys]], A/AAAA at <iid>.<svc>.<ns> and SRV at
<svc>.<ns> register and deregister instances owned by `update:<key>`; prerequisites,
permissions, bad keys and everything else answer as RFC 2136 says (docs/update.md).
"""

import subprocess

import dns.message
import dns.query
import dns.rcode
import dns.tsigkeyring
import dns.update
import pytest

from harness import parse_dig

SECRET = "c2VjcmV0IHNlY3JldCBzZWNyZXQgc2VjcmV0IQ=="
OTHER = "b3RoZXIgc2VjcmV0IG90aGVyIHNlY3JldCBvdGhlcg=="

def config(max_records=1000):
    return f"""
[update]
max_records = {max_records}

[[transfer.tsig_keys]]
name = "ddns"
secret = "{SECRET}"
[[transfer.tsig_keys]]
name = "narrow"
secret = "{OTHER}"

[[update.keys]]
name = "ddns"
[[update.keys]]
name = "narrow"
namespaces = ["internal"]
services = ["db-*"]
"""


def nsupdate(m, commands, key=("ddns", SECRET), tcp=False):
    """Runs nsupdate with `commands` (lines, without `send`); returns (rc, output)."""
    script = f"server 127.0.0.1 {m.dns_port}\nzone internal\n" + "".join(c + "\n" for c in commands) + "send\n"
    args = ["nsupdate"] + (["-v"] if tcp else [])
    if key is not None:
        args += ["-y", f"hmac-sha256:{key[0]}:{key[1]}"]
    p = subprocess.run(args, input=script, capture_output=True, text=True, timeout=60)
    return p.returncode, p.stdout + p.stderr


def addresses(m, name, rdtype="A"):
    r = parse_dig(m.dig(name, rdtype))
    return r.status, sorted(r.rdata("ANSWER", rdtype))


@pytest.fixture
def m(muster):
    return muster(config())


def test_signed_update_registers_and_deletes(m):
    serial = m.soa_serial()
    rc, out = nsupdate(m, ["update add web-1.web.internal 60 A 10.1.0.1", "update add web-1.web.internal 60 AAAA fd00::1",
                           "update add web.internal 60 SRV 0 0 8080 web-1.web.internal"])
    assert rc == 0, out
    assert addresses(m, "web-1.web.internal") == ("NOERROR", ["10.1.0.1"])
    assert addresses(m, "web-1.web.internal", "AAAA") == ("NOERROR", ["fd00::1"])
    assert addresses(m, "web.internal") == ("NOERROR", ["10.1.0.1"])
    assert addresses(m, "web.internal", "SRV")[1] == ["1 1 8080 web-1.web.internal."]
    assert m.soa_serial() == serial + 1, "one UPDATE, one revision"
    service = m.service("internal", "web")
    assert [i["source"] for i in service["instances"]] == ["update:ddns"], service

    # Replace the address, then delete the name: the instance leaves DNS.
    rc, out = nsupdate(m, ["update delete web-1.web.internal A", "update add web-1.web.internal 60 A 10.1.0.2"])
    assert rc == 0, out
    assert addresses(m, "web-1.web.internal") == ("NOERROR", ["10.1.0.2"])
    rc, out = nsupdate(m, ["update delete web-1.web.internal"])
    assert rc == 0, out
    assert addresses(m, "web.internal")[0] == "NXDOMAIN"
    assert addresses(m, "web-1.web.internal")[0] == "NXDOMAIN"


def test_survives_a_restart(m):
    rc, out = nsupdate(m, ["update add a.web.internal 60 A 10.1.0.7"])
    assert rc == 0, out
    m.restart()
    assert addresses(m, "a.web.internal") == ("NOERROR", ["10.1.0.7"])


def test_wrong_key_and_no_key_change_nothing(m):
    serial = m.soa_serial()
    rc, out = nsupdate(m, ["update add x.web.internal 60 A 10.1.0.9"], key=("ddns", OTHER))
    assert rc != 0 and ("BADSIG" in out or "NOTAUTH" in out), out
    rc, out = nsupdate(m, ["update add x.web.internal 60 A 10.1.0.9"], key=("unknown", SECRET))
    assert rc != 0 and ("BADKEY" in out or "NOTAUTH" in out), out
    rc, out = nsupdate(m, ["update add x.web.internal 60 A 10.1.0.9"], key=None)
    assert rc != 0 and "REFUSED" in out, out
    assert addresses(m, "x.web.internal")[0] == "NXDOMAIN"
    assert m.soa_serial() == serial


def test_failed_prerequisites_change_nothing(m):
    rc, out = nsupdate(m, ["update add a.web.internal 60 A 10.1.0.1"])
    assert rc == 0, out
    serial = m.soa_serial()
    cases = [
        ("prereq nxdomain a.web.internal", "YXDOMAIN"),
        ("prereq yxdomain b.web.internal", "NXDOMAIN"),
        ("prereq nxrrset a.web.internal A", "YXRRSET"),
        ("prereq yxrrset a.web.internal AAAA", "NXRRSET"),
        ("prereq yxrrset a.web.internal A 10.9.9.9", "NXRRSET"),
    ]
    for prereq, rcode in cases:
        rc, out = nsupdate(m, [prereq, "update add b.web.internal 60 A 10.1.0.2"])
        assert rc != 0 and rcode in out, (prereq, out)
    assert addresses(m, "b.web.internal")[0] == "NXDOMAIN"
    assert m.soa_serial() == serial
    # Prerequisites that hold: the update goes through.
    rc, out = nsupdate(m, ["prereq yxrrset a.web.internal A 10.1.0.1", "prereq nxdomain b.web.internal",
                           "prereq yxdomain web.internal", "update add b.web.internal 60 A 10.1.0.2"])
    assert rc == 0, out
    assert addresses(m, "web.internal") == ("NOERROR", ["10.1.0.1", "10.1.0.2"])


def test_permissions_and_ownership(m):
    # "narrow" may change db-* services only.
    rc, out = nsupdate(m, ["update add a.web.internal 60 A 10.1.0.1"], key=("narrow", OTHER))
    assert rc != 0 and "REFUSED" in out, out
    rc, out = nsupdate(m, ["update add a.db-main.internal 60 A 10.1.0.1"], key=("narrow", OTHER))
    assert rc == 0, out
    assert addresses(m, "db-main.internal") == ("NOERROR", ["10.1.0.1"])
    # One refused part refuses the whole UPDATE.
    rc, out = nsupdate(m, ["update add b.db-main.internal 60 A 10.1.0.2", "update add b.web.internal 60 A 10.1.0.2"],
                       key=("narrow", OTHER))
    assert rc != 0 and "REFUSED" in out, out
    assert addresses(m, "b.db-main.internal")[0] == "NXDOMAIN"
    # An instance the REST API owns is not the key's to change.
    m.put_instance("internal", "api", "i-1", {"ipv4": "10.2.0.1"})
    rc, out = nsupdate(m, ["update delete i-1.api.internal A"])
    assert rc != 0 and "REFUSED" in out, out
    assert addresses(m, "api.internal") == ("NOERROR", ["10.2.0.1"])


def test_what_is_not_an_instance_is_refused_or_notzone(m):
    for command in ["update add web.internal 60 A 10.1.0.1", "update add a.web.internal 60 TXT hello",
                    "update add a.b.web.internal 60 A 10.1.0.1", "update delete internal NS"]:
        rc, out = nsupdate(m, [command])
        assert rc != 0 and "REFUSED" in out, (command, out)
    u = dns.update.UpdateMessage("internal", keyring=dns.tsigkeyring.from_text({"ddns": SECRET}),
                                 keyalgorithm="hmac-sha256")
    u.add("a.web.example.", 60, "A", "10.1.0.1")
    r = dns.query.udp(u, "127.0.0.1", port=m.dns_port, timeout=5)
    assert r.rcode() == dns.rcode.NOTZONE, r
    u = dns.update.UpdateMessage("web.internal", keyring=dns.tsigkeyring.from_text({"ddns": SECRET}),
                                 keyalgorithm="hmac-sha256")
    u.add("a", 60, "A", "10.1.0.1")
    r = dns.query.udp(u, "127.0.0.1", port=m.dns_port, timeout=5)
    assert r.rcode() == dns.rcode.NOTAUTH, r


def test_a_thousand_instances_then_deleted(m):
    names = [f"i{n}.bulk.internal" for n in range(1000)]
    for start in range(0, 1000, 250):
        chunk = [f"update add {name} 60 A 10.3.{n // 250}.{n % 250 + 1}" for n, name in
                 enumerate(names[start:start + 250], start)]
        rc, out = nsupdate(m, chunk, tcp=True)
        assert rc == 0, out
    for n in (0, 499, 999):
        assert addresses(m, names[n]) == ("NOERROR", [f"10.3.{n // 250}.{n % 250 + 1}"])
    assert len(m.service("internal", "bulk")["instances"]) == 1000
    rc, out = nsupdate(m, [f"update delete {name}" for name in names[:500]], tcp=True)
    assert rc == 0, out
    assert len(m.service("internal", "bulk")["instances"]) == 500
    assert addresses(m, names[0])[0] == "NXDOMAIN"
    assert addresses(m, names[999])[0] == "NOERROR"


def test_over_max_records_is_refused(muster):
    m = muster(config(max_records=10))
    rc, out = nsupdate(m, [f"update add i{n}.web.internal 60 A 10.4.0.{n + 1}" for n in range(11)], tcp=True)
    assert rc != 0 and "REFUSED" in out, out
    assert addresses(m, "i0.web.internal")[0] == "NXDOMAIN"


def test_a_limit_refuses_the_whole_update(muster):
    """The registry applies an UPDATE as one batch: when [limits] refuses its fourth
    instance, the first three are not registered either."""
    m = muster("[limits]\ninstances_per_service = 3\n" + config())
    serial = m.soa_serial()
    rc, out = nsupdate(m, [f"update add i{n}.web.internal 60 A 10.5.0.{n + 1}" for n in range(4)])
    assert rc != 0 and "REFUSED" in out, out
    assert addresses(m, "web.internal")[0] == "NXDOMAIN"
    assert m.soa_serial() == serial
    rc, out = nsupdate(m, [f"update add i{n}.web.internal 60 A 10.5.0.{n + 1}" for n in range(3)])
    assert rc == 0, out
    assert addresses(m, "web.internal") == ("NOERROR", ["10.5.0.1", "10.5.0.2", "10.5.0.3"])
