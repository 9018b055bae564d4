//! Reading an UPDATE's prerequisite and update sections (RFC 2136 3.2 and 3.4.1) into
//! plain data, checking what the RFC makes FORMERR or NOTZONE. Pure: no registry, no
//! I/O; what the records mean for instances is [`plan`](super::plan)'s job.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

/// A name of the zone relative to its origin, lowercased, most specific label first:
/// `[]` the apex, `["web"]` a service, `["web-1", "web"]` an instance.
pub type Relative = Vec<String>;

/// One prerequisite (RFC 2136 2.4).
#[derive(Clone, Debug, PartialEq)]
pub enum Prerequisite {
    /// yxdomain: the name owns at least one record.
    NameInUse(Relative),
    /// nxdomain: the name owns no record.
    NameNotInUse(Relative),
    /// yxrrset, value-independent: the name has records of the type.
    RrsetExists(Relative, RecordType),
    /// nxrrset: the name has no record of the type.
    RrsetAbsent(Relative, RecordType),
    /// yxrrset, value-dependent: the name's records of the type are exactly these.
    RrsetEquals(Relative, RecordType, Vec<RData>),
}

/// One update (RFC 2136 2.5).
#[derive(Clone, Debug, PartialEq)]
pub enum Update {
    /// Add a record (class IN); its TTL is not kept (the service's TTL applies).
    Add(Relative, RData),
    /// Delete the records of a type at a name (class ANY).
    DeleteRrset(Relative, RecordType),
    /// Delete every record at a name (class ANY, type ANY).
    DeleteName(Relative),
    /// Delete one record (class NONE).
    DeleteRecord(Relative, RData),
}

/// An UPDATE, read.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Parsed {
    pub prerequisites: Vec<Prerequisite>,
    pub updates: Vec<Update>,
}

/// Reads the prerequisite and update sections of an UPDATE of `zone`.
pub fn parse(
    zone: &Name,
    prerequisites: &[Record],
    updates: &[Record],
) -> Result<Parsed, ResponseCode> {
    let mut parsed = Parsed::default();
    for record in prerequisites {
        let name = relative(zone, &record.name)?;
        let rtype = record.record_type();
        if record.ttl != 0 {
            return Err(ResponseCode::FormErr);
        }
        let empty = matches!(record.data, RData::Update0(_));
        let prerequisite = match record.dns_class {
            DNSClass::ANY | DNSClass::NONE if !empty => return Err(ResponseCode::FormErr),
            DNSClass::ANY if rtype == RecordType::ANY => Prerequisite::NameInUse(name),
            DNSClass::ANY => Prerequisite::RrsetExists(name, rtype),
            DNSClass::NONE if rtype == RecordType::ANY => Prerequisite::NameNotInUse(name),
            DNSClass::NONE => Prerequisite::RrsetAbsent(name, rtype),
            DNSClass::IN if !empty && !is_meta(rtype) => {
                // Value-dependent: the records of one name and type form one RRset.
                let same = parsed.prerequisites.iter_mut().find_map(|p| match p {
                    Prerequisite::RrsetEquals(n, t, data) if *n == name && *t == rtype => {
                        Some(data)
                    }
                    _ => None,
                });
                match same {
                    Some(data) => {
                        if !data.contains(&record.data) {
                            data.push(record.data.clone());
                        }
                        continue;
                    }
                    None => Prerequisite::RrsetEquals(name, rtype, vec![record.data.clone()]),
                }
            }
            _ => return Err(ResponseCode::FormErr),
        };
        parsed.prerequisites.push(prerequisite);
    }
    for record in updates {
        let name = relative(zone, &record.name)?;
        let rtype = record.record_type();
        let empty = matches!(record.data, RData::Update0(_));
        let update = match record.dns_class {
            DNSClass::IN if !empty && !is_meta(rtype) => Update::Add(name, record.data.clone()),
            DNSClass::ANY if record.ttl != 0 || !empty => return Err(ResponseCode::FormErr),
            DNSClass::ANY if rtype == RecordType::ANY => Update::DeleteName(name),
            DNSClass::ANY if !is_meta(rtype) => Update::DeleteRrset(name, rtype),
            DNSClass::NONE if record.ttl == 0 && !empty && !is_meta(rtype) => {
                Update::DeleteRecord(name, record.data.clone())
            }
            _ => return Err(ResponseCode::FormErr),
        };
        parsed.updates.push(update);
    }
    Ok(parsed)
}

/// `name` relative to `zone`, or NOTZONE when it is outside it. Labels that are not
/// UTF-8 are kept lossily: no registry name can match them, and [`plan`](super::plan)
/// refuses names it does not know.
fn relative(zone: &Name, name: &Name) -> Result<Relative, ResponseCode> {
    if !zone.zone_of(name) {
        return Err(ResponseCode::NotZone);
    }
    let depth = usize::from(name.num_labels().saturating_sub(zone.num_labels()));
    Ok(name
        .iter()
        .take(depth)
        .map(|label| String::from_utf8_lossy(label).to_ascii_lowercase())
        .collect())
}

/// Types that name no records (ANY, AXFR, IXFR, MAILA, MAILB, OPT, TSIG): not allowed
/// where a record's type is meant.
fn is_meta(rtype: RecordType) -> bool {
    // 251..=255: IXFR, AXFR, MAILB, MAILA, ANY.
    (251..=255).contains(&u16::from(rtype)) || matches!(rtype, RecordType::OPT | RecordType::TSIG)
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
