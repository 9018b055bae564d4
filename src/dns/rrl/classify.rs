//! What a response is, for rate limiting: its class and the name it is counted under,
//! read from the response's own bytes, so the fast path's answers, the full path's and
//! forwarded ones are judged alike.
//!
//! Owns: reading a DNS response's header, question and (for NXDOMAIN) the owner of its
//! first authority record, compression pointers included. Must not: allocate, or trust
//! any count or pointer in the message (every read is bounded).

use std::hash::Hasher;

use crate::dns::wire::HEADER_LEN;

/// The kinds of response that are limited separately, as Knot, NSD and BIND class them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// NOERROR with records (or truncated): keyed by the question's name and type.
    Positive,
    /// NXDOMAIN: keyed by the zone (the owner of the SOA in the authority section), so
    /// random names under one zone share one limit.
    NxDomain,
    /// NOERROR without records: keyed by the question's name.
    NoData,
    /// Every other rcode (REFUSED, SERVFAIL, FORMERR, NOTIMP, NOTAUTH, ...): keyed by
    /// the source prefix alone.
    Error,
}

impl Class {
    pub const ALL: [Class; 4] = [
        Class::Positive,
        Class::NxDomain,
        Class::NoData,
        Class::Error,
    ];

    /// The `class` label of the RRL metrics.
    pub fn label(self) -> &'static str {
        match self {
            Class::Positive => "positive",
            Class::NxDomain => "nxdomain",
            Class::NoData => "nodata",
            Class::Error => "error",
        }
    }
}

const RCODE_NOERROR: u8 = 0;
const RCODE_NXDOMAIN: u8 = 3;
const FLAG_TC: u8 = 0x02;
/// Compression pointers followed while reading one name, at most.
const MAX_JUMPS: usize = 16;

/// A response read for rate limiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classified {
    pub class: Class,
    /// Where the question ends (the header's end if there is none): what a slipped
    /// response keeps.
    pub question_end: usize,
}

/// Reads `response`'s class and feeds what it is keyed by (beyond the source prefix)
/// into `key`. A response too malformed to read is an error, keyed by prefix alone.
pub fn classify(response: &[u8], key: &mut impl Hasher) -> Classified {
    let error = |question_end| Classified {
        class: Class::Error,
        question_end,
    };
    let Some(header) = response.get(..HEADER_LEN) else {
        return error(response.len());
    };
    let rcode = header[3] & 0x0F;
    let truncated = header[2] & FLAG_TC != 0;
    let count = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    let (questions, answers) = (count(4), count(6));
    if questions != 1 {
        return error(HEADER_LEN);
    }
    let mut name = NameBuffer::default();
    let Some(after_name) = read_name(response, HEADER_LEN, &mut name) else {
        return error(HEADER_LEN);
    };
    let question_end = after_name + 4;
    let Some(qtype) = response.get(after_name..after_name + 2) else {
        return error(HEADER_LEN);
    };
    let class = match rcode {
        RCODE_NOERROR if answers > 0 || truncated => {
            key.write(name.bytes());
            key.write(qtype);
            Class::Positive
        }
        RCODE_NOERROR => {
            key.write(name.bytes());
            Class::NoData
        }
        RCODE_NXDOMAIN => {
            let mut zone = NameBuffer::default();
            if zone_of_negative(response, question_end, answers, &mut zone).is_some() {
                key.write(zone.bytes());
            }
            Class::NxDomain
        }
        _ => Class::Error,
    };
    Classified {
        class,
        question_end,
    }
}

/// Reads into `zone` the owner of the first authority record, after the question (which
/// ends at `at`) and `answers` answer records.
fn zone_of_negative(
    response: &[u8],
    mut at: usize,
    answers: u16,
    zone: &mut NameBuffer,
) -> Option<()> {
    for _ in 0..answers {
        let mut skipped = NameBuffer::default();
        at = read_name(response, at, &mut skipped)?;
        let rdlength = response.get(at + 8..at + 10)?;
        at += 10 + usize::from(u16::from_be_bytes([rdlength[0], rdlength[1]]));
    }
    let count = response.get(8..10)?;
    if u16::from_be_bytes([count[0], count[1]]) == 0 {
        return None;
    }
    read_name(response, at, zone).map(|_| ())
}

/// What a slipped response must know of the records after the question.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trailer {
    /// Where the OPT record is: RFC 6891 has an EDNS query's answer carry one, TC or not.
    pub opt: Option<std::ops::Range<usize>>,
    /// Whether a TSIG record signs the response.
    pub signed: bool,
}

const TYPE_OPT: [u8; 2] = 41u16.to_be_bytes();
const TYPE_TSIG: [u8; 2] = 250u16.to_be_bytes();

/// Finds the OPT record and any TSIG record in `response`'s additional section, reading
/// every record after the question (which ends at `question_end`). A record it cannot
/// read ends the search with what it found before it.
pub fn trailer(response: &[u8], question_end: usize) -> Trailer {
    let mut found = Trailer::default();
    let Some(header) = response.get(..HEADER_LEN) else {
        return found;
    };
    let count = |at: usize| usize::from(u16::from_be_bytes([header[at], header[at + 1]]));
    let before = count(6) + count(8);
    let mut at = question_end;
    for index in 0..before + count(10) {
        let start = at;
        let Some(end) = skip_name(response, at) else {
            return found;
        };
        let (Some(kind), Some(rdlength)) =
            (response.get(end..end + 2), response.get(end + 8..end + 10))
        else {
            return found;
        };
        at = end + 10 + usize::from(u16::from_be_bytes([rdlength[0], rdlength[1]]));
        if at > response.len() {
            return found;
        }
        if index >= before && kind == TYPE_OPT {
            found.opt = Some(start..at);
        }
        found.signed |= index >= before && kind == TYPE_TSIG;
    }
    found
}

/// Where the name at `at` ends, without following its compression pointer.
fn skip_name(message: &[u8], mut at: usize) -> Option<usize> {
    loop {
        match *message.get(at)? {
            0 => return Some(at + 1),
            len @ 1..=63 => at += 1 + usize::from(len),
            0xC0..=0xFF => return Some(at + 2),
            _ => return None,
        }
    }
}

/// A name as lowercase wire form (labels with their lengths, no root), on the stack.
struct NameBuffer {
    bytes: [u8; 255],
    len: usize,
}

impl Default for NameBuffer {
    fn default() -> Self {
        Self {
            bytes: [0; 255],
            len: 0,
        }
    }
}

impl NameBuffer {
    fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Reads the name at `at` (following compression pointers, which must point backwards)
/// into `name`; returns where the name ends at `at`.
fn read_name(message: &[u8], mut at: usize, name: &mut NameBuffer) -> Option<usize> {
    let mut end = None;
    let mut jumps = 0;
    loop {
        let len = *message.get(at)?;
        match len {
            0 => return Some(end.unwrap_or(at + 1)),
            1..=63 => {
                let label = message.get(at..at + 1 + usize::from(len))?;
                let to = name.bytes.get_mut(name.len..name.len + label.len())?;
                for (to, from) in to.iter_mut().zip(label) {
                    *to = from.to_ascii_lowercase();
                }
                name.len += label.len();
                at += label.len();
            }
            0xC0..=0xFF => {
                let low = *message.get(at + 1)?;
                let target = usize::from(u16::from_be_bytes([len & 0x3F, low]));
                jumps += 1;
                if target >= at || jumps > MAX_JUMPS {
                    return None;
                }
                end.get_or_insert(at + 2);
                at = target;
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::hash::{DefaultHasher, Hasher};

    use super::*;

    fn key_of(response: &[u8]) -> (Classified, u64) {
        let mut hasher = DefaultHasher::new();
        let classified = classify(response, &mut hasher);
        (classified, hasher.finish())
    }

    /// A response header with `rcode` and counts, then the question `name` type A.
    fn response(rcode: u8, counts: [u16; 3], name: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0x12, 0x34, 0x84, rcode, 0, 1];
        for count in counts {
            bytes.extend_from_slice(&count.to_be_bytes());
        }
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(&[0, 1, 0, 1]);
        bytes
    }

    #[test]
    fn classes_follow_rcode_and_answers() {
        let name = b"\x03web\x08internal\x00";
        let end = HEADER_LEN + name.len() + 4;
        for (rcode, answers, class) in [
            (0, 1, Class::Positive),
            (0, 0, Class::NoData),
            (3, 0, Class::NxDomain),
            (5, 0, Class::Error),
            (2, 0, Class::Error),
        ] {
            let (classified, _) = key_of(&response(rcode, [answers, 0, 0], name));
            assert_eq!(classified.class, class, "rcode {rcode}");
            assert_eq!(classified.question_end, end);
        }
        let mut truncated = response(0, [0, 0, 0], name);
        truncated[2] |= FLAG_TC;
        assert_eq!(key_of(&truncated).0.class, Class::Positive);
    }

    #[test]
    fn names_are_keyed_without_case_and_nxdomains_by_zone() {
        let (_, lower) = key_of(&response(0, [1, 0, 0], b"\x03web\x08internal\x00"));
        let (_, upper) = key_of(&response(0, [1, 0, 0], b"\x03WeB\x08INTERNAL\x00"));
        let (_, other) = key_of(&response(0, [1, 0, 0], b"\x03api\x08internal\x00"));
        assert_eq!(lower, upper);
        assert_ne!(lower, other);
        // Two NXDOMAINs under one zone, the SOA's owner a pointer into the question.
        let nxdomain = |label: &[u8]| {
            let mut bytes = response(3, [0, 1, 0], &[label, b"\x08internal\x00"].concat());
            let zone = (HEADER_LEN + label.len()) as u8;
            bytes.extend_from_slice(&[0xC0, zone, 0, 6, 0, 1, 0, 0, 0, 1, 0, 0]);
            bytes
        };
        assert_eq!(
            key_of(&nxdomain(b"\x01a")).1,
            key_of(&nxdomain(b"\x05other")).1
        );
        assert_ne!(
            key_of(&nxdomain(b"\x01a")).1,
            key_of(&response(3, [0, 0, 0], b"\x01a\x08internal\x00")).1,
            "an NXDOMAIN without SOA is keyed by prefix alone"
        );
    }

    #[test]
    fn malformed_responses_are_errors_and_loops_end() {
        assert_eq!(key_of(&[0; 5]).0.class, Class::Error);
        let looping = response(0, [1, 0, 0], b"\xC0\x0C");
        assert_eq!(key_of(&looping).0.class, Class::Error);
        let mut forward = response(3, [0, 1, 0], b"\x01a\x00");
        forward.extend_from_slice(&[0xC0, 0xFF]);
        assert_eq!(
            key_of(&forward).0.class,
            Class::NxDomain,
            "an unreadable SOA owner"
        );
        let mut no_question = response(5, [0, 0, 0], b"");
        no_question[5] = 0;
        no_question.truncate(HEADER_LEN);
        assert_eq!(key_of(&no_question).0.question_end, HEADER_LEN);
    }
}
