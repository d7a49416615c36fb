//! The local references: `${env:NAME}`, `${file:/abs/path}` and `${credential:NAME}`
//! (systemd's `$CREDENTIALS_DIRECTORY/NAME`). One trailing newline is removed from a file.

use std::path::{Path, PathBuf};

use super::Reference;

/// The value of a local reference; errors name the reference and the path, never a value.
pub fn resolve(reference: &Reference, text: &str) -> Result<String, String> {
    match reference {
        Reference::Env(name) => super::var(name).ok_or_else(|| {
            format!("secret reference {text:?}: environment variable {name} is not set")
        }),
        Reference::File(path) => read(path, text),
        Reference::Credential(name) => {
            let dir = super::var("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                format!("secret reference {text:?}: no $CREDENTIALS_DIRECTORY (not started by systemd with LoadCredential=)")
            })?;
            read(&PathBuf::from(dir).join(name), text)
        }
        _ => Err(format!("secret reference {text:?}: not a local reference")),
    }
}

fn read(path: &Path, reference: &str) -> Result<String, String> {
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
