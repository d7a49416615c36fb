//! Microsoft Teams Workflows webhook (notifications.md §5): `POST` to the Workflows URL with an
//! Adaptive Card 1.4 in a `message` envelope; success is `202 Accepted`. The URL (its `sig`
//! query parameter) is the credential: held as a [`crate::config::Secret`], only scheme and host are shown.
//!
//! Body kept under 27 KB (Teams rejects about 28 KB); text is markdown-escaped. Legacy O365
//! connector URLs are not special-cased (they are retired); no host allowlist.

use reqwest::{Client, RequestBuilder};
use serde_json::{json, Value};

use super::content::{self, teams_escape};
use super::sink::{json_body, Batch, Limits, SecretHook, Sink};
use super::AlertError;
use crate::config::notify::TeamsConfig;

const MAX_BODY: usize = 27_000;

/// A configured Teams Workflows webhook.
pub struct Teams {
    hook: SecretHook,
}

impl Teams {
    pub fn new(cfg: &TeamsConfig) -> Result<Teams, AlertError> {
        Ok(Teams {
            hook: SecretHook::new("teams", "webhook_url", &cfg.webhook_url)?,
        })
    }
}

impl Sink for Teams {
    fn name(&self) -> &'static str {
        "teams"
    }

    fn limits(&self) -> Limits {
        Limits {
            max_rows: 10_000,
            shown: 10,
            diff_chars: 1_000,
        }
    }

    fn request(&self, http: &Client, batch: &Batch) -> Result<RequestBuilder, AlertError> {
        Ok(self
            .hook
            .post_json(http, content::fit(batch, MAX_BODY, render)?))
    }

    fn target(&self) -> String {
        self.hook.target()
    }

    fn secrets(&self) -> Vec<String> {
        self.hook.secrets()
    }
}

fn render(batch: &Batch) -> Result<Vec<u8>, AlertError> {
    let mut body = vec![
        json!({"type": "TextBlock", "size": "Large", "weight": "Bolder",
        "text": teams_escape(&content::title(batch)), "wrap": true}),
    ];
    for ev in &batch.events {
        let facts: Vec<Value> = content::facts(ev)
            .into_iter()
            .map(|(title, value)| json!({"title": title, "value": teams_escape(&value)}))
            .collect();
        body.push(json!({"type": "FactSet", "separator": true, "facts": facts}));
        if let Some(diff) = &ev.diff {
            body.push(
                json!({"type": "TextBlock", "fontType": "Monospace", "wrap": true,
                "text": teams_escape(diff)}),
            );
        }
    }
    if let Some(more) = content::omitted_line(batch) {
        body.push(json!({"type": "TextBlock", "weight": "Bolder", "text": more, "wrap": true}));
    }
    body.push(
        json!({"type": "TextBlock", "isSubtle": true, "size": "Small", "wrap": true,
        "text": teams_escape(&format!("fimd {} · {}", env!("CARGO_PKG_VERSION"), batch.host))}),
    );
    let message = json!({"type": "message", "attachments": [{
    "contentType": "application/vnd.microsoft.card.adaptive",
    "contentUrl": null,
    "content": {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard", "version": "1.4", "msteams": {"width": "Full"},
        "body": body,
    }}]});
    json_body("teams", &message)
}
