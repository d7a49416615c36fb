//! The SQLite store (sqlx): opening (0600 file in a 0700 directory, WAL, embedded migrations),
//! the baseline, text contents for diffs, the event history, the outbox and meta facts.
//! Every write goes through [`Store::commit`]: one `BEGIN IMMEDIATE` transaction holding a
//! batch's baseline rows, contents, events and outbox rows together (during `init`, the one
//! transaction of the whole load). Paths are BLOB bytes.

mod events;
mod identity;
mod mac;
mod read;
mod replace;
mod retention;
mod space;
mod tamper;
mod write;

pub use mac::MacKey;
pub use tamper::{KeyState, VerifyReport};

pub use events::load_events;
pub use identity::{had_baseline, mark_baseline, marker_path};
pub use read::{EventFilter, EventsError, Status};
pub use replace::{building_path, install, remove_leftovers};
pub use retention::PruneReport;
pub use write::Batch;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Sqlite, SqlitePool, Transaction};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

/// A database problem, always naming the database file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no database at {0}: run `fimd init` first")]
    NoDatabase(PathBuf),
    #[error("permission denied: {0} (run as root)")]
    PermissionDenied(PathBuf),
    #[error("no baseline in {0}: run `fimd init` first")]
    NoBaseline(PathBuf),
    #[error("a baseline already exists in {0}: use `fimd init --force` to replace it")]
    BaselineExists(PathBuf),
    #[error("database {path}: the fimd daemon (pid {pid}) is running on it: stop it first (systemctl stop fimd)")]
    DaemonRunning { path: PathBuf, pid: u32 },
    #[error("database {path}: {what}: {source}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("database {path}: {}", describe(.source))]
    Sql {
        path: PathBuf,
        #[source]
        source: sqlx::Error,
    },
    #[error("database {path}: schema migration failed: {source}")]
    Migrate {
        path: PathBuf,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("database {path}: corrupt row: {message}")]
    Corrupt { path: PathBuf, message: String },
    /// Root runs fimd and someone else could write the database, or it is a symlink
    /// (see [`crate::perms`]).
    #[error("database {} refused: {source}", .path.display())]
    Insecure {
        path: PathBuf,
        #[source]
        source: crate::perms::Insecure,
    },
    /// The configured tamper-evidence key does not fit the database (a configuration error).
    #[error("database {path}: {message}")]
    TamperKey { path: PathBuf, message: String },
    /// The database's file system has no room left (retried by the daemon, never fatal there).
    #[error("disk full ({}): free space on its file system", .path.display())]
    DiskFull { path: PathBuf },
    /// The database file is no longer the one that was opened (removed, replaced, truncated).
    #[error("database {} {what} while fimd was running; stopping (writing on would write into a file nobody reads)", .path.display())]
    Lost { path: PathBuf, what: String },
}

impl StoreError {
    /// The database's file system is full (transient: the daemon keeps its changes and retries).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::DiskFull { .. })
    }

    /// The database file was removed, replaced or truncated (the daemon must exit).
    pub fn is_lost(&self) -> bool {
        matches!(self, StoreError::Lost { .. })
    }
}

/// One line a user can act on for the common SQLite failures.
fn describe(e: &sqlx::Error) -> String {
    let text = e.to_string();
    if text.contains("database is locked") || text.contains("database table is locked") {
        "database is locked by another process (is a long `fimd` command running?)".to_string()
    } else if text.contains("file is not a database") || text.contains("malformed") {
        format!("database file is corrupt ({text}); move it away and run `fimd init`")
    } else {
        text
    }
}

/// Append `path IN (?, ?, ...)` binding each path's bytes (the one way paths are listed in SQL).
///
/// Statements built with a variable number of rows or paths are run with `persistent(false)`:
/// sqlx caches every distinct SQL text as a prepared statement per connection (100 each), and
/// each multi-row shape is a new text holding a large program. Cached, they grew `init`'s
/// RSS with the tree (1M files: 52 -> 105 MiB over the run); uncached it stays at ~45 MiB.
fn push_path_list<P: AsRef<Path>>(q: &mut sqlx::QueryBuilder<sqlx::Sqlite>, paths: &[P]) {
    use std::os::unix::ffi::OsStrExt;
    q.push("path IN (");
    let mut sep = q.separated(", ");
    for p in paths {
        sep.push_bind(p.as_ref().as_os_str().as_bytes());
    }
    q.push(")");
}

/// Connections per process. A full scan holds two readers (baseline files and directories)
/// for its whole length while it commits and reads old texts, and the daemon's outbox worker
/// needs one too: 8 leaves room, so nobody waits for a connection during a long rescan.
const POOL_SIZE: u32 = 8;

/// The database handle. Cheap to clone; shared by the pipeline and the outbox worker.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
    path: PathBuf,
    /// The open transaction of a bulk load (see [`Store::begin_bulk`]): batches are written
    /// into it and committed once, by [`Store::end_bulk`].
    bulk: Arc<Mutex<Option<Bulk>>>,
    /// This database's instance UUID (`meta.instance`): events' `uid` is `<instance>:<id>`.
    /// Replaced by `init --force`.
    instance: Arc<std::sync::RwLock<String>>,
    /// The tamper-evidence key, when `[store] hmac_key` is set ([`Store::use_key`]).
    mac: Arc<std::sync::RwLock<Option<Arc<MacKey>>>>,
    /// The database file as opened (see [`Store::check_file`]).
    file_id: Arc<std::sync::Mutex<Option<identity::FileId>>>,
}

/// A bulk load in progress.
#[derive(Debug)]
struct Bulk {
    tx: Transaction<'static, Sqlite>,
    /// The database file, to start writing its dirty pages to disk after each batch (see
    /// [`start_writeback`]); `None` if it could not be opened (then the commit does it all).
    file: Option<std::fs::File>,
}

/// Ask the kernel to start writing the file's dirty pages now, without waiting. A bulk load
/// commits once: without this, the commit's fsync would wait for the whole database (520 MB
/// at 100k files, 0.15 s) at the end instead of the disk writing it while the scan goes on.
fn start_writeback(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
    if rc != 0 {
        // Only a hint: the commit's fsync still makes the data durable.
        tracing::debug!(error = %std::io::Error::last_os_error(), "sync_file_range failed");
    }
}

/// An I/O error on the database file; "permission denied" says to run as root (the
/// database is 0600 in a 0700 directory, owned by root).
fn io_error(path: &Path, what: &'static str, source: std::io::Error) -> StoreError {
    if source.kind() == std::io::ErrorKind::PermissionDenied {
        return StoreError::PermissionDenied(path.to_path_buf());
    }
    StoreError::Io {
        path: path.to_path_buf(),
        what,
        source,
    }
}

/// Refuse a database that a user other than root could write or swap, or that is a
/// symlink, when `enforce` (see [`crate::perms`]). Runs before anything opens or creates it.
pub fn check_permissions(path: &Path, enforce: bool) -> Result<(), StoreError> {
    if !enforce {
        return Ok(());
    }
    crate::perms::check(path, crate::perms::Kind::Database).map_err(|source| StoreError::Insecure {
        path: path.to_path_buf(),
        source,
    })
}

/// May a connection go back to the pool? Not when it is still inside a transaction after the
/// rollback of a dropped one has run: a COMMIT that failed (a full disk) and that SQLite had
/// already rolled back itself leaves sqlx counting an open transaction, and every later
/// `BEGIN` on that connection would fail ("non-zero transaction depth"). It is closed instead.
async fn release_healthy(conn: &mut sqlx::SqliteConnection) -> Result<bool, sqlx::Error> {
    use sqlx::Connection;
    if !conn.is_in_transaction() {
        return Ok(true);
    }
    // A dropped transaction's rollback is queued on the connection: let it run first.
    conn.ping().await?;
    Ok(!conn.is_in_transaction())
}

/// SQLite's own message for an unreadable file is "unable to open database file": check first.
fn readable(path: &Path) -> Result<(), StoreError> {
    std::fs::File::open(path)
        .map(|_| ())
        .map_err(|source| io_error(path, "cannot open it", source))
}

impl Store {
    /// Open or create the database (and its directory, 0700), run migrations.
    pub async fn open(path: &Path) -> Result<Store, StoreError> {
        Store::create(path, POOL_SIZE).await
    }

    /// Open for a bulk load (`init`): a single connection, so that [`Store::begin_bulk`] can
    /// switch the journal mode.
    pub async fn open_bulk(path: &Path) -> Result<Store, StoreError> {
        Store::create(path, 1).await
    }

    async fn create(path: &Path, connections: u32) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|source| io_error(path, "cannot create its directory", source))?;
            }
        }
        // Create the file 0600 ourselves: SQLite gives -wal/-shm the main file's mode.
        let created = match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
            Err(source) => return Err(io_error(path, "cannot create it", source)),
        };
        readable(path)?;
        // Empty: created now, or by a run killed before SQLite wrote its first page.
        let fresh = created || std::fs::metadata(path).is_ok_and(|m| m.len() == 0);
        Store::connect(path, connections, fresh).await
    }

    /// Open a database that must already exist (read commands: `events`, `status`, `diff`).
    pub async fn open_existing(path: &Path) -> Result<Store, StoreError> {
        match std::fs::metadata(path) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StoreError::NoDatabase(path.to_path_buf()))
            }
            Err(source) => return Err(io_error(path, "cannot open it", source)),
        }
        readable(path)?;
        Store::connect(path, POOL_SIZE, false).await
    }

    /// Open the pool and migrate; `fresh`: the file is empty, a new database.
    async fn connect(path: &Path, connections: u32, fresh: bool) -> Result<Store, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a committed change must survive a power cut; fimd writes rarely.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            // 64 KiB pages: a baseline writes hundreds of MB of text contents; 16x fewer pages
            // means 16x fewer page writes (init measured 3.4 s -> 2.1 s at 100k files).
            // Only takes effect when the database is created.
            .pragma("page_size", "65536")
            // Content deleted when a file becomes sensitive is zeroed on disk, not just unlinked.
            .pragma("secure_delete", "ON")
            // Statements are not logged: they carry paths, and a slow one is not a user's problem.
            .disable_statement_logging();
        let options = if fresh {
            // Pruned history gives its pages back (`PRAGMA incremental_vacuum` after a prune).
            // It takes effect only when the database is created (sqlx sets it before
            // journal_mode): an older database keeps auto_vacuum = none and reuses the freed
            // pages instead (README "History"). Only for a new file: setting it writes page 1
            // on every connection, and read-only commands must work on a full disk.
            options.auto_vacuum(sqlx::sqlite::SqliteAutoVacuum::Incremental)
        } else {
            options
        };
        let pool = SqlitePoolOptions::new()
            .max_connections(connections)
            .acquire_timeout(Duration::from_secs(30))
            .after_release(|conn, _| Box::pin(release_healthy(conn)))
            .connect_with(options)
            .await
            .map_err(|source| StoreError::Sql {
                path: path.to_path_buf(),
                source,
            })?;
        sqlx::migrate!("src/store/migrations")
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                path: path.to_path_buf(),
                source,
            })?;
        let instance: Option<String> =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'instance'")
                .fetch_optional(&pool)
                .await
                .map_err(|source| StoreError::Sql {
                    path: path.to_path_buf(),
                    source,
                })?;
        let instance = instance.ok_or_else(|| StoreError::Corrupt {
            path: path.to_path_buf(),
            message: "no instance id in meta (written by migration 4)".to_string(),
        })?;
        Ok(Store {
            pool,
            path: path.to_path_buf(),
            bulk: Arc::default(),
            instance: Arc::new(std::sync::RwLock::new(instance)),
            mac: Arc::default(),
            file_id: Arc::new(std::sync::Mutex::new(identity::FileId::of(path))),
        })
    }

    /// Check that the database file is still the one opened: same device and inode, and not
    /// shorter than the pages SQLite counts (see `identity.rs`). The daemon calls this
    /// periodically and after a failed commit.
    pub async fn check_file(&self) -> Result<(), StoreError> {
        let shrunk = {
            let mut guard = match self.file_id.lock() {
                Ok(g) => g,
                Err(poisoned) => poisoned.into_inner(),
            };
            match guard.as_mut() {
                Some(id) => id.verify(&self.path)?,
                None => {
                    *guard = identity::FileId::of(&self.path);
                    None
                }
            }
        };
        let Some(len) = shrunk else {
            return Ok(());
        };
        // Pages still in the WAL count too, so the file may be shorter than this while it
        // grows (until a checkpoint), never right after shrinking.
        let pages: Result<(i64, i64), _> =
            sqlx::query_as("SELECT * FROM pragma_page_count, pragma_page_size")
                .fetch_one(&self.pool)
                .await;
        let counted = match pages {
            Ok((count, size)) => u64::try_from(count.saturating_mul(size)).unwrap_or(0),
            Err(e) => {
                return Err(identity::lost(
                    &self.path,
                    format!("shrank to {len} bytes and cannot be read ({e})"),
                ))
            }
        };
        if len < counted {
            return Err(identity::lost(
                &self.path,
                format!("was truncated ({len} bytes, SQLite counts {counted})"),
            ));
        }
        let mut guard = match self.file_id.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(id) = guard.as_mut() {
            id.accept(len);
        }
        Ok(())
    }

    /// The tamper-evidence key in use, if any.
    pub(crate) fn mac_key(&self) -> Option<Arc<MacKey>> {
        match self.mac.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// This database's instance UUID (the first part of every event's `uid`).
    pub fn instance(&self) -> String {
        match self.instance.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Start a bulk load (`init`, on a store from [`Store::open_bulk`]): every batch until
    /// [`Store::end_bulk`] goes into one transaction.
    ///
    /// One transaction instead of one per batch: 28 fsyncs instead of 326 (six per batch), and
    /// with [`start_writeback`] init at 100k files takes 1.36 s instead of 1.47 s (medians of
    /// nine alternating runs); without it the final fsync alone waits 0.15 s. The new
    /// baseline appears all at once; a load killed half way leaves none (rolled back from the
    /// journal at the next open). The journal is a rollback journal rather than WAL when
    /// possible, which writes the new pages once instead of twice (WAL, then checkpoint):
    /// 2.1 s -> 1.8 s. That needs no other process to have the database open; otherwise WAL
    /// stays.
    pub async fn begin_bulk(&self) -> Result<(), StoreError> {
        let mode: Result<String, _> = sqlx::query_scalar("PRAGMA journal_mode = DELETE")
            .fetch_one(&self.pool)
            .await;
        if !matches!(mode.as_deref(), Ok("delete")) {
            tracing::debug!("bulk load in WAL mode: the database is open elsewhere");
        }
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| self.sql(e))?;
        let file = std::fs::File::open(&self.path).ok();
        *self.bulk.lock().await = Some(Bulk { tx, file });
        Ok(())
    }

    /// Commit the bulk load, then return to WAL (readers never block the daemon's writes).
    pub async fn end_bulk(&self) -> Result<(), StoreError> {
        if let Some(bulk) = self.bulk.lock().await.take() {
            bulk.tx.commit().await.map_err(|e| self.sql(e))?;
        }
        sqlx::query_scalar::<_, String>("PRAGMA journal_mode = WAL")
            .fetch_one(&self.pool)
            .await
            .map(|_| ())
            .map_err(|e| self.sql(e))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pool, for modules with their own tables (the outbox worker).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Close all connections (checkpoints the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn sql(&self, source: sqlx::Error) -> StoreError {
        if space::is_disk_full(&self.path, &source) {
            return StoreError::DiskFull {
                path: self.path.clone(),
            };
        }
        StoreError::Sql {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, message: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod upgrade_tests;
