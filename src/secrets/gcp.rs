//! GCP Secret Manager through the VM's service account.
//!
//! Token: `GET http://$GCE_METADATA_HOST/computeMetadata/v1/instance/service-accounts/<account>/token`
//! (`metadata.google.internal` by default; account `default` or the `--managed-identity`
//! email) with `Metadata-Flavor: Google`, cached until 5 minutes before expiry. Secret:
//! `GET $FIMD_GCP_SECRETMANAGER_ENDPOINT/v1/projects/P/secrets/S/versions/V:access`
//! (`https://secretmanager.googleapis.com`; V defaults to `latest`); the base64 payload is
//! checked against `dataCrc32c`.

use base64::Engine as _;

use super::cache;
use super::http::{field, origin, retrying, Http};
use super::Reference;

/// `projects/P/secrets/S[/versions/V]`.
pub fn parse(rest: &str) -> Result<Reference, String> {
    let usage = "expected ${gcpsm:projects/PROJECT/secrets/SECRET[/versions/VERSION]}";
    let parts: Vec<&str> = rest.split('/').collect();
    let ok_seg = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
            && s != ".."
            && s != "."
    };
    let name = match parts.as_slice() {
        ["projects", p, "secrets", s] if ok_seg(p) && ok_seg(s) => {
            format!("projects/{p}/secrets/{s}/versions/latest")
        }
        ["projects", p, "secrets", s, "versions", v] if ok_seg(p) && ok_seg(s) && ok_seg(v) => {
            rest.to_string()
        }
        _ => return Err(usage.to_string()),
    };
    Ok(Reference::GcpSm { name })
}

fn env(name: &str) -> Option<String> {
    super::var(name).filter(|s| !s.trim().is_empty())
}

fn metadata_base() -> String {
    let host = env("GCE_METADATA_HOST").unwrap_or_else(|| "metadata.google.internal".into());
    format!("http://{}", host.trim_end_matches('/'))
}

fn account() -> String {
    super::identity().unwrap_or_else(|| "default".to_string())
}

/// For messages and `config-check`.
pub fn identity_label() -> String {
    format!("service account {} via {}", account(), metadata_base())
}

/// An access token of the service account, cached.
pub async fn token(http: &Http) -> Result<String, String> {
    let base = metadata_base();
    let acct = account();
    let key = format!("gcp|{base}|{acct}");
    if let Some(t) = cache::get(&key) {
        return Ok(t);
    }
    let url = format!("{base}/computeMetadata/v1/instance/service-accounts/{acct}/token");
    let what = format!("the GCP metadata server {base}");
    let make = || http.meta.get(&url).header("Metadata-Flavor", "Google");
    let a = retrying(make, &what, |s| matches!(s, 429 | 500..=599)).await?;
    if !a.status.is_success() {
        return Err(format!(
            "{what}: token for service account {acct}: {}",
            a.error()
        ));
    }
    let v = a
        .json()
        .ok_or_else(|| format!("{what}: the token answer is not JSON"))?;
    let token = field(&v, "access_token", &what)?.to_string();
    let expires = cache::after(v.get("expires_in"))
        .ok_or_else(|| format!("{what}: the token answer has no expires_in"))?;
    cache::put(&key, &token, expires);
    Ok(token)
}

/// `versions/V:access`, the payload checked and decoded.
pub async fn access(http: &Http, name: &str) -> Result<String, String> {
    let base = env("FIMD_GCP_SECRETMANAGER_ENDPOINT")
        .unwrap_or_else(|| "https://secretmanager.googleapis.com".into());
    let base = base.trim_end_matches('/');
    crate::alert::sink::check_url("gcpsm", "endpoint", base).map_err(|e| e.to_string())?;
    let url = format!("{base}/v1/{name}:access");
    let what = format!("Secret Manager {}", origin(base));
    let mut answer = None;
    for attempt in 0..2 {
        let token = token(http).await?;
        let make = || http.api.get(&url).bearer_auth(&token);
        let a = retrying(make, &what, |s| matches!(s, 429 | 500..=599)).await?;
        if a.status.as_u16() == 401 && attempt == 0 {
            cache::drop_key(&format!("gcp|{}|{}", metadata_base(), account()));
            continue;
        }
        answer = Some(a);
        break;
    }
    let a = answer.ok_or_else(|| format!("{what}: no answer"))?;
    if !a.status.is_success() {
        let hint = if a.status.as_u16() == 403 {
            " (the service account needs roles/secretmanager.secretAccessor on the secret, and the VM the cloud-platform scope)"
        } else {
            ""
        };
        return Err(format!("{what}: {}{hint}", a.error()));
    }
    let v = a
        .json()
        .ok_or_else(|| format!("{what}: the answer is not JSON"))?;
    let payload = v
        .get("payload")
        .ok_or_else(|| format!("{what}: the answer has no payload"))?;
    let data = base64::engine::general_purpose::STANDARD
        .decode(field(payload, "data", &what)?)
        .map_err(|_| format!("{what}: the payload is not base64"))?;
    if let Some(want) = payload.get("dataCrc32c") {
        let want: Option<u64> = match want {
            serde_json::Value::String(s) => s.parse().ok(),
            serde_json::Value::Number(n) => n.as_u64(),
            _ => None,
        };
        if want != Some(u64::from(crc32c(&data))) {
            return Err(format!(
                "{what}: the payload does not match its dataCrc32c (corrupted in transit)"
            ));
        }
    }
    String::from_utf8(data).map_err(|_| format!("{what}: the payload is not UTF-8 text"))
}

/// CRC-32C (Castagnoli), as Secret Manager's `dataCrc32c`.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_check_value_and_names() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        assert_eq!(
            parse("projects/p1/secrets/s1").unwrap(),
            Reference::GcpSm {
                name: "projects/p1/secrets/s1/versions/latest".into()
            }
        );
        assert_eq!(
            parse("projects/p1/secrets/s1/versions/3").unwrap(),
            Reference::GcpSm {
                name: "projects/p1/secrets/s1/versions/3".into()
            }
        );
        for bad in [
            "p/s",
            "projects/p/secrets",
            "projects/../secrets/s",
            "projects/p/secrets/s/versions",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
