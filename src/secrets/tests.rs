use super::*;

/// Environment overrides for unit tests: `Some(None)` = unset.
fn env_map() -> &'static Mutex<HashMap<String, Option<String>>> {
    static M: OnceLock<Mutex<HashMap<String, Option<String>>>> = OnceLock::new();
    M.get_or_init(|| Mutex::new(HashMap::new()))
}

pub(super) fn env_override(name: &str) -> Option<Option<String>> {
    env_map().lock().ok()?.get(name).cloned()
}

fn set_env(name: &str, value: Option<&str>) {
    if let Ok(mut m) = env_map().lock() {
        m.insert(name.to_string(), value.map(str::to_string));
    }
}

#[test]
fn references_resolve_and_errors_never_show_values() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("key");
    std::fs::write(&f, "MARKER-SECRET\n").unwrap();
    let r = resolve(&Secret::new(format!("${{file:{}}}", f.display()))).unwrap();
    assert_eq!(r.expose(), "MARKER-SECRET");
    assert_eq!(resolve(&Secret::new("plain")).unwrap().expose(), "plain");
    for bad in [
        "${file:rel}",
        "${nope:x}",
        "${env:}",
        "${vault:kv}",
        "${awssm:}",
        "${gcpsm:x}",
        "${azurekv:v}",
        "${env:FIMD_SURELY_UNSET_VAR}",
    ] {
        let e = resolve(&Secret::new(bad)).unwrap_err();
        assert!(e.contains(bad), "{e}");
        assert!(!e.contains("MARKER"));
    }
}

#[test]
fn store_references_parse() {
    assert_eq!(
        parse("${awssm:arn:aws:secretsmanager:eu-west-1:1:secret:x#password}").unwrap(),
        Reference::AwsSm {
            id: "arn:aws:secretsmanager:eu-west-1:1:secret:x".into(),
            key: Some("password".into())
        }
    );
    assert_eq!(
        parse("${vault:secret/fimd/slack#url}").unwrap(),
        Reference::Vault {
            mount: "secret".into(),
            path: "fimd/slack".into(),
            key: Some("url".into())
        }
    );
    assert!(parse("${vault:secret/../x#k}").is_err());
    assert_eq!(parse("https://x/${y}").unwrap(), Reference::Literal);
}

#[test]
fn notify_fields_are_found_and_malformed_ones_named() {
    let mut n = NotifyConfig {
        slack: Some(crate::config::notify::SlackConfig {
            webhook_url: Secret::new("${env:FIMD_TEST_SLACK_REF_UNSET}"),
            ..Default::default()
        }),
        webhook: Some(crate::config::notify::WebhookConfig {
            url: Secret::new("https://x.example/h"),
            secret: Some(Secret::new("${vault:kv/x#hmac}")),
            ..Default::default()
        }),
        ..NotifyConfig::default()
    };
    let refs = notify_references(&n).unwrap();
    let keys: Vec<&str> = refs.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["notify.slack.webhook_url", "notify.webhook.secret"]);
    assert_eq!(refs[1].store, "vault");
    let e = resolve_notify(&mut n).unwrap_err();
    assert!(
        e.contains("notify.slack.webhook_url") && e.contains("FIMD_TEST_SLACK_REF_UNSET"),
        "{e}"
    );
    if let Some(s) = n.slack.as_mut() {
        s.webhook_url = Secret::new("${bogus:x}");
    }
    let e = notify_references(&n).unwrap_err();
    assert!(
        e.contains("notify.slack.webhook_url") && e.contains("${bogus:x}"),
        "{e}"
    );
}

#[path = "../../tests/secrets/mock.rs"]
mod mock;

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Azure: a token with less than 5 minutes left is fetched again, one with more is reused;
/// Azure Arc's challenge file is read and sent back. (One test: they share process-wide
/// environment variables.)
#[test]
fn azure_token_refresh_and_arc_challenge() {
    use mock::{Mock, Resp};
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};
    for v in [
        "IDENTITY_ENDPOINT",
        "IDENTITY_HEADER",
        "IMDS_ENDPOINT",
        "FIMD_MANAGED_IDENTITY",
    ] {
        set_env(v, None);
    }
    set_identity(None);
    let tokens = AtomicUsize::new(0);
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("fimd.key");
    std::fs::write(&key_file, "ARCKEYMARK\n").unwrap();
    let realm = key_file.display().to_string();
    let m = Mock::start(move |r, _| match r.path.as_str() {
        "/metadata/identity/oauth2/token" => {
            assert_eq!(r.header("metadata"), Some("true"));
            // The first token expires in 299 s (inside the 5-minute margin), the next in 1 h.
            let n = tokens.fetch_add(1, Ordering::SeqCst) + 1;
            let left = if n == 1 { 299 } else { 3600 };
            Resp::json(
                200,
                json!({"access_token": format!("TOK{n}"), "expires_on": (unix_now() + left).to_string()}),
            )
        }
        "/arc/token" => {
            assert_eq!(r.header("metadata"), Some("true"));
            assert_eq!(r.param("api-version").as_deref(), Some("2019-11-01"));
            match r.header("authorization") {
                None => {
                    Resp::text(401, "").header("WWW-Authenticate", &format!("Basic realm={realm}"))
                }
                Some("Basic ARCKEYMARK") => {
                    Resp::json(200, json!({"access_token": "ARCTOK", "expires_in": "3600"}))
                }
                Some(_) => Resp::text(403, ""),
            }
        }
        "/secrets/s" => {
            let auth = r.header("authorization").unwrap_or_default();
            Resp::json(
                200,
                json!({"value": format!("V-{}", auth.trim_start_matches("Bearer "))}),
            )
        }
        _ => Resp::text(404, ""),
    });
    set_env("AZURE_POD_IDENTITY_AUTHORITY_HOST", Some(&m.url));
    let reference = Secret::new(format!("${{azurekv:{}/s}}", m.url));
    let got: Vec<String> = (0..3)
        .map(|_| resolve(&reference).unwrap().expose().to_string())
        .collect();
    assert_eq!(got, ["V-TOK1", "V-TOK2", "V-TOK2"]);
    assert_eq!(m.at("/metadata/").len(), 2, "TOK2 was reused");

    // Azure Arc: IDENTITY_ENDPOINT + IMDS_ENDPOINT, the key file directly in the tokens dir.
    set_env("IDENTITY_ENDPOINT", Some(&format!("{}/arc/token", m.url)));
    set_env("IMDS_ENDPOINT", Some(&m.url));
    *super::azure::tests::ARC_DIR.lock().unwrap() = dir.path().to_path_buf();
    assert_eq!(resolve(&reference).unwrap().expose(), "V-ARCTOK");
    assert_eq!(m.at("/arc/").len(), 2, "the challenge, then the token");
    // A key file anywhere else is refused, and Arc has no user-assigned identity.
    *super::azure::tests::ARC_DIR.lock().unwrap() = dir.path().join("elsewhere");
    super::cache::drop_key(&format!(
        "azure|Arc {{ endpoint: \"{}/arc/token\" }}|None|https://vault.azure.net",
        m.url
    ));
    let e = resolve(&reference).unwrap_err();
    assert!(e.contains("not directly under"), "{e}");
    assert!(!e.contains("ARCKEYMARK"), "{e}");
    set_identity(Some("cid".into()));
    let e = resolve(&reference).unwrap_err();
    assert!(e.contains("only the system-assigned identity"), "{e}");
    set_identity(None);
    for v in [
        "IDENTITY_ENDPOINT",
        "IMDS_ENDPOINT",
        "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    ] {
        set_env(v, None);
    }
}

/// AWS role credentials are fetched again when less than 5 minutes remain before their
/// `Expiration`, and reused otherwise.
#[test]
fn aws_role_credentials_refreshed_before_expiration() {
    use mock::{Mock, Resp};
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};
    for v in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_EC2_METADATA_DISABLED",
    ] {
        set_env(v, None);
    }
    let creds = AtomicUsize::new(0);
    let m = Mock::start(move |r, _| match (r.method.as_str(), r.path.as_str()) {
        ("PUT", "/latest/api/token") => Resp::text(200, "T"),
        ("GET", "/latest/meta-data/iam/security-credentials/") => Resp::text(200, "role"),
        ("GET", "/latest/meta-data/iam/security-credentials/role") => {
            let n = creds.fetch_add(1, Ordering::SeqCst) + 1;
            let left = if n == 1 { 200 } else { 3600 };
            let exp = std::time::SystemTime::now() + std::time::Duration::from_secs(left);
            Resp::json(
                200,
                json!({"AccessKeyId": format!("AK{n}"), "SecretAccessKey": "SK", "Token": "ST",
                       "Expiration": humantime::format_rfc3339_seconds(exp).to_string()}),
            )
        }
        ("POST", "/") => {
            let auth = r.header("authorization").unwrap_or_default();
            let ak = auth
                .split("Credential=")
                .nth(1)
                .and_then(|c| c.split('/').next())
                .unwrap_or_default();
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            if body["SecretId"] == "bin" {
                use base64::Engine as _;
                let b = base64::engine::general_purpose::STANDARD.encode(r#"{"k":"BIN-VALUE"}"#);
                return Resp::json(200, json!({"SecretBinary": b}));
            }
            Resp::json(200, json!({"SecretString": format!("V-{ak}")}))
        }
        _ => Resp::text(404, ""),
    });
    set_env("AWS_EC2_METADATA_SERVICE_ENDPOINT", Some(&m.url));
    let reference = Secret::new("${awssm:arn:aws:secretsmanager:eu-north-1:1:secret:x}");
    set_env("AWS_ENDPOINT_URL_SECRETS_MANAGER", Some(&m.url));
    let got: Vec<String> = (0..3)
        .map(|_| resolve(&reference).unwrap().expose().to_string())
        .collect();
    assert_eq!(got, ["V-AK1", "V-AK2", "V-AK2"]);
    assert!(
        m.at("/latest/meta-data/placement").is_empty(),
        "the ARN names the region"
    );
    // SecretBinary (base64 UTF-8), one key of its JSON; the region from AWS_REGION.
    set_env("AWS_REGION", Some("eu-north-1"));
    let bin = resolve(&Secret::new("${awssm:bin#k}")).unwrap();
    assert_eq!(bin.expose(), "BIN-VALUE");
    set_env("AWS_REGION", None);
    let post = m.at("/").into_iter().find(|r| r.method == "POST").unwrap();
    assert!(post
        .header("authorization")
        .unwrap()
        .contains("/eu-north-1/secretsmanager/aws4_request"));
    for v in [
        "AWS_EC2_METADATA_SERVICE_ENDPOINT",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    ] {
        set_env(v, None);
    }
}

#[test]
fn the_redaction_list_is_bounded_and_keeps_values_in_use() {
    register("KEEP-THIS-VALUE-IN-USE");
    for i in 0..REGISTERED_MAX + 10 {
        register(&format!("rotated-token-{i:04}"));
        if i % 100 == 0 {
            register("KEEP-THIS-VALUE-IN-USE");
        }
    }
    let r = registered();
    assert!(r.len() <= REGISTERED_MAX);
    assert_eq!(redact("x KEEP-THIS-VALUE-IN-USE y"), "x **REDACTED** y");
    assert!(!r.iter().any(|v| v == "rotated-token-0000"));
}
