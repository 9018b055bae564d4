//! The load clients' command line: `--flag value` pairs, every flag taking a value. The
//! clients are started by the bench/ scripts, never by hand, so a bad command line is a
//! bug in a script: it panics with what was wrong rather than printing a usage text.

/// The value given to one flag.
pub struct Value(String);

impl Value {
    /// The value as it was given.
    pub fn text(self) -> String {
        self.0
    }

    /// The value as a count (writers, writes, a rate, ...).
    pub fn number(&self) -> u64 {
        self.0.parse().expect("a number")
    }

    /// The value as a (fractional) number of seconds.
    pub fn seconds(&self) -> f64 {
        self.0.parse().expect("seconds")
    }
}

/// The `(flag, value)` pairs of the command line in order, read as the caller takes them
/// (so a flag it does not know is reported before a later flag's missing value).
pub fn pairs() -> impl Iterator<Item = (String, Value)> {
    let mut args = std::env::args().skip(1);
    std::iter::from_fn(move || {
        let flag = args.next()?;
        let value = args.next().expect("every flag takes a value");
        Some((flag, Value(value)))
    })
}

/// Stops the client on a flag it does not know.
pub fn unknown(flag: &str) -> ! {
    panic!("unknown flag {flag}")
}
