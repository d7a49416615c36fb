//! The central side's tamper-evidence check (`fimd fleet gaps`, `fimd fleet hosts`): is what
//! each host reported about its own event chain consistent over time?
//!
//! The central side has no key, so it cannot recompute a MAC. What it can check, from the
//! heartbeats it keeps (every one, append-only), is that a host's chain head only moves
//! forward:
//! - `rewritten`: one event uid was reported with two different MACs: the events up to it
//!   were changed and signed again (by someone holding the key, or `fimd verify --rekey`),
//!   or its ids were reused after events were deleted.
//! - `rewound`: within one instance, the head went back to an older event: the newest events
//!   were deleted.
//! - `unsigned`: a head was reported, then none in the same instance: the MACs were removed.
//! - `restarted`: the host reports another instance: its database was replaced or rebuilt
//!   (`fimd init --force`), so the local history before it is gone.
//!
//! Heartbeats are taken in the order the server received them (`received`, then `time`).

use serde::Serialize;
use sqlx::{AssertSqlSafe, Row};

use super::query::Reader;

/// One place where a host's reported chain does not extend what it reported before.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ChainBreak {
    pub host: String,
    /// `rewritten`, `rewound`, `unsigned` or `restarted`.
    pub kind: String,
    /// The heartbeat that showed it (RFC 3339).
    pub time: String,
    /// The head reported before: instance, uid, MAC (hex).
    pub before_instance: String,
    pub before_uid: Option<String>,
    pub before_mac: Option<String>,
    /// The head reported then.
    pub instance: String,
    pub uid: Option<String>,
    pub mac: Option<String>,
}

impl ChainBreak {
    /// One line for `fimd fleet gaps`.
    pub fn describe(&self) -> String {
        let short = |m: &Option<String>| {
            m.as_deref()
                .map_or("-".to_string(), |m| m[..m.len().min(16)].to_string())
        };
        // The uid names the instance; without a head, name the instance.
        let head = |uid: &Option<String>, mac: &Option<String>, instance: &str| match uid {
            Some(u) => format!("{u} mac {}", short(mac)),
            None => format!("no chain head (instance {instance})"),
        };
        let what = match self.kind.as_str() {
            "rewritten" => "history rewritten: the same event was reported with another MAC",
            "rewound" => "history rewound: the chain head went back (newest events deleted)",
            "unsigned" => "chain head gone: the host stopped reporting its MACs",
            _ => "history restarted: another database instance (init --force or a new database)",
        };
        format!(
            "{} {}: {what}; before {}, then {}",
            self.host,
            self.time,
            head(&self.before_uid, &self.before_mac, &self.before_instance),
            head(&self.uid, &self.mac, &self.instance),
        )
    }
}

impl Reader {
    /// Every chain break in the stored heartbeats, by host and time.
    pub async fn chain_breaks(&self) -> Result<Vec<ChainBreak>, String> {
        let p = &self.prefix;
        let t = super::query::ts("h.time");
        // `prev`: the host's previous heartbeat; `prev_head`: its previous heartbeat that
        // carried a head in the same instance; `prev_same`: the previous report of this uid.
        let sql = format!(
            "WITH h AS ( \
                SELECT host, instance, time, received, chain_head_uid AS uid, chain_head_mac AS mac, \
                       substring(chain_head_uid from ':([0-9]+)$')::bigint AS seq, \
                       lag(instance) OVER (PARTITION BY host ORDER BY received, time) AS prev_instance, \
                       lag(chain_head_uid) OVER (PARTITION BY host ORDER BY received, time) AS prev_uid, \
                       lag(chain_head_mac) OVER (PARTITION BY host ORDER BY received, time) AS prev_mac \
                FROM {p}heartbeat), \
             heads AS ( \
                SELECT *, lag(seq) OVER w AS prev_seq, lag(uid) OVER w AS prev_head_uid, lag(mac) OVER w AS prev_head_mac \
                FROM h WHERE uid IS NOT NULL \
                WINDOW w AS (PARTITION BY host, instance ORDER BY received, time)), \
             same AS ( \
                SELECT *, lag(mac) OVER (PARTITION BY host, instance, uid ORDER BY received, time) AS prev_same_mac \
                FROM h WHERE uid IS NOT NULL) \
             SELECT h.host, 'restarted' AS kind, {t} AS t, h.received, h.prev_instance AS b_inst, h.prev_uid AS b_uid, h.prev_mac AS b_mac, h.instance, h.uid, h.mac \
                FROM h WHERE h.prev_instance IS NOT NULL AND h.prev_instance <> h.instance \
             UNION ALL \
             SELECT h.host, 'unsigned', {t}, h.received, h.instance, h.prev_uid, h.prev_mac, h.instance, h.uid, h.mac \
                FROM h WHERE h.prev_instance = h.instance AND h.prev_uid IS NOT NULL AND h.uid IS NULL \
             UNION ALL \
             SELECT h.host, 'rewound', {t}, h.received, h.instance, h.prev_head_uid, h.prev_head_mac, h.instance, h.uid, h.mac \
                FROM heads h WHERE h.seq < h.prev_seq \
             UNION ALL \
             SELECT h.host, 'rewritten', {t}, h.received, h.instance, h.uid, h.prev_same_mac, h.instance, h.uid, h.mac \
                FROM same h WHERE h.mac IS DISTINCT FROM h.prev_same_mac AND h.prev_same_mac IS NOT NULL \
             ORDER BY 1, 4, 3"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.failed("chain", e))?;
        rows.iter()
            .map(|r| -> Result<ChainBreak, sqlx::Error> {
                Ok(ChainBreak {
                    host: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    time: r.try_get(2)?,
                    before_instance: r.try_get(4)?,
                    before_uid: r.try_get(5)?,
                    before_mac: r.try_get(6)?,
                    instance: r.try_get(7)?,
                    uid: r.try_get(8)?,
                    mac: r.try_get(9)?,
                })
            })
            .collect::<Result<_, _>>()
            .map_err(|e| self.failed("chain", e))
    }
}
