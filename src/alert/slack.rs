//! Slack incoming webhook (notifications.md §4): `POST` to the webhook URL, JSON with `text`
//! (the notification fallback) and Block Kit `blocks`. The URL is the credential: it is held
//! as a [`crate::config::Secret`] and only `https://hooks.slack.com` is ever shown.
//!
//! Limits honoured: header ≤ 150 chars, section text ≤ 3,000, ≤ 50 blocks, `text` ≤ 3,000,
//! body ≤ 12 KB (the undocumented cumulative cap). Paths and diffs are mrkdwn-escaped.
//! Never logs or returns the URL.

use reqwest::{Client, RequestBuilder};
use serde_json::{json, Value};

use super::content::{self, cut, slack_escape};
use super::sink::{json_body, Batch, Limits, SecretHook, Sink};
use super::AlertError;
use crate::config::notify::SlackConfig;

const MAX_BODY: usize = 12_000;

/// A configured Slack webhook.
pub struct Slack {
    hook: SecretHook,
}

impl Slack {
    pub fn new(cfg: &SlackConfig) -> Result<Slack, AlertError> {
        Ok(Slack {
            hook: SecretHook::new("slack", "webhook_url", &cfg.webhook_url)?,
        })
    }
}

impl Sink for Slack {
    fn name(&self) -> &'static str {
        "slack"
    }

    fn limits(&self) -> Limits {
        Limits {
            max_rows: 10_000,
            shown: 8,
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
    let title = content::title(batch);
    let mut blocks = vec![json!({"type": "header",
        "text": {"type": "plain_text", "text": cut(&title, 150, "…")}})];
    for ev in &batch.events {
        blocks.push(json!({"type": "section",
            "text": {"type": "mrkdwn", "text": event_mrkdwn(ev)}}));
    }
    if let Some(more) = content::omitted_line(batch) {
        blocks.push(
            json!({"type": "section", "text": {"type": "mrkdwn", "text": format!("_{more}_")}}),
        );
    }
    blocks.push(json!({"type": "context", "elements": [{"type": "mrkdwn",
        "text": slack_escape(&format!("fimd {} · {}", env!("CARGO_PKG_VERSION"), batch.host))}]}));
    blocks.truncate(50);
    let body: Value = json!({"text": cut(&slack_escape(&title), 3_000, "…"), "blocks": blocks});
    json_body("slack", &body)
}

fn event_mrkdwn(ev: &crate::event::Event) -> String {
    let facts = content::facts(ev);
    let mut text = String::new();
    for (label, value) in &facts {
        let value = slack_escape(value);
        match *label {
            "Path" | "Old sha256" | "New sha256" => {
                text.push_str(&format!("*{label}:* `{value}`\n"))
            }
            _ => text.push_str(&format!("*{label}:* {value}\n")),
        }
    }
    if let Some(diff) = &ev.diff {
        // Escaped like any text: inside ``` Slack still parses &, < and >.
        text.push_str(&format!("```{}```", slack_escape(diff)));
    }
    cut(text.trim_end(), 3_000, "…")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, EventKind, Source};

    fn batch(path: &str) -> Batch {
        Batch {
            host: "web1".into(),
            events: vec![Event {
                id: Some(7),
                time: "t".into(),
                host: "web1".into(),
                ..Event::new(Source::Check, EventKind::Added, path)
            }],
            total: 1,
            high: 0,
            test: false,
        }
    }

    #[test]
    fn hostile_path_is_escaped() {
        let body = render(&batch("/tmp/<!channel>`x`&y")).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        let section = v["blocks"][1]["text"]["text"].as_str().unwrap_or_default();
        assert!(
            section.contains("`/tmp/&lt;!channel&gt;ˋxˋ&amp;y`"),
            "{section}"
        );
        assert!(!v["text"].as_str().unwrap_or_default().contains('<'));
        assert_eq!(v["blocks"][0]["type"], "header");
    }
}
