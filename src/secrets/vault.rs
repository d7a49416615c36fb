//! HashiCorp Vault / OpenBao, KV version 2.
//!
//! `VAULT_ADDR` names the server (https, or http on loopback); the token is `VAULT_TOKEN`, or
//! an AppRole login (`VAULT_ROLE_ID` + `VAULT_SECRET_ID`: `POST /v1/auth/approle/login`),
//! cached for its lease less 5 minutes; `VAULT_NAMESPACE` is sent as `X-Vault-Namespace`. The
//! read is `GET /v1/MOUNT/data/PATH` with `X-Vault-Token`; `#key` picks one field of
//! `data.data` (without it the secret must have exactly one field).

use std::time::{Duration, SystemTime};

use super::cache;
use super::http::{exchange, origin, retrying, Http};

fn env(name: &str) -> Option<String> {
    super::var(name).filter(|s| !s.trim().is_empty())
}

/// `VAULT_TOKEN`, `VAULT_ROLE_ID`, `VAULT_SECRET_ID`: the value, or what a local reference in
/// it (`${credential:vault-secret-id}`) stands for, so the unit holds no secret.
fn env_secret(name: &str) -> Result<Option<String>, String> {
    let Some(v) = env(name) else { return Ok(None) };
    match super::parse(&v) {
        Ok(super::Reference::Literal) => Ok(Some(v)),
        Ok(
            r @ (super::Reference::Env(_)
            | super::Reference::File(_)
            | super::Reference::Credential(_)),
        ) => super::local::resolve(&r, &v)
            .map(|x| Some(x.trim().to_string()))
            .map_err(|e| format!("{name}: {e}")),
        Ok(_) => Err(format!(
            "{name}: only ${{credential:}}, ${{file:}} and ${{env:}} references are allowed here"
        )),
        Err(e) => Err(format!("{name}: {e}")),
    }
}

/// For messages and `config-check`.
pub fn identity_label() -> String {
    let addr = env("VAULT_ADDR").map_or_else(|| "(VAULT_ADDR unset)".to_string(), |a| origin(&a));
    if env("VAULT_TOKEN").is_some() {
        format!("VAULT_TOKEN at {addr}")
    } else if let Some(role) = env("VAULT_ROLE_ID") {
        format!("AppRole {role} at {addr}")
    } else {
        format!("no token (set VAULT_TOKEN or VAULT_ROLE_ID + VAULT_SECRET_ID) at {addr}")
    }
}

fn addr() -> Result<String, String> {
    let a = env("VAULT_ADDR").ok_or("VAULT_ADDR is not set")?;
    let url = crate::alert::sink::check_url("vault", "VAULT_ADDR", a.trim())
        .map_err(|e| e.to_string())?;
    Ok(url.as_str().trim_end_matches('/').to_string())
}

fn with_namespace(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match env("VAULT_NAMESPACE") {
        Some(ns) => req.header("X-Vault-Namespace", ns),
        None => req,
    }
}

/// The token: `VAULT_TOKEN`, or an AppRole login (cached).
async fn token(http: &Http, addr: &str) -> Result<String, String> {
    if let Some(t) = env_secret("VAULT_TOKEN")? {
        super::register(&t);
        return Ok(t);
    }
    let (Some(role_id), Some(secret_id)) =
        (env_secret("VAULT_ROLE_ID")?, env_secret("VAULT_SECRET_ID")?)
    else {
        return Err(
            "no Vault token: set VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID for AppRole"
                .into(),
        );
    };
    super::register(&secret_id);
    let key = format!("vault|{addr}|{role_id}");
    if let Some(t) = cache::get(&key) {
        return Ok(t);
    }
    let what = format!("Vault {} AppRole login", origin(addr));
    let url = format!("{addr}/v1/auth/approle/login");
    let body = serde_json::json!({ "role_id": role_id, "secret_id": secret_id });
    let a = exchange(with_namespace(http.api.post(&url).json(&body)), &what).await?;
    if !a.status.is_success() {
        return Err(format!("{what} (role {role_id}): {}", a.error()));
    }
    let v = a
        .json()
        .ok_or_else(|| format!("{what}: the answer is not JSON"))?;
    let auth = v
        .get("auth")
        .ok_or_else(|| format!("{what}: the answer has no auth"))?;
    let t = super::http::field(auth, "client_token", &what)?.to_string();
    let lease = auth
        .get("lease_duration")
        .and_then(|l| l.as_u64())
        .unwrap_or(0);
    // A token without a lease (root-like) is still refreshed hourly.
    let lease = if lease == 0 { 3600 } else { lease };
    cache::put(&key, &t, SystemTime::now() + Duration::from_secs(lease));
    Ok(t)
}

/// Read `MOUNT/PATH` and pick the field.
pub async fn read(
    http: &Http,
    mount: &str,
    path: &str,
    key: Option<&str>,
) -> Result<String, String> {
    let addr = addr()?;
    let url = format!("{addr}/v1/{mount}/data/{path}");
    let what = format!("Vault {}", origin(&addr));
    let mut answer = None;
    for attempt in 0..2 {
        let t = token(http, &addr).await?;
        let make = || with_namespace(http.api.get(&url).header("X-Vault-Token", &t));
        let a = retrying(make, &what, |s| matches!(s, 429 | 500..=599)).await?;
        // An expired AppRole token answers 403: log in again, once.
        if a.status.as_u16() == 403 && attempt == 0 && env("VAULT_TOKEN").is_none() {
            if let Some(role) = env_secret("VAULT_ROLE_ID").ok().flatten() {
                cache::drop_key(&format!("vault|{addr}|{role}"));
                continue;
            }
        }
        answer = Some(a);
        break;
    }
    let a = answer.ok_or_else(|| format!("{what}: no answer"))?;
    match a.status.as_u16() {
        200 => {}
        403 => {
            return Err(format!(
                "{what}: permission denied reading {mount}/data/{path} ({}; the token's policy needs `read` on \"{mount}/data/{path}\")",
                a.error()
            ))
        }
        404 => return Err(format!("{what}: no secret at {mount}/data/{path} (HTTP 404)")),
        _ => return Err(format!("{what}: {}", a.error())),
    }
    let v = a
        .json()
        .ok_or_else(|| format!("{what}: the answer is not JSON"))?;
    let data = v
        .get("data")
        .and_then(|d| d.get("data"))
        .and_then(|d| d.as_object())
        .ok_or_else(|| {
            format!("{what}: no data.data in the answer (is {mount} a KV version 2 mount?)")
        })?;
    let value = match key {
        Some(k) => data
            .get(k)
            .ok_or_else(|| format!("{what}: the secret at {mount}/{path} has no key {k:?}"))?,
        None if data.len() == 1 => data.values().next().ok_or("empty")?,
        None => {
            return Err(format!(
                "{what}: the secret at {mount}/{path} has {} keys: name one with #key",
                data.len()
            ))
        }
    };
    Ok(match value {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}
