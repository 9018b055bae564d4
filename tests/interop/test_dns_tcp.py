"""DNS over TCP under abuse ([dns.tcp], src/dns/tcp): connection caps in all and per
source, an idle timeout that closes idle clients but not a secondary reading a large
AXFR slowly, clients that stop reading (a transfer, or pipelined queries; UDP is not
delayed, and what muster and the kernel hold for them is bounded), pipelined queries
answered as they are ready, half-sent messages, and descriptor exhaustion (no spinning, TCP back once descriptors
are free). Clients are raw sockets speaking RFC 1035 framing, messages built and parsed
by dnspython."""

import os
import socket
import struct
import time

import dns.exception
import dns.message
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype

from harness import answer_rdata, namespace_toml, toml_value, wait_until


def tcp_toml(**keys):
    return "[dns.tcp]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in keys.items())


def connect(m, source="127.0.0.1", rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", m.dns_port))
    return s


def ask(s, name, rdtype="A", timeout=2):
    q = dns.message.make_query(name, rdtype)
    dns.query.send_tcp(s, q)
    r, _ = dns.query.receive_tcp(s, expiration=time.time() + timeout)
    assert r.id == q.id
    return r


def closed_within(s, timeout):
    """Seconds until the server closed `s` (EOF or reset), reading and discarding what it
    sends; None if it is still open after `timeout`."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        s.settimeout(left)
        try:
            if not s.recv(65536):
                return time.monotonic() - start
        except ConnectionResetError:
            return time.monotonic() - start
        except socket.timeout:
            return None


def refused_at_once(s):
    """A query on `s` gets no answer: the connection is closed at once."""
    try:
        s.sendall(struct.pack("!H", 12) + bytes(12))
    except (BrokenPipeError, ConnectionResetError):
        return True
    took = closed_within(s, 2)
    return took is not None and took < 1


def test_connections_from_one_source_are_capped(muster):
    m = muster(tcp_toml(max_connections=8, max_connections_per_source=3))
    m.put_instance("internal", "web", "i-1", {"ipv4": "10.0.0.5"})
    mine = [connect(m) for _ in range(3)]
    for s in mine:
        assert answer_rdata(ask(s, "web.internal"), "A") == ["10.0.0.5"]
    extra = connect(m)
    assert refused_at_once(extra), "a 4th connection from 127.0.0.1 is closed at once"
    other = connect(m, source="127.0.0.2")
    assert answer_rdata(ask(other, "web.internal"), "A") == ["10.0.0.5"], "other sources are served"
    assert m.metric("muster_dns_tcp_refused_total", reason="source") == 1
    mine.pop().close()
    wait_until(lambda: m.metric("muster_dns_tcp_connections") == 3, message="a closed connection frees its place")
    again = connect(m)
    assert answer_rdata(ask(again, "web.internal"), "A") == ["10.0.0.5"]
    for s in mine + [extra, other, again]:
        s.close()


def test_connections_are_capped_in_all(muster):
    m = muster(tcp_toml(max_connections=4))
    m.put_instance("internal", "web", "i-1", {"ipv4": "10.0.0.5"})
    held = [connect(m, source=f"127.0.0.{2 + n // 2}") for n in range(4)]
    for s in held:
        assert ask(s, "web.internal").rcode() == dns.rcode.NOERROR
    extra = connect(m, source="127.0.0.9")
    assert refused_at_once(extra), "a 5th connection, from a new source, is closed at once"
    assert m.metric("muster_dns_tcp_refused_total", reason="total") == 1
    assert m.metric("muster_dns_tcp_connections") == 4
    # UDP is not affected.
    assert answer_rdata(m.dns_query("web.internal"), "A") == ["10.0.0.5"]
    for s in held + [extra]:
        s.close()


SERVICES, PER_SERVICE = 50, 1000  # 50,000 instances: a transfer (5.7 MB) larger than the kernel holds (tcp_wmem 4 MiB)


def big_zone(muster, tmp_path, **tcp):
    lines = []
    for s in range(SERVICES):
        for i in range(PER_SERVICE):
            lines += [
                "[[instances]]",
                'namespace = "internal"',
                f'service = "svc{s}"',
                f'id = "i{i}"',
                f'ipv4 = "10.{s}.{i // 250}.{i % 250 + 1}"',
                "port = 8080",
            ]
    path = tmp_path / "static.toml"
    path.write_text("\n".join(lines) + "\n")
    m = muster(
        namespace_toml()
        + f"\n[[sources.file]]\npath = {toml_value(str(path))}\n"
        + '\n[transfer]\nallow = ["127.0.0.1"]\n\n'
        + tcp_toml(**tcp)
    )
    wait_until(lambda: m.get("/readyz").status_code == 200, timeout=30, message="/readyz 200")
    wait_until(lambda: m.dns_query("i999.svc19.internal").answer, timeout=30, message="the file is served")
    return m


def read_transfer(s, chunk, pause, slow_for, watch=None):
    """Reads an AXFR answer from `s`: `chunk` bytes every `pause` s for `slow_for` s,
    then as fast as it comes. Returns (messages, records, seconds); `watch` is called
    after every read. Each message's RCODE and record count come from its header;
    dnspython (~40 ms a message of a transfer) parses the first message and each that
    ends what was read, which includes the last: the final SOA is found there."""
    start = time.monotonic()
    buf, messages, records, soas = b"", 0, 0, 0
    while soas < 2:
        slow = time.monotonic() - start < slow_for
        data = s.recv(chunk if slow else 1 << 20)
        assert data, f"closed after {messages} messages, {records} records"
        buf += data
        while len(buf) >= 2 and len(buf) >= 2 + struct.unpack("!H", buf[:2])[0]:
            n = struct.unpack("!H", buf[:2])[0]
            wire, buf = buf[2 : 2 + n], buf[2 + n :]
            assert wire[3] & 0x0F == dns.rcode.NOERROR
            messages += 1
            records += struct.unpack("!H", wire[6:8])[0]
            if messages == 1 or len(buf) < 2:
                msg = dns.message.from_wire(wire, one_rr_per_rrset=True)
                soas += sum(1 for rrset in msg.answer if rrset.rdtype == dns.rdatatype.SOA)
        if watch:
            watch()
        if slow:
            time.sleep(pause)
    return messages, records, time.monotonic() - start


def test_idle_clients_are_closed_but_a_slow_axfr_reader_is_not(muster, tmp_path):
    m = big_zone(muster, tmp_path, idle_timeout="2s")
    idle = connect(m)
    assert ask(idle, "svc0.internal").answer
    idle.setblocking(False)
    idle_closed = []

    def watch_idle():
        if idle_closed:
            return
        try:
            if idle.recv(1) == b"":
                idle_closed.append(time.monotonic())
        except BlockingIOError:
            pass
        except ConnectionResetError:
            idle_closed.append(time.monotonic())

    asked = time.monotonic()
    # A small receive window: muster's writes progress only as this client reads.
    reader = connect(m, rcvbuf=4096)
    dns.query.send_tcp(reader, dns.message.make_query("internal", "AXFR"))
    messages, records, took = read_transfer(reader, chunk=4096, pause=0.25, slow_for=6, watch=watch_idle)
    assert took > 6, "the transfer was read slowly, for 3 idle timeouts"
    assert records >= 4 * SERVICES * PER_SERVICE, f"every record: {records} in {messages} messages"
    assert idle_closed, "the idle client was closed"
    assert 1.8 < idle_closed[0] - asked < 4
    assert m.metric("muster_dns_tcp_timeouts_total", kind="idle") >= 1
    assert m.metric("muster_dns_tcp_timeouts_total", kind="write") == 0
    reader.close()


def test_a_client_that_stops_reading_a_transfer_is_closed(muster, tmp_path):
    m = big_zone(muster, tmp_path, idle_timeout="1s")
    reader = connect(m, rcvbuf=4096)
    dns.query.send_tcp(reader, dns.message.make_query("internal", "AXFR"))
    time.sleep(0.5)
    # The stalled transfer holds up nobody else, over UDP or TCP.
    for tcp in (False, True):
        started = time.monotonic()
        assert m.dns_query("i7.svc3.internal", tcp=tcp).answer
        assert time.monotonic() - started < 0.5
    time.sleep(2.5)  # reads nothing for 3 idle timeouts
    wait_until(
        lambda: m.metric("muster_dns_tcp_timeouts_total", kind="write") == 1,
        timeout=3,
        message="the stalled connection is closed",
    )
    assert closed_within(reader, 10) is not None, "what was sent ends, then the connection"
    assert m.metric("muster_dns_tcp_connections") == 0
    reader.close()


def silent_upstream():
    """A UDP socket nobody reads and a TCP listener nobody accepts on, on one port."""
    for _ in range(50):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind(("127.0.0.1", 0))
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            tcp.bind(("127.0.0.1", udp.getsockname()[1]))
        except OSError:  # the port is taken for TCP: try another
            udp.close()
            tcp.close()
            continue
        tcp.listen(64)
        return udp, tcp
    raise RuntimeError("no port free for both UDP and TCP")


def send_all(s, queries):
    s.sendall(b"".join(struct.pack("!H", len(w)) + w for w in queries))


def receive(s, count, timeout):
    """`count` responses as (seconds since called, message)."""
    start = time.monotonic()
    out = []
    while len(out) < count:
        r, _ = dns.query.receive_tcp(s, expiration=time.time() + timeout)
        out.append((time.monotonic() - start, r))
    return out


def test_pipelined_queries_are_answered_as_they_are_ready(muster):
    udp, tcp = silent_upstream()
    m = muster(f'[forward]\nupstreams = ["127.0.0.1:{udp.getsockname()[1]}"]\ntimeout = "1s"\n')
    m.put_instance("internal", "web", "i-1", {"ipv4": "10.0.0.5", "port": 80})
    slow = dns.message.make_query("www.example.test", "A")  # forwarded: SERVFAIL after 1 s
    fast = [dns.message.make_query(f"web.internal", t) for t in ("A", "SRV", "AAAA")]
    fast += [dns.message.make_query(f"nope{n}.internal", "A") for n in range(20)]
    fast.append(dns.message.make_query("internal", "AXFR"))  # full path: REFUSED
    notify = dns.message.make_query("internal", "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    fast.append(notify)  # full path: NOTIMP
    garbage = dns.message.make_query("web.internal", "A")
    garbage_wire = garbage.to_wire()[:-3]  # a question cut short: FORMERR
    s = connect(m)
    send_all(s, [slow.to_wire()] + [q.to_wire() for q in fast] + [garbage_wire])
    got = receive(s, len(fast) + 2, timeout=5)
    ids = [r.id for _, r in got]
    assert sorted(ids) == sorted([slow.id, garbage.id] + [q.id for q in fast]), "each answered once"
    by_id = {r.id: (t, r) for t, r in got}
    took, r = by_id[slow.id]
    assert ids[-1] == slow.id, "the slow query does not hold back the ones behind it"
    assert r.rcode() == dns.rcode.SERVFAIL and took > 0.8
    assert answer_rdata(by_id[fast[0].id][1], "A") == ["10.0.0.5"]
    assert by_id[fast[-2].id][1].rcode() == dns.rcode.REFUSED
    assert by_id[fast[-1].id][1].rcode() == dns.rcode.NOTIMP
    assert by_id[garbage.id][1].rcode() == dns.rcode.FORMERR
    s.close()
    udp.close()
    tcp.close()


def test_queries_in_flight_on_one_connection_are_bounded(muster):
    udp, tcp = silent_upstream()
    m = muster(
        f'[forward]\nupstreams = ["127.0.0.1:{udp.getsockname()[1]}"]\ntimeout = "1s"\n'
        + tcp_toml(max_in_flight=2)
    )
    m.put_instance("internal", "web", "i-1", {"ipv4": "10.0.0.5"})
    slow = [dns.message.make_query(f"www{n}.example.test", "A") for n in range(3)]
    fast = dns.message.make_query("web.internal", "A")
    s = connect(m)
    send_all(s, [q.to_wire() for q in slow] + [fast.to_wire()])
    got = {r.id: t for t, r in receive(s, 4, timeout=6)}
    # Two slow queries in flight; the third and the fast one behind it wait for a slot.
    assert 0.8 < got[fast.id] < 2.5, got
    assert max(got.values()) > 1.8, "the third slow query started when a slot freed"
    s.close()
    udp.close()
    tcp.close()


def test_a_half_sent_message_is_closed(muster):
    m = muster(tcp_toml(message_timeout="1s"))
    s = connect(m)
    s.sendall(struct.pack("!H", 100) + b"0123456789")
    started = time.monotonic()
    closed = None
    while closed is None and time.monotonic() - started < 5:
        try:
            s.sendall(b"x")  # one byte at a time: activity, but the message never ends
        except (BrokenPipeError, ConnectionResetError):
            closed = time.monotonic() - started
            break
        closed = closed_within(s, 0.2)
        if closed is not None:
            closed = time.monotonic() - started
    assert closed is not None and closed < 3, f"still open after {time.monotonic() - started:.1f} s"
    assert m.metric("muster_dns_tcp_timeouts_total", kind="message") == 1


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_running_out_of_descriptors_does_not_spin_and_tcp_recovers(muster, tmp_path):
    m = muster(tcp_toml(idle_timeout="60s"), start=False)
    wrapper = tmp_path / "muster-64-files"
    wrapper.write_text(f"#!/bin/sh\nulimit -n 64\nexec {m.bin} \"$@\"\n")
    wrapper.chmod(0o755)
    m.bin = wrapper
    m.start()
    m.put_instance("internal", "web", "i-1", {"ipv4": "10.0.0.5"})
    held = []
    for _ in range(120):  # more than 64 descriptors' worth; the rest wait in the backlog
        held.append(connect(m))
    time.sleep(1)  # muster has taken all it can: accept fails with EMFILE
    before = cpu_seconds(m.proc.pid)
    time.sleep(3)
    spent = cpu_seconds(m.proc.pid) - before
    assert spent < 0.3, f"muster used {spent:.2f} s of CPU in 3 s while out of descriptors"
    for s in held:
        s.close()

    def answered():
        try:
            s = connect(m)
            try:
                return ask(s, "web.internal", timeout=1).answer
            finally:
                s.close()
        except (OSError, dns.exception.Timeout):
            return False

    wait_until(answered, timeout=10, message="TCP answers again once the connections closed")
    assert m.metric("muster_dns_tcp_accept_errors_total", reason="descriptors") > 0, "it ran out"
    assert m.log_tail(1000).count("cannot accept DNS TCP connections") == 1, "logged once per 10 s"


def server_queues(port):
    """(bytes in the send queue, bytes unread in the receive queue) of each established
    socket on local port `port`, from /proc/net/tcp (the kernel's tx_queue: sent and not
    acknowledged, plus not yet sent)."""
    queues = []
    for line in open("/proc/net/tcp").readlines()[1:]:
        fields = line.split()
        local_port = int(fields[1].split(":")[1], 16)
        if local_port == port and fields[3] == "01":
            tx, rx = (int(v, 16) for v in fields[4].split(":"))
            queues.append((tx, rx))
    return queues


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


STUFFERS = 16


def stuff(s, batch):
    """Sends `batch` on the non-blocking `s` until the kernel takes no more."""
    while True:
        try:
            if s.send(batch) == 0:
                return
        except BlockingIOError:
            return


def test_clients_that_never_read_do_not_delay_udp_and_are_closed(muster):
    m = muster(tcp_toml(idle_timeout="1s"))
    for n in range(8):
        m.put_instance("internal", f"web{n}", "i-1", {"ipv4": f"10.0.0.{n + 1}", "port": 80})
    queries = [dns.message.make_query(f"web{n % 8}.internal", "SRV").to_wire() for n in range(64)]
    batch = b"".join(struct.pack("!H", len(w)) + w for w in queries)
    rss_before = rss_kib(m.proc.pid)
    stuffers = [connect(m, source=f"127.0.0.{2 + n // 8}", rcvbuf=4096) for n in range(STUFFERS)]
    for s in stuffers:
        s.setblocking(False)
    udp_seconds = []
    # Stuff each connection until muster stops reading it (its responses unread), asking
    # over UDP in between, for as long as the connections are open.
    started = time.monotonic()
    while time.monotonic() - started < 0.8:
        for s in stuffers:
            stuff(s, batch)
        asked = time.monotonic()
        r = m.dns_query("web3.internal", timeout=2)
        udp_seconds.append(time.monotonic() - asked)
        assert answer_rdata(r, "A") == ["10.0.0.4"]
    udp_seconds.sort()
    # Unloaded, a UDP answer takes ~1 ms; the bound allows for a loaded 2-core machine.
    assert udp_seconds[-1] < 0.25, f"UDP answers took up to {udp_seconds[-1]:.3f} s: {udp_seconds[-5:]}"
    queues = server_queues(m.dns_port)
    assert len(queues) == STUFFERS, queues
    # muster stopped reading each (queries wait in its receive queue), and the kernel holds
    # a bounded part of its answers: 64 KiB unsent and one write past it (without
    # TCP_NOTSENT_LOWAT, ~3 MB each), plus the 4 KiB window the client offers.
    assert all(rx > 0 for _, rx in queues), f"muster still reads some: {queues}"
    assert max(tx for tx, _ in queues) < 256 * 1024, f"send queues (bytes): {sorted(tx for tx, _ in queues)}"
    # muster itself holds 64 KiB of responses per connection and one read.
    grew = rss_kib(m.proc.pid) - rss_before
    assert grew < 16 * 1024, f"VmRSS grew {grew} KiB"
    wait_until(
        lambda: m.metric("muster_dns_tcp_timeouts_total", kind="write") == STUFFERS,
        timeout=5,
        message="every connection that stopped reading is closed after idle_timeout",
    )
    assert m.metric("muster_dns_tcp_connections") == 0
    for s in stuffers:
        s.close()
