//! The REST calls: JSON in and out, the bearer token, and the server's answers mapped to
//! [`Failure`]s (unreachable, 4xx, 5xx) with messages that say what to do.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::Failure;
use super::settings::{Output, Settings};

/// The most of one answer the client reads (a service of 10,000 instances is ~6 MiB).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// A connection to one muster's REST API.
pub struct Api {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
    pub output: Output,
    pub timeout: Duration,
    /// The client config's DNS address (for `muster dig`).
    pub dns: Option<String>,
}

impl Api {
    pub fn new(settings: Settings) -> Result<Self, Failure> {
        let https = settings.server.starts_with("https://");
        let client = reqwest::Client::builder()
            .connect_timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .use_preconfigured_tls(super::tls::config(https, settings.ca_file.as_deref())?)
            .build()
            .map_err(|e| Failure::Local(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            base: settings.server,
            token: settings.token,
            client,
            output: settings.output,
            timeout: settings.timeout,
            dns: settings.dns,
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, Failure> {
        self.send(Method::GET, path, None).await
    }

    /// Sends one request and returns the JSON answer of a 2xx.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let what = format!("{method} {path}");
        let mut request = self.builder(method, path).timeout(self.timeout);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let mut response = self.execute(&what, request).await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.unreachable(&what, &e))?
        {
            if bytes.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(Failure::Server(format!(
                    "{what}: the answer is larger than {MAX_BODY_BYTES} bytes"
                )));
            }
            bytes.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&bytes).map_err(|_| {
            Failure::Server(format!(
                "{what}: {} with a body that is not JSON: is {} muster?",
                response.status(),
                self.base
            ))
        })
    }

    /// Opens a stream (`GET`, no overall timeout: it lasts until either side ends it),
    /// resuming after `last_event_id` when given.
    pub async fn stream(
        &self,
        path: &str,
        last_event_id: Option<&str>,
    ) -> Result<reqwest::Response, Failure> {
        let mut request = self.builder(Method::GET, path);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        self.execute(&format!("GET {path}"), request).await
    }

    fn builder(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends a request; the response once its head arrived and was a 2xx.
    async fn execute(
        &self,
        what: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, Failure> {
        let response = request
            .send()
            .await
            .map_err(|e| self.unreachable(what, &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response.bytes().await.unwrap_or_default();
        let json = serde_json::from_slice(&bytes).ok();
        Err(self.refused(what, status, json.as_ref()))
    }

    /// A 4xx or 5xx, with the server's `{"error", "field"}` when it sent one.
    fn refused(&self, what: &str, status: StatusCode, json: Option<&Value>) -> Failure {
        let error = json.and_then(|j| j.get("error")).and_then(Value::as_str);
        let field = json.and_then(|j| j.get("field")).and_then(Value::as_str);
        let mut message = format!("{what}: {status}");
        if let Some(error) = error {
            message.push_str(&format!(": {error}"));
        }
        if let Some(field) = field {
            message.push_str(&format!(" (field {field})"));
        }
        if status == StatusCode::UNAUTHORIZED {
            message.push_str("; send a token with --token-file, MUSTER_TOKEN or token_file");
        }
        if status.is_client_error() {
            Failure::Rejected(status.as_u16(), message)
        } else {
            Failure::Server(message)
        }
    }

    fn unreachable(&self, what: &str, error: &reqwest::Error) -> Failure {
        let cause = if error.is_timeout() {
            format!(
                "no answer within {}",
                humantime::format_duration(self.timeout)
            )
        } else {
            chain(error)
        };
        Failure::Unreachable(format!(
            "cannot reach muster at {} ({what}): {cause}. Is it running there? The address \
             comes from --server, MUSTER_ADDR or `server` in the client config",
            self.base
        ))
    }
}

/// An error and its causes, `: `-separated (reqwest's own text is only the outermost).
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

/// One path segment, percent-encoded (an instance id may hold `/`).
pub fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~:@".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `/v1/namespaces/{ns}/services/{svc}`.
pub fn service_path(namespace: &str, service: &str) -> String {
    format!(
        "/v1/namespaces/{}/services/{}",
        segment(namespace),
        segment(service)
    )
}

/// `/v1/namespaces/{ns}/services/{svc}/instances/{id}`.
pub fn instance_path(namespace: &str, service: &str, id: &str) -> String {
    format!(
        "{}/instances/{}",
        service_path(namespace, service),
        segment(id)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slash_in_an_instance_id_is_encoded() {
        assert_eq!(
            instance_path("prod", "web", "task/ABC:1@x"),
            "/v1/namespaces/prod/services/web/instances/task%2FABC:1@x"
        );
        assert_eq!(segment("a b%"), "a%20b%25");
    }
}
