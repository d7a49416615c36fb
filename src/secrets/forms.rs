//! Every form in which a secret can come back from a server, so redaction finds it whatever
//! shape the echo takes.
//!
//! A server answering "invalid api token: X" echoes the bare token of an
//! `Authorization: Bearer X` header, not the header value fimd was configured with; a Basic
//! header travels as base64 of `user:password`, and a server may echo that, or decode it; a
//! webhook URL's credential is its userinfo, a path segment or a query value, raw or
//! percent-decoded. [`forms`] lists them all for one value; [`basic_header`] builds the Basic
//! header value a sink sends, so its forms can be listed too.

use base64::Engine;

/// The shortest text treated as a secret form: shorter ones would redact ordinary words.
pub const MIN_FORM: usize = 4;

/// Query parameter names whose values are credentials whatever they look like.
const SECRET_PARAMS: &[&str] = &[
    "sig",
    "signature",
    "token",
    "access_token",
    "api_key",
    "apikey",
    "key",
    "secret",
    "password",
    "pass",
    "auth",
    "code",
];

/// The `Authorization` value for HTTP Basic with `user` and `password`, as reqwest sends it.
pub fn basic_header(user: &str, password: &str) -> String {
    let pair = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    )
}

/// `value` and every other form of it a server could echo: the bare credential of a
/// `<scheme> <credential>` header value, the base64 pair of a Basic value and its decoded
/// pair and password, a URL's userinfo password, path, query, token-like segments and query
/// values (raw and percent-decoded), and the percent-encoded and JSON-escaped forms of each.
/// No form shorter than [`MIN_FORM`]; longest first (a whole value is replaced before its parts).
pub fn forms(value: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let trimmed = value.trim();
    out.push(value.to_string());
    out.push(trimmed.to_string());
    header_forms(trimmed, &mut out);
    url_forms(trimmed, &mut out);
    // Encoded spellings of each form found so far: in a URL the server echoes, or in JSON.
    let mut encoded = Vec::new();
    for f in &out {
        encoded.push(percent_encode(f));
        if let Ok(json) = serde_json::to_string(f) {
            encoded.push(json.trim_matches('"').to_string());
        }
    }
    out.extend(encoded);
    out.retain(|f| f.len() >= MIN_FORM);
    out.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    out.dedup();
    out
}

/// `Bearer X`, `Token X`, `Basic B64`: the credential alone, and for Basic its decoded pair
/// and password. Any other value with spaces: its token-like words.
fn header_forms(value: &str, out: &mut Vec<String>) {
    let words: Vec<&str> = value.split_whitespace().collect();
    match words.as_slice() {
        [scheme, credential] if scheme.chars().all(|c| c.is_ascii_alphabetic()) => {
            out.push(credential.to_string());
            if scheme.eq_ignore_ascii_case("basic") {
                basic_forms(credential, out);
            }
        }
        [_] => basic_forms(value, out),
        _ => out.extend(
            words
                .iter()
                .filter(|w| token_like(w))
                .map(|w| w.to_string()),
        ),
    }
}

/// A base64 `user:password` pair: the pair and the password (the user is no secret).
fn basic_forms(b64: &str, out: &mut Vec<String>) {
    let engine = &base64::engine::general_purpose::STANDARD;
    let Some(pair) = engine
        .decode(b64)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
    else {
        return;
    };
    if let Some((_, password)) = pair.split_once(':') {
        out.push(password.to_string());
        out.push(pair.clone());
        // Without padding, as some servers print it.
        out.push(b64.trim_end_matches('=').to_string());
    }
}

/// The credential-bearing parts of a URL.
fn url_forms(value: &str, out: &mut Vec<String>) {
    let Ok(u) = reqwest::Url::parse(value) else {
        return;
    };
    if !u.has_host() {
        return;
    }
    out.push(u.as_str().to_string());
    if let Some(password) = u.password() {
        out.push(password.to_string());
        out.extend(percent_decode(password));
        let user = percent_decode(u.username()).unwrap_or_else(|| u.username().to_string());
        let password = percent_decode(password).unwrap_or_else(|| password.to_string());
        // reqwest turns userinfo into a Basic header: its forms too.
        let header = basic_header(&user, &password);
        out.push(header.clone());
        header_forms(&header, out);
    }
    // The whole path or query only when it may hold a credential (a token-like segment, or
    // several segments as in `/services/T0/B0/XXXX`): a plain `/hook` stays readable (in a
    // redirect target, say).
    let mut secret_path = u.path_segments().is_some_and(|s| s.count() > 1);
    for segment in u.path_segments().into_iter().flatten() {
        if token_like(segment) {
            secret_path = true;
            out.push(segment.to_string());
            out.extend(percent_decode(segment));
        }
    }
    if secret_path {
        out.push(u.path().to_string());
    }
    let secret_param = |name: &str, value: &str| {
        SECRET_PARAMS.iter().any(|p| name.eq_ignore_ascii_case(p)) || token_like(value)
    };
    let mut secret_query = false;
    for (name, value) in u.query_pairs() {
        if secret_param(&name, &value) {
            secret_query = true;
            out.push(value.into_owned());
        }
    }
    if let Some(q) = u.query() {
        // The raw (still encoded) values too.
        for (name, value) in q.split('&').filter_map(|pair| pair.split_once('=')) {
            if secret_param(name, value) {
                out.push(value.to_string());
            }
        }
        if secret_query {
            out.push(q.to_string());
        }
    }
}

/// At least 8 characters with an uppercase letter or a digit: a token, a workflow UUID, the
/// last part of a Slack hook; plain words such as `services` stay readable.
fn token_like(s: &str) -> bool {
    s.len() >= 8
        && s.chars()
            .any(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
}

/// `%XX` decoded (and `+` kept); `None` when nothing was encoded or it is not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return None;
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Every byte outside `A-Za-z0-9-._~` as `%XX` (what a server may echo of a value it
/// received in a URL or a form).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(forms: &[String], f: &str) -> bool {
        forms.iter().any(|x| x == f)
    }

    #[test]
    fn bearer_header_gives_the_bare_token() {
        let f = forms("Bearer TOKEN_x1");
        assert!(has(&f, "Bearer TOKEN_x1") && has(&f, "TOKEN_x1"), "{f:?}");
        assert!(!has(&f, "Bearer"), "the scheme word is no secret: {f:?}");
    }

    #[test]
    fn basic_header_gives_pair_password_and_base64() {
        let h = basic_header("alice", "pw:with:colons");
        let f = forms(&h);
        let b64 = h.trim_start_matches("Basic ");
        for want in [b64, "alice:pw:with:colons", "pw:with:colons"] {
            assert!(has(&f, want), "{want} in {f:?}");
        }
        assert!(!has(&f, "alice"), "{f:?}");
    }

    #[test]
    fn url_userinfo_query_and_segments() {
        let f =
            forms("https://bob:p%40ss%2Fword@h.example/services/T1/B2/SEKRET99?sig=ab%2Bcd&x=1");
        for want in [
            "p%40ss%2Fword",
            "p@ss/word",
            "/services/T1/B2/SEKRET99",
            "SEKRET99",
            "sig=ab%2Bcd&x=1",
            "ab+cd",
            "ab%2Bcd",
        ] {
            assert!(has(&f, want), "{want} in {f:?}");
        }
        // The Basic header reqwest derives from the userinfo.
        let h = basic_header("bob", "p@ss/word");
        assert!(has(&f, h.trim_start_matches("Basic ")), "{f:?}");
        assert!(!has(&f, "services") && !has(&f, "1"), "{f:?}");
        let plain = forms("http://127.0.0.1:8080/hook?x=1");
        assert!(!has(&plain, "/hook") && !has(&plain, "x=1"), "{plain:?}");
    }

    #[test]
    fn encoded_spellings_and_short_values() {
        let f = forms("a/b\"c d+e");
        assert!(has(&f, "a%2Fb%22c%20d%2Be"), "{f:?}");
        assert!(has(&f, "a/b\\\"c d+e"), "{f:?}");
        assert!(forms("abc").is_empty());
        assert_eq!(percent_decode("plain"), None);
        assert_eq!(percent_decode("bad%zz%41").as_deref(), Some("bad%zzA"));
    }
}
