//! Reading request members, with `InvalidInput` errors that name the member.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::error::CloudMapError;
use crate::registry::MAX_TAGS;

/// A request body: a JSON object (clients send `{}` for empty input).
pub struct Input(Map<String, Value>);

/// Parses a request body; an empty body is `{}`.
pub fn parse(body: &[u8]) -> Result<Input, CloudMapError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Input(Map::new()));
    }
    match serde_json::from_slice(body) {
        Ok(Value::Object(map)) => Ok(Input(map)),
        Ok(_) => Err(CloudMapError::new(
            "SerializationException",
            "the request body must be a JSON object",
        )),
        Err(e) => Err(CloudMapError::new(
            "SerializationException",
            format!("the request body is not JSON: {e}"),
        )),
    }
}

impl Input {
    pub fn value(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    pub fn string(&self, name: &str) -> Result<&str, CloudMapError> {
        self.optional_string(name)?
            .ok_or_else(|| CloudMapError::invalid(format!("{name} is required")))
    }

    pub fn optional_string(&self, name: &str) -> Result<Option<&str>, CloudMapError> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(CloudMapError::invalid(format!("{name} must be a string"))),
        }
    }

    /// An optional string of at most `max` characters.
    pub fn bounded(&self, name: &str, max: usize) -> Result<Option<String>, CloudMapError> {
        match self.optional_string(name)? {
            Some(s) if s.chars().count() > max => Err(CloudMapError::invalid(format!(
                "{name} is longer than {max} characters"
            ))),
            other => Ok(other.map(ToOwned::to_owned)),
        }
    }

    /// An optional integer within `range`.
    pub fn integer(
        &self,
        name: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<Option<i64>, CloudMapError> {
        match self.value(name) {
            None => Ok(None),
            Some(v) => match v.as_i64() {
                Some(n) if range.contains(&n) => Ok(Some(n)),
                _ => Err(CloudMapError::invalid(format!(
                    "{name} must be an integer from {} to {}",
                    range.start(),
                    range.end()
                ))),
            },
        }
    }

    /// A map of strings to strings (Attributes, QueryParameters).
    pub fn string_map(&self, name: &str) -> Result<BTreeMap<String, String>, CloudMapError> {
        string_map(self.value(name), name)
    }

    /// A list of strings (TagKeys, attribute keys, instance ids).
    pub fn string_list(&self, name: &str) -> Result<Vec<String>, CloudMapError> {
        match self.value(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str().map(ToOwned::to_owned).ok_or_else(|| {
                        CloudMapError::invalid(format!("{name} must be a list of strings"))
                    })
                })
                .collect(),
            Some(_) => Err(CloudMapError::invalid(format!(
                "{name} must be a list of strings"
            ))),
        }
    }

    /// A nested structure, as an `Input` of its own.
    pub fn object(&self, name: &str) -> Result<Option<Input>, CloudMapError> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Input(map.clone()))),
            Some(_) => Err(CloudMapError::invalid(format!(
                "{name} must be a structure"
            ))),
        }
    }

    /// A list of structures (DnsRecords, Filters, Tags).
    pub fn objects(&self, name: &str) -> Result<Vec<Input>, CloudMapError> {
        match self.value(name) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| match item {
                    Value::Object(map) => Ok(Input(map.clone())),
                    _ => Err(CloudMapError::invalid(format!(
                        "{name} must be a list of structures"
                    ))),
                })
                .collect(),
            Some(_) => Err(CloudMapError::invalid(format!(
                "{name} must be a list of structures"
            ))),
        }
    }

    /// `Tags: [{Key, Value}]`: at most 50, keys of 1-128 characters not starting with
    /// `aws:` (reserved for AWS), values of 0-256 characters (Cloud Map's rules).
    pub fn tags(&self, name: &str) -> Result<BTreeMap<String, String>, CloudMapError> {
        let tags = self.objects(name)?;
        if tags.len() > MAX_TAGS {
            return Err(CloudMapError::new(
                "TooManyTagsException",
                format!("a resource can have at most {MAX_TAGS} tags"),
            ));
        }
        tags.iter()
            .map(|tag| {
                let key = tag_key(tag.string("Key")?)?;
                let value = tag.string("Value")?;
                if value.chars().count() > 256 {
                    return Err(CloudMapError::invalid(format!(
                        "{name}: the value of tag {key:?} is longer than 256 characters"
                    )));
                }
                Ok((key.to_owned(), value.to_owned()))
            })
            .collect()
    }

    /// `TagKeys`: at most 200 keys (Cloud Map's limit), each a valid tag key.
    pub fn tag_keys(&self, name: &str) -> Result<Vec<String>, CloudMapError> {
        let keys = self.string_list(name)?;
        if keys.len() > 200 {
            return Err(CloudMapError::invalid(format!("{name}: at most 200 keys")));
        }
        for key in &keys {
            tag_key(key)?;
        }
        Ok(keys)
    }

    /// `MaxResults` (default `default`, at most `max`) and the start offset from `NextToken`.
    pub fn page(&self, default: i64, max: i64) -> Result<(usize, usize), CloudMapError> {
        let limit = self.integer("MaxResults", 1..=max)?.unwrap_or(default) as usize;
        let start = match self.optional_string("NextToken")? {
            None => 0,
            Some(token) => token.parse().map_err(|_| {
                CloudMapError::invalid("NextToken is not a token this API returned")
            })?,
        };
        Ok((limit, start))
    }
}

fn string_map(
    value: Option<&Value>,
    name: &str,
) -> Result<BTreeMap<String, String>, CloudMapError> {
    match value {
        None => Ok(BTreeMap::new()),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(CloudMapError::invalid(format!(
                    "{name}.{k} must be a string"
                ))),
            })
            .collect(),
        Some(_) => Err(CloudMapError::invalid(format!(
            "{name} must be a map of strings"
        ))),
    }
}

/// A tag key: 1-128 characters, not in the `aws:` namespace.
fn tag_key(key: &str) -> Result<&str, CloudMapError> {
    let length = key.chars().count();
    if !(1..=128).contains(&length) {
        return Err(CloudMapError::invalid(format!(
            "tag key {:?} must be 1-128 characters",
            key.chars().take(40).collect::<String>()
        )));
    }
    if key.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("aws:")) {
        return Err(CloudMapError::invalid(format!(
            "tag key {key:?}: the aws: prefix is reserved for AWS"
        )));
    }
    Ok(key)
}

/// One page of `items` and the `NextToken` for the rest.
pub fn paginate<T>(items: Vec<T>, limit: usize, start: usize) -> (Vec<T>, Option<String>) {
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(limit).collect();
    let next = (start + limit < total).then(|| (start + limit).to_string());
    (page, next)
}
