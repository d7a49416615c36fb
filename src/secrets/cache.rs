//! Access tokens (Azure, GCP, Vault AppRole) and AWS role credentials, cached per endpoint and
//! identity until 5 minutes before they expire (the SDKs' refresh margin). Values of secrets
//! are not cached here: only what a store needs to be asked.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

/// Refresh a token when less than this remains.
pub const MARGIN: Duration = Duration::from_secs(300);

/// A cached token (or a JSON of role credentials) and when it expires.
#[derive(Clone)]
pub struct Token {
    pub value: String,
    pub expires: SystemTime,
}

fn map() -> &'static Mutex<HashMap<String, Token>> {
    static M: OnceLock<Mutex<HashMap<String, Token>>> = OnceLock::new();
    M.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The token under `key`, if it is valid for more than [`MARGIN`].
pub fn get(key: &str) -> Option<String> {
    let m = map().lock().ok()?;
    let t = m.get(key)?;
    let left = t
        .expires
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    (left > MARGIN).then(|| t.value.clone())
}

pub fn put(key: &str, value: &str, expires: SystemTime) {
    super::register(value);
    if let Ok(mut m) = map().lock() {
        m.insert(
            key.to_string(),
            Token {
                value: value.to_string(),
                expires,
            },
        );
    }
}

/// Forget the token under `key` (the store refused it).
pub fn drop_key(key: &str) {
    if let Ok(mut m) = map().lock() {
        m.remove(key);
    }
}

/// Unix seconds (a JSON number or a string of one) as a time.
pub fn unix(v: Option<&serde_json::Value>) -> Option<SystemTime> {
    let secs = match v? {
        serde_json::Value::Number(n) => n.as_u64()?,
        serde_json::Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// `now + seconds` (a JSON number or a string of one).
pub fn after(v: Option<&serde_json::Value>) -> Option<SystemTime> {
    let secs = match v? {
        serde_json::Value::Number(n) => n.as_u64()?,
        serde_json::Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    SystemTime::now().checked_add(Duration::from_secs(secs))
}
