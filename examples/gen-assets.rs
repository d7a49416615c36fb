//! Generates the man page (fimd::manpage: the clap definitions and the shipped config) and
//! the shell completions (clap_complete), for the package:
//!   cargo run --example gen-assets -- target/assets
//! (An example, so clap_complete stays out of the fimd binary.)

use clap::CommandFactory;
use std::path::PathBuf;

fn main() -> std::io::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/assets".into()),
    );
    std::fs::create_dir_all(out.join("completions"))?;
    let mut cmd = fimd::cli::Cli::command();
    cmd.build();
    std::fs::write(out.join("fimd.8"), fimd::manpage::render(&cmd))?;
    for (shell, file) in [
        (clap_complete::Shell::Bash, "fimd"),
        (clap_complete::Shell::Zsh, "_fimd"),
        (clap_complete::Shell::Fish, "fimd.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, "fimd", &mut buf);
        std::fs::write(out.join("completions").join(file), buf)?;
    }
    println!("man page and completions written to {}", out.display());
    Ok(())
}
