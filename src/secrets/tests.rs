use super::*;

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
