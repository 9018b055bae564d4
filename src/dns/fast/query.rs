//! Reading a query packet just far enough to know the fast path may answer it.
//!
//! Accepts the shapes resolvers send: a standard query (QR 0, opcode QUERY, TC 0), one
//! question of class IN whose name is plain labels, no answer or authority records, and
//! at most an OPT record of version 0 with no flag but DO, carrying any options that are
//! well formed: NSID (empty, as queries carry it), Client Subnet, COOKIE, padding, TCP
//! keepalive (empty) and unknown codes. Everything else (and anything malformed) is
//! `None`: the full path decides what it gets.
//!
//! muster answers every option as a server that does not implement it, except NSID and
//! Client Subnet (docs/dns.md, "EDNS"), which a zone-aware service's answer depends on;
//! COOKIE, as Knot does without its cookies module; padding, which hides nothing
//! on a clear-text transport; keepalive, which a server may omit.

use std::net::IpAddr;

use crate::dns::locality::Subnet;
use crate::dns::qname::QueryName;
use crate::dns::wire::{HEADER_LEN, OPT_LEN};

const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;
/// EDNS option codes the fast path looks into (RFC 5001, 7871, 7873, 7828).
pub const OPTION_NSID: u16 = 3;
pub const OPTION_CLIENT_SUBNET: u16 = 8;
pub const OPTION_COOKIE: u16 = 10;
const OPTION_TCP_KEEPALIVE: u16 = 11;

/// What the fast path needs from a query it may answer.
#[derive(Debug)]
pub struct Query {
    /// Where the question (name, type, class) ends; it starts at [`HEADER_LEN`].
    pub question_end: usize,
    pub qtype: u16,
    /// The client's OPT record, if it sent one.
    pub edns: Option<Edns>,
}

/// What an answer takes from the client's OPT record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    /// The client's UDP payload size.
    pub payload: u16,
    /// DO, which the response copies (RFC 3225 §3).
    pub dnssec_ok: bool,
    /// Whether the client asked for the server's identifier (RFC 5001).
    pub nsid: bool,
    /// The Client Subnet the query carries (RFC 7871).
    pub subnet: Option<Subnet>,
}

/// Parses `packet` into `name` if the fast path may answer it.
pub fn parse(packet: &[u8], name: &mut QueryName) -> Option<Query> {
    let header = packet.get(..HEADER_LEN)?;
    let flags = header[2];
    let (qr, opcode, tc) = (flags & 0x80, (flags >> 3) & 0x0F, flags & 0x02);
    let counts = [4, 6, 8, 10].map(|at| u16::from_be_bytes([header[at], header[at + 1]]));
    if qr != 0 || opcode != 0 || tc != 0 || counts[..3] != [1, 0, 0] || counts[3] > 1 {
        return None;
    }
    let mut at = HEADER_LEN;
    name.clear();
    loop {
        let len = usize::from(*packet.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        // Compression pointers and extended label types are for the full path.
        if len > 63 || !name.push(packet.get(at..at + len)?) {
            return None;
        }
        at += len;
    }
    let qtype = read_u16(packet, at)?;
    if read_u16(packet, at + 2)? != CLASS_IN {
        return None;
    }
    let question_end = at + 4;
    let edns = match counts[3] {
        0 if question_end == packet.len() => None,
        1 => Some(read_opt(packet.get(question_end..)?)?),
        _ => return None,
    };
    Some(Query {
        question_end,
        qtype,
        edns,
    })
}

/// Reads `opt`, which must hold exactly one OPT record: root owner, extended RCODE 0,
/// version 0, no flag but DO, and options that are well formed.
fn read_opt(opt: &[u8]) -> Option<Edns> {
    let fixed = opt.get(..OPT_LEN)?;
    let plain = fixed[0] == 0
        && u16::from_be_bytes([fixed[1], fixed[2]]) == TYPE_OPT
        && fixed[5] == 0
        && fixed[6] == 0
        && fixed[7] & 0x7F == 0
        && fixed[8] == 0;
    let rdlength = usize::from(u16::from_be_bytes([fixed[9], fixed[10]]));
    if !plain || opt.len() != OPT_LEN + rdlength {
        return None;
    }
    let (nsid, subnet) = read_options(&opt[OPT_LEN..])?;
    Some(Edns {
        payload: u16::from_be_bytes([fixed[3], fixed[4]]),
        dnssec_ok: fixed[7] & 0x80 != 0,
        nsid,
        subnet,
    })
}

/// Walks the options; `None` if one is malformed, else whether NSID was asked for and
/// the Client Subnet, if any.
fn read_options(mut options: &[u8]) -> Option<(bool, Option<Subnet>)> {
    let mut nsid = false;
    let mut subnet = None;
    while !options.is_empty() {
        let code = read_u16(options, 0)?;
        let len = usize::from(read_u16(options, 2)?);
        let data = options.get(4..4 + len)?;
        let well_formed = match code {
            OPTION_NSID | OPTION_TCP_KEEPALIVE => data.is_empty(),
            OPTION_CLIENT_SUBNET => {
                subnet = client_subnet(data);
                subnet.is_some()
            }
            OPTION_COOKIE => cookie_length_ok(len),
            _ => true,
        };
        if !well_formed {
            return None;
        }
        nsid |= code == OPTION_NSID;
        options = &options[4 + len..];
    }
    Some((nsid, subnet))
}

/// A client cookie of 8 bytes, alone or followed by a server cookie of 8 to 32 bytes
/// (RFC 7873 §4); any other length is FORMERR (§5.2.2), which the full path answers.
pub fn cookie_length_ok(len: usize) -> bool {
    len == 8 || (16..=40).contains(&len)
}

/// A Client Subnet option as a query carries it (RFC 7871 §6): family IPv4 or IPv6, a
/// source prefix within it, scope 0, and exactly the address bytes the prefix covers.
fn client_subnet(data: &[u8]) -> Option<Subnet> {
    let [0, family @ (1 | 2), source, 0, bytes @ ..] = data else {
        return None;
    };
    let mut octets = [0; 16];
    let width = if *family == 1 { 4 } else { 16 };
    if *source > width * 8 || bytes.len() != usize::from(source.div_ceil(8)) {
        return None;
    }
    octets[..bytes.len()].copy_from_slice(bytes);
    let address = match family {
        1 => IpAddr::from([octets[0], octets[1], octets[2], octets[3]]),
        _ => IpAddr::from(octets),
    };
    Some(Subnet {
        address,
        source_prefix: *source,
    })
}

fn read_u16(packet: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*packet.get(at)?, *packet.get(at + 1)?]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(name: &[u8], qtype: u16, opt: Option<[u8; OPT_LEN]>) -> Vec<u8> {
        let mut p = vec![
            0x12,
            0x34,
            0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(opt.is_some()),
        ];
        p.extend_from_slice(name);
        p.extend_from_slice(&qtype.to_be_bytes());
        p.extend_from_slice(&CLASS_IN.to_be_bytes());
        p.extend(opt.into_iter().flatten());
        p
    }

    const WEB: &[u8] = b"\x03WeB\x08InTeRnAl\x00";
    const OPT: [u8; OPT_LEN] = [0, 0, 41, 0x04, 0xD0, 0, 0, 0x80, 0, 0, 0];

    #[test]
    fn reads_a_plain_query_lowercasing_the_name() {
        let mut name = QueryName::default();
        let query = parse(&packet(WEB, 1, None), &mut name).unwrap();
        assert_eq!((query.qtype, query.edns), (1, None));
        assert_eq!(query.question_end, HEADER_LEN + WEB.len() + 4);
        assert_eq!(name.wire(), b"\x03web\x08internal");
        let query = parse(&packet(WEB, 33, Some(OPT)), &mut name).unwrap();
        let edns = Edns {
            payload: 1232,
            dnssec_ok: true,
            nsid: false,
            subnet: None,
        };
        assert_eq!(query.edns, Some(edns));
    }

    #[test]
    fn a_client_subnet_is_read_as_its_prefix() {
        let mut name = QueryName::default();
        let mut subnet = |data: &[u8]| {
            let packet = with_options(&[(OPTION_CLIENT_SUBNET, data)]);
            parse(&packet, &mut name).and_then(|q| q.edns?.subnet)
        };
        let v4 = subnet(&[0, 1, 20, 0, 10, 1, 16]).unwrap();
        assert_eq!(v4.address, "10.1.16.0".parse::<IpAddr>().unwrap());
        assert_eq!(v4.source_prefix, 20);
        let v6 = subnet(&[0, 2, 56, 0, 0x20, 1, 0xd, 0xb8, 0, 0, 0x12]).unwrap();
        assert_eq!(v6.address, "2001:db8:0:1200::".parse::<IpAddr>().unwrap());
        let anywhere = subnet(&[0, 1, 0, 0]).unwrap();
        assert_eq!(anywhere.source_prefix, 0);
    }

    /// `packet` with an OPT record carrying `options` (code, data).
    fn with_options(options: &[(u16, &[u8])]) -> Vec<u8> {
        let mut p = packet(WEB, 1, Some(OPT));
        let mut rdlength = 0;
        for (code, data) in options {
            p.extend_from_slice(&code.to_be_bytes());
            p.extend_from_slice(&(data.len() as u16).to_be_bytes());
            p.extend_from_slice(data);
            rdlength += 4 + data.len();
        }
        let at = p.len() - rdlength - 2;
        p[at..at + 2].copy_from_slice(&(rdlength as u16).to_be_bytes());
        p
    }

    #[test]
    fn reads_the_options_resolvers_send() {
        let mut name = QueryName::default();
        let cookie: &[u8] = &[7; 8];
        let with_server_cookie: &[u8] = &[7; 24];
        let subnet_v4: &[u8] = &[0, 1, 24, 0, 192, 0, 2];
        let subnet_v6: &[u8] = &[0, 2, 56, 0, 0x20, 1, 0xd, 0xb8, 0, 0, 0];
        let anywhere: &[u8] = &[0, 1, 0, 0];
        let padding: &[u8] = &[0; 100];
        let unknown: &[u8] = b"anything";
        let shapes: [&[(u16, &[u8])]; 9] = [
            &[(OPTION_COOKIE, cookie)],
            &[(OPTION_COOKIE, with_server_cookie)],
            &[(OPTION_CLIENT_SUBNET, subnet_v4)],
            &[(OPTION_CLIENT_SUBNET, subnet_v6)],
            &[(OPTION_CLIENT_SUBNET, anywhere)],
            &[(12, padding)],
            &[(OPTION_TCP_KEEPALIVE, &[])],
            &[(65001, unknown)],
            &[
                (OPTION_COOKIE, cookie),
                (OPTION_CLIENT_SUBNET, subnet_v4),
                (12, &[]),
            ],
        ];
        for options in shapes {
            let query = parse(&with_options(options), &mut name);
            let edns = query.and_then(|q| q.edns);
            assert!(edns.is_some_and(|e| !e.nsid), "{options:?}");
        }
        let nsid = parse(
            &with_options(&[(OPTION_NSID, &[]), (OPTION_COOKIE, cookie)]),
            &mut name,
        );
        assert!(nsid.unwrap().edns.unwrap().nsid);
    }

    #[test]
    fn leaves_malformed_options_to_the_full_path() {
        let mut name = QueryName::default();
        let shapes: [&[(u16, &[u8])]; 9] = [
            &[(OPTION_COOKIE, &[7; 7])],
            &[(OPTION_COOKIE, &[7; 12])],
            &[(OPTION_COOKIE, &[7; 41])],
            &[(OPTION_NSID, b"x")],
            &[(OPTION_TCP_KEEPALIVE, &[0, 10])],
            &[(OPTION_CLIENT_SUBNET, &[0, 3, 0, 0])],
            &[(OPTION_CLIENT_SUBNET, &[0, 1, 33, 0, 1, 2, 3, 4, 5])],
            &[(OPTION_CLIENT_SUBNET, &[0, 1, 24, 8, 192, 0, 2])],
            &[(OPTION_CLIENT_SUBNET, &[0, 1, 24, 0, 192, 0, 2, 0])],
        ];
        for options in shapes {
            assert!(
                parse(&with_options(options), &mut name).is_none(),
                "{options:?}"
            );
        }
        // An option running past the OPT record's data, and data after the last option.
        let mut short = with_options(&[(OPTION_COOKIE, &[7; 8])]);
        short.truncate(short.len() - 1);
        assert!(parse(&short, &mut name).is_none());
        let mut long = with_options(&[(OPTION_COOKIE, &[7; 8])]);
        long.push(0);
        assert!(parse(&long, &mut name).is_none());
    }

    #[test]
    fn leaves_anything_unusual_to_the_full_path() {
        let mut name = QueryName::default();
        let mut cases = Vec::new();
        let mut p = packet(WEB, 1, None);
        p[2] |= 0x80; // a response
        cases.push(p);
        let mut p = packet(WEB, 1, None);
        p[2] |= 4 << 3; // NOTIFY
        cases.push(p);
        let mut p = packet(WEB, 1, None);
        p[5] = 2; // two questions
        cases.push(p);
        let mut p = packet(WEB, 1, None);
        let class = p.len() - 1;
        p[class] = 3; // class CH
        cases.push(p);
        let mut version1 = OPT;
        version1[6] = 1;
        cases.push(packet(WEB, 1, Some(version1)));
        cases.push(packet(b"\x03web\xC0\x0C", 1, None)); // a compressed question
        let mut trailing = packet(WEB, 1, None);
        trailing.push(0);
        cases.push(trailing);
        let mut truncated = packet(WEB, 1, None);
        truncated.truncate(20);
        cases.push(truncated);
        for case in cases {
            assert!(parse(&case, &mut name).is_none(), "{case:02x?}");
        }
    }
}
