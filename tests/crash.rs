//! Issue #16 item 13: the crash-consistency harness. A writer keeps changing files (and logs
//! every path it writes) while `fimd init`, `check` and `run` are killed with SIGKILL at
//! random points. After every kill the database passes `PRAGMA integrity_check`; at the end
//! (one clean `check`) the baseline equals the disk and every written path is in some event:
//! nothing a crash interrupted was lost or silently absorbed into the baseline.
//!
//! CI runs the short version (5 kills on 2,000 files). `benches/crash.sh` runs the long one
//! through the same test: `FIMD_CRASH_KILLS` (kills), `FIMD_CRASH_FILES` (tree size),
//! `FIMD_CRASH_SEED` (replay a run: the seed is printed first).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Env;
use sha2::{Digest, Sha256};

/// A small, seedable generator (xorshift64*): a failing run is replayed from its seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform-ish in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The file `i` of the tree: 20 directories, `.conf` names (all selected).
fn file_path(root: &Path, i: u64) -> PathBuf {
    root.join(format!("d{:02}", i % 20))
        .join(format!("f{i:06}.conf"))
}

/// Writes files until stopped; every path it wrote, in order.
struct Writer {
    stop: Arc<AtomicBool>,
    log: Arc<Mutex<Vec<PathBuf>>>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Writer {
    /// Change existing files (overwrite, append, replace by rename like an editor) and create
    /// new ones, each time with content never written before. It never deletes: a file created
    /// and deleted while no fimd runs can leave no trace, so "every path in some event" would
    /// not be a fair demand.
    fn start(root: PathBuf, files: u64, seed: u64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let (stop2, log2) = (stop.clone(), log.clone());
        let thread = std::thread::spawn(move || {
            let mut rng = Rng::new(seed);
            let mut seq = 0u64;
            while !stop2.load(Ordering::Relaxed) {
                seq += 1;
                // A fifth of the picks are new files beyond the initial tree.
                let path = file_path(&root, rng.below(files + files / 5));
                let body =
                    format!("write {seq} {}\n", rng.next()).repeat(1 + rng.below(40) as usize);
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir).expect("mkdir");
                }
                // Logged before it is written: a write logged after a kill began after it,
                // so no killed command can have seen it (see `forgiven` in the test).
                log2.lock().expect("log").push(path.clone());
                match rng.below(3) {
                    0 => std::fs::write(&path, &body).expect("overwrite"),
                    1 => {
                        let mut f = std::fs::OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(&path)
                            .expect("open for append");
                        f.write_all(body.as_bytes()).expect("append");
                    }
                    _ => {
                        let mut tmp = path.clone().into_os_string();
                        tmp.push(".tmp");
                        std::fs::write(&tmp, &body).expect("write temp");
                        std::fs::rename(&tmp, &path).expect("rename over");
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            seq
        });
        Writer {
            stop,
            log,
            thread: Some(thread),
        }
    }

    fn written(&self) -> usize {
        self.log.lock().expect("log").len()
    }

    /// Stop, and return every path written, in order.
    fn finish(mut self) -> Vec<PathBuf> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("writer thread");
        }
        std::mem::take(&mut *self.log.lock().expect("log"))
    }
}

/// The database as the test reads it (sqlx, a fresh connection each time: fimd is not
/// running then).
struct Db {
    rt: tokio::runtime::Runtime,
    path: PathBuf,
}

impl Db {
    fn new(path: PathBuf) -> Db {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        Db { rt, path }
    }

    fn with<T>(
        &self,
        f: impl AsyncFnOnce(&mut sqlx::SqliteConnection) -> Result<T, sqlx::Error>,
    ) -> Option<T> {
        use sqlx::{ConnectOptions, Connection};
        if !self.path.exists() {
            return None;
        }
        self.rt.block_on(async {
            let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&self.path)
                .connect()
                .await
                .expect("open the database");
            let out = f(&mut conn).await.expect("query the database");
            conn.close().await.expect("close");
            Some(out)
        })
    }

    fn integrity_check(&self) -> Option<Vec<String>> {
        self.with(async |c| {
            sqlx::query_scalar("PRAGMA integrity_check")
                .fetch_all(c)
                .await
        })
    }

    /// `meta.baseline_at`: changes exactly when a new baseline was committed (or cleared).
    fn baseline_at(&self) -> Option<String> {
        self.with(async |c| {
            // Before the first migration ran there is no meta table: no baseline either.
            let has_meta: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'meta'",
            )
            .fetch_one(&mut *c)
            .await?;
            if has_meta == 0 {
                return Ok(None);
            }
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'baseline_at'")
                .fetch_optional(c)
                .await
        })
        .flatten()
    }

    /// The baseline's regular files: path -> (size, sha256).
    fn baseline_files(&self) -> BTreeMap<PathBuf, (i64, Option<Vec<u8>>)> {
        let rows: Vec<(Vec<u8>, i64, Option<Vec<u8>>)> = self
            .with(async |c| {
                sqlx::query_as("SELECT path, size, sha256 FROM baseline WHERE kind = 'file'")
                    .fetch_all(c)
                    .await
            })
            .unwrap_or_default();
        rows.into_iter()
            .map(|(p, size, sha)| (PathBuf::from(OsStr::from_bytes(&p)), (size, sha)))
            .collect()
    }
}

/// Every regular file under `root`: path -> (size, sha256).
fn disk_files(root: &Path) -> BTreeMap<PathBuf, (i64, Option<Vec<u8>>)> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let bytes = std::fs::read(e.path()).expect("read tree file");
            let sha = Sha256::digest(&bytes).to_vec();
            (e.into_path(), (bytes.len() as i64, Some(sha)))
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
enum Victim {
    Init,
    Check,
    Run,
}

#[test]
fn crash_consistency_under_sigkill() {
    let kills = env_u64("FIMD_CRASH_KILLS", 5);
    let files = env_u64("FIMD_CRASH_FILES", 2000);
    let seed = env_u64(
        "FIMD_CRASH_SEED",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1),
    );
    eprintln!("crash harness: FIMD_CRASH_SEED={seed} kills={kills} files={files}");
    let mut rng = Rng::new(seed);

    let env = Env::new();
    for i in 0..files {
        let p = file_path(&env.root, i);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        std::fs::write(&p, format!("initial {i}\n")).expect("write");
    }
    let db = Db::new(env.db.clone());
    let started = Instant::now();
    let out = env.fimd().arg("init").output().expect("init");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Kill points are drawn from how long a full scan takes here.
    let scan = started.elapsed().max(Duration::from_millis(50));
    eprintln!("clean init of {files} files: {scan:?}");

    let writer = Writer::start(env.root.clone(), files, rng.next());
    // Writes before this index may have been absorbed silently by a new baseline (a killed
    // `init --force` that committed, or a `run` that had to build one first).
    let mut forgiven = 0usize;
    let victims = [Victim::Init, Victim::Check, Victim::Run];
    let first = rng.below(3) as usize;
    let mut finished_first = 0;
    for k in 0..kills as usize {
        let victim = victims[(first + k) % 3];
        let before = db.baseline_at();
        let mut cmd: Command = env.fimd();
        match victim {
            Victim::Init if before.is_some() => cmd.args(["init", "--force"]),
            Victim::Init => cmd.arg("init"),
            Victim::Check => cmd.arg("check"),
            Victim::Run => cmd.arg("run"),
        };
        let log = env.base().join(format!("kill-{k}.stderr"));
        let stderr = std::fs::File::create(&log).expect("stderr file");
        let max = match victim {
            Victim::Run => scan * 3 + Duration::from_millis(300),
            _ => scan + scan / 5,
        };
        let delay = Duration::from_micros(rng.below(max.as_micros() as u64));
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("spawn fimd");
        std::thread::sleep(delay);
        let status = child.try_wait().expect("try_wait");
        if status.is_none() {
            child.kill().expect("SIGKILL");
        }
        let status = child.wait().expect("wait");
        let at_kill = writer.written();
        if status.code().is_some() {
            finished_first += 1;
        }
        let stderr = std::fs::read_to_string(&log).unwrap_or_default();
        eprintln!(
            "kill {k}: {victim:?} after {delay:?}: {} ({} writes so far)",
            if status.code().is_some() {
                format!("had finished ({status})")
            } else {
                "killed".to_string()
            },
            at_kill
        );
        assert!(
            !stderr.contains("panicked"),
            "{victim:?} panicked: {stderr}"
        );
        if let Some(result) = db.integrity_check() {
            assert_eq!(
                result,
                ["ok"],
                "integrity_check after kill {k} ({victim:?})"
            );
        }
        if db.baseline_at() != before {
            forgiven = at_kill;
        }
    }
    assert!(
        finished_first < kills as usize,
        "no command was killed while working: nothing was tested"
    );
    let written = writer.finish();
    eprintln!(
        "{} writes; {finished_first} of {kills} commands had finished before their kill",
        written.len()
    );

    // One clean check (after a fresh init if the last kill left the baseline cleared).
    if db.baseline_at().is_none() {
        let out = env.fimd().arg("init").output().expect("init");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        forgiven = written.len();
    }
    let out = env.fimd().arg("check").output().expect("check");
    assert!(
        out.status.code().is_some_and(|c| c < 8),
        "final check: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(db.integrity_check(), Some(vec!["ok".to_string()]));

    // The baseline equals the disk.
    let baseline = db.baseline_files();
    let disk = disk_files(&env.root);
    let only_base: Vec<_> = baseline.keys().filter(|p| !disk.contains_key(*p)).collect();
    let only_disk: Vec<_> = disk.keys().filter(|p| !baseline.contains_key(*p)).collect();
    assert!(
        only_base.is_empty() && only_disk.is_empty(),
        "baseline != disk: only in baseline {only_base:?}, only on disk {only_disk:?}"
    );
    let differ: Vec<_> = disk
        .iter()
        .filter(|(p, v)| baseline.get(*p) != Some(v))
        .map(|(p, _)| p)
        .collect();
    assert!(
        differ.is_empty(),
        "baseline rows differ from disk: {differ:?}"
    );

    // Every path written since the last baseline is in some event.
    let out = env
        .fimd()
        .args(["events", "--json"])
        .output()
        .expect("events");
    assert!(out.status.success());
    let mut reported = BTreeSet::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let e: serde_json::Value = serde_json::from_str(line).expect("event JSON");
        for key in ["path", "from"] {
            if let Some(p) = e[key].as_str() {
                reported.insert(PathBuf::from(p));
            }
        }
    }
    let required: BTreeSet<&PathBuf> = written[forgiven.min(written.len())..].iter().collect();
    let missing: Vec<_> = required
        .iter()
        .filter(|p| !reported.contains(**p))
        .collect();
    eprintln!(
        "{} paths required in events, {} events' paths, {} missing",
        required.len(),
        reported.len(),
        missing.len()
    );
    assert!(missing.is_empty(), "written but in no event: {missing:?}");
}
