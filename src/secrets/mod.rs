//! Secret references (DESIGN.md "Secrets from stores"): a secret value may be written as
//! `${env:NAME}`, `${file:/abs/path}` (one trailing newline removed) or `${credential:NAME}`
//! (systemd's `$CREDENTIALS_DIRECTORY/NAME`); anything else is the literal value. Errors name
//! the reference, never a value.
//!
//! The cloud stores (`${azurekv:…}`, `${awssm:…}`, `${gcpsm:…}`, `${vault:…}`) are recognised
//! and refused with a clear error until their clients are built.

use std::path::PathBuf;

use crate::config::Secret;

/// A parsed reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    Literal,
    Env(String),
    File(PathBuf),
    Credential(String),
    /// A store fimd does not reach yet: its scheme.
    Unsupported(String),
}

/// Parse `text`: `${scheme:rest}` is a reference, anything else a literal.
pub fn parse(text: &str) -> Result<Reference, String> {
    let Some(inner) = text.strip_prefix("${").and_then(|t| t.strip_suffix('}')) else {
        return Ok(Reference::Literal);
    };
    let (scheme, rest) = inner
        .split_once(':')
        .ok_or_else(|| format!("secret reference {text:?}: expected ${{scheme:value}}"))?;
    if rest.is_empty() {
        return Err(format!(
            "secret reference {text:?}: nothing after {scheme:?}"
        ));
    }
    Ok(match scheme {
        "env" => Reference::Env(rest.to_string()),
        "file" if rest.starts_with('/') => Reference::File(PathBuf::from(rest)),
        "file" => {
            return Err(format!(
                "secret reference {text:?}: the path must be absolute"
            ))
        }
        "credential" if !rest.contains('/') => Reference::Credential(rest.to_string()),
        "credential" => {
            return Err(format!(
                "secret reference {text:?}: a credential name has no '/'"
            ))
        }
        "azurekv" | "awssm" | "gcpsm" | "vault" => Reference::Unsupported(scheme.to_string()),
        other => {
            return Err(format!(
                "secret reference {text:?}: unknown store {other:?}"
            ))
        }
    })
}

/// The value `secret` stands for (itself when it is no reference).
pub fn resolve(secret: &Secret) -> Result<Secret, String> {
    let text = secret.expose();
    let value = match parse(text)? {
        Reference::Literal => return Ok(secret.clone()),
        Reference::Env(name) => std::env::var(&name)
            .map_err(|_| format!("secret reference {text:?}: environment variable {name} is not set"))?,
        Reference::File(path) => read(&path, text)?,
        Reference::Credential(name) => {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                format!("secret reference {text:?}: no $CREDENTIALS_DIRECTORY (not started by systemd with LoadCredential=)")
            })?;
            read(&PathBuf::from(dir).join(&name), text)?
        }
        Reference::Unsupported(scheme) => {
            return Err(format!(
                "secret reference {text:?}: the {scheme} store is not built into this fimd yet; use ${{credential:…}}, ${{file:…}} or ${{env:…}}"
            ))
        }
    };
    if value.is_empty() {
        return Err(format!("secret reference {text:?}: the secret is empty"));
    }
    Ok(Secret::new(value))
}

fn read(path: &std::path::Path, reference: &str) -> Result<String, String> {
    let mut value = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "secret reference {reference:?}: cannot read {}: {e}",
            path.display()
        )
    })?;
    if value.ends_with('\n') {
        value.pop();
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
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
            "${vault:kv/x#y}",
            "${env:FIMD_SURELY_UNSET_VAR}",
        ] {
            let e = resolve(&Secret::new(bad)).unwrap_err();
            assert!(e.contains(bad), "{e}");
            assert!(!e.contains("MARKER"));
        }
    }
}
