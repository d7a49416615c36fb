//! `init` builds its baseline in a new file beside the database and renames it over the old
//! one only when complete, so a killed `init --force` leaves the old baseline as it was (the
//! rename is atomic). The new file starts with the old one's history: every table but the
//! baseline and its contents (events, outbox, meta, ...), copied generically so tables added
//! by later migrations come along too.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{io_error, Store, StoreError};

/// Tables that hold the baseline (not carried over) or SQLite's/sqlx's own bookkeeping.
const NOT_COPIED: [&str; 3] = ["baseline", "contents", "_sqlx_migrations"];

/// Where a new baseline is built: `<database>.new`, in the same directory (same file system).
pub fn building_path(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".new");
    db.with_file_name(name)
}

/// SQLite's companion files of a database file.
fn companions(db: &Path) -> [PathBuf; 3] {
    ["-journal", "-wal", "-shm"].map(|suffix| {
        let mut name = db.as_os_str().to_os_string();
        name.push(suffix);
        PathBuf::from(name)
    })
}

/// Remove what a killed `init` left at `building` (the file and its journal).
pub fn remove_leftovers(building: &Path) -> Result<(), StoreError> {
    let [journal, wal, shm] = companions(building);
    for p in [building.to_path_buf(), journal, wal, shm] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(io_error(&p, "cannot remove a killed init's file", source)),
        }
    }
    Ok(())
}

/// Put the complete database at `building` in place of `db` (closed, both of them): make it
/// durable, rename it over `db`, make the rename durable.
pub fn install(building: &Path, db: &Path) -> Result<(), StoreError> {
    // Closed cleanly, the new file has checkpointed its log into itself: only it is renamed.
    let [_, new_wal, _] = companions(building);
    if std::fs::metadata(&new_wal).is_ok_and(|m| m.len() > 0) {
        return Err(StoreError::Io {
            path: building.to_path_buf(),
            what: "was not closed cleanly (its -wal file is not empty); run init again",
            source: std::io::Error::from(std::io::ErrorKind::ResourceBusy),
        });
    }
    let [_, wal, _] = companions(db);
    // A write-ahead log beside the old file belongs to a process that still has it open:
    // SQLite would apply its pages to the new file.
    if std::fs::metadata(&wal).is_ok_and(|m| m.len() > 0) {
        return Err(StoreError::Io {
            path: db.to_path_buf(),
            what: "still open in another process (its -wal file is not empty); stop it and run init again",
            source: std::io::Error::from(std::io::ErrorKind::ResourceBusy),
        });
    }
    let sync = |p: &Path, what: &'static str| {
        std::fs::File::open(p)
            .and_then(|f| f.sync_all())
            .map_err(|source| io_error(p, what, source))
    };
    sync(building, "cannot sync the new baseline")?;
    std::fs::rename(building, db)
        .map_err(|source| io_error(db, "cannot replace it with the new baseline", source))?;
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        sync(dir, "cannot sync its directory")?;
    }
    Ok(())
}

impl Store {
    /// Copy every table but the baseline from the database at `old` (same schema: both were
    /// migrated by this binary) into this one, replacing what is here, in one transaction.
    pub async fn copy_history_from(&self, old: &Path) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await.map_err(|e| self.sql(e))?;
        // A BLOB file name is read as its bytes: any path works, UTF-8 or not.
        sqlx::query("ATTACH DATABASE ? AS old")
            .bind(old.as_os_str().as_bytes())
            .execute(&mut *conn)
            .await
            .map_err(|e| self.sql(e))?;
        let copied = async {
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT name FROM old.sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' ORDER BY rowid",
            )
            .fetch_all(&mut *conn)
            .await?;
            let mut tx = sqlx::Connection::begin_with(&mut *conn, "BEGIN IMMEDIATE").await?;
            // Outbox rows refer to events: checked at commit, when both are in.
            sqlx::query("PRAGMA defer_foreign_keys = ON")
                .execute(&mut *tx)
                .await?;
            let mut names: Vec<String> = tables
                .into_iter()
                .filter(|t| !NOT_COPIED.contains(&t.as_str()))
                .collect();
            // AUTOINCREMENT's high-water marks: event ids never repeat.
            names.push("sqlite_sequence".to_string());
            for t in &names {
                let t = t.replace('"', "\"\"");
                for stmt in [
                    format!("DELETE FROM main.\"{t}\""),
                    format!("INSERT INTO main.\"{t}\" SELECT * FROM old.\"{t}\""),
                ] {
                    // The names come from the database's own catalogue, quoted.
                    sqlx::query(sqlx::AssertSqlSafe(stmt))
                        .persistent(false)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await
        }
        .await;
        let detached = sqlx::query("DETACH DATABASE old").execute(&mut *conn).await;
        copied.map_err(|e| self.sql(e))?;
        detached.map_err(|e| self.sql(e))?;
        Ok(())
    }
}
