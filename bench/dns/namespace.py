"""The benchmark's data: one namespace of S services x K instances, written three ways.

Pure functions of (services, instances, seed): the muster file-source JSON, an RFC 1035
zone file with exactly the records muster serves for it (for Knot DNS and NSD), and the
dnsperf query file that every server gets. Nothing here starts a process.

Records per service `svcN` (namespace `ns`, TTL `ttl`), as muster builds them
(src/dns/zone.rs):

    svcN.ns            A    10.a.b.c                      one per instance
    svcN.ns            SRV  1 1 <port> iK.svcN.ns.        one per instance
    _svcN._tcp.ns      SRV  1 1 <port> iK.svcN.ns.        the RFC 2782 alias
    iK.svcN.ns         A    10.a.b.c                      the SRV target

plus the apex SOA (serial = muster's revision, minimum and SOA TTL = negative_ttl) and
NS `ns.<ns>.`. muster answers at most `max_answers` (default 8) records per name, a random
subset in random order; Knot and NSD answer all of them. With K <= 8 the two are the same
set; for K > 8 the benchmark configures muster with `max_answers = 0` (all) so the
answers stay identical.
"""

import ipaddress
import json
import random

NAMESPACE = "internal"
TTL = 5
NEGATIVE_TTL = 1
FIRST_PORT = 8000
# Instance addresses: 10.0.0.1 upward, one per instance, never 10.255.x.x (churn's).
FIRST_ADDRESS = ipaddress.IPv4Address("10.0.0.1")
# Query mix: shares of `svcN A`, `svcN SRV`, and names that do not exist.
MIX = (("A", 0.80), ("SRV", 0.15), ("NX", 0.05))


def service_name(index):
    return f"svc{index}"


def instance_id(index):
    return f"i{index}"


def address(service, instance, instances):
    return str(FIRST_ADDRESS + service * instances + instance)


def port(instance):
    return FIRST_PORT + instance


def muster_instances(services, instances, attributes=None):
    """The file source's JSON document (`{"instances": [...]}`); `attributes(k)`, when
    given, is instance k's attributes in every service (they change no record)."""
    entries = [
        {
            "namespace": NAMESPACE,
            "service": service_name(s),
            "id": instance_id(k),
            "ipv4": address(s, k, instances),
            "port": port(k),
            **({"attributes": attributes(k)} if attributes else {}),
        }
        for s in range(services)
        for k in range(instances)
    ]
    return json.dumps({"instances": entries}, separators=(",", ":"))


def zone_file(services, instances, serial):
    """The zone file Knot and NSD load: the same records muster serves."""
    origin = f"{NAMESPACE}."
    lines = [
        f"$ORIGIN {origin}",
        f"@ {NEGATIVE_TTL} IN SOA ns.{origin} hostmaster.{origin} {serial} 60 10 1209600 {NEGATIVE_TTL}",
        f"@ {TTL} IN NS ns.{origin}",
    ]
    for s in range(services):
        svc = service_name(s)
        for k in range(instances):
            ip = address(s, k, instances)
            target = f"{instance_id(k)}.{svc}.{origin}"
            srv = f"1 1 {port(k)} {target}"
            lines.append(f"{svc} {TTL} IN A {ip}")
            lines.append(f"{svc} {TTL} IN SRV {srv}")
            lines.append(f"_{svc}._tcp {TTL} IN SRV {srv}")
            lines.append(f"{instance_id(k)}.{svc} {TTL} IN A {ip}")
    return "\n".join(lines) + "\n"


def queries(services, count, seed):
    """dnsperf's query file: `count` lines in the fixed mix, services drawn uniformly."""
    rng = random.Random(seed)
    kinds = [kind for kind, _ in MIX]
    weights = [share for _, share in MIX]
    lines = []
    for n in range(count):
        kind = rng.choices(kinds, weights)[0]
        if kind == "NX":
            lines.append(f"nx{n}.{NAMESPACE} A")
        else:
            lines.append(f"{service_name(rng.randrange(services))}.{NAMESPACE} {kind}")
    return "\n".join(lines) + "\n"


def probe_names(services, instances):
    """(name, type) pairs that every server must answer alike: each answer shape once."""
    last = service_name(services - 1)
    first = service_name(0)
    ns = NAMESPACE
    return [
        (f"{ns}.", "SOA"),
        (f"{ns}.", "NS"),
        (f"{first}.{ns}.", "A"),
        (f"{last}.{ns}.", "A"),
        (f"{last}.{ns}.", "SRV"),
        (f"_{last}._tcp.{ns}.", "SRV"),
        (f"{instance_id(instances - 1)}.{last}.{ns}.", "A"),
        (f"{last}.{ns}.", "AAAA"),
        (f"_tcp.{ns}.", "SRV"),
        (f"nx1.{ns}.", "A"),
        (f"SvC0.{ns.upper()}.", "A"),
    ]
