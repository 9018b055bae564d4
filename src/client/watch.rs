//! `muster watch [NS[/SVC]]`: follows `GET /v1/watch` (server-sent events, docs/rest.md
//! "The change stream") and prints a line per change until interrupted. A stream that ends
//! (muster restarting, a reader that fell behind) is resumed once with `Last-Event-ID`,
//! so no change is lost while the server keeps it; a `missed` event says when it did not.

use std::time::Duration;

use serde_json::Value;

use super::http::{Api, segment};
use super::settings::Output;
use super::{Failure, Target};

/// The longest a stream may stay silent: muster pings at least every 15 s.
const IDLE: Duration = Duration::from_secs(60);
/// The longest event line the client holds (muster's are well under 1 KiB).
const MAX_LINE_BYTES: usize = 1024 * 1024;
/// Pause before resuming an ended stream.
const RESUME_AFTER: Duration = Duration::from_secs(1);

/// One server-sent event: its `id`, `event` and `data` fields.
#[derive(Debug, Default, PartialEq)]
pub struct Event {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

/// Splits a byte stream into events (the WHATWG "event stream" format: `field: value`
/// lines, a blank line ends an event, `:` lines are comments).
#[derive(Default)]
pub struct Parser {
    line: Vec<u8>,
    event: Event,
    has_data: bool,
}

impl Parser {
    /// Feeds bytes; returns the events they completed.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Event>, Failure> {
        let mut events = Vec::new();
        for &byte in bytes {
            if byte != b'\n' {
                if self.line.len() >= MAX_LINE_BYTES {
                    return Err(Failure::Server(format!(
                        "the change stream sent a line longer than {MAX_LINE_BYTES} bytes"
                    )));
                }
                self.line.push(byte);
                continue;
            }
            let line = std::mem::take(&mut self.line);
            let line = String::from_utf8_lossy(line.strip_suffix(b"\r").unwrap_or(&line));
            if line.is_empty() {
                if self.has_data {
                    events.push(std::mem::take(&mut self.event));
                }
                self.event = Event::default();
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            match field {
                "id" => self.event.id = Some(value),
                "event" => self.event.event = Some(value),
                "data" => {
                    if self.has_data {
                        self.event.data.push('\n');
                    }
                    self.event.data.push_str(&value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        Ok(events)
    }
}

pub async fn watch(api: &Api, target: Option<&str>) -> Result<(), Failure> {
    let target = target.map(|t| Target::parse(t, 1, 2)).transpose()?;
    let mut path = "/v1/watch".to_owned();
    if let Some(target) = &target {
        path.push_str(&format!("?namespace={}", segment(&target.namespace)));
        if let Some(service) = &target.service {
            path.push_str(&format!("&service={}", segment(service)));
        }
    }
    let mut last_id: Option<String> = None;
    let mut resumed = false;
    loop {
        // A server that is gone, at first or after a stream ended, ends the command.
        let mut response = api.stream(&path, last_id.as_deref()).await?;
        eprintln!(
            "muster: watching {} (Ctrl-C to stop)",
            scope(target.as_ref())
        );
        let mut parser = Parser::default();
        loop {
            let chunk = match tokio::time::timeout(IDLE, response.chunk()).await {
                Ok(Ok(Some(chunk))) => chunk,
                Ok(Ok(None)) | Ok(Err(_)) | Err(_) => break,
            };
            for event in parser.feed(&chunk)? {
                print_event(api.output, &event);
                if event.id.is_some() {
                    last_id.clone_from(&event.id);
                }
                resumed = false;
            }
        }
        if resumed {
            return Err(Failure::Unreachable(
                "the change stream ended twice without a change in between".to_owned(),
            ));
        }
        eprintln!("muster: the change stream ended; resuming");
        resumed = true;
        tokio::time::sleep(RESUME_AFTER).await;
    }
}

fn scope(target: Option<&Target>) -> String {
    match target {
        None => "every namespace".to_owned(),
        Some(Target {
            namespace,
            service: Some(service),
            ..
        }) => format!("{namespace}/{service}"),
        Some(target) => target.namespace.clone(),
    }
}

/// JSON: the event's data, one object per line. Table: time, index, event, what, source,
/// reason.
fn print_event(output: Output, event: &Event) {
    if output == Output::Json {
        println!("{}", event.data);
        return;
    }
    let Ok(data) = serde_json::from_str::<Value>(&event.data) else {
        println!("{}", event.data);
        return;
    };
    let kind = event.event.as_deref().unwrap_or("message");
    if kind == "missed" {
        let message = data["message"].as_str().unwrap_or_default();
        println!("missed  {message}");
        return;
    }
    let what: Vec<&str> = ["namespace", "service", "instance"]
        .iter()
        .filter_map(|key| data[*key].as_str())
        .collect();
    let field = |key: &str| data[key].as_str().unwrap_or("-").to_owned();
    let mut line = format!(
        "{}  {}  {kind}  {}  {}",
        field("time"),
        data["index"],
        what.join("/"),
        field("source")
    );
    if let Some(reason) = data["reason"].as_str() {
        line.push_str(&format!("  {reason}"));
    }
    println!("{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_on_blank_lines_whatever_the_chunks() {
        let stream = b": watching from index 7\n\nid: 8\nevent: registered\ndata: {\"a\":1}\n\n\
                       : ping\n\nid: 9\r\nevent: drained\r\ndata: x\r\ndata:y\r\n\r\n";
        let mut whole = Parser::default();
        let events = whole.feed(stream).unwrap();
        assert_eq!(
            events,
            [
                Event {
                    id: Some("8".into()),
                    event: Some("registered".into()),
                    data: "{\"a\":1}".into()
                },
                Event {
                    id: Some("9".into()),
                    event: Some("drained".into()),
                    data: "x\ny".into()
                },
            ]
        );
        let mut bytewise = Parser::default();
        let split: Vec<Event> = stream
            .iter()
            .flat_map(|b| bytewise.feed(&[*b]).unwrap())
            .collect();
        assert_eq!(split, events);
    }

    #[test]
    fn an_endless_line_is_refused() {
        let mut parser = Parser::default();
        let long = vec![b'a'; MAX_LINE_BYTES + 1];
        assert!(matches!(parser.feed(&long), Err(Failure::Server(_))));
    }
}
