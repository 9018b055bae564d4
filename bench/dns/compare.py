"""Checks that every server answers the benchmark's names alike before it is measured.

For each probe (name, type) the answer of each server is compared with muster's: the
RCODE, the AA flag and the answer section must be equal as sets of records (muster
answers in random order); a difference there means the data is not the same and the
run stops. Differences in the authority and additional sections are policies of the
servers (NSD adds the apex NS to positive answers unless `minimal-responses` is on, which
also drops SRV glue) and are reported, not fatal.
"""

import dns.flags
import dns.rcode
import dns.rdatatype

from servers import query


def _records(section):
    """A section as sorted lowercase text lines, the OPT record left out."""
    return sorted(
        f"{rrset.name} {rrset.ttl} {dns.rdatatype.to_text(rrset.rdtype)} {rdata}".lower()
        for rrset in section
        if rrset.rdtype != dns.rdatatype.OPT
        for rdata in rrset
    )


def shape(response):
    return {
        "rcode": dns.rcode.to_text(response.rcode()),
        "aa": bool(response.flags & dns.flags.AA),
        "answer": _records(response.answer),
        "authority": _records(response.authority),
        "additional": _records(response.additional),
    }


def compare(reference, others, probes):
    """Returns (fatal differences, notes) of `others` against `reference`."""
    fatal, notes = [], []
    for name, rdtype in probes:
        want = shape(query(reference.port, name, rdtype, timeout=2))
        for server in others:
            got = shape(query(server.port, name, rdtype, timeout=2))
            for field in ("rcode", "aa", "answer"):
                if got[field] != want[field]:
                    fatal.append(f"{server.name} {name} {rdtype} {field}: {got[field]} != muster's {want[field]}")
            for field in ("authority", "additional"):
                extra = sorted(set(got[field]) - set(want[field]))
                missing = sorted(set(want[field]) - set(got[field]))
                if extra or missing:
                    notes.append(f"{server.name} {name} {rdtype} {field}: extra {extra}, missing {missing}")
    return fatal, notes
