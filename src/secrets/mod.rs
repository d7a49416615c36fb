//! Secret references (DESIGN.md "Secrets from stores, through the machine's identity").
//!
//! A secret value may be written as a reference:
//! - `${env:NAME}`, `${file:/abs/path}` (one trailing newline removed), `${credential:NAME}`
//!   (systemd's `$CREDENTIALS_DIRECTORY/NAME`): [`local`];
//! - `${azurekv:VAULT/NAME[/VERSION]}`: Azure Key Vault through the managed identity ([`azure`]);
//! - `${awssm:NAME-OR-ARN[#jsonkey]}`: AWS Secrets Manager through the instance role ([`aws`]);
//! - `${gcpsm:projects/P/secrets/S[/versions/V]}`: GCP Secret Manager ([`gcp`]);
//! - `${vault:MOUNT/PATH#key}`: HashiCorp Vault / OpenBao KV v2 ([`vault`]).
//!
//! Anything else is the literal value. The identity is named once per process
//! ([`set_identity`]: `--managed-identity` / `FIMD_MANAGED_IDENTITY`).
//!
//! Guarantees: errors name the reference, the store and the identity, never a value (nor a
//! token); every value fetched is registered for redaction ([`redact`]); access tokens are
//! cached until 5 minutes before they expire ([`cache`]); the last value each reference
//! resolved to is kept, so a reload that cannot reach the store keeps it
//! ([`resolve_notify`]), while a start cannot (exit 17).

pub mod aws;
pub mod azure;
mod cache;
pub mod forms;
pub mod gcp;
mod http;
pub mod local;
pub mod vault;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};

use crate::config::notify::NotifyConfig;
use crate::config::Secret;

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Literal,
    Env(String),
    File(PathBuf),
    Credential(String),
    /// Azure Key Vault: the vault (a name or an URL), the secret's name, an optional version.
    AzureKv {
        vault: String,
        name: String,
        version: Option<String>,
    },
    /// AWS Secrets Manager: a name or ARN, and an optional key of a JSON `SecretString`.
    AwsSm {
        id: String,
        key: Option<String>,
    },
    /// GCP Secret Manager: `projects/P/secrets/S/versions/V` (V defaults to `latest`).
    GcpSm {
        name: String,
    },
    /// Vault KV v2: mount, path, and the field of the secret's data.
    Vault {
        mount: String,
        path: String,
        key: Option<String>,
    },
}

impl Reference {
    /// The store's short name (`config-check`'s column).
    pub fn store(&self) -> &'static str {
        match self {
            Reference::Literal => "literal",
            Reference::Env(_) => "env",
            Reference::File(_) => "file",
            Reference::Credential(_) => "credential",
            Reference::AzureKv { .. } => "azurekv",
            Reference::AwsSm { .. } => "awssm",
            Reference::GcpSm { .. } => "gcpsm",
            Reference::Vault { .. } => "vault",
        }
    }

    /// True for the stores reached over the network.
    pub fn is_remote(&self) -> bool {
        matches!(
            self,
            Reference::AzureKv { .. }
                | Reference::AwsSm { .. }
                | Reference::GcpSm { .. }
                | Reference::Vault { .. }
        )
    }

    /// The identity this reference is fetched with, for messages and `config-check`.
    pub fn identity(&self) -> String {
        match self {
            Reference::Literal | Reference::Env(_) | Reference::File(_) => "-".into(),
            Reference::Credential(_) => "systemd credentials".into(),
            Reference::AzureKv { .. } => azure::identity_label(),
            Reference::AwsSm { .. } => aws::identity_label(),
            Reference::GcpSm { .. } => gcp::identity_label(),
            Reference::Vault { .. } => vault::identity_label(),
        }
    }
}

/// Parse `text`: `${scheme:rest}` is a reference, anything else a literal.
pub fn parse(text: &str) -> Result<Reference, String> {
    let Some(inner) = text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) else {
        return Ok(Reference::Literal);
    };
    let bad = |why: &str| format!("secret reference {text:?}: {why}");
    let (scheme, rest) = inner
        .split_once(':')
        .ok_or_else(|| bad("expected ${scheme:value}"))?;
    if rest.is_empty() {
        return Err(bad(&format!("nothing after {scheme:?}")));
    }
    Ok(match scheme {
        "env" => Reference::Env(rest.to_string()),
        "file" if rest.starts_with('/') => Reference::File(PathBuf::from(rest)),
        "file" => return Err(bad("the path must be absolute")),
        "credential" if !rest.contains('/') => Reference::Credential(rest.to_string()),
        "credential" => return Err(bad("a credential name has no '/'")),
        "azurekv" => azure::parse(rest).map_err(|e| bad(&e))?,
        "awssm" => {
            let (id, key) = split_key(rest);
            if id.is_empty() {
                return Err(bad("expected ${awssm:NAME-OR-ARN[#jsonkey]}"));
            }
            Reference::AwsSm {
                id: id.to_string(),
                key: key.map(str::to_string),
            }
        }
        "gcpsm" => gcp::parse(rest).map_err(|e| bad(&e))?,
        "vault" => {
            let (p, key) = split_key(rest);
            let Some((mount, path)) = p.split_once('/').filter(|(m, p)| {
                !m.is_empty() && !p.is_empty() && !p.split('/').any(|s| s.is_empty() || s == "..")
            }) else {
                return Err(bad("expected ${vault:MOUNT/PATH#key}"));
            };
            Reference::Vault {
                mount: mount.to_string(),
                path: path.to_string(),
                key: key.map(str::to_string),
            }
        }
        other => return Err(bad(&format!("unknown store {other:?}"))),
    })
}

/// `name#key` → (`name`, `Some(key)`); an empty key is none.
fn split_key(text: &str) -> (&str, Option<&str>) {
    match text.rsplit_once('#') {
        Some((a, k)) if !k.is_empty() => (a, Some(k)),
        Some((a, _)) => (a, None),
        None => (text, None),
    }
}

// ---------------------------------------------------------------------------------------
// Process-wide state: the identity, the last good values, the redaction list.

static IDENTITY: OnceLock<Mutex<Option<String>>> = OnceLock::new();

fn identity_cell() -> &'static Mutex<Option<String>> {
    IDENTITY.get_or_init(|| Mutex::new(None))
}

/// Name the managed identity (`--managed-identity` / `FIMD_MANAGED_IDENTITY`); `None`: the
/// system-assigned identity (Azure) / the default service account (GCP).
pub fn set_identity(id: Option<String>) {
    let id = id.map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    if let Ok(mut g) = identity_cell().lock() {
        *g = id;
    }
}

/// The identity named by [`set_identity`], else `FIMD_MANAGED_IDENTITY` (library callers).
pub fn identity() -> Option<String> {
    let set = identity_cell().lock().ok().and_then(|g| g.clone());
    set.or_else(|| {
        var("FIMD_MANAGED_IDENTITY")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    })
}

/// An environment variable. Unit tests override variables here instead of in the process
/// environment (`set_var` while another thread reads the environment is a data race).
pub(crate) fn var(name: &str) -> Option<String> {
    #[cfg(test)]
    if let Some(v) = tests::env_override(name) {
        return v;
    }
    std::env::var(name).ok()
}

fn last_good() -> &'static Mutex<HashMap<String, Secret>> {
    static LAST: OnceLock<Mutex<HashMap<String, Secret>>> = OnceLock::new();
    LAST.get_or_init(|| Mutex::new(HashMap::new()))
}

fn remember(reference: &str, value: &Secret) {
    if let Ok(mut m) = last_good().lock() {
        m.insert(reference.to_string(), value.clone());
    }
    register(value.expose());
}

fn recall(reference: &str) -> Option<Secret> {
    last_good().lock().ok()?.get(reference).cloned()
}

fn registry() -> &'static Mutex<Vec<String>> {
    static REG: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    REG.get_or_init(|| Mutex::new(Vec::new()))
}

/// The most values [`register`] keeps: tokens are renewed hourly for as long as the daemon
/// runs, so the oldest (long expired) ones are dropped. Each secret takes a few entries (its
/// [`forms::forms`]).
const REGISTERED_MAX: usize = 1024;

/// Add a secret (a value fetched from a store, a token, a sink's credential) in every form a
/// server could echo it ([`forms::forms`]) to the values [`redact`] removes.
pub fn register(value: &str) {
    for form in forms::forms(value) {
        register_one(&form);
    }
}

fn register_one(value: &str) {
    if value.len() < forms::MIN_FORM {
        return;
    }
    if let Ok(mut r) = registry().lock() {
        if let Some(i) = r.iter().position(|v| v == value) {
            // Most recent last: a value still in use is never the one dropped.
            let v = r.remove(i);
            r.push(v);
            return;
        }
        if r.len() >= REGISTERED_MAX {
            r.remove(0);
        }
        r.push(value.to_string());
    }
}

/// Every registered value (for `alert::sink::redact`).
pub fn registered() -> Vec<String> {
    registry().lock().map(|r| r.clone()).unwrap_or_default()
}

/// `text` with every registered value replaced by `**REDACTED**`.
pub fn redact(text: &str) -> String {
    let mut values = registered();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    let mut out = text.to_string();
    for v in &values {
        out = out.replace(v.as_str(), "**REDACTED**");
    }
    out
}

// ---------------------------------------------------------------------------------------
// Resolution.

/// Fetch the value `reference` (already parsed from `text`) stands for. Values are never
/// cached: every call asks the store (only access tokens are cached, and dropped after a 401
/// from the store). Errors name the reference, the store and the identity.
async fn fetch(http: &http::Http, reference: &Reference, text: &str) -> Result<String, String> {
    let value = match reference {
        Reference::Literal => return Ok(text.to_string()),
        Reference::Env(_) | Reference::File(_) | Reference::Credential(_) => {
            local::resolve(reference, text)
        }
        Reference::AzureKv {
            vault,
            name,
            version,
        } => azure::get_secret(http, vault, name, version.as_deref()).await,
        Reference::AwsSm { id, key } => aws::get_secret(http, id, key.as_deref()).await,
        Reference::GcpSm { name } => gcp::access(http, name).await,
        Reference::Vault { mount, path, key } => {
            vault::read(http, mount, path, key.as_deref()).await
        }
    }
    .map_err(|e| {
        if reference.is_remote() {
            format!(
                "secret reference {text:?} ({} as {}): {}",
                reference.store(),
                reference.identity(),
                redact(&e)
            )
        } else {
            redact(&e)
        }
    })?;
    if value.is_empty() {
        return Err(format!("secret reference {text:?}: the secret is empty"));
    }
    Ok(value)
}

/// Resolve one reference text (async, for the alert worker's rotation and for callers in a
/// runtime). Remembers the value on success.
pub async fn resolve_text(text: &str) -> Result<Secret, String> {
    let reference = parse(text)?;
    if reference == Reference::Literal {
        return Ok(Secret::new(text));
    }
    let http = http::Http::new()?;
    let value = Secret::new(fetch(&http, &reference, text).await?);
    remember(text, &value);
    Ok(value)
}

/// The value `secret` stands for (itself when it is no reference). Blocking: a store is
/// reached from a helper thread with its own runtime, so this works inside or outside one.
pub fn resolve(secret: &Secret) -> Result<Secret, String> {
    let text = secret.expose();
    let reference = parse(text)?;
    match reference {
        Reference::Literal => Ok(secret.clone()),
        r if !r.is_remote() => {
            let value = Secret::new(fetch_local(&r, text)?);
            remember(text, &value);
            Ok(value)
        }
        _ => block_on(resolve_text(text))?,
    }
}

fn fetch_local(reference: &Reference, text: &str) -> Result<String, String> {
    let value = local::resolve(reference, text)?;
    if value.is_empty() {
        return Err(format!("secret reference {text:?}: the secret is empty"));
    }
    Ok(value)
}

/// Run `fut` to completion on a helper thread with a current-thread runtime.
fn block_on<T: Send>(fut: impl std::future::Future<Output = T> + Send) -> Result<T, String> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start a runtime to fetch secrets: {e}"))?;
            Ok(rt.block_on(fut))
        })
        .join()
        .map_err(|_| "the secret resolution thread panicked".to_string())?
    })
}

/// One reference found in the configuration, for `config-check` and for rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// `notify.slack.webhook_url`.
    pub key: String,
    /// The sink it belongs to (`slack`), when it belongs to one.
    pub sink: Option<&'static str>,
    /// The reference as written (never a value: a literal is not listed).
    pub reference: String,
    pub store: &'static str,
    pub identity: String,
    /// `Ok(false)` resolved; `Ok(true)` failed but the previous value was kept (reload);
    /// `Err` failed.
    pub outcome: Result<bool, String>,
}

impl Resolved {
    /// `config-check`'s line: key, reference, store, identity, state. Never a value.
    pub fn line(&self) -> String {
        let state = match &self.outcome {
            Ok(false) => "resolved".to_string(),
            Ok(true) => "failed, previous value kept".to_string(),
            Err(e) => format!("FAILED: {e}"),
        };
        format!(
            "{} = {} (store {}, identity {}): {state}",
            self.key, self.reference, self.store, self.identity
        )
    }
}

/// A secret-bearing field of the `[notify]` config.
enum Slot<'a> {
    Secret(&'a mut Secret),
    Text(&'a mut String),
}

impl Slot<'_> {
    fn text(&self) -> &str {
        match self {
            Slot::Secret(s) => s.expose(),
            Slot::Text(s) => s,
        }
    }
    fn set(&mut self, value: Secret) {
        match self {
            Slot::Secret(s) => **s = value,
            Slot::Text(s) => **s = value.expose().to_string(),
        }
    }
}

/// Every field of `n` that may hold a reference, with its key and sink.
fn notify_slots(n: &mut NotifyConfig) -> Vec<(String, &'static str, Slot<'_>)> {
    let mut v: Vec<(String, &'static str, Slot<'_>)> = Vec::new();
    let key = |sink: &str, field: &str| format!("notify.{sink}.{field}");
    if let Some(s) = n.slack.as_mut() {
        v.push((
            key("slack", "webhook_url"),
            "slack",
            Slot::Secret(&mut s.webhook_url),
        ));
    }
    if let Some(s) = n.teams.as_mut() {
        v.push((
            key("teams", "webhook_url"),
            "teams",
            Slot::Secret(&mut s.webhook_url),
        ));
    }
    if let Some(j) = n.jira.as_mut() {
        v.push((key("jira", "url"), "jira", Slot::Text(&mut j.url)));
        v.push((key("jira", "user"), "jira", Slot::Text(&mut j.user)));
        v.push((
            key("jira", "api_token"),
            "jira",
            Slot::Secret(&mut j.api_token),
        ));
    }
    if let Some(s) = n.servicenow.as_mut() {
        v.push((
            key("servicenow", "instance"),
            "servicenow",
            Slot::Text(&mut s.instance),
        ));
        v.push((
            key("servicenow", "url"),
            "servicenow",
            Slot::Text(&mut s.url),
        ));
        v.push((
            key("servicenow", "user"),
            "servicenow",
            Slot::Text(&mut s.user),
        ));
        v.push((
            key("servicenow", "password"),
            "servicenow",
            Slot::Secret(&mut s.password),
        ));
    }
    if let Some(r) = n.rapid7.as_mut() {
        v.push((
            key("rapid7", "api_key"),
            "rapid7",
            Slot::Secret(&mut r.api_key),
        ));
        v.push((
            key("rapid7", "workflow_id"),
            "rapid7",
            Slot::Secret(&mut r.workflow_id),
        ));
        v.push((key("rapid7", "url"), "rapid7", Slot::Secret(&mut r.url)));
    }
    if let Some(w) = n.webhook.as_mut() {
        v.push((key("webhook", "url"), "webhook", Slot::Secret(&mut w.url)));
        for (name, value) in w.headers.iter_mut() {
            v.push((
                format!("notify.webhook.headers.{name}"),
                "webhook",
                Slot::Secret(value),
            ));
        }
        if let Some(s) = w.secret.as_mut() {
            v.push((key("webhook", "secret"), "webhook", Slot::Secret(s)));
        }
    }
    if let Some(p) = n.postgres.as_mut() {
        v.push((key("postgres", "url"), "postgres", Slot::Secret(&mut p.url)));
        if let Some(s) = p.password.as_mut() {
            v.push((key("postgres", "password"), "postgres", Slot::Secret(s)));
        }
    }
    if let Some(nats) = n.nats.as_mut() {
        for (field, secret) in [
            ("creds", nats.creds.as_mut()),
            ("nkey", nats.nkey.as_mut()),
            ("token", nats.token.as_mut()),
            ("password", nats.password.as_mut()),
        ] {
            if let Some(s) = secret {
                v.push((key("nats", field), "nats", Slot::Secret(s)));
            }
        }
    }
    v
}

/// The references in `n` (after the flags, environment and credentials were merged in),
/// without resolving them. A malformed reference is an error naming its key.
pub fn notify_references(n: &NotifyConfig) -> Result<Vec<Resolved>, String> {
    let mut copy = n.clone();
    let mut out = Vec::new();
    for (key, sink, slot) in notify_slots(&mut copy) {
        let text = slot.text().to_string();
        let reference = parse(&text).map_err(|e| format!("{key}: {e}"))?;
        if reference == Reference::Literal {
            continue;
        }
        out.push(Resolved {
            key,
            sink: Some(sink),
            store: reference.store(),
            identity: reference.identity(),
            reference: text,
            outcome: Ok(false),
        });
    }
    Ok(out)
}

/// Replace every reference in `n` by its value. A reference that fails keeps the value it
/// resolved to before in this process (a reload), with one warning naming it; one that never
/// resolved is an error. The error lists every failed reference (key, reference, store,
/// identity, why), never a value. `only`: just the fields of that sink, fetched again (a
/// rotation after a 401/403).
pub async fn resolve_notify_async(
    n: &mut NotifyConfig,
    only: Option<&str>,
) -> Result<Vec<Resolved>, String> {
    let mut report = Vec::new();
    let mut http = None;
    for (key, sink, mut slot) in notify_slots(n) {
        if only.is_some_and(|o| o != sink) {
            continue;
        }
        let text = slot.text().to_string();
        let reference = parse(&text).map_err(|e| format!("{key}: {e}"))?;
        if reference == Reference::Literal {
            continue;
        }
        let fetched = if reference.is_remote() {
            if http.is_none() {
                http = Some(http::Http::new()?);
            }
            match &http {
                Some(h) => fetch(h, &reference, &text).await,
                None => Err("no HTTP client".to_string()),
            }
        } else {
            fetch_local(&reference, &text)
        };
        let outcome = match fetched {
            Ok(v) => {
                let value = Secret::new(v);
                remember(&text, &value);
                slot.set(value);
                Ok(false)
            }
            Err(e) => match recall(&text) {
                Some(old) => {
                    tracing::warn!(key = %key, reference = %text, error = %e,
                        "cannot resolve the secret reference again; keeping its previous value");
                    slot.set(old);
                    Ok(true)
                }
                None => Err(e),
            },
        };
        report.push(Resolved {
            key,
            sink: Some(sink),
            store: reference.store(),
            identity: reference.identity(),
            reference: text,
            outcome,
        });
    }
    let failed: Vec<String> = report
        .iter()
        .filter_map(|r| r.outcome.as_ref().err().map(|e| format!("{}: {e}", r.key)))
        .collect();
    if !failed.is_empty() {
        let resolved: Vec<&str> = report
            .iter()
            .filter(|r| r.outcome.is_ok())
            .map(|r| r.key.as_str())
            .collect();
        let rest = match resolved.is_empty() {
            true => String::new(),
            false => format!(" (resolved: {})", resolved.join(", ")),
        };
        return Err(format!("{}{rest}", failed.join("; ")));
    }
    Ok(report)
}

/// [`resolve_notify_async`] for every sink, from synchronous code (start, reload).
pub fn resolve_notify(n: &mut NotifyConfig) -> Result<Vec<Resolved>, String> {
    let refs = notify_references(n)?;
    if refs.is_empty() {
        return Ok(refs);
    }
    block_on(resolve_notify_async(n, None))?
}

#[cfg(test)]
mod tests;
