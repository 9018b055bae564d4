"""Query shapes real resolvers send (issue 17): the dnsperf flags of each, and whether
the query file's names are in mixed case.

BIND resolvers and dig send a client COOKIE and DO; Unbound sends names in mixed case
(use-caps-for-id, "0x20"); public resolvers forward EDNS Client Subnet; clients that care
about privacy pad. dnsperf cannot send an option with empty data, so NSID and TCP
keepalive (empty in queries) are left to the differential test (tests/it/fast_path.rs).
"""

import ipaddress
import random

# A client cookie alone (RFC 7873): 8 bytes.
COOKIE = "10:0102030405060708"
# The client subnet the `subnet` shape's queries speak for.
CLIENT_SUBNET = ipaddress.IPv4Network("192.0.2.0/24")
# Client Subnet (RFC 7871 §6): family 1 (IPv4), source prefix, scope 0, the address cut
# to the prefix's bytes: 8:00011800c00002.
SUBNET = "8:0001%02x00%s" % (
    CLIENT_SUBNET.prefixlen,
    CLIENT_SUBNET.network_address.packed[: (CLIENT_SUBNET.prefixlen + 7) // 8].hex(),
)
# Padding (RFC 7830): 64 zero bytes.
PADDING = "12:" + "00" * 64

SHAPES = {
    "plain": ["-e"],
    "no-edns": [],
    "do": ["-D"],
    "cookie": ["-e", "-E", COOKIE],
    "subnet": ["-e", "-E", SUBNET],
    "padding": ["-e", "-E", PADDING],
    "mixed-case": ["-e"],
    # As a BIND resolver with Unbound's 0x20: DO, a cookie, names in mixed case.
    "resolver": ["-D", "-E", COOKIE],
}
MIXED_CASE = {"mixed-case", "resolver"}


def dnsperf_flags(shape):
    """dnsperf's flags for `shape` (one of SHAPES)."""
    return list(SHAPES[shape])


def query_file_text(text, shape, seed):
    """The query file for `shape`: names in random case where the shape asks for it."""
    if shape not in MIXED_CASE:
        return text
    rng = random.Random(seed)
    lines = []
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        mixed = "".join(c.upper() if rng.random() < 0.5 else c for c in name)
        lines.append(f"{mixed} {rest}")
    return "\n".join(lines) + "\n"
