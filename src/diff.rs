//! Unified diffs of text contents (similar). Only ever called with contents the scanner kept:
//! text, within `max_bytes`, never sensitive.

use similar::TextDiff;

/// A unified diff (3 lines of context) with the path in both headers, or `None` when the texts
/// are equal or not valid UTF-8.
pub fn unified(path_display: &str, old: &[u8], new: &[u8]) -> Option<String> {
    let (old, new) = (
        std::str::from_utf8(old).ok()?,
        std::str::from_utf8(new).ok()?,
    );
    if old == new {
        return None;
    }
    let diff = TextDiff::from_lines(old, new);
    let text = diff
        .unified_diff()
        .context_radius(3)
        .header(path_display, path_display)
        .to_string();
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_changed_lines_with_headers() {
        let d = unified("/etc/a.conf", b"a\nb\nc\n", b"a\nB\nc\n").unwrap_or_default();
        assert!(d.starts_with("--- /etc/a.conf\n+++ /etc/a.conf\n@@"), "{d}");
        assert!(d.contains("\n-b\n+B\n"), "{d}");
        assert_eq!(unified("x", b"same", b"same"), None);
        assert_eq!(unified("x", b"\xff", b"a"), None);
    }
}
