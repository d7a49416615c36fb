//! Azure Key Vault through the managed identity.
//!
//! The token comes from, in this order: App Service / Container Apps (`IDENTITY_ENDPOINT` +
//! `IDENTITY_HEADER`, api-version 2019-08-01, header `X-IDENTITY-HEADER`); Azure Arc
//! (`IDENTITY_ENDPOINT` + `IMDS_ENDPOINT`: a 401 whose `WWW-Authenticate: Basic realm=<file>`
//! names a key file under `/var/opt/azcmagent/tokens/`, read and sent back as `Authorization:
//! Basic <contents>`); the VM's IMDS (`AZURE_POD_IDENTITY_AUTHORITY_HOST` or
//! `http://169.254.169.254`, api-version 2018-02-01, header `Metadata: true`). A user-assigned
//! identity is chosen by its client id, or by its resource id (starting with `/`:
//! `msi_res_id` on IMDS, `mi_res_id` on App Service). The endpoints are retried on 404, 410,
//! 429 and 5xx with backoff, never on 400. Tokens are cached until 5 minutes before expiry.
//!
//! Key Vault: `GET {vault}/secrets/{name}[/{version}]?api-version=7.4` with the bearer token
//! (audience `https://vault.azure.net`, or the sovereign cloud's suffix taken from a full
//! vault URL). A 401 drops the cached token and asks once more.

use std::path::{Path, PathBuf};

use super::cache;
use super::http::{field, origin, retrying, transient, with_query, Http};
use super::Reference;

/// `VAULT/NAME[/VERSION]`, `VAULT` a name or an URL.
pub fn parse(rest: &str) -> Result<Reference, String> {
    let usage = "expected ${azurekv:VAULT/NAME[/VERSION]} (VAULT: a vault name or its https URL)";
    let (vault, tail) = if rest.starts_with("https://") || rest.starts_with("http://") {
        let url = reqwest::Url::parse(rest).map_err(|e| format!("{usage}: {e}"))?;
        let tail = url.path().trim_start_matches('/').to_string();
        let tail = tail.strip_prefix("secrets/").unwrap_or(&tail).to_string();
        (crate::alert::sink::origin(&url), tail)
    } else {
        let (v, t) = rest.split_once('/').ok_or(usage)?;
        if !valid_name(v) {
            return Err(format!("{usage}: {v:?} is not a vault name"));
        }
        (v.to_string(), t.to_string())
    };
    let mut parts = tail.split('/');
    let name = parts.next().unwrap_or_default().to_string();
    let version = parts.next().filter(|s| !s.is_empty()).map(str::to_string);
    if !valid_name(&name) || parts.next().is_some() {
        return Err(usage.to_string());
    }
    if version.as_deref().is_some_and(|v| !valid_name(v)) {
        return Err(format!("{usage}: the version is not valid"));
    }
    Ok(Reference::AzureKv {
        vault,
        name,
        version,
    })
}

fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 127 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// The vault's base URL: a name maps to `https://NAME.vault.azure.net`; an URL must be https
/// (plain http only on loopback, for tests).
fn vault_url(vault: &str) -> Result<String, String> {
    if !vault.contains("://") {
        return Ok(format!("https://{vault}.vault.azure.net"));
    }
    let url =
        crate::alert::sink::check_url("azurekv", "vault", vault).map_err(|e| e.to_string())?;
    Ok(crate::alert::sink::origin(&url))
}

/// The token audience for a vault URL: `https://vault.azure.net`, or for a sovereign cloud
/// the host without its first label (`x.vault.azure.cn` → `https://vault.azure.cn`).
pub fn resource(vault_url: &str) -> String {
    let host = reqwest::Url::parse(vault_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_default();
    match host.split_once('.') {
        Some((_, suffix)) if suffix.starts_with("vault.") => format!("https://{suffix}"),
        _ => "https://vault.azure.net".to_string(),
    }
}

/// Where the token comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    AppService { endpoint: String, header: String },
    Arc { endpoint: String },
    Imds { base: String },
}

fn env(name: &str) -> Option<String> {
    super::var(name).filter(|s| !s.trim().is_empty())
}

fn source() -> Source {
    if let Some(endpoint) = env("IDENTITY_ENDPOINT") {
        if let Some(header) = env("IDENTITY_HEADER") {
            return Source::AppService { endpoint, header };
        }
        if env("IMDS_ENDPOINT").is_some() {
            return Source::Arc { endpoint };
        }
    }
    let base = env("AZURE_POD_IDENTITY_AUTHORITY_HOST")
        .unwrap_or_else(|| "http://169.254.169.254".to_string());
    Source::Imds {
        base: base.trim_end_matches('/').to_string(),
    }
}

/// "the system-assigned identity (IMDS)", "the user-assigned identity client_id=… (App
/// Service)": for messages and `config-check`.
pub fn identity_label() -> String {
    let via = match source() {
        Source::AppService { .. } => "App Service",
        Source::Arc { .. } => "Azure Arc",
        Source::Imds { .. } => "IMDS",
    };
    match super::identity() {
        None => format!("system-assigned managed identity via {via}"),
        Some(id) if id.starts_with('/') => format!("user-assigned managed identity {id} via {via}"),
        Some(id) => format!("user-assigned managed identity client_id={id} via {via}"),
    }
}

/// An access token for `resource`, cached.
pub async fn token(http: &Http, resource: &str) -> Result<String, String> {
    let src = source();
    let id = super::identity();
    let key = format!("azure|{src:?}|{id:?}|{resource}");
    if let Some(t) = cache::get(&key) {
        return Ok(t);
    }
    let answer = match &src {
        Source::Imds { base } => {
            let url = format!("{base}/metadata/identity/oauth2/token");
            let mut query = vec![
                ("api-version", "2018-02-01".to_string()),
                ("resource", resource.to_string()),
            ];
            if let Some(id) = &id {
                let k = if id.starts_with('/') {
                    "msi_res_id"
                } else {
                    "client_id"
                };
                query.push((k, id.clone()));
            }
            let what = format!("Azure IMDS {}", origin(&url));
            let url = with_query(&url, &query)?;
            let make = || http.meta.get(url.clone()).header("Metadata", "true");
            (retrying(make, &what, transient).await?, what)
        }
        Source::AppService { endpoint, header } => {
            let mut query = vec![
                ("api-version", "2019-08-01".to_string()),
                ("resource", resource.to_string()),
            ];
            if let Some(id) = &id {
                let k = if id.starts_with('/') {
                    "mi_res_id"
                } else {
                    "client_id"
                };
                query.push((k, id.clone()));
            }
            let what = format!("the App Service identity endpoint {}", origin(endpoint));
            let url = with_query(endpoint, &query)?;
            let make = || {
                http.meta
                    .get(url.clone())
                    .header("X-IDENTITY-HEADER", header)
            };
            (retrying(make, &what, transient).await?, what)
        }
        Source::Arc { endpoint } => {
            if id.is_some() {
                return Err(
                    "Azure Arc servers have only the system-assigned identity: remove --managed-identity / FIMD_MANAGED_IDENTITY".into(),
                );
            }
            let what = format!("the Azure Arc identity endpoint {}", origin(endpoint));
            (
                arc(http, endpoint, resource, &what, &arc_dir()).await?,
                what,
            )
        }
    };
    let (answer, what) = answer;
    if !answer.status.is_success() {
        return Err(format!(
            "{what} refused a token for {resource}: {}",
            answer.error()
        ));
    }
    let v = answer
        .json()
        .ok_or_else(|| format!("{what}: the token answer is not JSON"))?;
    let token = field(&v, "access_token", &what)?.to_string();
    let expires = cache::unix(v.get("expires_on"))
        .or_else(|| cache::after(v.get("expires_in")))
        .ok_or_else(|| format!("{what}: the token answer has no expires_on"))?;
    cache::put(&key, &token, expires);
    Ok(token)
}

/// Where Azure Arc's agent writes its key files (the SDKs accept no other directory).
#[cfg(not(test))]
fn arc_dir() -> PathBuf {
    PathBuf::from("/var/opt/azcmagent/tokens")
}

#[cfg(test)]
fn arc_dir() -> PathBuf {
    tests::ARC_DIR.lock().map(|d| d.clone()).unwrap_or_default()
}

/// The Arc challenge: the first GET answers 401 naming a key file; send its contents back.
async fn arc(
    http: &Http,
    endpoint: &str,
    resource: &str,
    what: &str,
    dir: &Path,
) -> Result<super::http::Answer, String> {
    let url = with_query(
        endpoint,
        &[
            ("api-version", "2019-11-01".to_string()),
            ("resource", resource.to_string()),
        ],
    )?;
    let first =
        super::http::exchange(http.meta.get(url.clone()).header("Metadata", "true"), what).await?;
    if first.status.as_u16() != 401 {
        return Ok(first);
    }
    let realm = first
        .headers
        .get(reqwest::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once('='))
        .map(|(_, p)| p.trim().trim_matches('"').to_string())
        .ok_or_else(|| format!("{what}: 401 without a WWW-Authenticate realm"))?;
    let key = arc_key(Path::new(&realm), dir).map_err(|e| format!("{what}: {e}"))?;
    let make = || {
        http.meta
            .get(url.clone())
            .header("Metadata", "true")
            .header("Authorization", format!("Basic {key}"))
    };
    retrying(make, what, transient).await
}

/// The Arc key file, checked as the SDKs do: directly in `dir`, named `*.key`, at most 4096
/// bytes.
fn arc_key(path: &Path, dir: &Path) -> Result<String, String> {
    if path.parent() != Some(dir) {
        return Err(format!(
            "the challenge names {}, which is not directly under {}",
            path.display(),
            dir.display()
        ));
    }
    if path.extension().and_then(|e| e.to_str()) != Some("key") {
        return Err(format!(
            "the challenge names {}, not a .key file",
            path.display()
        ));
    }
    let meta = std::fs::metadata(path)
        .map_err(|e| format!("cannot read the key file {}: {e}", path.display()))?;
    if meta.len() > 4096 {
        return Err(format!(
            "the key file {} is larger than 4096 bytes",
            path.display()
        ));
    }
    let key = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the key file {}: {e}", path.display()))?;
    let key = key.trim().to_string();
    super::register(&key);
    Ok(key)
}

/// Key Vault Get Secret.
pub async fn get_secret(
    http: &Http,
    vault: &str,
    name: &str,
    version: Option<&str>,
) -> Result<String, String> {
    let base = vault_url(vault)?;
    let resource = resource(&base);
    let url = match version {
        Some(v) => format!("{base}/secrets/{name}/{v}"),
        None => format!("{base}/secrets/{name}"),
    };
    let what = format!("Key Vault {base}");
    let url = with_query(&url, &[("api-version", "7.4".to_string())])?;
    let mut answer = None;
    for attempt in 0..2 {
        let token = token(http, &resource).await?;
        let make = || http.api.get(url.clone()).bearer_auth(&token);
        let a = retrying(make, &what, |s| matches!(s, 429 | 500..=599)).await?;
        if a.status.as_u16() == 401 && attempt == 0 {
            // The token was revoked or is for another tenant: fetch a new one, once.
            cache::drop_key(&format!(
                "azure|{:?}|{:?}|{resource}",
                source(),
                super::identity()
            ));
            continue;
        }
        answer = Some(a);
        break;
    }
    let a = answer.ok_or_else(|| format!("{what}: no answer"))?;
    match a.status.as_u16() {
        200 => {}
        403 => {
            return Err(format!(
                "{what} refused access: {} (the identity needs the role \"Key Vault Secrets User\" on the vault, and the vault's firewall must admit this machine)",
                a.error()
            ))
        }
        _ => return Err(format!("{what}: {}", a.error())),
    }
    let v = a
        .json()
        .ok_or_else(|| format!("{what}: the answer is not JSON"))?;
    Ok(field(&v, "value", &what)?.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// The Arc key directory the tests use instead of `/var/opt/azcmagent/tokens`.
    pub static ARC_DIR: Mutex<PathBuf> = Mutex::new(PathBuf::new());

    #[test]
    fn references_and_audiences() {
        assert_eq!(
            parse("myvault/db-pass").unwrap(),
            Reference::AzureKv {
                vault: "myvault".into(),
                name: "db-pass".into(),
                version: None
            }
        );
        assert_eq!(
            parse("https://v.vault.azure.cn/slack/abc123").unwrap(),
            Reference::AzureKv {
                vault: "https://v.vault.azure.cn".into(),
                name: "slack".into(),
                version: Some("abc123".into())
            }
        );
        for bad in ["novault", "my_vault/x", "v/a/b/c", "v/"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            resource("https://v.vault.azure.net"),
            "https://vault.azure.net"
        );
        assert_eq!(
            resource("https://v.vault.azure.cn"),
            "https://vault.azure.cn"
        );
        assert_eq!(
            resource("https://v.vault.usgovcloudapi.net"),
            "https://vault.usgovcloudapi.net"
        );
        assert_eq!(resource("http://127.0.0.1:9"), "https://vault.azure.net");
        assert_eq!(vault_url("v").unwrap(), "https://v.vault.azure.net");
        assert!(vault_url("http://example.com").is_err());
    }

    #[test]
    fn arc_key_file_checks() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("a.key");
        std::fs::write(&good, "KEYMARK\n").unwrap();
        assert_eq!(arc_key(&good, dir.path()).unwrap(), "KEYMARK");
        let txt = dir.path().join("a.txt");
        std::fs::write(&txt, "x").unwrap();
        assert!(arc_key(&txt, dir.path()).is_err());
        let big = dir.path().join("big.key");
        std::fs::write(&big, vec![b'x'; 5000]).unwrap();
        assert!(arc_key(&big, dir.path()).unwrap_err().contains("4096"));
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("b.key"), "x").unwrap();
        assert!(arc_key(&sub.join("b.key"), dir.path()).is_err());
        assert!(arc_key(&dir.path().join("sub/../a.key"), dir.path()).is_err());
    }
}
