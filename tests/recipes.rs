//! `orch plan new`: each recipe generates a plan against a live table of
//! 50,000 rows, the plan passes `orch check`, and walking it with
//! `orch advance`/`orch confirm` while writers keep writing (as the old
//! application until the deploy gate opens, then as the new one) fails no
//! write, loses no row, and leaves the schema as intended. Also what the
//! recipes refuse, by name, and that nothing is ever overwritten.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{Session, wait_until};

const ROWS: i64 = 50_000;

/// What the writers saw.
#[derive(Debug, Default, Clone)]
struct Stats {
    ok: u64,
    failed: u64,
    first_error: Option<String>,
    /// Rows the writers' INSERTs added.
    inserted: u64,
    /// Rows the writers' UPDATEs changed.
    updated: u64,
    /// Writes made as the new application version.
    new_ok: u64,
    longest: Duration,
}

/// Writers on their own connections. `app(new, n)` is the n-th statement a
/// writer sends, as the old application (`new == false`) or the new one.
struct Traffic {
    stop: Arc<AtomicBool>,
    new_app: Arc<AtomicBool>,
    stats: Arc<Mutex<Stats>>,
    writers: Vec<std::thread::JoinHandle<()>>,
}

type App = Arc<dyn Fn(bool, u64) -> String + Send + Sync>;

impl Traffic {
    fn start(s: &Session, writers: usize, app: App) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let new_app = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(Mutex::new(Stats::default()));
        let writers = (0..writers)
            .map(|w| {
                let (stop, new_app, stats, app) =
                    (stop.clone(), new_app.clone(), stats.clone(), app.clone());
                let settings = s.db.settings.clone();
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    runtime.block_on(async move {
                        let client = settings.connect("test app writer").await.unwrap();
                        let mut n = w as u64 * 1_000_000_000;
                        while !stop.load(Ordering::SeqCst) {
                            n += 1;
                            let new = new_app.load(Ordering::SeqCst);
                            let sql = app(new, n);
                            let started = Instant::now();
                            let result = client.execute(sql.as_str(), &[]).await;
                            let took = started.elapsed();
                            {
                                let mut st = stats.lock().unwrap();
                                st.longest = st.longest.max(took);
                                match result {
                                    Ok(rows) => {
                                        st.ok += 1;
                                        if new {
                                            st.new_ok += 1;
                                        }
                                        if sql.starts_with("INSERT") {
                                            st.inserted += rows;
                                        }
                                        if sql.starts_with("UPDATE") {
                                            st.updated += rows;
                                        }
                                    }
                                    Err(e) => {
                                        st.failed += 1;
                                        st.first_error
                                            .get_or_insert_with(|| format!("{sql}: {e:?}"));
                                    }
                                }
                            }
                            tokio::time::sleep(Duration::from_millis(3)).await;
                        }
                    })
                })
            })
            .collect();
        let traffic = Traffic {
            stop,
            new_app,
            stats,
            writers,
        };
        // The old version has been writing for a while when the plan starts.
        assert!(
            wait_until(Duration::from_secs(60), || traffic.stats().ok >= 200),
            "the writers did not start: {:?}",
            traffic.stats()
        );
        traffic
    }

    fn stats(&self) -> Stats {
        self.stats.lock().unwrap().clone()
    }

    /// The new version is deployed: every writer writes as it from now on.
    /// Returns once some writes of the new version went through.
    fn deploy_new_app(&self) {
        self.new_app.store(true, Ordering::SeqCst);
        let start = self.stats().new_ok;
        assert!(
            wait_until(Duration::from_secs(60), || self.stats().new_ok
                >= start + 40),
            "the new version's writes did not go through: {:?}",
            self.stats()
        );
    }

    fn stop(self) -> Stats {
        self.stop.store(true, Ordering::SeqCst);
        for writer in self.writers {
            writer.join().unwrap();
        }
        self.stats.lock().unwrap().clone()
    }
}

/// A project with `schema` applied and `fill` run (the 50,000 rows).
fn project(schema: &str, fill: &str) -> Session {
    let s = Session::new();
    s.migration(
        "20240101000000_schema.sql",
        &format!("-- migrate:up\n{schema}\n\n-- migrate:down\n"),
    );
    s.orch(&["migrate", "up"]).success();
    s.execute(fill);
    s.execute("ANALYZE");
    s
}

/// `orch plan new ARGS` against the database, which must succeed and say
/// what it wrote and what to run next; then `orch check` must find
/// nothing, online too (no warning either). Returns the plan's phases
/// (id, kind).
fn generate(s: &Session, plan: &str, args: &[&str]) -> Vec<(String, String)> {
    let mut all = vec!["plan", "new"];
    all.extend_from_slice(args);
    let run = s.orch(&all);
    run.success()
        .stdout_has(&format!("wrote plans/{plan}.yaml"))
        .stdout_has(&format!(
            "next: review the files, then `orch check {plan}` and `orch advance {plan}`"
        ))
        .stdout_lacks("no database configured");
    let check = s.orch(&["check"]);
    check.success();
    for line in check.stdout.lines() {
        assert!(
            line.starts_with("ok: ") || line.starts_with("note: the tables and keys of backfill"),
            "orch check reported: {line}\n{check:?}"
        );
    }
    let online = s.orch(&["check", "--online", plan]);
    online.success();
    online.stdout_lacks("warning");
    let text = std::fs::read_to_string(s.path(&format!("plans/{plan}.yaml"))).unwrap();
    let yaml: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    yaml["phases"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Advance and confirm every phase in order; at a deploy gate, the new
/// version is deployed between the gate opening and its confirmation.
/// `before(id)` runs before each phase is advanced.
fn walk(
    s: &Session,
    plan: &str,
    phases: &[(String, String)],
    traffic: &Traffic,
    mut before: impl FnMut(&str),
) {
    for (id, kind) in phases {
        before(id);
        s.orch(&["advance", plan]).success();
        if kind == "deploy" {
            traffic.deploy_new_app();
        }
        s.orch(&["confirm", plan, id, "--by", "tester"]).success();
    }
    s.orch(&["status", plan]).success();
    assert_eq!(
        s.value(&format!(
            "SELECT count(*) FROM orch.phases WHERE plan = '{plan}' AND state <> 'confirmed'"
        ))
        .as_deref(),
        Some("0"),
        "every phase of {plan} is confirmed"
    );
}

/// No failed write, every row there; prints the longest write.
fn assert_no_write_lost(s: &Session, recipe: &str, table: &str, stats: &Stats) {
    assert_eq!(stats.failed, 0, "{recipe}: {stats:?}");
    assert!(
        stats.new_ok > 0 && stats.ok > stats.new_ok,
        "{recipe}: {stats:?}"
    );
    assert_eq!(
        s.value(&format!("SELECT count(*) FROM {table}")),
        Some((ROWS as u64 + stats.inserted).to_string()),
        "{recipe}: rows lost ({stats:?})"
    );
    eprintln!(
        "{recipe}: {} writes ({} as the new version), none failed; longest write {:.1} ms",
        stats.ok,
        stats.new_ok,
        stats.longest.as_secs_f64() * 1000.0
    );
}

fn value(s: &Session, sql: &str) -> String {
    s.value(sql).unwrap_or_default()
}

#[test]
fn set_not_null_under_writers() {
    let s = project(
        "CREATE TABLE items (id bigserial PRIMARY KEY, title text NOT NULL, note text, created_at timestamptz NOT NULL DEFAULT now());",
        &format!(
            "INSERT INTO items (title, note) SELECT 't' || g, CASE WHEN g % 10 = 0 THEN NULL ELSE 'n' END FROM generate_series(1, {ROWS}) AS g"
        ),
    );
    let phases = generate(
        &s,
        "items-note",
        &[
            "set-not-null",
            "items-note",
            "--table",
            "items",
            "--column",
            "note",
            "--fill",
            "'(none)'",
        ],
    );
    let ids: Vec<&str> = phases.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "deploy-writes-note",
            "fill-note",
            "add-note-check",
            "validate-note-check",
            "set-note-not-null"
        ]
    );
    // The old version sometimes writes no note; the new one always does.
    // The title says who inserted the row ('o' old, 'v' new) and n; an
    // update writes 'u' || id.
    let traffic = Traffic::start(
        &s,
        2,
        Arc::new(|new, n| match (n % 2, new) {
            (0, false) => format!(
                "INSERT INTO items (title, note) VALUES ('o{n}', {})",
                if n % 3 == 0 { "NULL" } else { "'n'" }
            ),
            (0, true) => format!("INSERT INTO items (title, note) VALUES ('v{n}', 'new')"),
            _ => {
                let id = n % 40_000 + 1;
                format!("UPDATE items SET title = 'u{id}' WHERE id = {id}")
            }
        }),
    );
    walk(&s, "items-note", &phases, &traffic, |_| {});
    let stats = traffic.stop();
    assert_no_write_lost(&s, "set-not-null", "items", &stats);
    assert_eq!(
        value(
            &s,
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'items'::regclass AND attname = 'note'"
        ),
        "t"
    );
    assert_eq!(
        value(
            &s,
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'items'::regclass AND contype = 'c'"
        ),
        "0",
        "the check is gone"
    );
    // Every value right: the rows loaded with no note, and those the old
    // version wrote without one, were filled; every other note is as written.
    assert_eq!(
        value(
            &s,
            &format!(
                "SELECT count(*) FROM items WHERE NOT coalesce(CASE
                   WHEN id <= {ROWS} THEN title IN ('t' || id, 'u' || id)
                     AND note = CASE WHEN id % 10 = 0 THEN '(none)' ELSE 'n' END
                   WHEN title LIKE 'o%' THEN
                     note = CASE WHEN substr(title, 2)::bigint % 3 = 0 THEN '(none)' ELSE 'n' END
                   ELSE title LIKE 'v%' AND note = 'new' END, false)"
            )
        ),
        "0",
        "a row has a wrong value"
    );
    assert!(
        value(
            &s,
            &format!("SELECT count(*) FROM items WHERE note = '(none)' AND id > {ROWS}")
        ) != "0",
        "the old version's NULLs were filled too"
    );
}

#[test]
fn add_foreign_key_under_writers() {
    let s = project(
        "CREATE TABLE authors (id bigserial PRIMARY KEY, name text);
         CREATE TABLE books (id bigserial PRIMARY KEY, author_id bigint, title text, created_at timestamptz NOT NULL DEFAULT now());",
        &format!(
            "INSERT INTO authors (name) SELECT 'a' || g FROM generate_series(1, 1000) AS g;
             INSERT INTO books (author_id, title) SELECT CASE WHEN g % 50 = 0 THEN NULL ELSE g % 1000 + 1 END, 'b' || g FROM generate_series(1, {ROWS}) AS g"
        ),
    );
    let phases = generate(
        &s,
        "books-author",
        &[
            "add-foreign-key",
            "books-author",
            "--table",
            "books",
            "--column",
            "author_id",
            "--references",
            "authors.id",
        ],
    );
    let ids: Vec<&str> = phases.iter().map(|(id, _)| id.as_str()).collect();
    // books.author_id has no index: the plan builds one first.
    assert_eq!(
        ids,
        [
            "build-author-id-index",
            "deploy-valid-author-id",
            "add-author-id-fkey",
            "validate-author-id-fkey"
        ]
    );
    // The old version sometimes writes an author that does not exist; the
    // new one only existing authors. The title says who inserted the row
    // ('o' old, 'v' new) and n; an update writes 'u' || id.
    let traffic = Traffic::start(
        &s,
        2,
        Arc::new(|new, n| match (n % 2, new) {
            (0, false) if n % 5 == 0 => {
                format!(
                    "INSERT INTO books (author_id, title) VALUES ({}, 'o{n}')",
                    100_000 + n % 7
                )
            }
            (0, _) => format!(
                "INSERT INTO books (author_id, title) VALUES ({}, '{}{n}')",
                n % 1000 + 1,
                if new { 'v' } else { 'o' }
            ),
            _ => {
                let id = n % 40_000 + 1;
                format!("UPDATE books SET title = 'u{id}' WHERE id = {id}")
            }
        }),
    );
    walk(&s, "books-author", &phases, &traffic, |id| {
        if id == "add-author-id-fkey" {
            // The old version's orphans are still there: the guard refuses,
            // touching nothing, until the operator fixes them.
            s.orch(&["advance", "books-author"])
                .code(8)
                .stderr_has("every author_id has its authors row");
            s.execute("UPDATE books SET author_id = NULL WHERE author_id > 1000");
        }
    });
    let stats = traffic.stop();
    assert_no_write_lost(&s, "add-foreign-key", "books", &stats);
    // Every value right: as loaded or written, the old version's orphans
    // set to NULL by the operator and no other author touched.
    assert_eq!(
        value(
            &s,
            &format!(
                "SELECT count(*) FROM books WHERE NOT coalesce(CASE
                   WHEN id <= {ROWS} THEN title IN ('b' || id, 'u' || id)
                     AND author_id IS NOT DISTINCT FROM CASE WHEN id % 50 = 0 THEN NULL ELSE id % 1000 + 1 END
                   WHEN title LIKE 'o%' AND substr(title, 2)::bigint % 5 = 0 THEN author_id IS NULL
                   WHEN title LIKE 'o%' OR title LIKE 'v%' THEN
                     author_id = substr(title, 2)::bigint % 1000 + 1
                   END, false)"
            )
        ),
        "0",
        "a row has a wrong value"
    );
    assert_eq!(
        value(
            &s,
            "SELECT convalidated FROM pg_constraint WHERE conname = 'books_author_id_fkey' AND contype = 'f'"
        ),
        "t"
    );
    assert_eq!(
        value(
            &s,
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'books_author_id_idx'::regclass"
        ),
        "t"
    );
    let refused =
        s.db.connect()
            .try_execute("INSERT INTO books (author_id) VALUES (999999)");
    assert!(refused.is_err(), "the key holds");
}

#[test]
fn add_unique_under_writers() {
    let s = project(
        "CREATE TABLE accounts (id bigserial PRIMARY KEY, email text, visits int NOT NULL DEFAULT 0, created_at timestamptz NOT NULL DEFAULT now());",
        &format!(
            "INSERT INTO accounts (email) SELECT 'user' || g || '@example.com' FROM generate_series(1, {ROWS}) AS g"
        ),
    );
    let phases = generate(
        &s,
        "accounts-email",
        &[
            "add-unique",
            "accounts-email",
            "--table",
            "accounts",
            "--columns",
            "email",
        ],
    );
    let ids: Vec<&str> = phases.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "deploy-no-duplicate-email",
            "build-email-index",
            "add-email-unique"
        ]
    );
    // The old version inserts plainly; the new one upserts.
    let traffic = Traffic::start(
        &s,
        2,
        Arc::new(|new, n| match (n % 2, new) {
            (0, false) => format!("INSERT INTO accounts (email) VALUES ('o{n}@example.com')"),
            (0, true) => format!(
                "INSERT INTO accounts (email) VALUES ('v{n}@example.com') ON CONFLICT DO NOTHING"
            ),
            _ => format!(
                "UPDATE accounts SET visits = visits + 1 WHERE id = {}",
                n % 40_000 + 1
            ),
        }),
    );
    walk(&s, "accounts-email", &phases, &traffic, |_| {});
    let stats = traffic.stop();
    assert_no_write_lost(&s, "add-unique", "accounts", &stats);
    // Every value right: the emails as loaded or written, and every
    // increment counted once.
    assert_eq!(
        value(
            &s,
            &format!(
                "SELECT count(*) FROM accounts WHERE NOT coalesce(CASE
                   WHEN id <= {ROWS} THEN email = 'user' || id || '@example.com'
                   ELSE email ~ '^[ov][0-9]+@example[.]com$' AND visits = 0 END, false)"
            )
        ),
        "0",
        "a row has a wrong value"
    );
    assert_eq!(
        value(&s, "SELECT sum(visits) FROM accounts"),
        stats.updated.to_string(),
        "every update counted once"
    );
    assert_eq!(
        value(
            &s,
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'accounts_email_key' AND contype = 'u'"
        ),
        "UNIQUE (email)"
    );
    assert_eq!(
        value(
            &s,
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'accounts_email_key'::regclass"
        ),
        "t"
    );
}

#[test]
fn drop_column_under_writers() {
    let s = project(
        "CREATE TABLE events (id bigserial PRIMARY KEY, payload text, legacy text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
         CREATE INDEX events_legacy_idx ON events (legacy);",
        &format!("INSERT INTO events (payload, legacy) SELECT 'p' || g, 'l' || g FROM generate_series(1, {ROWS}) AS g"),
    );
    let phases = generate(
        &s,
        "drop-legacy",
        &[
            "drop-column",
            "drop-legacy",
            "--table",
            "events",
            "--column",
            "legacy",
        ],
    );
    let ids: Vec<&str> = phases.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        ids,
        ["relax-legacy", "deploy-without-legacy", "drop-legacy"]
    );
    let text = std::fs::read_to_string(s.path("plans/drop-legacy.yaml")).unwrap();
    let words: Vec<&str> = text.split_whitespace().collect();
    assert!(
        words
            .join(" ")
            .contains("It also drops index events_legacy_idx."),
        "{text}"
    );
    // The old version writes legacy; the new one never mentions it.
    let traffic = Traffic::start(
        &s,
        2,
        Arc::new(|new, n| match (n % 2, new) {
            (0, false) => format!("INSERT INTO events (payload, legacy) VALUES ('w{n}', 'l{n}')"),
            (0, true) => format!("INSERT INTO events (payload) VALUES ('w{n}')"),
            (_, false) => {
                let id = n % 40_000 + 1;
                format!("UPDATE events SET payload = 'u{id}', legacy = 'u' WHERE id = {id}")
            }
            (_, true) => {
                let id = n % 40_000 + 1;
                format!("UPDATE events SET payload = 'u{id}' WHERE id = {id}")
            }
        }),
    );
    walk(&s, "drop-legacy", &phases, &traffic, |_| {});
    let stats = traffic.stop();
    assert_no_write_lost(&s, "drop-column", "events", &stats);
    // Every value right: each payload as loaded, updated ('u' || id) or
    // inserted ('w' || n, each n once).
    assert_eq!(
        value(
            &s,
            &format!(
                "SELECT count(*) FROM events WHERE NOT coalesce(CASE
                   WHEN id <= {ROWS} THEN payload IN ('p' || id, 'u' || id)
                   ELSE payload ~ '^w[0-9]+$' END, false)"
            )
        ),
        "0",
        "a row has a wrong value"
    );
    assert_eq!(
        value(
            &s,
            "SELECT count(DISTINCT payload) FROM events WHERE payload LIKE 'w%'"
        ),
        stats.inserted.to_string()
    );
    assert_eq!(s.columns("events"), ["id", "payload", "created_at"]);
    assert_eq!(
        value(&s, "SELECT to_regclass('events_legacy_idx') IS NULL"),
        "t"
    );
    // Irreversible: a rollback without --force is refused.
    s.orch(&["rollback", "drop-legacy", "drop-legacy"]).code(4);
}

#[test]
fn plan_new_never_overwrites_a_plan() {
    let s = project(
        "CREATE TABLE items (id bigserial PRIMARY KEY, note text, created_at timestamptz NOT NULL DEFAULT now());",
        "SELECT 1",
    );
    s.plan("items-note.yaml", "keep me\n");
    let args = [
        "plan",
        "new",
        "set-not-null",
        "items-note",
        "--table",
        "items",
        "--column",
        "note",
    ];
    s.orch(&args)
        .code(4)
        .stderr_has("plans/items-note.yaml exists already: orch plan new never overwrites a plan");
    assert_eq!(
        std::fs::read_to_string(s.path("plans/items-note.yaml")).unwrap(),
        "keep me\n"
    );
    assert_eq!(
        std::fs::read_dir(s.path("migrations")).unwrap().count(),
        1,
        "no migration written"
    );
    // A second run of the same command after a first one refuses too.
    s.orch(&[
        "plan",
        "new",
        "set-not-null",
        "other",
        "--table",
        "items",
        "--column",
        "note",
    ])
    .success();
    let before = std::fs::read_to_string(s.path("plans/other.yaml")).unwrap();
    s.orch(&[
        "plan",
        "new",
        "set-not-null",
        "other",
        "--table",
        "items",
        "--column",
        "note",
    ])
    .code(4)
    .stderr_has("exists already");
    assert_eq!(
        std::fs::read_to_string(s.path("plans/other.yaml")).unwrap(),
        before
    );
    assert_eq!(std::fs::read_dir(s.path("migrations")).unwrap().count(), 4);
    // A migration of a name the plan would use stops it before any file.
    s.migration(
        "20240102000000_third_add_note_check.sql",
        "-- migrate:up\nSELECT 1;\n",
    );
    s.orch(&[
        "plan",
        "new",
        "set-not-null",
        "third",
        "--table",
        "items",
        "--column",
        "note",
    ])
    .code(4)
    .stderr_has("a migration named third_add_note_check exists already");
    assert!(!s.path("plans/third.yaml").exists());
    assert_eq!(std::fs::read_dir(s.path("migrations")).unwrap().count(), 5);
    // Regression: a started plan whose files were deleted still has its
    // records in orch's state; a new plan of its name would be taken for it.
    std::fs::remove_file(s.path("plans/items-note.yaml")).unwrap();
    s.orch(&["advance", "other"]).success();
    std::fs::remove_file(s.path("plans/other.yaml")).unwrap();
    for entry in std::fs::read_dir(s.path("migrations")).unwrap() {
        let path = entry.unwrap().path();
        if path.to_string_lossy().contains("_other_") {
            std::fs::remove_file(path).unwrap();
        }
    }
    s.orch(&[
        "plan",
        "new",
        "set-not-null",
        "other",
        "--table",
        "items",
        "--column",
        "note",
    ])
    .code(4)
    .stderr_has("plan other has records in orch's state already (orch.plans: started ")
    .stderr_has("although its file is gone")
    .stderr_has("choose another NAME; or, if plans/other.yaml should still be there, restore it");
    assert!(!s.path("plans/other.yaml").exists());
    assert_eq!(std::fs::read_dir(s.path("migrations")).unwrap().count(), 2);
}

#[test]
fn refusals_name_what_is_in_the_way() {
    let s = project(
        "CREATE TABLE authors (id bigserial PRIMARY KEY, code text);
         CREATE TABLE events (id bigserial PRIMARY KEY, kind text, legacy text, at timestamptz NOT NULL DEFAULT now());
         CREATE INDEX events_kind_legacy_idx ON events (kind, legacy);
         CREATE VIEW legacy_report AS SELECT id, legacy FROM events;
         CREATE TABLE logs (message text, note text, created_at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE tags (id bigserial PRIMARY KEY, code text UNIQUE, created_at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE tag_uses (id bigserial PRIMARY KEY, code text REFERENCES tags (code), created_at timestamptz NOT NULL DEFAULT now());",
        "INSERT INTO authors (code) VALUES ('a'), ('a'), ('b'), ('b'), ('c');
         INSERT INTO events (kind, legacy) VALUES ('k', 'l');
         INSERT INTO logs (message) VALUES ('m');",
    );
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "drop-column",
                "p",
                "--table",
                "events",
                "--column",
                "legacy",
            ],
            "events.legacy is used by index events_kind_legacy_idx (CREATE INDEX events_kind_legacy_idx ON public.events USING btree (kind, legacy)), view legacy_report",
        ),
        (
            &["add-unique", "p", "--table", "authors", "--columns", "code"],
            "add-unique: 2 value(s) of code occur in more than one row of authors (e.g. a)",
        ),
        (
            &[
                "add-foreign-key",
                "p",
                "--table",
                "events",
                "--column",
                "kind",
                "--references",
                "authors.code",
            ],
            "add-foreign-key: authors.code has no unique index or constraint",
        ),
        (
            &["set-not-null", "p", "--table", "events", "--column", "at"],
            "set-not-null: column events.at is NOT NULL already",
        ),
        (
            &["drop-column", "p", "--table", "tags", "--column", "code"],
            "tags.code is used by foreign key tag_uses_code_fkey of tag_uses (FOREIGN KEY (code) REFERENCES tags(code))",
        ),
        (
            &[
                "add-foreign-key",
                "p",
                "--table",
                "tag_uses",
                "--column",
                "code",
                "--references",
                "tags.code",
            ],
            "add-foreign-key: tag_uses already has the foreign key tag_uses_code_fkey",
        ),
        // A table without a key: the backfill that fills the NULLs needs one.
        (
            &[
                "set-not-null",
                "p",
                "--table",
                "logs",
                "--column",
                "note",
                "--fill",
                "''",
            ],
            "set-not-null: table logs has no primary key and no unique index over NOT NULL columns",
        ),
        (
            &["set-not-null", "p", "--table", "logs", "--column", "note"],
            "set-not-null: 1 row(s) of logs have note NULL",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["plan", "new"];
        all.extend_from_slice(args);
        s.orch(&all).code(4).stderr_has(expected);
    }
    s.orch(&[
        "plan",
        "new",
        "drop-column",
        "p",
        "--table",
        "events",
        "--column",
        "nope",
    ])
    .code(2)
    .stderr_has("--column nope: table events has no column nope");
    s.execute("CREATE TABLE bare (message text, legacy text)");
    s.orch(&[
        "plan",
        "new",
        "drop-column",
        "p",
        "--table",
        "bare",
        "--column",
        "legacy",
    ])
    .code(4)
    .stderr_has("table bare has no column stamped with the insert time")
    .stderr_has("--created-at COLUMN");
    assert_eq!(
        std::fs::read_dir(s.path("plans")).unwrap().count(),
        0,
        "nothing written"
    );
    assert_eq!(std::fs::read_dir(s.path("migrations")).unwrap().count(), 1);
}

/// Regression: a partitioned table was accepted, and its plan failed at
/// CREATE INDEX CONCURRENTLY / NOT VALID, which PostgreSQL rejects there.
#[test]
fn every_recipe_refuses_a_partitioned_table() {
    let s = project(
        "CREATE TABLE authors (id bigserial PRIMARY KEY);
         CREATE TABLE measures (id bigint NOT NULL, author_id bigint, note text, value int, lat numeric, lng numeric,
                                created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (id, created_at))
           PARTITION BY RANGE (created_at);
         CREATE TABLE measures_2024 PARTITION OF measures FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');",
        "INSERT INTO measures (id, note, created_at) VALUES (1, NULL, '2024-06-01')",
    );
    let cases: &[&[&str]] = &[
        &[
            "set-not-null",
            "p",
            "--table",
            "measures",
            "--column",
            "note",
            "--fill",
            "''",
        ],
        &[
            "add-foreign-key",
            "p",
            "--table",
            "measures",
            "--column",
            "author_id",
            "--references",
            "authors.id",
        ],
        &[
            "add-unique",
            "p",
            "--table",
            "measures",
            "--columns",
            "id,note,created_at",
        ],
        &[
            "drop-column",
            "p",
            "--table",
            "measures",
            "--column",
            "note",
        ],
        &[
            "rename-column",
            "p",
            "--table",
            "measures",
            "--column",
            "note",
            "--to",
            "remark",
        ],
        &[
            "change-type",
            "p",
            "--table",
            "measures",
            "--column",
            "value",
            "--to",
            "bigint",
        ],
        &[
            "replace-columns",
            "p",
            "--table",
            "measures",
            "--columns",
            "lat,lng",
            "--with",
            "loc point",
            "--using",
            "point(lng, lat)",
        ],
    ];
    for args in cases {
        let mut all = vec!["plan", "new"];
        all.extend_from_slice(args);
        s.orch(&all)
            .code(4)
            .stderr_has("--table measures: measures is a partitioned table, which orch plan new does not support")
            .stderr_has("CREATE INDEX CONCURRENTLY");
    }
    // A partition itself is a plain table: accepted.
    s.orch(&[
        "plan",
        "new",
        "set-not-null",
        "p",
        "--table",
        "measures_2024",
        "--column",
        "note",
        "--fill",
        "''",
    ])
    .success();
    assert_eq!(std::fs::read_dir(s.path("plans")).unwrap().count(), 1);
}

#[test]
fn without_a_database_the_options_stand_in_for_the_catalog() {
    let s = Session::new();
    s.orch_without_database(&[
        "plan",
        "new",
        "drop-column",
        "p",
        "--table",
        "events",
        "--column",
        "legacy",
    ])
    .code(2)
    .stderr_has("give --type TYPE");
    s.orch_without_database(&[
        "plan",
        "new",
        "drop-column",
        "p",
        "--table",
        "events",
        "--column",
        "legacy",
        "--type",
        "text",
    ])
    .code(2)
    .stderr_has("give --created-at COLUMN");
    s.orch_without_database(&[
        "plan",
        "new",
        "add-unique",
        "p",
        "--table",
        "Events",
        "--columns",
        "a",
    ])
    .code(2)
    .stderr_has("--table \"Events\"");
    s.orch_without_database(&[
        "plan",
        "new",
        "drop-column",
        "p",
        "--table",
        "events",
        "--column",
        "legacy",
        "--type",
        "text",
        "--created-at",
        "created_at",
    ])
    .success()
    .stdout_has("no database configured")
    .stdout_has("wrote plans/p.yaml")
    .stdout_has("note: generated without a database");
    s.orch_without_database(&["check"]).success();
}

#[test]
fn plans_are_written_in_the_folders_format() {
    // A goose folder numbered in sequence gets goose files with the next
    // numbers, the index build marked NO TRANSACTION.
    let s = Session::new();
    s.migration(
        "00001_schema.sql",
        "-- +goose Up\nCREATE TABLE accounts (id bigserial PRIMARY KEY, email text);\n\n-- +goose Down\nDROP TABLE accounts;\n",
    );
    s.orch_without_database(&[
        "plan",
        "new",
        "add-unique",
        "accounts-email",
        "--table",
        "accounts",
        "--columns",
        "email",
    ])
    .success()
    .stdout_has("wrote migrations/00002_accounts_email_build_email_index.sql")
    .stdout_has("wrote migrations/00003_accounts_email_add_email_unique.sql");
    let build =
        std::fs::read_to_string(s.path("migrations/00002_accounts_email_build_email_index.sql"))
            .unwrap();
    assert!(
        build.starts_with("-- +goose NO TRANSACTION\n-- +goose Up\n"),
        "{build}"
    );
    let check = s.orch_without_database(&["check"]);
    check
        .success()
        .stdout_has("ok: migrations (3 migrations, goose format)");
    // A diesel folder: a directory per migration, metadata.toml outside a transaction.
    let s = Session::new();
    s.write(
        "migrations/2024-01-01-000000_schema/up.sql",
        "CREATE TABLE accounts (id bigserial PRIMARY KEY, email text);\n",
    )
    .write(
        "migrations/2024-01-01-000000_schema/down.sql",
        "DROP TABLE accounts;\n",
    );
    s.orch_without_database(&[
        "plan",
        "new",
        "add-unique",
        "accounts-email",
        "--table",
        "accounts",
        "--columns",
        "email",
    ])
    .success()
    .stdout_has("_accounts_email_build_email_index/metadata.toml");
    s.orch_without_database(&["check"])
        .success()
        .stdout_has("diesel format");
}

/// What a reviewer reads of each recipe's output (the command's lines, the
/// plan and its migrations), pinned so a change to it is reviewed as a
/// diff of tests/snapshots/. Generated without a database, from the
/// options alone; migration versions are redacted.
#[test]
fn recipe_output_is_pinned() {
    let recipes: &[(&str, &[&str])] = &[
        (
            "set-not-null",
            &[
                "set-not-null",
                "items-note",
                "--table",
                "items",
                "--column",
                "note",
                "--fill",
                "''",
                "--created-at",
                "created_at",
            ],
        ),
        (
            "add-foreign-key",
            &[
                "add-foreign-key",
                "books-author",
                "--table",
                "books",
                "--column",
                "author_id",
                "--references",
                "authors.id",
                "--created-at",
                "created_at",
            ],
        ),
        (
            "add-unique",
            &[
                "add-unique",
                "accounts-email",
                "--table",
                "accounts",
                "--columns",
                "org,email",
            ],
        ),
        (
            "drop-column",
            &[
                "drop-column",
                "drop-legacy",
                "--table",
                "events",
                "--column",
                "legacy",
                "--type",
                "text",
                "--created-at",
                "created_at",
            ],
        ),
        (
            "rename-column",
            &[
                "rename-column",
                "people-name",
                "--table",
                "people",
                "--column",
                "full_name",
                "--to",
                "name",
                "--type",
                "text",
                "--created-at",
                "created_at",
            ],
        ),
        (
            "change-type",
            &[
                "change-type",
                "orders-amount",
                "--table",
                "orders",
                "--column",
                "amount",
                "--to",
                "numeric(12,2)",
                "--using",
                "amount / 100.0",
                "--from",
                "integer",
                "--created-at",
                "created_at",
            ],
        ),
        (
            "replace-columns",
            &[
                "replace-columns",
                "posts-loc",
                "--table",
                "posts",
                "--columns",
                "lat,lng",
                "--with",
                "loc point",
                "--using",
                "point(lng, lat)",
                "--reverse",
                "lat=loc[1],lng=loc[0]",
                "--old-types",
                "lat=numeric,lng=numeric",
                "--created-at",
                "created_at",
            ],
        ),
    ];
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    settings.add_filter(r"\b\d{14}_", "[version]_");
    settings.bind(|| {
        for (recipe, args) in recipes {
            let s = Session::new();
            let mut all = vec!["plan", "new"];
            all.extend_from_slice(args);
            let run = s.orch_without_database(&all);
            run.success();
            let mut out = format!("$ orch {}\n{}", all.join(" "), run.stdout);
            let mut files: Vec<_> = std::fs::read_dir(s.path("migrations"))
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            files.insert(0, s.path(&format!("plans/{}.yaml", args[1])));
            for path in files {
                let name = path
                    .strip_prefix(s.dir.path())
                    .unwrap()
                    .display()
                    .to_string();
                out.push_str(&format!(
                    "\n===== {name}\n{}",
                    std::fs::read_to_string(&path).unwrap()
                ));
            }
            insta::assert_snapshot!(format!("recipe-{recipe}"), out);
        }
    });
}

/// The phases' ids of a generated plan.
fn ids(phases: &[(String, String)]) -> Vec<&str> {
    phases.iter().map(|(id, _)| id.as_str()).collect()
}

/// The sync triggers left on `table`.
fn sync_triggers(s: &Session, table: &str) -> String {
    value(
        s,
        &format!(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = '{table}'::regclass AND NOT tgisinternal"
        ),
    )
}

#[test]
fn rename_column_under_writers() {
    let s = project(
        "CREATE TABLE people (id bigserial PRIMARY KEY, full_name text NOT NULL, note text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
         CREATE UNIQUE INDEX people_full_name_key ON people (full_name);",
        &format!(
            "INSERT INTO people (full_name, note) SELECT 'p' || g, 'init' FROM generate_series(1, {ROWS}) AS g"
        ),
    );
    let phases = generate(
        &s,
        "people-name",
        &[
            "rename-column",
            "people-name",
            "--table",
            "people",
            "--column",
            "full_name",
            "--to",
            "name",
        ],
    );
    assert_eq!(
        ids(&phases),
        [
            "add-name",
            "sync-name",
            "backfill-name",
            "add-name-check",
            "validate-name-check",
            "build-people-name-key",
            "deploy-uses-name",
            "drop-full-name"
        ]
    );
    // The old version writes full_name, the new one only name; an update
    // writes 'u' || id, an insert 'w' || n with n in note.
    let traffic = Traffic::start(
        &s,
        2,
        Arc::new(|new, n| {
            let column = if new { "name" } else { "full_name" };
            match n % 2 {
                0 => format!("INSERT INTO people ({column}, note) VALUES ('w{n}', '{n}')"),
                _ => {
                    let id = n % 40_000 + 1;
                    format!("UPDATE people SET {column} = 'u{id}' WHERE id = {id}")
                }
            }
        }),
    );
    walk(&s, "people-name", &phases, &traffic, |id| {
        if id == "drop-full-name" {
            // While both run, every row has both sides equal.
            assert_eq!(
                value(
                    &s,
                    "SELECT count(*) FROM people WHERE name IS DISTINCT FROM full_name"
                ),
                "0"
            );
        }
    });
    let stats = traffic.stop();
    assert_no_write_lost(&s, "rename-column", "people", &stats);
    assert_eq!(s.columns("people"), ["id", "note", "created_at", "name"]);
    assert_eq!(
        value(
            &s,
            "SELECT count(*) FROM people WHERE NOT (name = 'p' || id OR (id <= 40001 AND name = 'u' || id) OR (id > 50000 AND name = 'w' || note))"
        ),
        "0",
        "every value is right"
    );
    assert_eq!(
        value(
            &s,
            "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'people'::regclass AND attname = 'name'"
        ),
        "t"
    );
    assert_eq!(
        value(
            &s,
            "SELECT indisunique AND indisvalid FROM pg_index WHERE indexrelid = 'people_name_key'::regclass"
        ),
        "t"
    );
    assert_eq!(
        value(
            &s,
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'people'::regclass AND contype = 'c'"
        ),
        "0",
        "the check is gone"
    );
    assert_eq!(sync_triggers(&s, "people"), "0");
    s.execute("INSERT INTO people (name, note) VALUES ('after', 'x')");
}

#[test]
fn change_type_of_a_serial_key_under_writers() {
    let s = project(
        "CREATE TABLE orders (id serial PRIMARY KEY, amount int NOT NULL, note text, created_at timestamptz NOT NULL DEFAULT now());",
        &format!(
            "INSERT INTO orders (amount, note) SELECT g % 1000, 'init' FROM generate_series(1, {ROWS}) AS g"
        ),
    );
    let phases = generate(
        &s,
        "orders-id",
        &[
            "change-type",
            "orders-id",
            "--table",
            "orders",
            "--column",
            "id",
            "--to",
            "bigint",
        ],
    );
    assert_eq!(
        ids(&phases),
        [
            "add-id-new",
            "sync-id-new",
            "backfill-id-new",
            "add-id-new-check",
            "validate-id-new-check",
            "build-orders-id-new-pkey",
            "deploy-id-as-new-type",
            "swap-id"
        ]
    );
    // Both versions insert (the key from the sequence) and update by key;
    // the new one sends its keys as bigint.
    let traffic = Traffic::start(
        &s,
        2,
        Arc::new(|new, n| {
            let cast = if new { "::bigint" } else { "" };
            match n % 2 {
                0 => format!("INSERT INTO orders (amount, note) VALUES (7, 'w{n}')"),
                _ => format!(
                    "UPDATE orders SET amount = id % 997 WHERE id = {}{cast}",
                    n % 40_000 + 1
                ),
            }
        }),
    );
    walk(&s, "orders-id", &phases, &traffic, |id| {
        if id == "swap-id" {
            assert_eq!(
                value(
                    &s,
                    "SELECT count(*) FROM orders WHERE id_new IS DISTINCT FROM id"
                ),
                "0"
            );
        }
    });
    let stats = traffic.stop();
    assert_no_write_lost(&s, "change-type", "orders", &stats);
    assert_eq!(s.columns("orders"), ["amount", "note", "created_at", "id"]);
    assert_eq!(
        value(
            &s,
            "SELECT format_type(atttypid, atttypmod) || ' ' || attnotnull FROM pg_attribute WHERE attrelid = 'orders'::regclass AND attname = 'id'"
        ),
        "bigint true"
    );
    assert_eq!(
        value(&s, "SELECT pg_get_serial_sequence('orders', 'id')"),
        "public.orders_id_seq",
        "the sequence is owned by the new id"
    );
    assert_eq!(
        value(
            &s,
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'p' AND conname = 'orders_pkey'"
        ),
        "PRIMARY KEY (id)"
    );
    assert_eq!(
        value(
            &s,
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'orders'::regclass AND contype = 'c'"
        ),
        "0"
    );
    assert_eq!(sync_triggers(&s, "orders"), "0");
    assert_eq!(
        value(
            &s,
            "SELECT count(*) FROM orders WHERE NOT (amount = id % 1000 OR amount = id % 997 OR (id > 50000 AND amount = 7))"
        ),
        "0",
        "every value is right"
    );
    // The default works after the swap, past the integer range too.
    let before: i64 = value(&s, "SELECT max(id) FROM orders").parse().unwrap();
    let next: i64 = value(&s, "INSERT INTO orders (amount) VALUES (1) RETURNING id")
        .parse()
        .unwrap();
    assert!(next > before, "{next} > {before}");
    s.execute("SELECT setval('orders_id_seq', 3000000000)");
    assert_eq!(
        value(&s, "INSERT INTO orders (amount) VALUES (2) RETURNING id"),
        "3000000001"
    );
    let duplicate =
        s.db.connect()
            .try_execute("INSERT INTO orders (id, amount) VALUES (1, 1)");
    assert!(duplicate.is_err(), "the primary key holds");
}

#[test]
fn replace_columns_under_writers_walks_like_the_posts_plan() {
    let s = project(
        "CREATE TABLE posts (id serial PRIMARY KEY, url varchar(300), lat numeric, lng numeric, created_at timestamptz NOT NULL DEFAULT now());",
        &format!(
            "INSERT INTO posts (url, lat, lng) SELECT 'u' || g, (g % 9000) / 100.0 - 45, (g % 36000) / 100.0 - 180 FROM generate_series(1, {ROWS}) AS g"
        ),
    );
    let phases = generate(
        &s,
        "posts-loc",
        &[
            "replace-columns",
            "posts-loc",
            "--table",
            "posts",
            "--columns",
            "lat,lng",
            "--with",
            "loc point",
            "--using",
            "point(lng, lat)",
            "--reverse",
            "lat=loc[1],lng=loc[0]",
        ],
    );
    assert_eq!(
        ids(&phases),
        [
            "add-loc",
            "sync-loc",
            "backfill-loc",
            "deploy-uses-loc",
            "drop-lat-lng"
        ]
    );
    // The posts plan's migrations, generated: the same statements.
    let sql = |suffix: &str| {
        let dir = std::fs::read_dir(s.path("migrations")).unwrap();
        let path = dir
            .map(|e| e.unwrap().path())
            .find(|p| p.to_string_lossy().ends_with(suffix))
            .unwrap();
        std::fs::read_to_string(path).unwrap().to_lowercase()
    };
    assert!(sql("_posts_loc_add_loc.sql").contains("alter table posts add column loc point;"));
    assert!(
        sql("_posts_loc_drop_lat_lng.sql")
            .contains("alter table posts drop column lat, drop column lng;")
    );
    // The old version writes lat and lng, the new one only loc.
    let traffic = Traffic::start(
        &s,
        2,
        Arc::new(|new, n| match (n % 2, new) {
            (0, false) => format!(
                "INSERT INTO posts (url, lat, lng) VALUES ('w{n}', {}, {})",
                n % 80,
                n % 170
            ),
            (0, true) => format!(
                "INSERT INTO posts (url, loc) VALUES ('w{n}', point({}, {}))",
                n % 170,
                n % 80
            ),
            (_, false) => {
                let id = n % 40_000 + 1;
                format!(
                    "UPDATE posts SET lat = {}, lng = -{} WHERE id = {id}",
                    id % 89,
                    id % 179
                )
            }
            (_, true) => {
                let id = n % 40_000 + 1;
                format!(
                    "UPDATE posts SET loc = point(-{}, {}) WHERE id = {id}",
                    id % 179,
                    id % 89
                )
            }
        }),
    );
    walk(&s, "posts-loc", &phases, &traffic, |id| {
        if id == "drop-lat-lng" {
            // The old columns are kept in step for the old version too.
            assert_eq!(
                value(
                    &s,
                    "SELECT count(*) FROM posts WHERE loc IS NULL OR NOT loc ~= point(lng, lat)"
                ),
                "0"
            );
        }
    });
    let stats = traffic.stop();
    assert_no_write_lost(&s, "replace-columns", "posts", &stats);
    assert_eq!(s.columns("posts"), ["id", "url", "created_at", "loc"]);
    assert_eq!(
        value(
            &s,
            "SELECT count(*) FROM posts WHERE NOT (
                 loc ~= point((id % 36000) / 100.0 - 180, (id % 9000) / 100.0 - 45)
              OR (id <= 40001 AND loc ~= point(-(id % 179), id % 89))
              OR (url LIKE 'w%' AND loc ~= point(substr(url, 2)::bigint % 170, substr(url, 2)::bigint % 80)))"
        ),
        "0",
        "every value is right"
    );
    assert_eq!(sync_triggers(&s, "posts"), "0");
    s.orch(&["rollback", "posts-loc", "drop-lat-lng"]).code(4);
    // Forced, it re-creates lat and lng empty and the trigger again, which
    // fills them on the next write of loc.
    s.orch(&[
        "rollback",
        "posts-loc",
        "drop-lat-lng",
        "--force",
        "--by",
        "tester",
    ])
    .success();
    assert_eq!(sync_triggers(&s, "posts"), "1");
    assert_eq!(
        value(&s, "SELECT count(*) FROM posts WHERE lat IS NOT NULL"),
        "0"
    );
    s.execute("INSERT INTO posts (url, loc) VALUES ('back', point(3, 4))");
    assert_eq!(
        value(&s, "SELECT lat || ',' || lng FROM posts WHERE url = 'back'"),
        "4,3"
    );
}

#[test]
fn sync_recipes_refuse_by_name() {
    let s = project(
        "CREATE TABLE orders (id serial PRIMARY KEY, amount int, created_at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE lines (id bigserial PRIMARY KEY, order_id int REFERENCES orders (id), created_at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE logs (message text, lat numeric, lng numeric, created_at timestamptz NOT NULL DEFAULT now());
         CREATE TABLE tickets (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, title text, created_at timestamptz NOT NULL DEFAULT now());
         CREATE VIEW titles AS SELECT id, title FROM tickets;",
        "SELECT 1",
    );
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "change-type",
                "p",
                "--table",
                "orders",
                "--column",
                "id",
                "--to",
                "bigint",
            ],
            "change-type: orders.id cannot be carried over to a new column: foreign key lines_order_id_fkey of lines (FOREIGN KEY (order_id) REFERENCES orders(id))",
        ),
        (
            &[
                "rename-column",
                "p",
                "--table",
                "logs",
                "--column",
                "message",
                "--to",
                "text",
            ],
            "rename-column: table logs has no primary key and no unique index over NOT NULL columns",
        ),
        (
            &[
                "replace-columns",
                "p",
                "--table",
                "logs",
                "--columns",
                "lat,lng",
                "--with",
                "loc point",
                "--using",
                "point(lng, lat)",
            ],
            "replace-columns: table logs has no primary key",
        ),
        (
            &[
                "change-type",
                "p",
                "--table",
                "tickets",
                "--column",
                "id",
                "--to",
                "bigint",
            ],
            "tickets.id cannot be carried over to a new column: its identity",
        ),
        (
            &[
                "rename-column",
                "p",
                "--table",
                "tickets",
                "--column",
                "title",
                "--to",
                "subject",
            ],
            "tickets.title cannot be carried over to a new column: view titles",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["plan", "new"];
        all.extend_from_slice(args);
        s.orch(&all).code(4).stderr_has(expected);
    }
    assert_eq!(std::fs::read_dir(s.path("plans")).unwrap().count(), 0);
    assert_eq!(std::fs::read_dir(s.path("migrations")).unwrap().count(), 1);
    // An existing plan of the same name: nothing is written.
    s.plan("orders-amount.yaml", "keep me\n");
    for args in [
        &[
            "change-type",
            "orders-amount",
            "--table",
            "orders",
            "--column",
            "amount",
            "--to",
            "bigint",
        ][..],
        &[
            "rename-column",
            "orders-amount",
            "--table",
            "orders",
            "--column",
            "amount",
            "--to",
            "total",
        ],
        &[
            "replace-columns",
            "orders-amount",
            "--table",
            "orders",
            "--columns",
            "amount",
            "--with",
            "total numeric",
            "--using",
            "amount",
        ],
    ] {
        let mut all = vec!["plan", "new"];
        all.extend_from_slice(args);
        s.orch(&all)
            .code(4)
            .stderr_has("plans/orders-amount.yaml exists already");
    }
    assert_eq!(
        std::fs::read_to_string(s.path("plans/orders-amount.yaml")).unwrap(),
        "keep me\n"
    );
    assert_eq!(std::fs::read_dir(s.path("migrations")).unwrap().count(), 1);
}

/// A table in another schema: every name the plan writes is qualified
/// where it must be, and the plan checks clean against the database and
/// runs up to its gate.
#[test]
fn sync_recipes_on_a_schema_qualified_table() {
    let s = project(
        "CREATE SCHEMA app;
         CREATE TABLE app.orders (id serial PRIMARY KEY, code text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
         CREATE INDEX orders_code_idx ON app.orders (code);",
        "INSERT INTO app.orders (code) SELECT 'c' || g FROM generate_series(1, 1000) AS g",
    );
    let phases = generate(
        &s,
        "app-orders-id",
        &[
            "change-type",
            "app-orders-id",
            "--table",
            "app.orders",
            "--column",
            "id",
            "--to",
            "bigint",
        ],
    );
    assert_eq!(phases.len(), 8);
    let phases = generate(
        &s,
        "app-orders-code",
        &[
            "rename-column",
            "app-orders-code",
            "--table",
            "app.orders",
            "--column",
            "code",
            "--to",
            "sku",
        ],
    );
    assert!(ids(&phases).contains(&"build-orders-sku-idx"), "{phases:?}");
    for (id, kind) in &phases {
        if kind == "deploy" {
            break;
        }
        s.orch(&["advance", "app-orders-code"]).success();
        s.orch(&["confirm", "app-orders-code", id, "--by", "tester"])
            .success();
    }
    assert_eq!(
        value(
            &s,
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'app.orders_sku_idx'::regclass"
        ),
        "t"
    );
    assert_eq!(
        value(
            &s,
            "SELECT count(*) FROM app.orders WHERE sku IS DISTINCT FROM code"
        ),
        "0"
    );
}
