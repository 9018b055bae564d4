//! The HTTP/1.1 client half the load clients share (`churn_load`, `durability_load`,
//! `examples/cloudmap_load.rs`): one request at a time on a keep-alive connection, std
//! only.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

/// A keep-alive connection to muster's HTTP listener.
pub struct Connection {
    stream: BufReader<TcpStream>,
    /// The Host header: the address itself (muster refuses names it was not told about
    /// while its APIs are open).
    host: String,
}

impl Connection {
    /// Connects to `addr` (`host:port`), with Nagle off: each request is one small write.
    pub fn open(addr: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: BufReader::new(stream),
            host: addr.to_owned(),
        })
    }

    /// Sends one request (a JSON `body` if any), reads the whole response and returns its
    /// status code.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&str>,
    ) -> std::io::Result<u16> {
        let json = [("Content-Type", "application/json")];
        self.request_with(method, path, &json, body.unwrap_or(""))
    }

    /// Sends one request with `headers` (besides `Host` and `Content-Length`),
    /// reads the whole response and returns its status code.
    pub fn request_with(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> std::io::Result<u16> {
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        self.stream.get_mut().write_all(request.as_bytes())?;
        let mut line = String::new();
        self.stream.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
        let mut length = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut response = vec![0u8; length];
        self.stream.read_exact(&mut response)?;
        Ok(status)
    }
}
