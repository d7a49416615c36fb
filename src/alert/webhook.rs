//! The generic JSON webhook (DESIGN.md): `POST {url}` with exactly
//! `{"host": "...", "events": [event, ...]}` (the event objects of `events --json`), up to 500
//! events per request, configured extra headers, and with a `secret` the header
//! `X-Fimd-Signature: sha256=<hex HMAC-SHA256(secret, body)>`. Success is any 2xx.
//!
//! Header values and the secret are credentials: header values are marked sensitive and none
//! of them is ever shown. Diffs (when allowed) are cut to 16 KiB per event, so a body stays
//! under about 8.5 MB.

use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::{Client, RequestBuilder, Url};

use super::sink::{check_url, json_body, origin, Batch, Limits, Sink};
use super::AlertError;
use crate::config::notify::WebhookConfig;
use crate::config::Secret;
use crate::event::Event;

/// A configured webhook receiver.
pub struct Webhook {
    url: Url,
    headers: Vec<(HeaderName, HeaderValue)>,
    secret: Option<Secret>,
    values: Vec<String>,
    format: crate::format::Format,
}

impl Webhook {
    pub fn new(cfg: &WebhookConfig) -> Result<Webhook, AlertError> {
        let url = check_url("webhook", "url", cfg.url.expose())?;
        let mut headers = Vec::new();
        let mut values = vec![cfg.url.expose().to_string()];
        for (name, value) in &cfg.headers {
            let bad = |what: &str| AlertError::Config {
                sink: "webhook",
                message: format!("headers.{name}: {what}"),
            };
            let n = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad("not a valid header name"))?;
            let mut v = HeaderValue::from_str(value.expose())
                .map_err(|_| bad("value has characters not allowed in a header"))?;
            v.set_sensitive(true);
            headers.push((n, v));
            values.push(value.expose().to_string());
        }
        let format = cfg.format.unwrap_or_default();
        if format == crate::format::Format::Cef {
            return Err(AlertError::Config {
                sink: "webhook",
                message:
                    "format \"cef\" is for `events --format`; the webhook takes json, ocsf or ecs"
                        .to_string(),
            });
        }
        let secret = cfg.secret.clone().filter(|s| !s.is_empty());
        if let Some(s) = &secret {
            values.push(s.expose().to_string());
        }
        Ok(Webhook {
            url,
            headers,
            secret,
            values,
            format,
        })
    }
}

/// The webhook body, byte for byte as sent (and signed).
#[derive(serde::Serialize)]
struct Body<'a> {
    host: &'a str,
    events: &'a [Event],
}

/// The body with each event in another format.
#[derive(serde::Serialize)]
struct FormattedBody<'a> {
    host: &'a str,
    events: Vec<serde_json::Value>,
}

impl Sink for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn limits(&self) -> Limits {
        Limits {
            max_rows: 500,
            shown: 500,
            diff_chars: 16_384,
        }
    }

    fn request(&self, http: &Client, batch: &Batch) -> Result<RequestBuilder, AlertError> {
        let body = match self.format {
            crate::format::Format::Json => json_body(
                "webhook",
                &Body {
                    host: &batch.host,
                    events: &batch.events,
                },
            )?,
            format => {
                let events = batch
                    .events
                    .iter()
                    .map(|e| crate::format::value(e, format))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| AlertError::Build {
                        sink: "webhook",
                        message: e.to_string(),
                    })?;
                json_body(
                    "webhook",
                    &FormattedBody {
                        host: &batch.host,
                        events,
                    },
                )?
            }
        };
        let mut req = http
            .post(self.url.clone())
            .header(CONTENT_TYPE, "application/json");
        for (n, v) in &self.headers {
            req = req.header(n.clone(), v.clone());
        }
        if batch.test {
            req = req.header("X-Fimd-Test", "true");
        }
        if let Some(secret) = &self.secret {
            let sig = hex::encode(hmac_sha256(secret.expose().as_bytes(), &body));
            req = req.header("X-Fimd-Signature", format!("sha256={sig}"));
        }
        Ok(req.body(body))
    }

    fn target(&self) -> String {
        origin(&self.url)
    }

    fn secrets(&self) -> Vec<String> {
        self.values.clone()
    }
}

pub use crate::mac::hmac_sha256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_rfc4231_vectors() {
        // Test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }
}
