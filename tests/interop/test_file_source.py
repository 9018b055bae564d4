"""The file source (DESIGN.md "Sources": file): a watched TOML file of static instances.
Edits show in DNS within 2 s, whether the editor renames a temp file over it or rewrites it
in place; a broken file keeps the last good answers; other sources' instances are untouched.
"""

import os
import time

import dns.rcode

from harness import answer_rdata, namespace_toml, toml_value, wait_until

NS_TOML = namespace_toml()


def instances_toml(*instances):
    out = []
    for inst in instances:
        out.append("[[instances]]")
        out.extend(f"{k} = {toml_value(v)}" for k, v in inst.items())
        out.append("")
    return "\n".join(out)


def db(i, ip=None, **extra):
    return {
        "namespace": "internal",
        "service": "db",
        "id": f"db-{i}",
        "ipv4": ip or f"10.0.0.{i + 8}",
        "port": 5432,
        **extra,
    }


def replace_file(path, text):
    """What editors do: write a temp file beside it, then rename it over the original."""
    tmp = path.with_name(f".{path.name}.tmp{time.monotonic_ns()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def start_with_file(muster, tmp_path, text):
    path = tmp_path / "static.toml"
    path.write_text(text)
    m = muster(NS_TOML + f"\n[[sources.file]]\npath = {toml_value(str(path))}\n")
    wait_until(lambda: m.get("/readyz").status_code == 200, timeout=5, message="/readyz 200")
    return m, path


def a_set(m, name="db.internal"):
    r = m.dns_query(name, "A")
    return sorted(answer_rdata(r, "A")) if r.rcode() == dns.rcode.NOERROR else dns.rcode.to_text(r.rcode())


def test_file_instances_served(muster, tmp_path):
    m, _ = start_with_file(
        muster,
        tmp_path,
        instances_toml(
            db(1, "10.0.0.9", attributes={"zone": "a"}),
            db(2, "10.0.0.10"),
            {"namespace": "internal", "service": "cache", "id": "c-1", "ipv6": "fd00::c1"},
            db(3, "10.0.0.11", healthy=False),
        ),
    )
    assert a_set(m) == ["10.0.0.10", "10.0.0.9"]
    assert answer_rdata(m.dns_query("db-1.db.internal", "A"), "A") == ["10.0.0.9"]
    assert sorted(answer_rdata(m.dns_query("db.internal", "SRV"), "SRV")) == [
        "1 1 5432 db-1.db.internal.",
        "1 1 5432 db-2.db.internal.",
    ]
    assert answer_rdata(m.dns_query("cache.internal", "AAAA"), "AAAA") == ["fd00::c1"]
    svc = m.service("internal", "db")
    insts = {i["id"]: i for i in svc["instances"]}
    assert sorted(insts) == ["db-1", "db-2", "db-3"]
    for inst in insts.values():
        assert inst["source"].startswith("file"), inst
    assert insts["db-1"]["attributes"] == {"zone": "a"}
    assert insts["db-3"]["healthy"] is False


def test_edit_by_rename_shows_within_2s(muster, tmp_path):
    m, path = start_with_file(muster, tmp_path, instances_toml(db(1, "10.0.0.9")))
    assert a_set(m) == ["10.0.0.9"]

    replace_file(path, instances_toml(db(1, "10.0.0.9"), db(2, "10.0.0.10")))
    wait_until(lambda: a_set(m) == ["10.0.0.10", "10.0.0.9"], timeout=2, message="added instance in DNS")

    replace_file(path, instances_toml(db(2, "10.0.0.10")))
    wait_until(lambda: a_set(m) == ["10.0.0.10"], timeout=2, message="removed instance gone from DNS")
    assert m.dns_query("db-1.db.internal", "A").rcode() == dns.rcode.NXDOMAIN

    # A second rename: the watch must follow the new inode, not the first one.
    replace_file(path, instances_toml(db(2, "10.0.0.20")))
    wait_until(lambda: a_set(m) == ["10.0.0.20"], timeout=2, message="changed address in DNS")


def test_edit_in_place_shows_within_2s(muster, tmp_path):
    m, path = start_with_file(muster, tmp_path, instances_toml(db(1, "10.0.0.9")))
    with open(path, "w") as f:
        f.write(instances_toml(db(1, "10.0.0.99")))
    wait_until(lambda: a_set(m) == ["10.0.0.99"], timeout=2, message="in-place edit in DNS")


def test_emptied_file_removes_its_instances(muster, tmp_path):
    m, path = start_with_file(muster, tmp_path, instances_toml(db(1, "10.0.0.9")))
    replace_file(path, "")
    wait_until(lambda: a_set(m) == "NXDOMAIN", timeout=2, message="db gone after the file was emptied")


def test_broken_file_keeps_last_good_answers(muster, tmp_path):
    m, path = start_with_file(muster, tmp_path, instances_toml(db(1, "10.0.0.9"), db(2, "10.0.0.10")))
    good = a_set(m)
    serial = m.soa_serial()
    for broken in (
        "[[instances]\nnamespace = ",  # not TOML
        '[[instances]]\nnamespace = "internal"\nservice = "db"\nid = "db-1"\nipv4 = "10.0.0.300"\n',  # bad address
        '[[instances]]\nnamespace = "internal"\nservice = "db"\nid = "db-1"\nipv4 = "10.0.0.1"\nbogus = 1\n',
    ):
        replace_file(path, broken)
        time.sleep(1.5)
        assert a_set(m) == good, f"answers changed after a broken file:\n{broken}"
        assert m.soa_serial() == serial
        assert m.proc.poll() is None, "muster died on a broken file"
    # Fixed again: picked up.
    replace_file(path, instances_toml(db(3, "10.0.0.33")))
    wait_until(lambda: a_set(m) == ["10.0.0.33"], timeout=2, message="fixed file in DNS")


def test_file_sync_leaves_api_instances_alone(muster, tmp_path):
    m, path = start_with_file(muster, tmp_path, instances_toml(db(1, "10.0.0.9")))
    m.put_instance("internal", "db", "api-1", {"ipv4": "10.0.0.50", "port": 5432})
    assert a_set(m) == ["10.0.0.50", "10.0.0.9"]
    replace_file(path, instances_toml(db(2, "10.0.0.10")))
    wait_until(
        lambda: a_set(m) == ["10.0.0.10", "10.0.0.50"], timeout=2, message="file change beside API instance"
    )
    replace_file(path, "")
    wait_until(
        lambda: a_set(m) == ["10.0.0.50"], timeout=2, message="API instance kept when the file empties"
    )
    sources = {i["id"]: i["source"] for i in m.service("internal", "db")["instances"]}
    assert sources == {"api-1": "api"}
