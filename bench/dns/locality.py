"""Zone-aware answers in the DNS benchmark (`bench/dns/run --locality`; docs/dns.md,
"Zone-aware answers"): what they cost on the fast path (issue 19 item 1: CPU per query
with locality on at most 1.1x off).

A second muster, `muster+locality`, runs with the `[[zones]]` table below (3 zones x 4
subnets, so that a query scans a table of 12 and matches the last one it holds: dnsperf
queries from 127.0.0.1, in z0's /8, the shortest prefix) and `locality = "prefer_zone"`
on the catch-all service rule. Both musters load the same instances, each with an
`AVAILABILITY_ZONE` attribute: instance k of every service is in zone z(k mod 3), so the
twin answers from a zone view (2 of 4 instances with the default 4 per service) while
plain muster answers every instance. Knot and NSD get the same records as without the
flag (attributes make none). Their runs are interleaved, and the CPU per query of the two
is printed as a ratio.

After the runs, `check` asks both musters for a few services (with the shape's Client
Subnet option, if it has one): the twin must answer only the client's zone's instances
(z0 from 127.0.0.1; z1 with `--shape subnet`, whose 192.0.2.0/24 is in z1's 192.0.0.0/16,
echoed with SCOPE 16), plain muster instances of more than one zone. Anything else fails
the run: a ratio measured on a twin that did not answer from its zone would say nothing.
"""

import ipaddress
import json

import dns.edns
import dns.message
import dns.query
import dns.rdatatype

import report
import shapes
from namespace import NAMESPACE, address, instance_id, service_name
from servers import ServerError

# The twin muster with locality on, in the results.
LABEL = "muster+locality"
# Zone name -> client subnets. 127.0.0.0/8 is where dnsperf's queries come from; the
# shapes' Client Subnet (192.0.2.0/24) is in z1.
ZONES = {
    "z0": ("127.0.0.0/8", "10.0.0.0/16", "10.1.0.0/16", "fd00:0:0:10::/64"),
    "z1": ("192.0.0.0/16", "10.16.0.0/16", "10.17.0.0/20", "fd00:0:0:11::/64"),
    "z2": ("198.51.100.0/24", "10.32.0.0/16", "10.33.0.0/20", "fd00:0:0:12::/64"),
}
# dnsperf's source address.
QUERIER = ipaddress.ip_address("127.0.0.1")
# Times plain muster is asked for each checked service.
PLAIN_ASKS = 4


def zone_of_instance(k):
    return f"z{k % len(ZONES)}"


def attributes(k):
    """Instance k's attributes (in every service): its zone."""
    return {"AVAILABILITY_ZONE": zone_of_instance(k)}


def zones_toml():
    """The twin's `[[zones]]` tables."""
    # A JSON list of strings is a TOML array.
    return "".join(f'\n[[zones]]\nname = "{zone}"\ncidrs = {json.dumps(list(cidrs))}\n' for zone, cidrs in ZONES.items())


# The twin's catch-all service rule: answer each client from its zone (min_local 1).
RULE_TOML = 'locality = "prefer_zone"\n'


def client_zone(shape):
    """(zone, scope) of the benchmark's client as muster should place it: by the shape's
    Client Subnet (scope: the prefix length of the zone subnet that holds it) or by
    dnsperf's address (no scope)."""
    subnet = shapes.CLIENT_SUBNET if shape == "subnet" else ipaddress.ip_network(QUERIER)
    holding = [
        (ipaddress.ip_network(cidr), zone)
        for zone, cidrs in ZONES.items()
        for cidr in cidrs
        if ipaddress.ip_network(cidr).version == subnet.version and subnet.subnet_of(ipaddress.ip_network(cidr))
    ]
    net, zone = max(holding, key=lambda pair: pair[0].prefixlen)
    return zone, net.prefixlen if shape == "subnet" else None


def _ask(port, name, rdtype, shape):
    options = []
    if shape == "subnet":
        options.append(dns.edns.ECSOption(str(shapes.CLIENT_SUBNET.network_address), shapes.CLIENT_SUBNET.prefixlen))
    request = dns.message.make_query(name, rdtype, use_edns=0, options=options)
    return dns.query.udp(request, "127.0.0.1", port=port, timeout=2)


def _rdata(response, rdtype):
    return [rdata for rrset in response.answer if rrset.rdtype == rdtype for rdata in rrset]


def check(plain, twin, services, instances, max_answers, shape):
    """Asks both musters for the A and SRV records of a few services; raises ServerError
    unless the twin answered only the client's zone (and echoed its Client Subnet with
    the zone subnet's scope) and plain muster answered more than one zone."""
    zone, scope = client_zone(shape)
    local = [k for k in range(instances) if zone_of_instance(k) == zone]
    limit = max_answers or instances
    problems, plain_zones, checked = [], set(), []
    for s in sorted({0, services // 2, services - 1}):  # the first, the middle, the last
        name = f"{service_name(s)}.{NAMESPACE}."
        instance_at = {address(s, k, instances): k for k in range(instances)}
        targets = {f"{instance_id(k)}.{name}": k for k in range(instances)}
        twin_a = _ask(twin.port, name, "A", shape)
        twin_srv = _ask(twin.port, name, "SRV", shape)
        answered = {
            "A": sorted(instance_at.get(r.address, -1) for r in _rdata(twin_a, dns.rdatatype.A)),
            "SRV": sorted(targets.get(str(r.target), -1) for r in _rdata(twin_srv, dns.rdatatype.SRV)),
        }
        for rdtype, got in answered.items():
            if not set(got) <= set(local) or len(got) != min(len(local), limit):
                zones = [zone_of_instance(k) if k >= 0 else "unknown" for k in got]
                problems.append(f"{LABEL} {name} {rdtype}: instances {got} in {zones}, not {min(len(local), limit)} of {zone}'s {local}")
        if shape == "subnet":
            for rdtype, response in (("A", twin_a), ("SRV", twin_srv)):
                echoed = [(o.address, o.srclen, o.scopelen) for o in response.options if isinstance(o, dns.edns.ECSOption)]
                want = [(str(shapes.CLIENT_SUBNET.network_address), shapes.CLIENT_SUBNET.prefixlen, scope)]
                if echoed != want:
                    problems.append(f"{LABEL} {name} {rdtype}: Client Subnet echoed as {echoed}, not {want}")
        # Asked a few times: with max_answers below the instances, each answer is a
        # random subset, which may hold one zone only.
        for _ in range(PLAIN_ASKS):
            plain_a = sorted(instance_at.get(r.address, -1) for r in _rdata(_ask(plain.port, name, "A", shape), dns.rdatatype.A))
            if len(plain_a) != min(instances, limit):
                problems.append(f"{plain.name} {name} A: instances {plain_a}, not {min(instances, limit)} of {instances}")
            plain_zones |= {zone_of_instance(k) for k in plain_a if k >= 0}
        checked.append({"name": name, LABEL: answered, plain.name: plain_a})
    if len(plain_zones) < 2:
        problems.append(f"{plain.name} answered instances of {sorted(plain_zones)} only: the data has no zones to choose from")
    if problems:
        raise ServerError(f"{LABEL} did not answer from the client's zone {zone}:\n  " + "\n  ".join(problems))
    return {"client_zone": zone, "scope": scope, "local_instances": local, "checked": checked}


def result(rows, checked):
    """The JSON's `locality`: the zones, what the check saw, the ratios, and each
    musters' response size at saturation (a zone's answer holds fewer records)."""
    sizes = {row["label"]: row.get("response_bytes") for row in rows if row["mode"] == "saturation" and row["label"] in ("muster", LABEL)}
    return {"zones": ZONES, **checked, "ratios": report.twin_ratios(rows, LABEL), "response_bytes": sizes}


def lines(result):
    sizes = result["response_bytes"]
    scope = f", Client Subnet echoed with scope /{result['scope']}" if result["scope"] is not None else ""
    out = [
        f"  {len(ZONES)} zones x {len(ZONES['z0'])} subnets; client in {result['client_zone']}{scope}: "
        f"{LABEL} answered only its instances {result['local_instances']} of each service checked, muster from every zone; "
        f"average response {sizes.get(LABEL)} vs {sizes.get('muster')} bytes"
    ]
    return "\n".join(out + report.twin_ratio_lines(LABEL, result["ratios"]))
