"""Damage to the write-ahead log, done to the files of a stopped muster (issue 3 and the
format in src/store/mod.rs: `MUSTER01`, then records `length u32 LE | crc32 u32 LE |
JSON payload`).

- Damage in the last records of the newest `wal-*.log` (a torn or corrupt tail): muster
  starts, says so in its log and in `muster_store_truncated_bytes`, and keeps every record
  before the damage; the cut segment is clean afterwards.
- Damage in an older segment: muster refuses to start (exit 1, a message naming the
  segment) and leaves the files as they were.
- A second muster on the same data_dir refuses to start (LOCK).
"""

import json
import struct
import zlib

import pytest

from harness import MusterStartError, answer_rdata, metric_value

NS = "internal"
MAGIC = b"MUSTER01"
HEADER = 8
TAIL_WARNING = "cut a torn or corrupt tail from the log; every record before it is kept"


def records(path):
    """(offset, size, payload) of every record of a log file, which must be intact."""
    data = path.read_bytes()
    assert data[: len(MAGIC)] == MAGIC, f"{path} does not start with {MAGIC!r}"
    offset, found = len(MAGIC), []
    while offset < len(data):
        length, crc = struct.unpack_from("<II", data, offset)
        payload = data[offset + HEADER : offset + HEADER + length]
        assert len(payload) == length and zlib.crc32(payload) == crc, f"{path}: bad record at {offset}"
        found.append((offset, HEADER + length, json.loads(payload)))
        offset += HEADER + length
    return found


def segments(m):
    return sorted(m.data_dir.glob("wal-*.log"))


def logged_id(payload):
    """The instance id an Upsert record carries."""
    return payload["change"]["Upsert"]["key"]["id"]


def body(n):
    return {"ipv4": f"10.0.1.{n}", "port": 8000 + n, "attributes": {"n": str(n)}}


def register(m, ids):
    """One PUT at a time, so each is a batch of its own: one record per instance."""
    for n in ids:
        m.put_instance(NS, "web", f"i-{n}", body(n))


def present(m):
    """id -> (ipv4, port, attributes) of every instance of web.internal."""
    r = m.get(f"/v1/namespaces/{NS}/services/web")
    if r.status_code == 404:
        return {}
    assert r.status_code == 200, r.text
    return {i["id"]: (i["ipv4"], i["port"], i["attributes"]) for i in r.json()["instances"]}


def expected(ids):
    return {f"i-{n}": (body(n)["ipv4"], body(n)["port"], body(n)["attributes"]) for n in ids}


def truncated_bytes_metric(m):
    value = metric_value(m.get("/metrics").text, "muster_store_truncated_bytes")
    assert value is not None, "muster_store_truncated_bytes is not in /metrics"
    return int(value)


# Each damage: (what it does to the file's bytes, how many of the last records it loses).
def flip_payload_of_last(data, recs):
    offset, size, _ = recs[-1]
    data[offset + HEADER + (size - HEADER) // 2] ^= 0xFF
    return 1


def flip_crc_of_second_to_last(data, recs):
    offset, _, _ = recs[-2]
    data[offset + 4] ^= 0x01
    return 2


def huge_length_of_last(data, recs):
    offset, _, _ = recs[-1]
    data[offset : offset + 4] = struct.pack("<I", 0xFFFF_FFF0)
    return 1


def cut_in_last_payload(data, recs):
    offset, size, _ = recs[-1]
    del data[offset + size // 2 :]
    return 1


def cut_in_last_header(data, recs):
    offset, _, _ = recs[-1]
    del data[offset + 3 :]
    return 1


def garbage_after_last(data, recs):
    data.extend(b"\x17\x00\x00\x00 half a batch")
    return 0


DAMAGE = [
    flip_payload_of_last,
    flip_crc_of_second_to_last,
    huge_length_of_last,
    cut_in_last_payload,
    cut_in_last_header,
    garbage_after_last,
]


@pytest.mark.parametrize("damage", DAMAGE, ids=lambda d: d.__name__)
def test_damaged_tail_is_cut_and_everything_before_it_kept(muster, damage):
    m = muster()
    count = 30
    register(m, range(count))
    assert m.stop() == 0
    newest = segments(m)[-1]
    recs = records(newest)
    assert [logged_id(p) for _, _, p in recs] == [f"i-{n}" for n in range(count)], "one record per PUT, in order"
    data = bytearray(newest.read_bytes())
    length_before = len(data)
    lost = damage(data, recs)
    newest.write_bytes(bytes(data))
    kept = range(count - lost)
    first_bad = recs[count - lost][0] if lost else length_before

    m.start()
    assert m.get("/readyz").status_code == 200
    log = m.log_path.read_text()
    assert TAIL_WARNING in log, m.log_tail()
    warning = next(line for line in log.splitlines() if TAIL_WARNING in line)
    assert newest.name in warning, warning
    cut = len(data) - first_bad
    assert f"truncated_bytes={cut}" in warning, warning
    assert truncated_bytes_metric(m) == cut > 0
    assert present(m) == expected(kept), "every record before the damage, and nothing after it"
    assert newest.stat().st_size == first_bad, "the segment is cut where the damage starts"
    answered = answer_rdata(m.dns_query("web.internal", "A"), "A")
    assert len(answered) == min(8, len(kept)) and set(answered) <= {body(n)["ipv4"] for n in kept}
    for n in (0, count - lost - 1):
        assert answer_rdata(m.dns_query(f"i-{n}.web.internal", "A"), "A") == [f"10.0.1.{n}"]

    # The cut segment is clean now: the next start reports nothing and loses nothing.
    register(m, [count + 1])
    m.restart()
    assert truncated_bytes_metric(m) == 0
    assert present(m) == expected([*kept, count + 1])
    assert m.log_path.read_text().count(TAIL_WARNING) == 1


def test_damage_in_an_older_segment_refuses_to_start(muster):
    m = muster()
    register(m, range(10))
    m.restart()  # every start opens a new segment
    register(m, range(10, 20))
    assert m.stop() == 0
    older, newest = segments(m)[-2:]
    assert [logged_id(p) for _, _, p in records(older)] == [f"i-{n}" for n in range(10)]
    offset, size, _ = records(older)[4]
    data = bytearray(older.read_bytes())
    data[offset + HEADER + 5] ^= 0xFF
    older.write_bytes(bytes(data))
    before = {p.name: p.read_bytes() for p in m.data_dir.iterdir() if p.name != "LOCK"}

    with pytest.raises(MusterStartError):
        m.start()
    assert m.proc.returncode == 1, m.log_tail()
    log = m.log_path.read_text()
    assert "the log is corrupt before its tail, refusing to guess" in log, m.log_tail()
    assert f"{older.name}: record at byte {offset} fails its checksum" in log, m.log_tail()
    assert TAIL_WARNING not in log
    after = {p.name: p.read_bytes() for p in m.data_dir.iterdir() if p.name != "LOCK"}
    assert after == before, "a refused start changes no file"

    # Repaired, it starts with everything.
    data[offset + HEADER + 5] ^= 0xFF
    older.write_bytes(bytes(data))
    m.start()
    assert present(m) == expected(range(20))
    assert truncated_bytes_metric(m) == 0


def test_a_second_muster_on_the_same_data_dir_refuses_to_start(muster):
    first = muster()
    register(first, range(3))
    second = muster(start=False)
    second.data_dir = first.data_dir
    second.write_config()
    with pytest.raises(MusterStartError):
        second.start()
    assert second.proc.returncode == 1
    log = second.log_path.read_text()
    assert "is in use by another muster (its LOCK file is held)" in log, second.log_tail()
    assert str(first.data_dir) in log
    # The first one is unharmed and still writes.
    register(first, [3])
    assert present(first) == expected(range(4))
    first.restart()
    assert present(first) == expected(range(4))
