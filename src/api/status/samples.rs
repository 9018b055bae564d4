//! The counters the status pages show, read from the process's metrics registry as
//! `/metrics` encodes it: the pages show the very numbers a scraper sees, and no module
//! has to expose its counters a second way.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;

/// One sample: a metric name (with its `_total`/`_count` suffix), its labels, its value.
#[derive(Debug, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every sample of the registry at one moment.
pub struct Samples(Vec<Sample>);

impl Samples {
    /// Encodes `registry` as `/metrics` does and reads it back.
    pub fn read(registry: &Registry) -> Self {
        let mut text = String::new();
        match prometheus_client::encoding::text::encode(&mut text, registry) {
            Ok(()) => Self::parse(&text),
            Err(_) => Self(Vec::new()),
        }
    }

    /// Reads the OpenMetrics text format's sample lines; comments and lines it cannot
    /// read are skipped.
    pub fn parse(text: &str) -> Self {
        Self(text.lines().filter_map(parse_line).collect())
    }

    /// The samples named `name`.
    pub fn named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.0.iter().filter(move |s| s.name == name)
    }

    /// The samples whose name starts with `prefix`.
    pub fn prefixed<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
        self.0.iter().filter(move |s| s.name.starts_with(prefix))
    }

    /// The sum of every series named `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.named(name).map(|s| s.value).sum()
    }

    /// The series named `name` summed by the value of `label`.
    pub fn by(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let mut sums = BTreeMap::new();
        for sample in self.named(name) {
            let key = sample.label(label).unwrap_or_default().to_owned();
            *sums.entry(key).or_insert(0.0) += sample.value;
        }
        sums
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    if line.starts_with('#') || line.is_empty() {
        return None;
    }
    let name_end = line.find(['{', ' '])?;
    let name = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner;
        loop {
            rest = rest.trim_start_matches(',');
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = rest.split_once("=\"")?;
            let (value, after) = quoted(after)?;
            labels.push((key.to_owned(), value));
            rest = after;
        }
    }
    let value = rest.split_whitespace().next()?.parse().ok()?;
    Some(Sample {
        name,
        labels,
        value,
    })
}

/// A label value up to its closing quote, unescaped, and what follows the quote.
fn quoted(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Some((value, &text[at + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            c => value.push(c),
        }
    }
    None
}

/// How many samples of a counter [`Rate`] keeps: one a second at most, so a minute.
const RATE_SAMPLES: usize = 60;
/// The window a rate is taken over.
const RATE_WINDOW: Duration = Duration::from_secs(10);

/// A counter's rate per second, from the values the pages read: a sample is kept at
/// most once a second (however many viewers poll), and the rate is taken over the last
/// ten seconds or so.
#[derive(Default)]
pub struct Rate(Mutex<VecDeque<(Instant, f64)>>);

impl Rate {
    /// Records `value` read at `now`; the rate since the oldest sample within the
    /// window, and over how long; none until a second has passed.
    pub fn observe(&self, now: Instant, value: f64) -> Option<(f64, Duration)> {
        let mut samples = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let due = samples
            .back()
            .is_none_or(|(at, _)| now.saturating_duration_since(*at) >= Duration::from_secs(1));
        if due {
            samples.push_back((now, value));
            while samples.len() > RATE_SAMPLES {
                samples.pop_front();
            }
        }
        let (at, was) = samples
            .iter()
            .find(|(at, _)| now.saturating_duration_since(*at) <= RATE_WINDOW)?;
        let over = now.saturating_duration_since(*at);
        if over < Duration::from_secs(1) {
            return None;
        }
        // A counter that went down was reset (it cannot in one process): no rate.
        let delta = (value - was).max(0.0);
        Some((delta / over.as_secs_f64(), over))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_names_labels_and_values_with_escapes() {
        let samples = Samples::parse(
            "# HELP x y\n# TYPE muster_dns_queries counter\n\
             muster_dns_queries_total{qtype=\"A\",rcode=\"NOERROR\"} 7\n\
             muster_dns_queries_total{qtype=\"AAAA\",rcode=\"NXDOMAIN\"} 2\n\
             muster_x{v=\"a\\\"b\\\\c\"} 1.5\n\
             muster_dns_truncated_total 3\n# EOF\n",
        );
        assert_eq!(samples.sum("muster_dns_queries_total"), 9.0);
        assert_eq!(
            samples.by("muster_dns_queries_total", "rcode"),
            BTreeMap::from([("NOERROR".into(), 7.0), ("NXDOMAIN".into(), 2.0)])
        );
        assert_eq!(
            samples.named("muster_x").next().unwrap().label("v"),
            Some("a\"b\\c")
        );
        assert_eq!(samples.sum("muster_dns_truncated_total"), 3.0);
    }

    #[test]
    fn a_rate_needs_a_second_and_keeps_one_sample_a_second() {
        let rate = Rate::default();
        let start = Instant::now();
        assert_eq!(rate.observe(start, 0.0), None);
        assert_eq!(rate.observe(start + Duration::from_millis(500), 5.0), None);
        let (per_second, over) = rate.observe(start + Duration::from_secs(2), 20.0).unwrap();
        assert_eq!((per_second, over), (10.0, Duration::from_secs(2)));
        // Past the window, the oldest samples no longer count.
        let later = start + Duration::from_secs(30);
        assert_eq!(rate.observe(later, 50.0), None);
        let (per_second, _) = rate.observe(later + Duration::from_secs(5), 100.0).unwrap();
        assert_eq!(per_second, 10.0);
    }
}
