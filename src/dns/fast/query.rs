//! Reading a query packet just far enough to know the fast path may answer it.
//!
//! Accepts only the common shape: a standard query (QR 0, opcode QUERY, TC 0), one
//! question of class IN whose name is plain labels, no answer or authority records, and
//! at most an OPT record of version 0 with no options and no flag but DO. Everything else
//! (and anything malformed) is `None`: the full path decides what it gets.

/// Bytes of the DNS header.
const HEADER_LEN: usize = 12;
/// Labels the fast path resolves; deeper names go to the full path.
pub const MAX_LABELS: usize = 32;
/// The longest name on the wire (RFC 1035).
const MAX_NAME_LEN: usize = 255;
/// Bytes of an OPT record without options.
pub const OPT_LEN: usize = 11;
const TYPE_OPT: u16 = 41;
const CLASS_IN: u16 = 1;

/// What the fast path needs from a query it may answer.
#[derive(Debug)]
pub struct Query {
    /// Where the question (name, type, class) ends; it starts at [`HEADER_LEN`].
    pub question_end: usize,
    pub qtype: u16,
    /// The client's UDP payload size, if it sent an OPT record.
    pub edns_payload: Option<u16>,
}

/// The question name lowercased, with where each label is: filled by [`parse`].
pub struct QueryName {
    bytes: [u8; MAX_NAME_LEN],
    labels: [(u8, u8); MAX_LABELS],
    count: usize,
}

impl Default for QueryName {
    fn default() -> Self {
        Self {
            bytes: [0; MAX_NAME_LEN],
            labels: [(0, 0); MAX_LABELS],
            count: 0,
        }
    }
}

impl QueryName {
    /// The labels, lowercase, left to right, into `out`'s first slots.
    pub fn labels<'a>(&'a self, out: &mut [&'a [u8]; MAX_LABELS]) -> usize {
        for (slot, &(start, len)) in out.iter_mut().zip(&self.labels[..self.count]) {
            *slot = &self.bytes[usize::from(start)..usize::from(start) + usize::from(len)];
        }
        self.count
    }
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
    name.count = 0;
    let mut written = 0;
    loop {
        let len = usize::from(*packet.get(at)?);
        at += 1;
        if len == 0 {
            break;
        }
        // Compression pointers and extended label types are for the full path.
        if len > 63 || name.count == MAX_LABELS || written + len + 1 > MAX_NAME_LEN {
            return None;
        }
        let label = packet.get(at..at + len)?;
        for (to, from) in name.bytes[written..written + len].iter_mut().zip(label) {
            *to = from.to_ascii_lowercase();
        }
        name.labels[name.count] = (written as u8, len as u8);
        name.count += 1;
        written += len + 1;
        at += len;
    }
    let qtype = read_u16(packet, at)?;
    if read_u16(packet, at + 2)? != CLASS_IN {
        return None;
    }
    let question_end = at + 4;
    let edns_payload = if counts[3] == 1 {
        Some(read_opt(packet, question_end)?)
    } else {
        None
    };
    let end = question_end + if edns_payload.is_some() { OPT_LEN } else { 0 };
    (end == packet.len()).then_some(Query {
        question_end,
        qtype,
        edns_payload,
    })
}

/// The payload size of a plain OPT record at `at`: root owner, extended RCODE 0,
/// version 0, no flag but DO, no options.
fn read_opt(packet: &[u8], at: usize) -> Option<u16> {
    let opt = packet.get(at..at + OPT_LEN)?;
    let plain = opt[0] == 0
        && u16::from_be_bytes([opt[1], opt[2]]) == TYPE_OPT
        && opt[5] == 0
        && opt[6] == 0
        && opt[7] & 0x7F == 0
        && opt[8] == 0
        && opt[9] == 0
        && opt[10] == 0;
    plain.then(|| u16::from_be_bytes([opt[3], opt[4]]))
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
        assert_eq!((query.qtype, query.edns_payload), (1, None));
        assert_eq!(query.question_end, HEADER_LEN + WEB.len() + 4);
        let mut labels = [&[][..]; MAX_LABELS];
        let count = name.labels(&mut labels);
        assert_eq!(&labels[..count], [&b"web"[..], b"internal"]);
        let query = parse(&packet(WEB, 33, Some(OPT)), &mut name).unwrap();
        assert_eq!(query.edns_payload, Some(1232));
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
        let mut option = packet(WEB, 1, Some(OPT));
        let rdlen = option.len() - 1;
        option[rdlen] = 4;
        option.extend_from_slice(&[0, 10, 0, 0]); // an (empty) cookie option
        cases.push(option);
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
