//! `[notify.nats]` (DESIGN.md "Fleet"): every event published to JetStream at
//! `<prefix>.events.<host token>.<event>` with `Nats-Msg-Id = uid`; heartbeats at
//! `<prefix>.hb.<host token>`. The publish ack is the delivery: a batch is delivered when every
//! message in it is acknowledged (a repeat inside the stream's duplicate window is acked as a
//! duplicate and not stored twice; beyond the window the consumer must dedup on `uid`).
//!
//! One connection per host, opened on first use; the client reconnects by itself. A server
//! that refuses a subject (publish permissions) answers with an asynchronous `-ERR`, which
//! the client reports through its event callback and the publish only times out: the sink
//! remembers that error and parks the rows with it instead of reporting a timeout.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::{ConnectOptions, HeaderMap};
use reqwest::{Client, RequestBuilder};

use super::postgres::{error_text, is_tls_failure, resolve};
use super::sink::{Batch, Direct, Limits, Outcome, Sink};
use super::AlertError;
use crate::config::notify::NatsConfig;
use crate::config::Secret;
use crate::fleet::{host_token, Heartbeat};

const NAME: &str = "nats";
const MAX_ROWS: usize = 500;
/// How long one batch's acks may take.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);

enum Auth {
    None,
    Creds(Secret),
    Nkey(Secret),
    Token(Secret),
    User(String, Secret),
}

/// A configured NATS JetStream fleet sink.
pub struct Nats {
    url: String,
    auth: Auth,
    tls_ca: Option<PathBuf>,
    tls_client: Option<(PathBuf, PathBuf)>,
    prefix: String,
    token: String,
    host: String,
    client: tokio::sync::Mutex<Option<async_nats::Client>>,
    /// The last permissions violation the server reported (asynchronously).
    denied: Arc<Mutex<Option<String>>>,
    secrets: Vec<String>,
}

fn config_error(message: impl Into<String>) -> AlertError {
    AlertError::Config {
        sink: NAME,
        message: message.into(),
    }
}

impl Nats {
    pub fn new(cfg: &NatsConfig, host: &str) -> Result<Nats, AlertError> {
        let url = cfg.url.trim().to_string();
        if url.is_empty() {
            return Err(config_error("url is empty"));
        }
        if url.contains('@') {
            return Err(config_error(
                "url must not hold credentials (use creds, nkey, token or user/password)",
            ));
        }
        let mut secrets = Vec::new();
        let mut take = |key: &str, s: &Secret| -> Result<Secret, AlertError> {
            let v = resolve(NAME, key, s)?;
            secrets.push(v.expose().to_string());
            Ok(v)
        };
        let auth = match (&cfg.creds, &cfg.nkey, &cfg.token, &cfg.user) {
            (Some(c), None, None, None) => Auth::Creds(take("creds", c)?),
            (None, Some(n), None, None) => Auth::Nkey(take("nkey", n)?),
            (None, None, Some(t), None) => Auth::Token(take("token", t)?),
            (None, None, None, Some(u)) => {
                let p = cfg
                    .password
                    .as_ref()
                    .ok_or_else(|| config_error("user needs password"))?;
                Auth::User(u.clone(), take("password", p)?)
            }
            (None, None, None, None) => Auth::None,
            _ => {
                return Err(config_error(
                    "use one of creds, nkey, token or user/password",
                ))
            }
        };
        if let Auth::Creds(c) = &auth {
            // Check the file's shape now: a broken one is a configuration error (exit 17).
            ConnectOptions::with_credentials(c.expose())
                .map_err(|_| config_error("creds is not a NATS .creds file (JWT + nkey seed)"))?;
        }
        let tls_client = match (&cfg.tls_cert, &cfg.tls_key) {
            (Some(c), Some(k)) => Some((c.clone(), k.clone())),
            (None, None) => None,
            _ => return Err(config_error("tls_cert and tls_key go together")),
        };
        let prefix = cfg
            .subject_prefix
            .clone()
            .unwrap_or_else(|| "fim.v1".into());
        if prefix.is_empty()
            || prefix
                .split('.')
                .any(|t| t.is_empty() || t.contains(['*', '>', ' ']))
        {
            return Err(config_error(format!(
                "subject_prefix {prefix:?}: dot-separated tokens without wildcards"
            )));
        }
        Ok(Nats {
            url,
            auth,
            tls_ca: cfg.tls_ca.clone(),
            tls_client,
            prefix,
            token: host_token(host),
            host: host.to_string(),
            client: tokio::sync::Mutex::new(None),
            denied: Arc::new(Mutex::new(None)),
            secrets,
        })
    }

    /// The subject an event of kind `event` goes to.
    pub fn event_subject(&self, event: &str) -> String {
        format!("{}.events.{}.{event}", self.prefix, self.token)
    }

    pub fn heartbeat_subject(&self) -> String {
        format!("{}.hb.{}", self.prefix, self.token)
    }

    fn options(&self) -> Result<ConnectOptions, String> {
        let opts = match &self.auth {
            Auth::None => ConnectOptions::new(),
            Auth::Creds(c) => ConnectOptions::with_credentials(c.expose())
                .map_err(|_| "creds is not a NATS .creds file".to_string())?,
            Auth::Nkey(n) => ConnectOptions::with_nkey(n.expose().to_string()),
            Auth::Token(t) => ConnectOptions::with_token(t.expose().to_string()),
            Auth::User(u, p) => {
                ConnectOptions::with_user_and_password(u.clone(), p.expose().to_string())
            }
        };
        let mut opts = opts
            .name(format!("fimd {}", self.host))
            .connection_timeout(Duration::from_secs(10));
        if let Some(ca) = &self.tls_ca {
            opts = opts.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((c, k)) = &self.tls_client {
            opts = opts
                .add_client_certificate(c.clone(), k.clone())
                .require_tls(true);
        }
        let denied = self.denied.clone();
        Ok(opts.event_callback(move |ev| {
            let denied = denied.clone();
            async move {
                if let async_nats::Event::ServerError(e) = &ev {
                    let text = e.to_string();
                    if text.to_ascii_lowercase().contains("permissions violation") {
                        if let Ok(mut d) = denied.lock() {
                            *d = Some(text);
                        }
                    }
                }
            }
        }))
    }

    async fn client(&self) -> Result<async_nats::Client, (Outcome, String)> {
        let mut guard = self.client.lock().await;
        if let Some(c) = guard.as_ref() {
            return Ok(c.clone());
        }
        let opts = self.options().map_err(|e| {
            (
                Outcome::Park {
                    reason: Cow::Borrowed("bad NATS settings"),
                },
                e,
            )
        })?;
        let client = opts.connect(self.url.as_str()).await.map_err(|e| {
            let text = error_text(&e);
            let auth = matches!(
                e.kind(),
                async_nats::ConnectErrorKind::AuthorizationViolation
                    | async_nats::ConnectErrorKind::Authentication
            );
            let outcome = if auth {
                Outcome::Park {
                    reason: Cow::Borrowed("NATS refused the credentials"),
                }
            } else if tls_refused(&e) {
                Outcome::Park {
                    reason: Cow::Borrowed(
                        "TLS with the NATS server failed (tls_ca, tls_cert, tls_key)",
                    ),
                }
            } else {
                Outcome::Retry {
                    after: None,
                    reason: Cow::Borrowed("NATS unreachable"),
                }
            };
            (outcome, format!("{}: {text}", self.target()))
        })?;
        *guard = Some(client.clone());
        Ok(client)
    }

    fn take_denied(&self) -> Option<String> {
        self.denied.lock().ok().and_then(|mut d| d.take())
    }

    /// Publish `(subject, msg id, payload)` messages and wait for every ack.
    async fn publish_all(&self, msgs: Vec<(String, String, Vec<u8>)>) -> (Outcome, String) {
        let client = match self.client().await {
            Ok(c) => c,
            Err(failed) => return failed,
        };
        let _ = self.take_denied();
        let js = async_nats::jetstream::new(client);
        let mut acks = Vec::with_capacity(msgs.len());
        for (subject, id, payload) in msgs {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", id.as_str());
            match js
                .publish_with_headers(subject.clone(), headers, payload.into())
                .await
            {
                Ok(ack) => acks.push((subject, ack)),
                Err(e) => return self.publish_failed(&subject, e.kind(), &error_text(&e)),
            }
        }
        let waited = tokio::time::timeout(ACK_TIMEOUT, async {
            let mut duplicates = 0usize;
            for (subject, ack) in acks {
                match ack.await {
                    Ok(a) => duplicates += usize::from(a.duplicate),
                    Err(e) => return Err((subject, e.kind(), error_text(&e))),
                }
            }
            Ok(duplicates)
        })
        .await;
        match waited {
            Ok(Ok(duplicates)) => {
                if duplicates > 0 {
                    tracing::info!(
                        sink = NAME,
                        duplicates,
                        "JetStream acknowledged repeated messages as duplicates (stored once)"
                    );
                }
                (Outcome::Delivered { remote_id: None }, String::new())
            }
            Ok(Err((subject, kind, text))) => self.publish_failed(&subject, kind, &text),
            Err(_) => self.publish_failed(
                &self.event_subject("*"),
                PublishErrorKind::TimedOut,
                "no acknowledgement",
            ),
        }
    }

    fn publish_failed(
        &self,
        subject: &str,
        kind: PublishErrorKind,
        text: &str,
    ) -> (Outcome, String) {
        if let Some(denied) = self.take_denied() {
            return (
                Outcome::Park {
                    reason: Cow::Borrowed("NATS refused the subject: this user may not publish there (publish permissions)"),
                },
                format!("{}: {denied}", self.target()),
            );
        }
        let outcome = match kind {
            PublishErrorKind::StreamNotFound => Outcome::Park {
                reason: Cow::Owned(format!(
                    "no JetStream stream captures {subject} (create one for {}.>)",
                    self.prefix
                )),
            },
            PublishErrorKind::MaxPayloadExceeded => Outcome::Park {
                reason: Cow::Borrowed("an event is larger than the server's max_payload"),
            },
            _ => Outcome::Retry {
                after: None,
                reason: Cow::Borrowed("JetStream publish not acknowledged"),
            },
        };
        (outcome, format!("{} {subject}: {text}", self.target()))
    }
}

/// A TLS setup error, or a handshake that failed on certificates: settings to fix, not a
/// network fault to wait out.
fn tls_refused(e: &async_nats::ConnectError) -> bool {
    e.kind() == async_nats::ConnectErrorKind::Tls || is_tls_failure(e)
}

impl Sink for Nats {
    fn name(&self) -> &'static str {
        NAME
    }

    fn limits(&self) -> Limits {
        Limits {
            max_rows: MAX_ROWS,
            shown: MAX_ROWS,
            diff_chars: 0,
        }
    }

    fn request(&self, _http: &Client, _batch: &Batch) -> Result<RequestBuilder, AlertError> {
        Err(AlertError::Build {
            sink: NAME,
            message: "not an HTTP sink".to_string(),
        })
    }

    fn deliver<'a>(&'a self, batch: &'a Batch) -> Option<Direct<'a>> {
        Some(Box::pin(async move {
            if batch.test {
                return match self.client().await {
                    Ok(c) => match c.flush().await {
                        Ok(()) => (Outcome::Delivered { remote_id: None }, String::new()),
                        Err(e) => (
                            Outcome::Retry {
                                after: None,
                                reason: Cow::Borrowed("NATS unreachable"),
                            },
                            error_text(&e),
                        ),
                    },
                    Err(failed) => failed,
                };
            }
            let mut msgs = Vec::with_capacity(batch.events.len());
            for e in &batch.events {
                let Some(uid) = e.uid.clone() else { continue };
                match serde_json::to_vec(e) {
                    Ok(body) => msgs.push((self.event_subject(e.event.as_str()), uid, body)),
                    Err(err) => {
                        return (
                            Outcome::Park {
                                reason: Cow::Borrowed("cannot encode an event"),
                            },
                            err.to_string(),
                        )
                    }
                }
            }
            self.publish_all(msgs).await
        }))
    }

    fn heartbeat<'a>(&'a self, hb: &'a Heartbeat) -> Option<Direct<'a>> {
        Some(Box::pin(async move {
            let body = match serde_json::to_vec(hb) {
                Ok(b) => b,
                Err(e) => {
                    return (
                        Outcome::Park {
                            reason: Cow::Borrowed("cannot encode"),
                        },
                        e.to_string(),
                    )
                }
            };
            let id = format!("hb:{}:{}", hb.instance, hb.time);
            self.publish_all(vec![(self.heartbeat_subject(), id, body)])
                .await
        }))
    }

    fn target(&self) -> String {
        // Only scheme://host:port of the first server.
        let first = self.url.split(',').next().unwrap_or_default().trim();
        first.to_string()
    }

    fn secrets(&self) -> Vec<String> {
        self.secrets.clone()
    }
}
