//! Secrets fetched from stores through the machine's identity, end to end through the `fimd`
//! binary, against mock identity endpoints and stores on 127.0.0.1 that check every method,
//! path, query, header and body. Each mock store hands out marker secrets; the tests grep the
//! database (with its WAL), stdout, stderr and every HTTP body other than the sink's own.

mod common;
#[path = "secrets/mock.rs"]
mod mock;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;
use mock::{Mock, Req, Resp};
use serde_json::json;

/// The variables that choose identity endpoints and stores: cleared, then set per test.
const STORE_VARS: &[&str] = &[
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "IMDS_ENDPOINT",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "FIMD_MANAGED_IDENTITY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_EC2_METADATA_SERVICE_ENDPOINT",
    "AWS_EC2_METADATA_DISABLED",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_SECRETS_MANAGER",
    "GCE_METADATA_HOST",
    "FIMD_GCP_SECRETMANAGER_ENDPOINT",
    "VAULT_ADDR",
    "VAULT_TOKEN",
    "VAULT_ROLE_ID",
    "VAULT_SECRET_ID",
    "VAULT_NAMESPACE",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Run `fimd --config <tree's> ARGS` with only `env` among the store variables.
fn run(tree: &TempTree, env: &[(&str, String)], args: &[&str]) -> Run {
    let mut c = tree.cmd();
    for v in STORE_VARS {
        c.env_remove(v);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    Run::from(c.args(args).output().expect("run fimd"))
}

/// No marker in the database files, the outputs, or any request but the sink's own.
fn assert_no_leak(tree: &TempTree, runs: &[&Run], requests: &[Req], markers: &[&str]) {
    let db_dir = tree.db.parent().expect("db dir");
    let db = all_bytes_under(db_dir);
    for m in markers {
        assert!(!contains(&db, m), "the database holds {m}");
        for r in runs {
            assert!(!r.stdout.contains(m), "stdout leaks {m}: {}", r.stdout);
            assert!(!r.stderr.contains(m), "stderr leaks {m}: {}", r.stderr);
        }
        for q in requests {
            assert!(!q.text().contains(m), "a body to {} leaks {m}", q.path);
        }
    }
}

/// A Slack hook on the mock: 200 for the path, remembering nothing else.
fn slack_path(tag: &str) -> String {
    format!("/services/T0/B0/{tag}")
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A tree with a baseline and one changed file; `config` is appended to the config.
fn changed_tree(config: &str, env: &[(&str, String)]) -> (TempTree, Run) {
    let tree = TempTree::new("", config);
    tree.write("app.conf", "a=1\n");
    let init = run(&tree, env, &["init"]);
    assert_eq!(init.code, 0, "init: {}", init.stderr);
    tree.write("app.conf", "a=2\n");
    (tree, init)
}

fn slack_config(reference: &str) -> String {
    format!("[notify]\nbatch_window = \"1s\"\n\n[notify.slack]\nwebhook_url = \"{reference}\"\n")
}

/// The Slack requests carried the change of `app.conf`.
fn assert_alert(slack: &[Req], tree: &TempTree) {
    let path = tree.path("app.conf").display().to_string();
    assert!(
        slack
            .iter()
            .any(|r| r.method == "POST" && r.text().contains(&path)),
        "no Slack alert for {path}: {:?}",
        slack.iter().map(Req::text).collect::<Vec<_>>()
    );
}

// ---------------------------------------------------------------------------------------
// Azure

/// IMDS + Key Vault for a user-assigned identity; the secret is `value`.
fn azure_handler(
    base: String,
    value: String,
    client_id: &'static str,
) -> impl Fn(&Req, usize) -> Resp + Send + Sync {
    move |r, _| match (r.method.as_str(), r.path.as_str()) {
        ("GET", "/metadata/identity/oauth2/token") => {
            let ok = r.header("metadata") == Some("true")
                && r.param("api-version").as_deref() == Some("2018-02-01")
                && r.param("resource").as_deref() == Some("https://vault.azure.net")
                && r.param("client_id").as_deref() == Some(client_id);
            if !ok {
                return Resp::json(
                    400,
                    json!({"error": "invalid_request", "error_description": format!("bad request {:?}", r.query)}),
                );
            }
            Resp::json(
                200,
                json!({"access_token": "AZTOKENMARK", "expires_on": (now() + 3600).to_string(),
                       "expires_in": "3600", "resource": "https://vault.azure.net", "token_type": "Bearer"}),
            )
        }
        ("GET", "/secrets/slack-url") => {
            if r.header("authorization") != Some("Bearer AZTOKENMARK")
                || r.param("api-version").as_deref() != Some("7.4")
            {
                return Resp::json(
                    401,
                    json!({"error": {"code": "Unauthorized", "message": "no"}}),
                );
            }
            Resp::json(
                200,
                json!({"value": value, "id": format!("{base}/secrets/slack-url/1")}),
            )
        }
        ("POST", p) if p.starts_with("/services/") => Resp::text(200, "ok"),
        _ => Resp::text(404, "no route"),
    }
}

#[test]
fn azure_key_vault_via_imds_user_assigned_identity_feeds_slack_end_to_end() {
    let m = Mock::start(|_, _| Resp::text(500, ""));
    let hook = format!("{}{}", m.url, slack_path("SLACKMARK"));
    m.set(azure_handler(m.url.clone(), hook, "client-id-123"));
    let env = [
        ("AZURE_POD_IDENTITY_AUTHORITY_HOST", m.url.clone()),
        ("FIMD_MANAGED_IDENTITY", "client-id-123".to_string()),
    ];
    let reference = format!("${{azurekv:{}/slack-url}}", m.url);
    let (tree, init) = changed_tree(&slack_config(&reference), &env);
    let check = run(&tree, &env, &["check"]);
    assert_eq!(check.code, 4, "check: {}", check.stderr);
    let slack = m.at("/services/T0/B0/SLACKMARK");
    assert_alert(&slack, &tree);

    let cc = run(&tree, &env, &["config-check"]);
    assert_eq!(cc.code, 0, "{}", cc.stderr);
    assert!(
        cc.stdout.contains(&format!("notify.slack.webhook_url = {reference} (store azurekv, identity user-assigned managed identity client_id=client-id-123 via IMDS): resolved")),
        "{}",
        cc.stdout
    );
    let others: Vec<Req> = m
        .seen()
        .into_iter()
        .filter(|r| !r.path.starts_with("/services/"))
        .collect();
    assert_no_leak(
        &tree,
        &[&init, &check, &cc],
        &others,
        &["SLACKMARK", "AZTOKENMARK"],
    );
    assert_no_leak(&tree, &[&init, &check, &cc], &slack, &["AZTOKENMARK"]);
}

#[test]
fn azure_app_service_identity_by_resource_id() {
    let m = Mock::start(|_, _| Resp::text(500, ""));
    let hook = format!("{}{}", m.url, slack_path("SLACKMARK"));
    let rid = "/subscriptions/s/resourcegroups/g/providers/Microsoft.ManagedIdentity/userAssignedIdentities/fimd";
    let base = m.url.clone();
    m.set(move |r, _| match r.path.as_str() {
        "/msi/token" => {
            let ok = r.header("x-identity-header") == Some("IDHDRMARK")
                && r.param("api-version").as_deref() == Some("2019-08-01")
                && r.param("resource").as_deref() == Some("https://vault.azure.net")
                && r.param("mi_res_id").as_deref() == Some(rid)
                && r.header("metadata").is_none();
            if !ok {
                return Resp::json(400, json!({"error": "bad"}));
            }
            Resp::json(
                200,
                json!({"access_token": "AZTOKENMARK", "expires_on": now() + 3600}),
            )
        }
        "/secrets/slack-url" if r.header("authorization") == Some("Bearer AZTOKENMARK") => {
            Resp::json(
                200,
                json!({"value": hook.clone(), "id": format!("{base}/x")}),
            )
        }
        _ => Resp::text(404, ""),
    });
    let env = [
        ("IDENTITY_ENDPOINT", format!("{}/msi/token", m.url)),
        ("IDENTITY_HEADER", "IDHDRMARK".to_string()),
        ("FIMD_MANAGED_IDENTITY", rid.to_string()),
    ];
    let tree = TempTree::new(
        "",
        &slack_config(&format!("${{azurekv:{}/slack-url}}", m.url)),
    );
    let cc = run(&tree, &env, &["config-check"]);
    assert_eq!(cc.code, 0, "{}", cc.stderr);
    assert!(
        cc.stdout.contains("via App Service): resolved"),
        "{}",
        cc.stdout
    );
    assert_eq!(m.at("/msi/token").len(), 1);
    assert_no_leak(
        &tree,
        &[&cc],
        &m.seen(),
        &["SLACKMARK", "AZTOKENMARK", "IDHDRMARK"],
    );
}

#[test]
fn azure_imds_410_is_retried_then_succeeds() {
    let m = Mock::start(|_, _| Resp::text(500, ""));
    let hook = format!("{}{}", m.url, slack_path("SLACKMARK"));
    let inner = azure_handler(m.url.clone(), hook, "cid");
    let gone_once = AtomicBool::new(false);
    m.set(move |r, n| {
        if r.path == "/metadata/identity/oauth2/token" && !gone_once.swap(true, Ordering::SeqCst) {
            return Resp::json(410, json!({"error": "IMDS is updating"}));
        }
        inner(r, n)
    });
    let env = [
        ("AZURE_POD_IDENTITY_AUTHORITY_HOST", m.url.clone()),
        ("FIMD_MANAGED_IDENTITY", "cid".to_string()),
    ];
    let tree = TempTree::new(
        "",
        &slack_config(&format!("${{azurekv:{}/slack-url}}", m.url)),
    );
    let cc = run(&tree, &env, &["config-check"]);
    assert_eq!(cc.code, 0, "{}", cc.stderr);
    assert_eq!(m.at("/metadata/").len(), 2, "one 410, one 200");
}

#[test]
fn azure_imds_400_is_not_retried_and_a_key_vault_403_is_exit_17_naming_reference_and_identity() {
    let m = Mock::start(|r, _| match r.path.as_str() {
        "/metadata/identity/oauth2/token" => Resp::json(
            200,
            json!({"access_token": "AZTOKENMARK", "expires_in": 3600}),
        ),
        _ => Resp::json(
            403,
            json!({"error": {"code": "Forbidden", "message": "Caller is not authorized", "innererror": {"code": "ForbiddenByRbac"}}}),
        ),
    });
    let env = [("AZURE_POD_IDENTITY_AUTHORITY_HOST", m.url.clone())];
    let reference = format!("${{azurekv:{}/slack-url}}", m.url);
    let tree = TempTree::new("", &slack_config(&reference));
    let r = run(&tree, &env, &["check"]);
    assert_eq!(r.code, 17, "{}", r.stderr);
    assert!(
        r.stderr.contains("notify.slack.webhook_url"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains(&reference), "{}", r.stderr);
    assert!(
        r.stderr
            .contains("system-assigned managed identity via IMDS"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("403") && r.stderr.contains("Key Vault Secrets User"),
        "{}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1, "one line: {}", r.stderr);
    assert_no_leak(&tree, &[&r], &[], &["AZTOKENMARK"]);

    // IMDS refusing the identity (400) is final: one request, exit 17.
    let m2 = Mock::start(|_, _| {
        Resp::json(
            400,
            json!({"error": "invalid_request", "error_description": "Identity not found"}),
        )
    });
    let env = [
        ("AZURE_POD_IDENTITY_AUTHORITY_HOST", m2.url.clone()),
        ("FIMD_MANAGED_IDENTITY", "nope".to_string()),
    ];
    let r = run(&tree, &env, &["config-check"]);
    assert_eq!(r.code, 17, "{}", r.stderr);
    assert!(
        r.stderr.contains("Identity not found") && r.stderr.contains("client_id=nope"),
        "{}",
        r.stderr
    );
    assert_eq!(m2.seen().len(), 1);
}

// ---------------------------------------------------------------------------------------
// AWS

const AWS_SECRET_KEY: &str = "AWSSECRETMARK/abc";

fn aws_handler(value: String, fail: bool) -> impl Fn(&Req, usize) -> Resp + Send + Sync {
    move |r, _| match (r.method.as_str(), r.path.as_str()) {
        ("PUT", "/latest/api/token") => {
            if r.header("x-aws-ec2-metadata-token-ttl-seconds") != Some("21600") {
                return Resp::text(400, "");
            }
            Resp::text(200, "IMDSTOKENMARK")
        }
        ("GET", p) if p.starts_with("/latest/meta-data/") => {
            if r.header("x-aws-ec2-metadata-token") != Some("IMDSTOKENMARK") {
                return Resp::text(401, "");
            }
            match p {
                "/latest/meta-data/iam/security-credentials/" => Resp::text(200, "fimd-role"),
                "/latest/meta-data/iam/security-credentials/fimd-role" => Resp::json(
                    200,
                    json!({"Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": "ASIAEXAMPLE",
                           "SecretAccessKey": AWS_SECRET_KEY, "Token": "SESSIONMARK",
                           "Expiration": humantime::format_rfc3339_seconds(SystemTime::now() + Duration::from_secs(3600)).to_string()}),
                ),
                "/latest/meta-data/placement/region" => Resp::text(200, "eu-west-3"),
                _ => Resp::text(404, ""),
            }
        }
        ("POST", "/") => {
            if let Err(e) = check_sigv4(r, "eu-west-3") {
                return Resp::json(
                    400,
                    json!({"__type": "InvalidSignatureException", "message": e}),
                );
            }
            if fail {
                return Resp::json(
                    400,
                    json!({"__type": "AccessDeniedException", "Message": "not authorized to perform secretsmanager:GetSecretValue"}),
                );
            }
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            if body != json!({"SecretId": "prod/fimd"}) {
                return Resp::json(400, json!({"__type": "ResourceNotFoundException"}));
            }
            Resp::json(
                200,
                json!({"ARN": "arn:aws:secretsmanager:eu-west-3:1:secret:prod/fimd-x", "Name": "prod/fimd",
                       "VersionId": "v1", "SecretString": json!({"slack": value}).to_string()}),
            )
        }
        ("POST", p) if p.starts_with("/services/") => Resp::text(200, "ok"),
        _ => Resp::text(404, ""),
    }
}

/// The mock recomputes the SigV4 signature from the headers it received.
fn check_sigv4(r: &Req, region: &str) -> Result<(), String> {
    let auth = r.header("authorization").ok_or("no Authorization")?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 Credential=ASIAEXAMPLE/")
        .ok_or("bad credential")?;
    let date = r.header("x-amz-date").ok_or("no x-amz-date")?;
    let scope = format!("{}/{region}/secretsmanager/aws4_request, ", &date[..8]);
    let rest = rest
        .strip_prefix(&scope)
        .ok_or(format!("bad scope in {auth}"))?;
    let (signed, sig) = rest
        .strip_prefix("SignedHeaders=")
        .and_then(|s| s.split_once(", Signature="))
        .ok_or("bad Authorization")?;
    for needed in [
        "content-type",
        "host",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-target",
    ] {
        if !signed.split(';').any(|h| h == needed) {
            return Err(format!("{needed} not signed"));
        }
    }
    if r.header("x-amz-target") != Some("secretsmanager.GetSecretValue")
        || r.header("content-type") != Some("application/x-amz-json-1.1")
        || r.header("x-amz-security-token") != Some("SESSIONMARK")
    {
        return Err("wrong headers".into());
    }
    let headers: Vec<(String, String)> = signed
        .split(';')
        .map(|h| (h.to_string(), r.header(h).unwrap_or_default().to_string()))
        .collect();
    let req = fimd::secrets::aws::Request {
        method: "POST",
        path: "/",
        query: "",
        headers: &headers,
        body: &r.body,
    };
    let (_, want) =
        fimd::secrets::aws::signature(&req, AWS_SECRET_KEY, region, "secretsmanager", date);
    if want != sig {
        return Err("signature mismatch".into());
    }
    Ok(())
}

#[test]
fn aws_secrets_manager_via_imdsv2_and_sigv4_feeds_slack_end_to_end() {
    let m = Mock::start(|_, _| Resp::text(500, ""));
    let hook = format!("{}{}", m.url, slack_path("SLACKMARK"));
    m.set(aws_handler(hook, false));
    let env = [
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", m.url.clone()),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", m.url.clone()),
    ];
    let (tree, init) = changed_tree(&slack_config("${awssm:prod/fimd#slack}"), &env);
    let check = run(&tree, &env, &["check"]);
    assert_eq!(check.code, 4, "check: {}", check.stderr);
    let slack = m.at("/services/");
    assert_alert(&slack, &tree);
    // The region came from IMDS; every GetSecretValue passed the mock's signature check.
    assert!(!m.at("/latest/meta-data/placement/region").is_empty());
    let others: Vec<Req> = m
        .seen()
        .into_iter()
        .filter(|r| !r.path.starts_with("/services/"))
        .collect();
    assert_no_leak(
        &tree,
        &[&init, &check],
        &others,
        &["SLACKMARK", "AWSSECRETMARK", "SESSIONMARK", "IMDSTOKENMARK"],
    );
}

#[test]
fn aws_access_denied_is_exit_17_with_the_policy_hint() {
    let m = Mock::start(|_, _| Resp::text(500, ""));
    m.set(aws_handler(String::new(), true));
    let env = [
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT", m.url.clone()),
        ("AWS_ENDPOINT_URL", m.url.clone()),
        ("AWS_REGION", "eu-west-3".to_string()),
    ];
    let tree = TempTree::new("", &slack_config("${awssm:prod/fimd#slack}"));
    let r = run(&tree, &env, &["config-check"]);
    assert_eq!(r.code, 17, "{}", r.stderr);
    assert!(
        r.stderr.contains("${awssm:prod/fimd#slack}") && r.stderr.contains("AccessDeniedException"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("secretsmanager:GetSecretValue") && r.stderr.contains("instance role"),
        "{}",
        r.stderr
    );
    assert!(
        m.at("/latest/meta-data/placement/region").is_empty(),
        "AWS_REGION wins"
    );
    assert_no_leak(&tree, &[&r], &[], &["AWSSECRETMARK", "SESSIONMARK"]);
}

// ---------------------------------------------------------------------------------------
// GCP

fn gcp_handler(
    value: String,
    account: &'static str,
    crc_ok: bool,
) -> impl Fn(&Req, usize) -> Resp + Send + Sync {
    move |r, _| {
        let token_path = format!("/computeMetadata/v1/instance/service-accounts/{account}/token");
        match r.path.as_str() {
            p if p == token_path => {
                if r.header("metadata-flavor") != Some("Google") {
                    return Resp::text(403, "");
                }
                Resp::json(
                    200,
                    json!({"access_token": "GCPTOKENMARK", "expires_in": 3599, "token_type": "Bearer"}),
                )
            }
            "/v1/projects/p1/secrets/slack/versions/latest:access" => {
                if r.header("authorization") != Some("Bearer GCPTOKENMARK") {
                    return Resp::json(
                        401,
                        json!({"error": {"code": 401, "status": "UNAUTHENTICATED"}}),
                    );
                }
                use base64::Engine as _;
                let crc = fimd::secrets::gcp::crc32c(value.as_bytes()) ^ u32::from(!crc_ok);
                Resp::json(
                    200,
                    json!({"name": "projects/123/secrets/slack/versions/4",
                           "payload": {"data": base64::engine::general_purpose::STANDARD.encode(&value),
                                       "dataCrc32c": crc.to_string()}}),
                )
            }
            p if p.starts_with("/services/") => Resp::text(200, "ok"),
            _ => Resp::text(404, ""),
        }
    }
}

#[test]
fn gcp_secret_manager_via_metadata_named_account_feeds_slack_end_to_end() {
    let m = Mock::start(|_, _| Resp::text(500, ""));
    let hook = format!("{}{}", m.url, slack_path("SLACKMARK"));
    let account = "fimd@p1.iam.gserviceaccount.com";
    m.set(gcp_handler(hook, account, true));
    let env = [
        ("GCE_METADATA_HOST", m.addr.clone()),
        ("FIMD_GCP_SECRETMANAGER_ENDPOINT", m.url.clone()),
        ("FIMD_MANAGED_IDENTITY", account.to_string()),
    ];
    let (tree, init) = changed_tree(&slack_config("${gcpsm:projects/p1/secrets/slack}"), &env);
    let check = run(&tree, &env, &["check"]);
    assert_eq!(check.code, 4, "check: {}", check.stderr);
    assert_alert(&m.at("/services/"), &tree);
    let others: Vec<Req> = m
        .seen()
        .into_iter()
        .filter(|r| !r.path.starts_with("/services/"))
        .collect();
    assert_no_leak(
        &tree,
        &[&init, &check],
        &others,
        &["SLACKMARK", "GCPTOKENMARK"],
    );
}

#[test]
fn gcp_payload_with_a_wrong_crc_is_refused() {
    let m = Mock::start(|_, _| Resp::text(500, ""));
    m.set(gcp_handler(
        "https://hooks.example/SLACKMARK".into(),
        "default",
        false,
    ));
    let env = [
        ("GCE_METADATA_HOST", m.addr.clone()),
        ("FIMD_GCP_SECRETMANAGER_ENDPOINT", m.url.clone()),
    ];
    let tree = TempTree::new("", &slack_config("${gcpsm:projects/p1/secrets/slack}"));
    let r = run(&tree, &env, &["config-check"]);
    assert_eq!(r.code, 17, "{}", r.stderr);
    assert!(
        r.stderr.contains("dataCrc32c") && r.stderr.contains("service account default"),
        "{}",
        r.stderr
    );
    assert_no_leak(&tree, &[&r], &[], &["SLACKMARK", "GCPTOKENMARK"]);
}

// ---------------------------------------------------------------------------------------
// Vault

/// AppRole login + KV v2 read of `secret/fimd` holding `data`.
fn vault_handler(data: serde_json::Value) -> impl Fn(&Req, usize) -> Resp + Send + Sync {
    move |r, _| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/v1/auth/approle/login") => {
            let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            if body != json!({"role_id": "fimd-role", "secret_id": "SECRETIDMARK"}) {
                return Resp::json(400, json!({"errors": ["invalid role or secret ID"]}));
            }
            Resp::json(
                200,
                json!({"auth": {"client_token": "VAULTTOKENMARK", "lease_duration": 3600, "renewable": true}}),
            )
        }
        ("GET", "/v1/secret/data/fimd") => {
            if r.header("x-vault-token") != Some("VAULTTOKENMARK") {
                return Resp::json(403, json!({"errors": ["permission denied"]}));
            }
            Resp::json(
                200,
                json!({"data": {"data": data.clone(), "metadata": {"version": 3}}}),
            )
        }
        ("POST", p) if p.starts_with("/services/") || p == "/hook" => Resp::text(200, "ok"),
        _ => Resp::json(404, json!({"errors": []})),
    }
}

#[test]
fn vault_approle_feeds_slack_the_webhook_hmac_and_the_tamper_key() {
    let m = Mock::start(|_, _| Resp::text(500, ""));
    let hook = format!("{}{}", m.url, slack_path("SLACKMARK"));
    m.set(vault_handler(
        json!({"slack": hook, "hmac": "HMACMARK", "tamper": "TAMPERKEYMARK"}),
    ));
    let env = [
        ("VAULT_ADDR", m.url.clone()),
        ("VAULT_ROLE_ID", "fimd-role".to_string()),
        ("VAULT_SECRET_ID", "SECRETIDMARK".to_string()),
    ];
    let config = format!(
        "[store]\nhmac_key = \"${{vault:secret/fimd#tamper}}\"\n\n{}\n[notify.webhook]\nurl = \"{}/hook\"\nsecret = \"${{vault:secret/fimd#hmac}}\"\n",
        slack_config("${vault:secret/fimd#slack}"),
        m.url
    );
    let (tree, init) = changed_tree(&config, &env);
    let check = run(&tree, &env, &["check"]);
    assert_eq!(check.code, 4, "check: {}", check.stderr);
    assert_alert(&m.at("/services/"), &tree);
    let hooks = m.at("/hook");
    assert_eq!(hooks.len(), 1);
    let want = format!(
        "sha256={}",
        hex::encode(fimd::mac::hmac_sha256(b"HMACMARK", &hooks[0].body))
    );
    assert_eq!(hooks[0].header("x-fimd-signature"), Some(want.as_str()));
    // The database is signed with the key from Vault.
    let verify = run(&tree, &env, &["verify"]);
    assert_eq!(
        verify.code, 0,
        "verify: {} {}",
        verify.stdout, verify.stderr
    );
    let cc = run(&tree, &env, &["config-check"]);
    assert!(cc.stdout.contains("store.hmac_key = ${vault:secret/fimd#tamper} (store vault, identity AppRole fimd-role at"), "{}", cc.stdout);
    assert!(
        cc.stdout
            .contains("notify.webhook.secret = ${vault:secret/fimd#hmac}"),
        "{}",
        cc.stdout
    );
    let others: Vec<Req> = m
        .seen()
        .into_iter()
        .filter(|r| !r.path.starts_with("/services/") && r.path != "/hook")
        // The AppRole login carries the secret id: it is that request's own credential.
        .filter(|r| r.path != "/v1/auth/approle/login")
        .collect();
    assert_no_leak(
        &tree,
        &[&init, &check, &verify, &cc],
        &others,
        &[
            "SLACKMARK",
            "HMACMARK",
            "TAMPERKEYMARK",
            "VAULTTOKENMARK",
            "SECRETIDMARK",
        ],
    );
    assert_no_leak(
        &tree,
        &[],
        &hooks,
        &["HMACMARK", "TAMPERKEYMARK", "VAULTTOKENMARK"],
    );
}

#[test]
fn vault_403_is_exit_17_naming_reference_and_identity() {
    let m = Mock::start(|_, _| Resp::json(403, json!({"errors": ["permission denied"]})));
    let env = [
        ("VAULT_ADDR", m.url.clone()),
        ("VAULT_TOKEN", "VAULTTOKENMARK".to_string()),
    ];
    let tree = TempTree::new("", &slack_config("${vault:secret/fimd#slack}"));
    let r = run(&tree, &env, &["init"]);
    assert_eq!(r.code, 17, "{}", r.stderr);
    assert!(
        r.stderr.contains("notify.slack.webhook_url")
            && r.stderr.contains("${vault:secret/fimd#slack}"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("VAULT_TOKEN at") && r.stderr.contains("permission denied"),
        "{}",
        r.stderr
    );
    let q = &m.seen()[0];
    assert_eq!(
        (q.method.as_str(), q.path.as_str()),
        ("GET", "/v1/secret/data/fimd")
    );
    assert_eq!(q.header("x-vault-token"), Some("VAULTTOKENMARK"));
    assert_no_leak(&tree, &[&r], &[], &["VAULTTOKENMARK"]);
}

/// Reading history needs no sink: with the vault unreachable `status`, `events` and `diff`
/// still answer, while `check` (which alerts) is exit 17 naming the reference.
#[test]
fn reading_history_does_not_need_the_sinks_secrets() {
    let tree = TempTree::new("", "");
    tree.write("app.conf", "a=1\n");
    assert_eq!(run(&tree, &[], &["init"]).code, 0);
    tree.write("app.conf", "a=2\n");
    let r = run(&tree, &[], &["check"]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    tree.write_config("", &slack_config("${vault:secret/fimd#slack}"));
    // Nothing listens on port 1: the vault is down.
    let env = [
        ("VAULT_ADDR", "http://127.0.0.1:1".to_string()),
        ("VAULT_TOKEN", "VAULTTOKENMARK".to_string()),
    ];
    let mut runs = Vec::new();
    for args in [&["status"][..], &["events", "--json"], &["diff", "1"]] {
        let r = run(&tree, &env, args);
        assert_eq!(r.code, 0, "{args:?}: {}", r.stderr);
        runs.push(r);
    }
    assert!(runs[1].stdout.contains("app.conf"), "{}", runs[1].stdout);
    assert!(runs[2].stdout.contains("+a=2"), "{}", runs[2].stdout);
    let r = run(&tree, &env, &["check"]);
    assert_eq!(r.code, 17, "{}", r.stderr);
    assert!(
        r.stderr.contains("${vault:secret/fimd#slack}"),
        "{}",
        r.stderr
    );
    runs.push(r);
    assert_no_leak(
        &tree,
        &runs.iter().collect::<Vec<_>>(),
        &[],
        &["VAULTTOKENMARK"],
    );
}

// ---------------------------------------------------------------------------------------
// Lifecycle: rotation after a sink's 401, a reload that cannot resolve.

#[test]
fn a_sink_answering_401_gets_the_rotated_secret_once_and_the_alert_is_delivered() {
    let m = Mock::start(|_, _| Resp::text(500, ""));
    let old = format!("{}{}", m.url, slack_path("OLDMARK"));
    let new = format!("{}{}", m.url, slack_path("NEWMARK"));
    let rotated = Arc::new(AtomicBool::new(false));
    let r2 = rotated.clone();
    m.set(move |r, _| match r.path.as_str() {
        "/v1/secret/data/fimd" if r.header("x-vault-token") == Some("VAULTTOKENMARK") => {
            let url = if r2.load(Ordering::SeqCst) {
                &new
            } else {
                &old
            };
            Resp::json(200, json!({"data": {"data": {"slack": url}}}))
        }
        "/services/T0/B0/OLDMARK" => {
            r2.store(true, Ordering::SeqCst);
            Resp::text(401, "invalid_token")
        }
        "/services/T0/B0/NEWMARK" => Resp::text(200, "ok"),
        _ => Resp::text(404, ""),
    });
    let env = [
        ("VAULT_ADDR", m.url.clone()),
        ("VAULT_TOKEN", "VAULTTOKENMARK".to_string()),
    ];
    let (tree, _) = changed_tree(&slack_config("${vault:secret/fimd#slack}"), &env);
    let check = run(&tree, &env, &["check"]);
    assert_eq!(check.code, 4, "check: {}", check.stderr);
    assert_eq!(
        m.at("/services/T0/B0/OLDMARK").len(),
        1,
        "the old URL was refused once"
    );
    assert_alert(&m.at("/services/T0/B0/NEWMARK"), &tree);
    let status = run(&tree, &env, &["status", "--json"]);
    let st: serde_json::Value = serde_json::from_str(&status.stdout).expect("status json");
    assert_eq!(st["outbox_pending"], 0, "{st}");
    assert_no_leak(&tree, &[&check, &status], &[], &["OLDMARK", "NEWMARK"]);
}

#[test]
fn a_reload_that_cannot_resolve_keeps_the_old_value() {
    let m = Mock::start(|_, _| Resp::text(500, ""));
    let hook = format!("{}{}", m.url, slack_path("SLACKMARK"));
    m.set(vault_handler(json!({"slack": hook})));
    let env = Env::new();
    env.write_config(&format!(
        "{}\n{}",
        env.watch_table(&env.root),
        slack_config("${vault:secret/fimd#slack}")
    ));
    let vars = [
        ("VAULT_ADDR", m.url.as_str()),
        ("VAULT_ROLE_ID", "fimd-role"),
        ("VAULT_SECRET_ID", "SECRETIDMARK"),
    ];
    let mut d = env.start_with(&vars);
    // The store now refuses everything; SIGHUP.
    m.set(|r, _| match r.path.as_str() {
        p if p.starts_with("/services/") => Resp::text(200, "ok"),
        _ => Resp::json(403, json!({"errors": ["permission denied"]})),
    });
    d.signal("HUP");
    d.wait_message("READY=1 after the reload", |msg| {
        msg.contains("READY=1") && msg.contains("configuration reloaded")
    });
    std::fs::write(env.root.join("app.conf"), "changed\n").expect("write");
    let slack = m.wait_at("/services/T0/B0/SLACKMARK", 1, Duration::from_secs(20));
    assert_eq!(
        slack.len(),
        1,
        "the alert went to the URL resolved at start"
    );
    let stderr = d.stderr_text();
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("keeping its previous value"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(
        warnings[0].contains("${vault:secret/fimd#slack}"),
        "{}",
        warnings[0]
    );
    let (status, _) = d.stop();
    assert!(status.success());
    for mark in ["SLACKMARK", "VAULTTOKENMARK", "SECRETIDMARK"] {
        assert!(!stderr.contains(mark), "stderr leaks {mark}");
        assert!(!contains(
            &all_bytes_under(Path::new(&env.db).parent().expect("dir")),
            mark
        ));
    }
}

#[test]
fn vault_secret_id_may_itself_be_a_systemd_credential() {
    let m = Mock::start(|_, _| Resp::text(500, ""));
    m.set(vault_handler(
        json!({"slack": "https://hooks.example/services/SLACKMARK"}),
    ));
    let creds = tempfile::tempdir().expect("tempdir");
    std::fs::write(creds.path().join("vault-secret-id"), "SECRETIDMARK\n").expect("write");
    let env = [
        ("VAULT_ADDR", m.url.clone()),
        ("VAULT_ROLE_ID", "fimd-role".to_string()),
        (
            "VAULT_SECRET_ID",
            "${credential:vault-secret-id}".to_string(),
        ),
        ("CREDENTIALS_DIRECTORY", creds.path().display().to_string()),
    ];
    let tree = TempTree::new("", &slack_config("${vault:secret/fimd#slack}"));
    let cc = run(&tree, &env, &["config-check"]);
    assert_eq!(cc.code, 0, "{}", cc.stderr);
    assert!(
        cc.stdout
            .contains("(store vault, identity AppRole fimd-role at http://127.0.0.1:"),
        "{}",
        cc.stdout
    );
    assert_eq!(m.at("/v1/auth/approle/login").len(), 1);
    assert_no_leak(
        &tree,
        &[&cc],
        &[],
        &["SLACKMARK", "SECRETIDMARK", "VAULTTOKENMARK"],
    );
}

#[test]
fn references_work_in_environment_variables_and_flags_and_a_malformed_one_is_exit_17() {
    let m = Mock::start(|_, _| Resp::text(500, ""));
    m.set(vault_handler(
        json!({"slack": "https://hooks.example/services/SLACKMARK", "jira": "JIRAMARK"}),
    ));
    let tree = TempTree::new("", "");
    let env = [
        ("VAULT_ADDR", m.url.clone()),
        ("VAULT_TOKEN", "VAULTTOKENMARK".to_string()),
        (
            "SLACK_WEBHOOK_URL",
            "${vault:secret/fimd#slack}".to_string(),
        ),
    ];
    let mut c = tree.cmd();
    for v in STORE_VARS {
        c.env_remove(v);
    }
    for (k, v) in &env {
        c.env(k, v);
    }
    let cc = Run::from(
        c.args([
            "--jira-url",
            "https://acme.atlassian.net",
            "--jira-project-key",
            "SEC",
            "--jira-api-token",
            "${vault:secret/fimd#jira}",
            "config-check",
        ])
        .output()
        .expect("run"),
    );
    assert_eq!(cc.code, 0, "{}", cc.stderr);
    for key in [
        "notify.slack.webhook_url = ${vault:secret/fimd#slack}",
        "notify.jira.api_token = ${vault:secret/fimd#jira}",
    ] {
        assert!(cc.stdout.contains(key), "{}", cc.stdout);
    }
    assert!(cc.stdout.contains("sinks: slack"), "{}", cc.stdout);
    assert_no_leak(
        &tree,
        &[&cc],
        &[],
        &["SLACKMARK", "JIRAMARK", "VAULTTOKENMARK"],
    );

    // One reference failing among several: exit 17, the failure named, the others listed.
    let partial = TempTree::new(
        "",
        &format!(
            "{}\n[notify.teams]\nwebhook_url = \"${{vault:secret/fimd#nope}}\"\n",
            slack_config("${vault:secret/fimd#slack}")
        ),
    );
    let r = run(&partial, &env[..2], &["config-check"]);
    assert_eq!(r.code, 17, "{}", r.stderr);
    assert!(
        r.stderr
            .contains("notify.teams.webhook_url: secret reference \"${vault:secret/fimd#nope}\""),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr
            .contains("has no key \"nope\" (resolved: notify.slack.webhook_url)"),
        "{}",
        r.stderr
    );
    assert_no_leak(
        &partial,
        &[&r],
        &[],
        &["SLACKMARK", "JIRAMARK", "VAULTTOKENMARK"],
    );

    let bad = TempTree::new("", &slack_config("${azurekv:no-name-here}"));
    let r = run(&bad, &[], &["check"]);
    assert_eq!(r.code, 17, "{}", r.stderr);
    assert!(
        r.stderr.contains("notify.slack.webhook_url")
            && r.stderr.contains("${azurekv:no-name-here}"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_rotation_that_cannot_reach_the_store_keeps_the_old_value_with_one_warning() {
    let m = Mock::start(|_, _| Resp::text(500, ""));
    let hook = format!("{}{}", m.url, slack_path("SLACKMARK"));
    let refused = Arc::new(AtomicBool::new(false));
    let r2 = refused.clone();
    m.set(move |r, _| match r.path.as_str() {
        "/v1/secret/data/fimd" if !r2.load(Ordering::SeqCst) => {
            Resp::json(200, json!({"data": {"data": {"slack": hook.clone()}}}))
        }
        "/v1/secret/data/fimd" => Resp::json(403, json!({"errors": ["permission denied"]})),
        _ => {
            // The sink refuses, and from now on so does the store.
            r2.store(true, Ordering::SeqCst);
            Resp::text(401, "invalid_token")
        }
    });
    let env = [
        ("VAULT_ADDR", m.url.clone()),
        ("VAULT_TOKEN", "VAULTTOKENMARK".to_string()),
    ];
    let (tree, _) = changed_tree(&slack_config("${vault:secret/fimd#slack}"), &env);
    let check = run(&tree, &env, &["check"]);
    assert_eq!(check.code, 4, "check: {}", check.stderr);
    assert_eq!(
        m.at("/services/").len(),
        1,
        "no second send with the same secret"
    );
    assert_eq!(
        m.at("/v1/secret/data/fimd").len(),
        3,
        "init, check, one re-resolve"
    );
    let warnings: Vec<&str> = check
        .stderr
        .lines()
        .filter(|l| l.contains("keeping its previous value"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", check.stderr);
    assert!(
        warnings[0].contains("${vault:secret/fimd#slack}"),
        "{}",
        warnings[0]
    );
    assert_no_leak(&tree, &[&check], &[], &["SLACKMARK", "VAULTTOKENMARK"]);
}
