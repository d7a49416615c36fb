//! Benchmark of `RpmIndex::load` on a synthetic sqlite rpmdb (benches/README.md, "rpm index").
//!
//! ```text
//! cargo run --profile ci --example rpm-index-bench -- make DIR [PACKAGES] [FILES]
//! /usr/bin/time -v target/ci/examples/rpm-index-bench load DIR [RUNS]
//! ```
//! `make` writes `DIR/var/lib/rpm/rpmdb.sqlite` with rpm's `Packages(hnum, blob)` table and
//! PACKAGES (default 200) headers of FILES (default 500) files each, encoded with the
//! index's own test encoder and padded with the per-file tags a real header also carries
//! (sizes, modes, mtimes, owners, link targets, inodes), so the blobs are about as large as
//! rpm's (a real rpm-built header of 500 files measured 67.9 KB in the rpmdb; these are
//! 66 KB). `load` loads the index once, then refreshes it RUNS-1 times (default 5), printing
//! each wall time and the RSS / peak RSS (`VmHWM`) after it. Run `load` as its own process
//! so the peak is the load's alone.

use fimd::packages::rpm::header::{self, Encoder};
use fimd::packages::rpm::RpmIndex;
use fimd::packages::PackageDb;
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("make") => {
            let dir = PathBuf::from(args.get(1).ok_or_else(|| anyhow::anyhow!("DIR"))?);
            let packages: usize = args.get(2).map_or(Ok(200), |s| s.parse())?;
            let files: usize = args.get(3).map_or(Ok(500), |s| s.parse())?;
            make(&dir, packages, files)
        }
        Some("load") => {
            let dir = PathBuf::from(args.get(1).ok_or_else(|| anyhow::anyhow!("DIR"))?);
            let runs: usize = args.get(2).map_or(Ok(5), |s| s.parse())?;
            load(&dir, runs)
        }
        _ => anyhow::bail!("usage: rpm-index-bench make DIR [PACKAGES] [FILES] | load DIR [RUNS]"),
    }
}

/// One synthetic header: `files` files under `/usr/share/pkgN/dD/` and `/usr/bin`.
fn blob(n: usize, files: usize) -> Vec<u8> {
    let name = format!("pkg{n}");
    let paths: Vec<String> = (0..files)
        .map(|i| {
            if i % 50 == 0 {
                format!("/usr/bin/{name}-tool{i}")
            } else {
                format!("/usr/share/{name}/d{}/file-{i}.dat", i % 10)
            }
        })
        .collect();
    let digests: Vec<String> = paths
        .iter()
        .map(|p| hex::encode(sha2::Sha256::digest(p.as_bytes())))
        .collect();
    let mut dirnames: Vec<&[u8]> = Vec::new();
    let mut dirindexes = Vec::new();
    let mut basenames: Vec<&[u8]> = Vec::new();
    for p in &paths {
        let slash = p.rfind('/').map_or(0, |i| i + 1);
        let (dir, base) = p.as_bytes().split_at(slash);
        let idx = dirnames.iter().position(|d| *d == dir).unwrap_or_else(|| {
            dirnames.push(dir);
            dirnames.len() - 1
        });
        dirindexes.push(idx as u32);
        basenames.push(base);
    }
    let digest_refs: Vec<&[u8]> = digests.iter().map(|d| d.as_bytes()).collect();
    let flags: Vec<u32> = (0..files).map(|i| u32::from(i % 100 == 1)).collect();
    let numbers: Vec<u32> = (0..files as u32).map(|i| 4096 + i * 37).collect();
    let owners: Vec<&[u8]> = vec![b"root"; files];
    let links: Vec<&[u8]> = vec![b""; files];
    let langs: Vec<&[u8]> = vec![b""; files];
    let description = vec![b'x'; 2048];
    let mut enc = Encoder::new();
    enc.string(header::TAG_NAME, name.as_bytes())
        .string(header::TAG_VERSION, b"1.2.3")
        .string(header::TAG_RELEASE, b"4.fc40")
        .string(header::TAG_ARCH, b"x86_64")
        .string(1005, &description) // DESCRIPTION
        .string_array(header::TAG_FILEDIGESTS, &digest_refs)
        .int32(header::TAG_FILEFLAGS, &flags)
        .int32(header::TAG_DIRINDEXES, &dirindexes)
        .string_array(header::TAG_BASENAMES, &basenames)
        .string_array(header::TAG_DIRNAMES, &dirnames)
        .int32(header::TAG_FILEDIGESTALGO, &[8])
        .int32(1028, &numbers) // FILESIZES
        .int32(1034, &numbers) // FILEMTIMES
        .int32(1033, &numbers) // FILERDEVS (int16 in rpm; same order of size)
        .int32(1030, &numbers) // FILEMODES (int16 in rpm)
        .int32(1096, &numbers) // FILEINODES
        .int32(1095, &numbers) // FILEDEVICES
        .int32(1140, &numbers) // FILECOLORS
        .int32(1141, &numbers) // FILECLASS
        .string_array(1039, &owners) // FILEUSERNAME
        .string_array(1040, &owners) // FILEGROUPNAME
        .string_array(1036, &links) // FILELINKTOS
        .string_array(1097, &langs); // FILELANGS
    enc.finish()
}

fn make(dir: &Path, packages: usize, files: usize) -> anyhow::Result<()> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode};
    use sqlx::{ConnectOptions, Connection};
    let db_dir = dir.join("var/lib/rpm");
    std::fs::create_dir_all(&db_dir)?;
    let db = db_dir.join("rpmdb.sqlite");
    if db.exists() {
        std::fs::remove_file(&db)?;
    }
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let bytes = runtime.block_on(async {
        let mut conn = SqliteConnectOptions::new()
            .filename(&db)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .connect()
            .await?;
        // rpm's own schema (lib/backend/sqlite.cc).
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS 'Packages' (hnum INTEGER PRIMARY KEY AUTOINCREMENT, blob BLOB NOT NULL)",
        )
        .execute(&mut conn)
        .await?;
        let mut tx = conn.begin().await?;
        let mut bytes = 0usize;
        for n in 0..packages {
            let b = blob(n, files);
            bytes += b.len();
            sqlx::query("INSERT INTO Packages (blob) VALUES (?)")
                .bind(b)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        conn.close().await?;
        anyhow::Ok(bytes)
    })?;
    println!(
        "made {} ({packages} packages x {files} files, {:.1} MiB of header blobs) in {:.2} s",
        db.display(),
        bytes as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn load(dir: &Path, runs: usize) -> anyhow::Result<()> {
    let db_dir = dir.join("var/lib/rpm");
    let started = Instant::now();
    let mut index = RpmIndex::load(&db_dir, dir)?;
    println!(
        "load: {:.3} s, {} paths, {} packages; {}",
        started.elapsed().as_secs_f64(),
        index.len(),
        index.package_count(),
        memory()?
    );
    // What the daemon does on an rpmdb change: the old index stays until the new one is built.
    let db_file = db_dir.join("rpmdb.sqlite");
    for run in 1..runs {
        let started = Instant::now();
        index.refresh(&db_file)?;
        println!(
            "refresh {run}: {:.3} s; {}",
            started.elapsed().as_secs_f64(),
            memory()?
        );
    }
    Ok(())
}

/// `VmRSS` now and `VmHWM` (peak) of this process.
fn memory() -> anyhow::Result<String> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .map(|l| l[name.len()..].trim().to_string())
            .unwrap_or_default()
    };
    Ok(format!("RSS {}, peak {}", field("VmRSS:"), field("VmHWM:")))
}
