//! AWS Secrets Manager through the instance role.
//!
//! Credentials: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`) when set
//! (the SDKs' first source), else the instance role from IMDSv2 (`AWS_EC2_METADATA_SERVICE_ENDPOINT`
//! or `http://169.254.169.254`; `AWS_EC2_METADATA_DISABLED=true` turns it off): `PUT
//! /latest/api/token` (`X-aws-ec2-metadata-token-ttl-seconds: 21600`), then the role name and
//! its credentials with `X-aws-ec2-metadata-token`, cached until 5 minutes before
//! `Expiration`. Region: the ARN's, else `AWS_REGION` / `AWS_DEFAULT_REGION`, else IMDS.
//! Endpoint: `AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_ENDPOINT_URL`, else
//! `https://secretsmanager.<region>.amazonaws.com`.
//!
//! GetSecretValue is a SigV4-signed `POST /` (our own signer, [`sign`], checked against AWS's
//! published test vectors). `SecretString` (optionally one key of its JSON: `#jsonkey`) or
//! `SecretBinary` (base64, must be UTF-8).

use std::time::{Duration, SystemTime};

use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::cache;
use super::http::{exchange, field, origin, retrying, transient, Http};
use crate::mac::hmac_sha256;

/// Role credentials.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct Creds {
    pub access_key: String,
    pub secret_key: String,
    pub token: Option<String>,
}

fn env(name: &str) -> Option<String> {
    super::var(name).filter(|s| !s.trim().is_empty())
}

fn imds_base() -> String {
    env("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .unwrap_or_else(|| "http://169.254.169.254".to_string())
        .trim_end_matches('/')
        .to_string()
}

/// For messages and `config-check`.
pub fn identity_label() -> String {
    if env("AWS_ACCESS_KEY_ID").is_some() {
        "AWS credentials from the environment".into()
    } else {
        format!("the instance role via IMDSv2 {}", origin(&imds_base()))
    }
}

/// An IMDSv2 session token.
async fn imds_token(http: &Http, base: &str) -> Result<String, String> {
    let url = format!("{base}/latest/api/token");
    let what = format!("EC2 IMDS {}", origin(base));
    let make = || {
        http.meta
            .put(&url)
            .header("X-aws-ec2-metadata-token-ttl-seconds", "21600")
    };
    let a = retrying(make, &what, transient).await?;
    if !a.status.is_success() {
        return Err(format!("{what}: session token: {}", a.error()));
    }
    let t = String::from_utf8_lossy(&a.body).trim().to_string();
    super::register(&t);
    Ok(t)
}

async fn imds_get(http: &Http, base: &str, token: &str, path: &str) -> Result<String, String> {
    let what = format!("EC2 IMDS {}", origin(base));
    let url = format!("{base}{path}");
    let make = || {
        http.meta
            .get(&url)
            .header("X-aws-ec2-metadata-token", token)
    };
    let a = retrying(make, &what, transient).await?;
    if !a.status.is_success() {
        return Err(format!("{what}: GET {path}: {}", a.error()));
    }
    Ok(String::from_utf8_lossy(&a.body).trim().to_string())
}

/// The credentials to sign with, cached until 5 minutes before they expire.
pub async fn credentials(http: &Http) -> Result<Creds, String> {
    if let (Some(access_key), Some(secret_key)) =
        (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"))
    {
        return Ok(Creds {
            access_key,
            secret_key,
            token: env("AWS_SESSION_TOKEN"),
        });
    }
    if env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(
            "no AWS credentials: AWS_EC2_METADATA_DISABLED=true and no AWS_ACCESS_KEY_ID".into(),
        );
    }
    let base = imds_base();
    let key = format!("aws|{base}");
    if let Some(c) = cache::get(&key).and_then(|j| serde_json::from_str::<Creds>(&j).ok()) {
        return Ok(c);
    }
    let what = format!("EC2 IMDS {}", origin(&base));
    let token = imds_token(http, &base).await?;
    let roles = imds_get(
        http,
        &base,
        &token,
        "/latest/meta-data/iam/security-credentials/",
    )
    .await?;
    let role = roles
        .lines()
        .next()
        .map(str::trim)
        .filter(|r| !r.is_empty() && !r.contains('/'))
        .ok_or_else(|| format!("{what}: no instance role is attached to this instance"))?
        .to_string();
    let body = imds_get(
        http,
        &base,
        &token,
        &format!("/latest/meta-data/iam/security-credentials/{role}"),
    )
    .await?;
    let v: serde_json::Value = serde_json::from_str(&body)
        .map_err(|_| format!("{what}: the role credentials are not JSON"))?;
    if let Some(code) = v
        .get("Code")
        .and_then(|c| c.as_str())
        .filter(|c| *c != "Success")
    {
        return Err(format!("{what}: role {role}: {code}"));
    }
    let creds = Creds {
        access_key: field(&v, "AccessKeyId", &what)?.to_string(),
        secret_key: field(&v, "SecretAccessKey", &what)?.to_string(),
        token: v.get("Token").and_then(|t| t.as_str()).map(str::to_string),
    };
    super::register(&creds.secret_key);
    if let Some(t) = &creds.token {
        super::register(t);
    }
    let expires = v
        .get("Expiration")
        .and_then(|e| e.as_str())
        .and_then(|e| humantime::parse_rfc3339_weak(e).ok())
        .unwrap_or_else(|| SystemTime::now() + Duration::from_secs(900));
    if let Ok(j) = serde_json::to_string(&creds) {
        cache::put(&key, &j, expires);
    }
    Ok(creds)
}

/// The region for `id`: an ARN's own, else the environment, else IMDS.
async fn region(http: &Http, id: &str) -> Result<String, String> {
    if let Some(r) = id
        .strip_prefix("arn:")
        .and_then(|a| a.split(':').nth(2))
        .filter(|r| !r.is_empty())
    {
        return Ok(r.to_string());
    }
    if let Some(r) = env("AWS_REGION").or_else(|| env("AWS_DEFAULT_REGION")) {
        return Ok(r);
    }
    let base = imds_base();
    let key = format!("aws-region|{base}");
    if let Some(r) = cache::get(&key) {
        return Ok(r);
    }
    let token = imds_token(http, &base).await?;
    let r = imds_get(http, &base, &token, "/latest/meta-data/placement/region").await?;
    cache::put(&key, &r, SystemTime::now() + Duration::from_secs(86_400));
    Ok(r)
}

fn endpoint(region: &str) -> String {
    env("AWS_ENDPOINT_URL_SECRETS_MANAGER")
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| format!("https://secretsmanager.{region}.amazonaws.com"))
        .trim_end_matches('/')
        .to_string()
}

/// GetSecretValue.
pub async fn get_secret(http: &Http, id: &str, key: Option<&str>) -> Result<String, String> {
    let region = region(http, id).await?;
    let base = endpoint(&region);
    let url =
        crate::alert::sink::check_url("awssm", "endpoint", &base).map_err(|e| e.to_string())?;
    let host = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or_default()),
        None => url.host_str().unwrap_or_default().to_string(),
    };
    let what = format!("Secrets Manager {}", origin(&base));
    let body = serde_json::to_vec(&serde_json::json!({ "SecretId": id }))
        .map_err(|e| format!("{what}: {e}"))?;
    let creds = credentials(http).await?;
    let amz_date = amz_date(SystemTime::now());
    let mut headers = vec![
        (
            "content-type".to_string(),
            "application/x-amz-json-1.1".to_string(),
        ),
        ("host".to_string(), host),
        ("x-amz-date".to_string(), amz_date.clone()),
        (
            "x-amz-target".to_string(),
            "secretsmanager.GetSecretValue".to_string(),
        ),
    ];
    if let Some(t) = &creds.token {
        headers.push(("x-amz-security-token".to_string(), t.clone()));
    }
    let auth = authorization(
        &Request {
            method: "POST",
            path: "/",
            query: "",
            headers: &headers,
            body: &body,
        },
        &creds,
        &region,
        "secretsmanager",
        &amz_date,
    );
    let mut req = http
        .api
        .post(format!("{base}/"))
        .header("Authorization", auth);
    for (n, v) in headers.iter().filter(|(n, _)| n != "host") {
        req = req.header(n.as_str(), v.as_str());
    }
    let a = exchange(req.body(body), &what).await?;
    if !a.status.is_success() {
        let hint = if a.error().contains("AccessDenied") {
            " (the role needs secretsmanager:GetSecretValue on the secret, and kms:Decrypt on its key if it is a customer-managed key)"
        } else {
            ""
        };
        return Err(format!("{what}: GetSecretValue: {}{hint}", a.error()));
    }
    let v = a
        .json()
        .ok_or_else(|| format!("{what}: the answer is not JSON"))?;
    let text = if let Some(s) = v.get("SecretString").and_then(|s| s.as_str()) {
        s.to_string()
    } else if let Some(b) = v.get("SecretBinary").and_then(|s| s.as_str()) {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b)
            .map_err(|_| format!("{what}: SecretBinary is not base64"))?;
        String::from_utf8(bytes).map_err(|_| format!("{what}: SecretBinary is not UTF-8 text"))?
    } else {
        return Err(format!(
            "{what}: the answer has neither SecretString nor SecretBinary"
        ));
    };
    match key {
        None => Ok(text),
        Some(k) => json_key(&text, k).map_err(|e| format!("{what}: {e}")),
    }
}

/// One key of a JSON object secret, as text.
pub fn json_key(text: &str, key: &str) -> Result<String, String> {
    let v: serde_json::Value = serde_json::from_str(text)
        .map_err(|_| format!("#{key} was asked for but the secret is not a JSON object"))?;
    match v.get(key) {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(serde_json::Value::Null) | None => Err(format!("the secret has no key {key:?}")),
        Some(other) => Ok(other.to_string()),
    }
}

/// `20150830T123600Z`.
pub fn amz_date(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t)
        .to_string()
        .replace(['-', ':'], "")
}

/// A request to sign: `path` and `query` already in canonical (URI-encoded) form, `headers`
/// with lower-case names.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

/// The SigV4 `Authorization` header value (signing every header given).
pub fn authorization(
    r: &Request<'_>,
    creds: &Creds,
    region: &str,
    service: &str,
    amz_date: &str,
) -> String {
    let (signed, signature) = signature(r, &creds.secret_key, region, service, amz_date);
    let date = amz_date.get(..8).unwrap_or_default();
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{date}/{region}/{service}/aws4_request, SignedHeaders={signed}, Signature={signature}",
        creds.access_key
    )
}

/// (signed header names, hex signature).
pub fn signature(
    r: &Request<'_>,
    secret_key: &str,
    region: &str,
    service: &str,
    amz_date: &str,
) -> (String, String) {
    let mut headers: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(n, v)| {
            let v = v.split_whitespace().collect::<Vec<_>>().join(" ");
            (n.to_ascii_lowercase(), v)
        })
        .collect();
    headers.sort();
    let signed = headers
        .iter()
        .map(|(n, _)| n.as_str())
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = headers.iter().map(|(n, v)| format!("{n}:{v}\n")).collect();
    let mut query: Vec<&str> = r.query.split('&').filter(|p| !p.is_empty()).collect();
    query.sort_by_key(|p| p.split_once('=').map_or((*p, ""), |(k, v)| (k, v)));
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed}\n{}",
        r.method,
        r.path,
        query.join("&"),
        sha256_hex(r.body)
    );
    let date = amz_date.get(..8).unwrap_or_default();
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let k_date = hmac_sha256(format!("AWS4{secret_key}").as_bytes(), date.as_bytes());
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    let k_signing = hmac_sha256(&k_service, b"aws4_request");
    (
        signed,
        hex::encode(hmac_sha256(&k_signing, to_sign.as_bytes())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's published SigV4 test suite (aws-sig-v4-test-suite): credentials AKIDEXAMPLE /
    /// wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, 20150830T123600Z, us-east-1, service
    /// `service`, host example.amazonaws.com.
    #[test]
    fn sigv4_matches_the_aws_test_suite() {
        let creds = Creds {
            access_key: "AKIDEXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            token: None,
        };
        let headers = vec![
            ("host".to_string(), "example.amazonaws.com".to_string()),
            ("x-amz-date".to_string(), "20150830T123600Z".to_string()),
        ];
        let cases = [
            // get-vanilla
            (
                "GET",
                "/",
                "",
                "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
            ),
            // get-vanilla-query-order-key-case: sorted before signing
            (
                "GET",
                "/",
                "Param2=value2&Param1=value1",
                "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
            ),
            // get-utf8
            (
                "GET",
                "/%E1%88%B4",
                "",
                "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
            ),
            // post-vanilla
            (
                "POST",
                "/",
                "",
                "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
            ),
        ];
        for (method, path, query, want) in cases {
            let r = Request {
                method,
                path,
                query,
                headers: &headers,
                body: b"",
            };
            let auth = authorization(&r, &creds, "us-east-1", "service", "20150830T123600Z");
            assert_eq!(
                auth,
                format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={want}"),
                "{method} {path}?{query}"
            );
        }
        assert_eq!(
            amz_date(SystemTime::UNIX_EPOCH + Duration::from_secs(1_440_938_160)),
            "20150830T123600Z"
        );
    }

    #[test]
    fn json_keys() {
        assert_eq!(json_key(r#"{"a":"x","n":5}"#, "a").unwrap(), "x");
        assert_eq!(json_key(r#"{"a":"x","n":5}"#, "n").unwrap(), "5");
        assert!(json_key(r#"{"a":"x"}"#, "b").is_err());
        assert!(json_key("plain", "a").is_err());
    }
}
