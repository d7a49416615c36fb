//! Issue #16 item 13: property tests (proptest) on what hostile input reaches first: the
//! config parser, the path encodings (JSON text + hex, one-line display) and the policy
//! globs. Each property runs a few hundred cases (CI has two cores); none may panic.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use proptest::prelude::*;

use fimd::config::Config;
use fimd::event::{display_path, path_for_json, Event, EventKind, Source};
use fimd::policy::Patterns;

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        // No files of failed seeds in the source tree; a failure prints its input.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// TOML-shaped text built from fimd's own section and key names, so that cases get past the
/// TOML syntax into serde and validation, with values of every type (and wrong types).
fn config_text() -> impl Strategy<Value = String> {
    let section = prop::sample::select(vec![
        "[daemon]",
        "[content]",
        "[[watch]]",
        "[watch]",
        "[sensitive]",
        "[users]",
        "[notify]",
        "[notify.slack]",
        "[notify.webhook]",
        "[notify.jira]",
        "[packages]",
        "[store]",
        "[fleet]",
        "[bogus]",
    ]);
    let key = prop::sample::select(vec![
        "database",
        "rescan_interval",
        "debounce",
        "hash_workers",
        "host",
        "whodata",
        "log_level",
        "max_bytes",
        "path",
        "recursive",
        "extensions",
        "include",
        "exclude",
        "optional",
        "severity",
        "paths",
        "patterns",
        "detect_private_keys",
        "authorized_keys",
        "passwd",
        "batch_window",
        "retry_for",
        "backoff_initial",
        "backoff_max",
        "min_severity",
        "url",
        "webhook_url",
        "secret",
        "headers",
        "settle",
        "root",
        "hmac_key",
        "unknown",
    ]);
    let value = prop_oneof![
        "[ -~]{0,12}".prop_map(|s| format!("{s:?}")),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        prop::sample::select(vec![
            "\"0s\"",
            "\"1s\"",
            "\"250ms\"",
            "\"soon\"",
            "\"/\"",
            "\"\"",
            "\"**\"",
            "\"[\"",
            "[\"*.conf\", \"/etc/**\"]",
            "[\"{a,b\"]",
            "[1, 2]",
            "{}",
            "{ a = 1 }",
            "\"${env:X}\"",
            "\"http://127.0.0.1:1/x\"",
            "\"critical\"",
            "\"require\"",
            "1e400",
            "-0",
            "\"\\u0000\"",
        ])
        .prop_map(str::to_string),
    ];
    let line = prop_oneof![
        section.prop_map(str::to_string),
        (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
    ];
    prop::collection::vec(line, 0..8).prop_map(|lines| lines.join("\n"))
}

/// Arbitrary path bytes: mostly path-like (slashes, dots, stars), some anything at all.
fn path_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => prop::sample::select(b"/./*?ab\\\n\t\x7f".to_vec()),
        2 => any::<u8>(),
        1 => prop::sample::select(vec![0x80u8, 0xc2, 0xe9, 0xff, 0xef, 0xbf, 0xbd]),
    ];
    prop::collection::vec(byte, 0..40)
}

/// A plain file name (never `.` or `..`).
const NAME: &str = "[a-z0-9_-][a-z0-9._-]{0,7}";

/// Read back README's human form: `\\`, `\n`, `\t`, `\r`, `\xNN` (a byte) and `\u{N}` (a
/// character); anything else is itself.
fn unescape(shown: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut chars = shown.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            let mut buf = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            continue;
        }
        match chars.next()? {
            '\\' => out.push(b'\\'),
            'n' => out.push(b'\n'),
            't' => out.push(b'\t'),
            'r' => out.push(b'\r'),
            'x' => {
                let hex: String = chars.by_ref().take(2).collect();
                out.push(u8::from_str_radix(&hex, 16).ok()?);
            }
            'u' => {
                if chars.next()? != '{' {
                    return None;
                }
                let hex: String = chars.by_ref().take_while(|&c| c != '}').collect();
                let c = char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?;
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            _ => return None,
        }
    }
    Some(out)
}

fn path_of(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

proptest! {
    #![proptest_config(cases(400))]

    /// Any text: an error or a config, never a panic; an error is one line naming the file.
    #[test]
    fn config_parser_never_panics_on_arbitrary_text(text in ".{0,200}") {
        let file = Path::new("/etc/fimd/fimd.toml");
        if let Err(e) = Config::parse(&text, file) {
            let shown = e.to_string();
            prop_assert!(shown.starts_with("/etc/fimd/fimd.toml"), "{shown}");
        }
    }

    /// Text shaped like a fimd config: parse, then validate; either may refuse, none panics,
    /// and an error is one line naming the file.
    #[test]
    fn config_parser_and_validation_never_panic_on_config_like_text(text in config_text()) {
        let file = Path::new("/etc/fimd/fimd.toml");
        let result = Config::parse(&text, file).and_then(|cfg| cfg.validate(file).map(|()| cfg));
        if let Err(e) = result {
            let shown = e.to_string();
            prop_assert!(shown.starts_with("/etc/fimd/fimd.toml:"), "{shown}");
            prop_assert!(!shown.contains('\n'), "one line: {shown}");
        }
    }

    /// A path's JSON form (text, plus hex when not UTF-8) gives back exactly its bytes,
    /// through serde too, and the hex is present only when needed.
    #[test]
    fn event_paths_round_trip_exactly(bytes in path_bytes()) {
        let path = path_of(&bytes);
        let (text, hex) = path_for_json(&path);
        prop_assert_eq!(hex.is_some(), std::str::from_utf8(&bytes).is_err());
        let event = Event {
            path: text,
            path_hex: hex,
            ..Event::new(Source::Check, EventKind::Added, "")
        };
        let json = serde_json::to_string(&event).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let back: Event = serde_json::from_str(&json).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back.path_buf(), path);
    }

    /// The human form of a path is one line of printable text, and it is unambiguous: the
    /// exact bytes can be read back from it.
    #[test]
    fn displayed_paths_are_one_line_and_unambiguous(bytes in path_bytes()) {
        let shown = display_path(&path_of(&bytes));
        prop_assert!(!shown.chars().any(char::is_control), "{shown:?}");
        prop_assert_eq!(unescape(&shown), Some(bytes), "{:?}", shown);
    }

    /// Any glob list: compiled or refused with a message naming the setting; matching any
    /// path never panics.
    #[test]
    fn globs_never_panic(
        globs in prop::collection::vec("[*?/{},\\[\\]!\\\\a-c.-]{0,12}", 0..6),
        paths in prop::collection::vec(path_bytes(), 0..6),
    ) {
        match Patterns::new(&globs, "exclude") {
            Ok(set) => {
                for p in &paths {
                    let _ = set.matches(&path_of(p));
                }
            }
            Err(message) => prop_assert!(message.starts_with("exclude: "), "{message}"),
        }
    }

    /// DESIGN.md's glob rules on arbitrary names: `*` never crosses `/`, `**` does, and a
    /// pattern without `/` matches the file name wherever it is.
    #[test]
    fn glob_rules_hold_for_arbitrary_names(
        dir in NAME,
        sub in NAME,
        name in NAME,
    ) {
        let star = Patterns::new(&[format!("/{dir}/*")], "t").map_err(TestCaseError::fail)?;
        let deep = Patterns::new(&[format!("/{dir}/**")], "t").map_err(TestCaseError::fail)?;
        let by_name = Patterns::new(std::slice::from_ref(&name), "t").map_err(TestCaseError::fail)?;
        let direct = PathBuf::from(format!("/{dir}/{name}"));
        let nested = PathBuf::from(format!("/{dir}/{sub}/{name}"));
        prop_assert!(star.matches(&direct));
        prop_assert!(!star.matches(&nested));
        prop_assert!(deep.matches(&nested));
        prop_assert!(by_name.matches(&nested) && by_name.matches(&direct));
    }
}
