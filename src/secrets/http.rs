//! The HTTP side of the stores: two clients (the metadata endpoints never go through a
//! proxy; the store APIs honour `HTTPS_PROXY` like the sinks), one exchange helper that never
//! puts a URL's query or a body into an error, and the retry schedule of the metadata
//! endpoints.

use std::time::Duration;

use reqwest::{Client, RequestBuilder, StatusCode};

/// The clients used to reach identity endpoints and stores.
pub struct Http {
    /// Store APIs (Key Vault, Secrets Manager, Secret Manager, Vault): the sinks' client.
    pub api: Client,
    /// Link-local / loopback metadata endpoints: no proxy, short connect timeout.
    pub meta: Client,
}

impl Http {
    pub fn new() -> Result<Http, String> {
        let api = crate::alert::http_client().map_err(|e| e.to_string())?;
        let meta = Client::builder()
            .no_proxy()
            .connect_timeout(Duration::from_secs(3))
            .timeout(Duration::from_secs(20))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("fimd/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot create the HTTP client: {}", e.without_url()))?;
        Ok(Http { api, meta })
    }
}

/// A response: status, the headers we look at, and the body (at most 1 MiB).
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// A short, value-free description of an error answer: the status and the error code
    /// and message the service put in its JSON (never the raw body).
    pub fn error(&self) -> String {
        let mut out = format!("HTTP {}", self.status.as_u16());
        if let Some(v) = self.json() {
            let pick = |v: &serde_json::Value| -> Vec<String> {
                [
                    "code",
                    "error",
                    "__type",
                    "status",
                    "message",
                    "Message",
                    "error_description",
                ]
                .iter()
                .filter_map(|k| v.get(*k).and_then(|x| x.as_str()).map(str::to_string))
                .collect()
            };
            let mut parts = pick(&v);
            if let Some(inner) = v.get("error").filter(|e| e.is_object()) {
                parts.extend(pick(inner));
            }
            if let Some(errs) = v.get("errors").and_then(|e| e.as_array()) {
                parts.extend(errs.iter().filter_map(|e| e.as_str().map(str::to_string)));
            }
            parts.dedup();
            let text: String = parts.join(": ").chars().take(300).collect();
            if !text.is_empty() {
                out.push_str(" (");
                out.push_str(&text);
                out.push(')');
            }
        }
        out
    }
}

/// Send `request` to `what` (an endpoint's name and origin): the answer, or a transport
/// error naming `what` (no URL, no query).
pub async fn exchange(request: RequestBuilder, what: &str) -> Result<Answer, String> {
    let mut response = request
        .send()
        .await
        .map_err(|e| format!("{what}: {}", chain(e.without_url())))?;
    let status = response.status();
    let headers = response.headers().clone();
    let mut body = Vec::new();
    while body.len() < 1 << 20 {
        match response.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c),
            Ok(None) => break,
            Err(e) => {
                return Err(format!(
                    "{what}: reading the answer: {}",
                    chain(e.without_url())
                ))
            }
        }
    }
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn chain(e: reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// The waits before each retry of a metadata endpoint that answered 404, 410, 429 or 5xx
/// (Azure's documented schedule is about 2, 6, 14, 30 s; IMDS is back within 70 s).
pub fn retry_waits() -> impl Iterator<Item = Duration> {
    [2u64, 4, 8, 16, 30].into_iter().map(Duration::from_secs)
}

/// `scheme://host[:port]` of an URL text, for messages.
pub fn origin(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => crate::alert::sink::origin(&u),
        Err(_) => "(invalid URL)".to_string(),
    }
}

/// A JSON field as a string, or an error naming it.
pub fn field<'a>(v: &'a serde_json::Value, name: &str, what: &str) -> Result<&'a str, String> {
    v.get(name)
        .and_then(|x| x.as_str())
        .ok_or_else(|| format!("{what}: the answer has no {name:?}"))
}

/// Send the request `make` builds, again after [`retry_waits`] while `retry(status)` holds;
/// the last answer when the waits run out. A transport error is not retried (no endpoint
/// there: fail fast with a clear message).
pub async fn retrying(
    make: impl Fn() -> RequestBuilder,
    what: &str,
    retry: impl Fn(u16) -> bool,
) -> Result<Answer, String> {
    let mut waits = retry_waits();
    loop {
        let answer = exchange(make(), what).await?;
        if !retry(answer.status.as_u16()) {
            return Ok(answer);
        }
        match waits.next() {
            Some(w) => {
                tracing::debug!(endpoint = what, status = answer.status.as_u16(), wait = ?w,
                    "secret store endpoint busy; retrying");
                tokio::time::sleep(w).await
            }
            None => return Ok(answer),
        }
    }
}

/// Statuses a metadata endpoint or store answers while it is updating or throttled.
pub fn transient(status: u16) -> bool {
    matches!(status, 404 | 410 | 429 | 500..=599)
}

/// `url` with `pairs` appended to its query (form-encoded).
pub fn with_query(url: &str, pairs: &[(&str, String)]) -> Result<reqwest::Url, String> {
    let mut u =
        reqwest::Url::parse(url).map_err(|e| format!("{}: not an URL: {e}", origin(url)))?;
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    Ok(u)
}
