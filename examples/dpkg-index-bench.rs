//! Load time and peak memory of the dpkg index (results in benches/README.md).
//!
//! ```text
//! cargo run --profile ci --example dpkg-index-bench -- <admin_dir> <root>
//! cargo run --profile ci --example dpkg-index-bench -- --generate <src_admin> <dst_admin> <copies>
//! ```
//!
//! `--generate` writes a synthetic admin dir of the same shape, `copies` times larger: every
//! installed package of `src_admin` `copies` times (copy N > 0 is `<name>-cN` with its paths
//! under `/cN`), with its .list, .md5sums and status paragraph (conffiles included).

use fimd::packages::dpkg::DpkgIndex;
use fimd::packages::PackageDb;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [flag, src, dst, copies] if flag == "--generate" => {
            generate(Path::new(src), Path::new(dst), copies.parse()?)
        }
        [admin, root] => bench(Path::new(admin), Path::new(root)),
        _ => {
            anyhow::bail!("usage: <admin_dir> <root> | --generate <src_admin> <dst_admin> <copies>")
        }
    }
}

/// A `/proc/self/status` figure in KiB (`VmHWM`: peak resident set, `VmRSS`: now).
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

fn bench(admin: &Path, root: &Path) -> anyhow::Result<()> {
    let before = peak_rss_kib();
    let start = Instant::now();
    let mut idx = DpkgIndex::load(admin, root)?;
    let load = start.elapsed();
    let after = peak_rss_kib();
    println!(
        "load: {:.3} s, {} paths, {} packages, peak RSS {:.1} MiB, RSS after {:.1} MiB ({:.1} MiB before loading)",
        load.as_secs_f64(),
        idx.len(),
        idx.package_count(),
        after as f64 / 1024.0,
        status_kib("VmRSS:") as f64 / 1024.0,
        before as f64 / 1024.0,
    );
    // A second load while the first is alive: what a full reload costs at its peak.
    let start = Instant::now();
    let again = DpkgIndex::load(admin, root)?;
    println!(
        "reload: {:.3} s, peak RSS with two indexes {:.1} MiB",
        start.elapsed().as_secs_f64(),
        peak_rss_kib() as f64 / 1024.0
    );
    drop(again);
    lookups(&idx, admin, root)?;
    refresh_one(&mut idx, admin)?;
    Ok(())
}

/// Time `refresh()` of the largest package's `.md5sums` (what an upgrade of it costs).
fn refresh_one(idx: &mut DpkgIndex, admin: &Path) -> anyhow::Result<()> {
    let largest = std::fs::read_dir(admin.join("info"))?
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "md5sums"))
        .max_by_key(|e| e.metadata().map(|m| m.len()).unwrap_or(0));
    let Some(file) = largest else {
        return Ok(());
    };
    let start = Instant::now();
    idx.refresh(&file.path())?;
    println!(
        "refresh({}): {:.1} ms",
        file.file_name().to_string_lossy(),
        start.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}

/// Time `owner()` over every path of the first few .list files.
fn lookups(idx: &DpkgIndex, admin: &Path, root: &Path) -> anyhow::Result<()> {
    let mut paths: Vec<PathBuf> = Vec::new();
    for entry in std::fs::read_dir(admin.join("info"))?.flatten().take(200) {
        if entry.path().extension().is_some_and(|e| e == "list") {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            paths.extend(text.lines().map(|l| root.join(l.trim_start_matches('/'))));
        }
    }
    let start = Instant::now();
    let found = paths.iter().filter(|p| idx.owner(p).is_some()).count();
    let per = start.elapsed().as_secs_f64() / paths.len().max(1) as f64;
    println!(
        "owner(): {:.2} us per lookup over {} listed paths ({found} owned files)",
        per * 1e6,
        paths.len()
    );
    Ok(())
}

fn generate(src: &Path, dst: &Path, copies: usize) -> anyhow::Result<()> {
    std::fs::create_dir_all(dst.join("info"))?;
    std::fs::create_dir_all(dst.join("updates"))?;
    if let Ok(d) = std::fs::read(src.join("diversions")) {
        std::fs::write(dst.join("diversions"), d)?;
    }
    let status = std::fs::read_to_string(src.join("status"))?;
    let mut out = String::new();
    for para in status.split("\n\n").filter(|p| !p.trim().is_empty()) {
        let field = |name: &str| {
            para.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let (name, arch) = (field("Package:"), field("Architecture:"));
        let stem = if field("Multi-Arch:") == "same" {
            format!("{name}:{arch}")
        } else {
            name.clone()
        };
        let list = std::fs::read_to_string(src.join(format!("info/{stem}.list"))).ok();
        let sums = std::fs::read_to_string(src.join(format!("info/{stem}.md5sums"))).ok();
        for n in 0..copies {
            let (new_name, prefix) = match n {
                0 => (name.clone(), String::new()),
                _ => (format!("{name}-c{n}"), format!("/c{n}")),
            };
            out.push_str(&copy_paragraph(para, &new_name, &prefix));
            out.push_str("\n\n");
            let new_stem = stem.replacen(&name, &new_name, 1);
            if let Some(list) = &list {
                let text: String = list.lines().map(|l| format!("{prefix}{l}\n")).collect();
                std::fs::write(dst.join(format!("info/{new_stem}.list")), text)?;
            }
            if let Some(sums) = &sums {
                let rel = prefix.trim_start_matches('/');
                let text: String = sums
                    .lines()
                    .filter_map(|l| l.split_once("  "))
                    .map(|(md5, p)| match rel {
                        "" => format!("{md5}  {p}\n"),
                        _ => format!("{md5}  {rel}/{p}\n"),
                    })
                    .collect();
                std::fs::write(dst.join(format!("info/{new_stem}.md5sums")), text)?;
            }
        }
    }
    std::fs::write(dst.join("status"), out)?;
    Ok(())
}

/// A status paragraph with a new package name and its conffiles under `prefix`.
fn copy_paragraph(para: &str, name: &str, prefix: &str) -> String {
    let lines: Vec<String> = para
        .lines()
        .map(|l| {
            if l.starts_with("Package:") {
                format!("Package: {name}")
            } else if l.starts_with(" /") && !prefix.is_empty() {
                format!(" {prefix}{}", &l[1..])
            } else {
                l.to_string()
            }
        })
        .collect();
    lines.join("\n")
}
