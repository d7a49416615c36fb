//! The fleet sinks over TLS and with every NATS authentication fimd offers, against the real
//! servers of `tests/fleet-tls-servers.sh` (started by `tests/fleet-servers.sh`, which CI
//! sources with FIMD_REQUIRE_FLEET=1, so these tests fail there instead of skipping), and the
//! central side's tamper-evidence check over real heartbeats. Locally, as root:
//!
//!     source tests/fleet-servers.sh && FIMD_REQUIRE_FLEET=1 cargo test --test fleettls
//!
//! Every test has its own database or stream; the wrong-credential cases must end with one
//! clear line, quickly (a refusal, never a timeout), and no secret in any file fimd wrote.

mod common;

use common::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};

/// Passwords and tokens that must never show up in output, logs or the database.
const PG_MARKER_PW: &str = "PGPW-MARKER-7d1e";
const NATS_MARKER_PW: &str = "pw-testhost";
/// A wrong credential must be refused well within this (fimd's own timeouts are 10-15 s).
const QUICK: Duration = Duration::from_secs(8);

struct Tls {
    dir: PathBuf,
    pg_port: String,
    pg_admin_pw: String,
    /// The plain server (for the chain test).
    pg_plain: String,
    nats_tls: String,
    nats_mtls: String,
    nats_token: String,
}

fn servers() -> Option<Tls> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let found = (|| {
        Some(Tls {
            dir: PathBuf::from(get("FIMD_TEST_TLS_DIR")?),
            pg_port: get("FIMD_TEST_PG_TLS_PORT")?,
            pg_admin_pw: get("FIMD_TEST_PG_ADMIN_PASSWORD")?,
            pg_plain: get("FIMD_TEST_PG_URL")?,
            nats_tls: get("FIMD_TEST_NATS_TLS_URL")?,
            nats_mtls: get("FIMD_TEST_NATS_MTLS_URL")?,
            nats_token: get("FIMD_TEST_NATS_TOKEN")?,
        })
    })();
    can_run(
        found.is_some() && is_root(),
        "FIMD_REQUIRE_FLEET",
        "no fleet TLS servers (as root: source tests/fleet-servers.sh)",
    )
    .then_some(found)
    .flatten()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

impl Tls {
    fn file(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }

    /// The TLS-only cluster as the superuser (password over TLS).
    async fn pg_admin(&self, db: &str) -> PgPool {
        let url = format!(
            "postgres://postgres:{}@localhost:{}/{db}?sslmode=verify-full&sslrootcert={}",
            self.pg_admin_pw,
            self.pg_port,
            self.file("ca.crt")
        );
        PgPoolOptions::new()
            .max_connections(2)
            .connect(&url)
            .await
            .expect("admin connection over TLS")
    }

    /// A TempTree whose `[daemon] host` is `host` (the PostgreSQL role it logs in as).
    fn tree(&self, host: &str, extra: &str) -> TempTree {
        let t = TempTree::new("", extra);
        let text = std::fs::read_to_string(&t.config).expect("config");
        std::fs::write(
            &t.config,
            text.replace("host = \"testhost\"", &format!("host = \"{host}\"")),
        )
        .expect("config");
        t
    }

    async fn nats_admin(&self, url: &str, mtls: bool) -> async_nats::jetstream::Context {
        let opts = match mtls {
            true => async_nats::ConnectOptions::with_token(self.nats_token.clone())
                .add_client_certificate(self.dir.join("client.crt"), self.dir.join("client.key")),
            false => async_nats::ConnectOptions::with_user_and_password(
                "admin".into(),
                "fleet-admin-pw".into(),
            ),
        };
        let c = opts
            .add_root_certificates(self.dir.join("ca.crt"))
            .require_tls(true)
            .connect(url)
            .await
            .expect("nats admin over TLS");
        async_nats::jetstream::new(c)
    }
}

/// A fresh database `db` with the schema `fimd fleet schema` prints and the host roles
/// `testhost` (password [`PG_MARKER_PW`]) and `tlscert` (client certificate only: pg_hba).
async fn fresh_db(admin: &PgPool, db: &str) -> PgPool {
    for sql in [
        format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        format!("CREATE DATABASE {db}"),
    ] {
        sqlx::raw_sql(AssertSqlSafe(sql))
            .execute(admin)
            .await
            .expect("create database");
    }
    let opts = admin.connect_options().as_ref().clone().database(db);
    let pool = PgPoolOptions::new()
        .max_connections(2)
        .connect_with(opts)
        .await
        .expect("connect to the new database");
    let schema = fimd()
        .args(["fleet", "schema"])
        .output()
        .expect("fleet schema");
    assert!(schema.status.success());
    sqlx::raw_sql(AssertSqlSafe(
        String::from_utf8(schema.stdout).expect("utf8"),
    ))
    .execute(&pool)
    .await
    .expect("apply the schema");
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DO $$ BEGIN CREATE ROLE testhost LOGIN PASSWORD '{PG_MARKER_PW}'; \
         EXCEPTION WHEN duplicate_object THEN NULL; END $$; GRANT fim_agent TO testhost; \
         DO $$ BEGIN CREATE ROLE tlscert LOGIN; \
         EXCEPTION WHEN duplicate_object THEN NULL; END $$; GRANT fim_agent TO tlscert; \
         DO $$ BEGIN CREATE ROLE alice LOGIN PASSWORD 'pw-alice'; \
         EXCEPTION WHEN duplicate_object THEN NULL; END $$; GRANT fim_reader TO alice;"
    )))
    .execute(&pool)
    .await
    .expect("create roles");
    pool
}

fn outbox(t: &TempTree, sink: &str) -> String {
    let o = std::process::Command::new("sqlite3")
        .arg(&t.db)
        .arg(format!(
            "SELECT state || ' ' || count(*) || ' ' || COALESCE(max(last_error), '') FROM outbox WHERE sink = '{sink}' GROUP BY state"
        ))
        .output()
        .expect("sqlite3");
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// init, one change, `check`: the exit code and how long the check took.
fn one_change(t: &TempTree, env: &[(&str, &str)]) -> (Run, Duration) {
    let run = |args: &[&str]| {
        let mut c = t.cmd();
        for (k, v) in env {
            c.env(k, v);
        }
        Run::from(c.args(args).output().expect("run fimd"))
    };
    t.write("a.conf", "1\n");
    let r = run(&["init"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    t.write("a.conf", "2\n");
    let started = Instant::now();
    let r = run(&["check"]);
    (r, started.elapsed())
}

/// `notify-test`'s line for `sink`.
fn notify_test(t: &TempTree, env: &[(&str, &str)], sink: &str) -> Run {
    let mut c = t.cmd();
    for (k, v) in env {
        c.env(k, v);
    }
    let r = Run::from(c.arg("notify-test").output().expect("notify-test"));
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with(&format!("{sink}: "))),
        "{} {}",
        r.stdout,
        r.stderr
    );
    r
}

/// No secret in anything fimd wrote (database, logs) or printed.
fn assert_no_secret(t: &TempTree, outputs: &[&Run], secret: &str) {
    assert!(
        !contains(&all_bytes_under(t.dir.path()), secret),
        "{secret} in a file"
    );
    for r in outputs {
        assert!(
            !r.stdout.contains(secret) && !r.stderr.contains(secret),
            "{secret} printed: {} {}",
            r.stdout,
            r.stderr
        );
    }
}

fn pg_tls_config(s: &Tls, db: &str, user: &str, ca: &str, extra: &str) -> String {
    format!(
        "[notify]\nbatch_window = \"1s\"\nbackoff_initial = \"100ms\"\nbackoff_max = \"1s\"\n\
         [notify.postgres]\nurl = \"postgres://{user}@localhost:{}/{db}\"\nssl_mode = \"verify-full\"\n\
         ssl_root_cert = \"{}\"\n{extra}",
        s.pg_port,
        s.file(ca)
    )
}

#[test]
fn postgres_verify_full_with_the_right_ca_delivers_and_a_wrong_ca_is_one_clear_line() {
    let Some(s) = servers() else { return };
    let rt = rt();
    let admin = rt.block_on(s.pg_admin("postgres"));
    let db = rt.block_on(fresh_db(&admin, "fleet_tls_ca"));
    let env = [("FIMD_T_PGPW", PG_MARKER_PW)];
    let password = "password = \"${env:FIMD_T_PGPW}\"\n";

    let t = s.tree(
        "testhost",
        &pg_tls_config(&s, "fleet_tls_ca", "testhost", "ca.crt", password),
    );
    let (r, _) = one_change(&t, &env);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(outbox(&t, "postgres"), "delivered 1", "{}", r.stderr);
    let rows: i64 = rt
        .block_on(
            sqlx::query_scalar("SELECT count(*) FROM fim_event WHERE host = 'testhost'")
                .fetch_one(&db),
        )
        .expect("count");
    assert_eq!(rows, 1);
    let ok = notify_test(&t, &env, "postgres");
    assert!(ok.stdout.contains("postgres: OK"), "{}", ok.stdout);
    assert_no_secret(&t, &[&r, &ok], PG_MARKER_PW);

    // The same server checked against another CA: refused at once, one line naming the sink
    // and the server, kept for the next try.
    let t = s.tree(
        "testhost",
        &pg_tls_config(&s, "fleet_tls_ca", "testhost", "other-ca.crt", password),
    );
    let (r, took) = one_change(&t, &env);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(took < QUICK, "took {took:?}");
    let states = outbox(&t, "postgres");
    assert!(
        states.contains("certificate") && states.contains("localhost:"),
        "{states}"
    );
    assert!(!states.contains('\n'), "one line: {states}");
    let bad = notify_test(&t, &env, "postgres");
    assert_eq!(bad.code, 18, "{}", bad.stderr);
    let line = bad
        .stdout
        .lines()
        .find(|l| l.starts_with("postgres: FAILED"))
        .unwrap_or_else(|| panic!("{}", bad.stdout));
    assert!(
        line.contains("postgres://localhost:") && line.contains("certificate"),
        "{line}"
    );
    assert!(!line.contains(" at line "), "{line}");
    assert_no_secret(&t, &[&r, &bad], PG_MARKER_PW);
}

#[test]
fn postgres_client_certificate_role_delivers_without_a_password() {
    let Some(s) = servers() else { return };
    let rt = rt();
    let admin = rt.block_on(s.pg_admin("postgres"));
    let db = rt.block_on(fresh_db(&admin, "fleet_tls_cert"));
    let cert = format!(
        "ssl_client_cert = \"{}\"\nssl_client_key = \"{}\"\n",
        s.file("client.crt"),
        s.file("client.key")
    );
    let t = s.tree(
        "tlscert",
        &pg_tls_config(&s, "fleet_tls_cert", "tlscert", "ca.crt", &cert),
    );
    let (r, _) = one_change(&t, &[]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(outbox(&t, "postgres"), "delivered 1", "{}", r.stderr);
    let hosts: Vec<String> = rt
        .block_on(sqlx::query_scalar("SELECT host FROM fim_event").fetch_all(&db))
        .expect("rows");
    assert_eq!(hosts, ["tlscert"]);

    // Without the certificate the server refuses the login (pg_hba `cert`): parked with the
    // server's reason, at once.
    let t = s.tree(
        "tlscert",
        &pg_tls_config(&s, "fleet_tls_cert", "tlscert", "ca.crt", ""),
    );
    let (r, took) = one_change(&t, &[]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(took < QUICK, "took {took:?}");
    let states = outbox(&t, "postgres");
    assert!(
        states.starts_with("parked 1") && states.contains("certificate"),
        "{states}"
    );
}

fn nats_tls_config(url: &str, stream: &str, tls: &str, auth: &str) -> String {
    format!(
        "[notify]\nbatch_window = \"1s\"\nbackoff_initial = \"100ms\"\nbackoff_max = \"1s\"\n\
         [notify.nats]\nurl = \"{url}\"\nsubject_prefix = \"t.{stream}\"\n{tls}{auth}"
    )
}

async fn fresh_stream(js: &async_nats::jetstream::Context, name: &str) {
    let _ = js.delete_stream(name).await;
    js.create_stream(async_nats::jetstream::stream::Config {
        name: name.to_string(),
        subjects: vec![format!("t.{name}.>")],
        ..Default::default()
    })
    .await
    .expect("create stream");
}

async fn stream_count(js: &async_nats::jetstream::Context, name: &str) -> u64 {
    let mut stream = js.get_stream(name).await.expect("stream");
    stream.info().await.expect("info").state.messages
}

#[test]
fn nats_tls_with_a_ca_by_password_and_by_nkey_seed_and_the_wrong_ones_refused() {
    let Some(s) = servers() else { return };
    let rt = rt();
    let js = rt.block_on(s.nats_admin(&s.nats_tls, false));
    let ca = format!("tls_ca = \"{}\"\n", s.file("ca.crt"));
    let env = [("FIMD_T_NATSPW", NATS_MARKER_PW)];
    let password = "user = \"testhost\"\npassword = \"${env:FIMD_T_NATSPW}\"\n";

    // TLS verified against the CA, user and password.
    rt.block_on(fresh_stream(&js, "tlspw"));
    let t = s.tree(
        "testhost",
        &nats_tls_config(&s.nats_tls, "tlspw", &ca, password),
    );
    let (r, _) = one_change(&t, &env);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(outbox(&t, "nats"), "delivered 1", "{}", r.stderr);
    assert_eq!(
        rt.block_on(stream_count(&js, "tlspw")),
        2,
        "event + heartbeat"
    );
    assert_no_secret(&t, &[&r], NATS_MARKER_PW);

    // The nkey seed, from a file reference.
    rt.block_on(fresh_stream(&js, "tlsnkey"));
    let nkey = format!("nkey = \"${{file:{}}}\"\n", s.file("host.seed"));
    let t = s.tree(
        "testhost",
        &nats_tls_config(&s.nats_tls, "tlsnkey", &ca, &nkey),
    );
    let (r, _) = one_change(&t, &[]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(outbox(&t, "nats"), "delivered 1", "{}", r.stderr);
    let seed = std::fs::read_to_string(s.dir.join("host.seed")).expect("seed");
    assert_no_secret(&t, &[&r], seed.trim());

    // A seed the server does not know: refused at once, parked with a clear reason.
    let nkey = format!("nkey = \"${{file:{}}}\"\n", s.file("stranger.seed"));
    let t = s.tree(
        "testhost",
        &nats_tls_config(&s.nats_tls, "tlsnkey", &ca, &nkey),
    );
    let (r, took) = one_change(&t, &[]);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(took < QUICK, "took {took:?}");
    let states = outbox(&t, "nats");
    assert!(
        states.starts_with("parked 1") && states.contains("refused the credentials"),
        "{states}"
    );
    let seed = std::fs::read_to_string(s.dir.join("stranger.seed")).expect("seed");
    assert_no_secret(&t, &[&r], seed.trim());

    // The server's certificate checked against another CA: one clear line, not a timeout.
    let other = format!("tls_ca = \"{}\"\n", s.file("other-ca.crt"));
    let t = s.tree(
        "testhost",
        &nats_tls_config(&s.nats_tls, "tlspw", &other, password),
    );
    let (r, took) = one_change(&t, &env);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(took < QUICK, "took {took:?}");
    let states = outbox(&t, "nats");
    assert!(
        states.starts_with("parked 1")
            && states.contains("certificate")
            && states.contains("tls://localhost:"),
        "{states}"
    );
    let bad = notify_test(&t, &env, "nats");
    assert_eq!(bad.code, 18, "{}", bad.stdout);
    assert_no_secret(&t, &[&r, &bad], NATS_MARKER_PW);
    assert_eq!(rt.block_on(stream_count(&js, "tlspw")), 2);
}

#[test]
fn nats_mtls_with_a_token_and_without_the_client_certificate_or_token_refused() {
    let Some(s) = servers() else { return };
    let rt = rt();
    let js = rt.block_on(s.nats_admin(&s.nats_mtls, true));
    rt.block_on(fresh_stream(&js, "mtls"));
    let env = [("FIMD_T_TOKEN", s.nats_token.as_str())];
    let token = "token = \"${env:FIMD_T_TOKEN}\"\n";
    let mtls = format!(
        "tls_ca = \"{}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n",
        s.file("ca.crt"),
        s.file("client.crt"),
        s.file("client.key")
    );

    let t = s.tree(
        "testhost",
        &nats_tls_config(&s.nats_mtls, "mtls", &mtls, token),
    );
    let (r, _) = one_change(&t, &env);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert_eq!(outbox(&t, "nats"), "delivered 1", "{}", r.stderr);
    assert_eq!(
        rt.block_on(stream_count(&js, "mtls")),
        2,
        "event + heartbeat"
    );
    assert_no_secret(&t, &[&r], &s.nats_token);

    // A wrong token: refused at once.
    let env_bad = [("FIMD_T_TOKEN", "WRONG-TOKEN-MARKER")];
    let t = s.tree(
        "testhost",
        &nats_tls_config(&s.nats_mtls, "mtls", &mtls, token),
    );
    let (r, took) = one_change(&t, &env_bad);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(took < QUICK, "took {took:?}");
    let states = outbox(&t, "nats");
    assert!(
        states.starts_with("parked 1") && states.contains("refused the credentials"),
        "{states}"
    );
    assert_no_secret(&t, &[&r], "WRONG-TOKEN-MARKER");

    // No client certificate: the server ends the TLS handshake; a clear line, not a timeout.
    let ca = format!("tls_ca = \"{}\"\n", s.file("ca.crt"));
    let t = s.tree(
        "testhost",
        &nats_tls_config(&s.nats_mtls, "mtls", &ca, token),
    );
    let (r, took) = one_change(&t, &env);
    assert_eq!(r.code, 4, "{}", r.stderr);
    assert!(took < QUICK, "took {took:?}");
    let states = outbox(&t, "nats");
    assert!(
        states.contains("tls://localhost:") && !states.to_lowercase().contains("timed out"),
        "{states}"
    );
    assert_no_secret(&t, &[&r], &s.nats_token);
    assert_eq!(rt.block_on(stream_count(&js, "mtls")), 2);
}

/// The plain server's superuser pool on `db`.
async fn pg_plain_admin(s: &Tls, db: &str) -> PgPool {
    let base = s
        .pg_plain
        .rsplit_once('/')
        .map(|(b, _)| b)
        .unwrap_or_default();
    PgPoolOptions::new()
        .max_connections(2)
        .connect(&format!("{base}/{db}"))
        .await
        .expect("admin connection")
}

fn sqlite(t: &TempTree, sql: &str) {
    let st = std::process::Command::new("sqlite3")
        .arg(&t.db)
        .arg(sql)
        .status()
        .expect("sqlite3");
    assert!(st.success(), "{sql}");
}

#[test]
fn a_host_whose_local_history_is_rewritten_is_flagged_by_the_fleet() {
    let Some(s) = servers() else { return };
    let rt = rt();
    let admin = rt.block_on(pg_plain_admin(&s, "postgres"));
    let db = rt.block_on(fresh_db(&admin, "fleet_chain"));
    let hostport = s
        .pg_plain
        .split('@')
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_default()
        .to_string();
    let cfg = format!(
        "[store]\nhmac_key = \"${{env:FIMD_T_KEY}}\"\n\
         [notify.postgres]\nurl = \"postgres://testhost@{hostport}/fleet_chain\"\npassword = \"${{env:FIMD_T_PGPW}}\"\n"
    );
    let t = s.tree("testhost", &cfg);
    let run = |args: &[&str]| {
        Run::from(
            t.cmd()
                .env("FIMD_T_PGPW", PG_MARKER_PW)
                .env("FIMD_T_KEY", "chain-key-MARKER-0123456789abcdef")
                .args(args)
                .output()
                .expect("run"),
        )
    };
    let reader = format!("postgres://alice:pw-alice@{hostport}/fleet_chain");
    let fleet = |args: &[&str]| {
        let r = Run::from(
            fimd()
                .arg("fleet")
                .args(args)
                .args(["--url", &reader])
                .output()
                .expect("fimd fleet"),
        );
        assert_eq!(r.code, 0, "fleet {args:?}: {}", r.stderr);
        r
    };
    let breaks = || {
        fleet(&["gaps", "--json"])
            .json_lines()
            .into_iter()
            .filter(|g| g.get("before_instance").is_some())
            .map(|g| g["kind"].as_str().unwrap_or_default().to_string())
            .collect::<Vec<_>>()
    };

    t.write("a.conf", "1\n");
    assert_eq!(run(&["init"]).code, 0);
    for v in ["2\n", "3\n"] {
        t.write("a.conf", v);
        assert_eq!(run(&["check"]).code, 4);
    }
    // Heartbeats from an honest history (and one more with nothing new): no break.
    assert_eq!(run(&["check"]).code, 0);
    let heads: i64 = rt
        .block_on(
            sqlx::query_scalar(
                "SELECT count(DISTINCT chain_head_mac) FROM fim_heartbeat WHERE chain_head_uid LIKE '%:2'",
            )
            .fetch_one(&db),
        )
        .expect("heads");
    assert_eq!(heads, 1, "the head of event 2 was reported");
    assert_eq!(breaks(), Vec::<String>::new());

    // The newest event deleted on the host (and its id made free again): the head goes back.
    sqlite(
        &t,
        "DELETE FROM outbox WHERE event_id = 2; DELETE FROM events WHERE id = 2; \
         UPDATE sqlite_sequence SET seq = 1 WHERE name = 'events';",
    );
    assert_eq!(run(&["check"]).code, 0);
    assert_eq!(breaks(), ["rewound"]);

    // A new event takes the freed id: the same uid is now reported with another MAC. (The
    // fleet keeps the first event 2: rows are never replaced.)
    t.write("a.conf", "forged\n");
    assert_eq!(run(&["check"]).code, 4);
    assert_eq!(breaks(), ["rewound", "rewritten"]);

    // A rebuilt database is another instance.
    assert_eq!(run(&["init", "--force"]).code, 0);
    t.write("a.conf", "after\n");
    assert_eq!(run(&["check"]).code, 4);
    assert_eq!(breaks(), ["rewound", "rewritten", "restarted"]);

    // The MACs removed from the database: the host stops reporting a head.
    sqlite(&t, "UPDATE events SET mac = NULL;");
    assert_eq!(run(&["check"]).code, 0);
    assert_eq!(breaks(), ["rewound", "rewritten", "restarted", "unsigned"]);

    let text = fleet(&["gaps"]);
    assert!(
        text.stdout.contains("testhost") && text.stdout.contains("history rewritten"),
        "{}",
        text.stdout
    );
    let hosts = fleet(&["hosts", "--json"]).json_lines();
    let problems = hosts[0]["problems"].to_string();
    for p in [
        "chain-rewound",
        "chain-rewritten",
        "chain-restarted",
        "chain-unsigned",
    ] {
        assert!(problems.contains(p), "{problems}");
    }
    assert_no_secret(&t, &[], PG_MARKER_PW);
    assert_no_secret(&t, &[], "chain-key-MARKER");
}

#[test]
fn postgres_errors_are_one_line_naming_the_server_without_its_source_line() {
    let Some(s) = servers() else { return };
    let rt = rt();
    let admin = rt.block_on(pg_plain_admin(&s, "postgres"));
    let _db = rt.block_on(fresh_db(&admin, "fleet_errors"));
    let hostport = s
        .pg_plain
        .split('@')
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or_default()
        .to_string();

    // The reader with a wrong password: exit 18, one line, the server named, no password.
    let r = Run::from(
        fimd()
            .args(["fleet", "hosts", "--url"])
            .arg(format!(
                "postgres://alice:WRONG-PW-MARKER@{hostport}/fleet_errors"
            ))
            .output()
            .expect("fimd fleet"),
    );
    assert_eq!(r.code, 18, "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(
        r.stderr.contains(&hostport)
            && r.stderr.contains("password authentication failed")
            && !r.stderr.contains(" at line ")
            && !r.stderr.contains("WRONG-PW-MARKER"),
        "{}",
        r.stderr
    );

    // The sink with a wrong password: notify-test's line and the parked row say the same.
    let cfg = format!(
        "[notify.postgres]\nurl = \"postgres://testhost@{hostport}/fleet_errors\"\npassword = \"${{env:FIMD_T_PGPW}}\"\n"
    );
    let t = s.tree("testhost", &cfg);
    let env = [("FIMD_T_PGPW", "WRONG-PW-MARKER")];
    let bad = notify_test(&t, &env, "postgres");
    let line = bad
        .stdout
        .lines()
        .find(|l| l.starts_with("postgres: FAILED"))
        .unwrap_or_else(|| panic!("{}", bad.stdout));
    assert!(
        line.contains(&format!("postgres://{hostport}/fleet_errors"))
            && line.contains("password authentication failed")
            && line.contains("SQLSTATE 28P01")
            && !line.contains(" at line "),
        "{line}"
    );
    let (r, _) = one_change(&t, &env);
    assert_eq!(r.code, 4, "{}", r.stderr);
    let states = outbox(&t, "postgres");
    assert!(
        states.starts_with("parked 1") && !states.contains(" at line "),
        "{states}"
    );
    assert_no_secret(&t, &[&r, &bad], "WRONG-PW-MARKER");
}
