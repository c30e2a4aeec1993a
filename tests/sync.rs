//! Sync phases: a trigger keeps `loc` and `lat`/`lng` in step while the old
//! application version (writes only lat/lng) and the new one (writes only
//! loc) both run, so the plan needs no dual-writing version. Checked under
//! concurrent writers on their own connections, through the whole plan.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use crate::support::{Session, wait_until};

const ADD_LOC: &str = "-- migrate:up
ALTER TABLE posts ADD COLUMN loc point;

-- migrate:down
ALTER TABLE posts DROP COLUMN loc;
";

const DROP_LAT_LNG: &str = "-- migrate:up
ALTER TABLE posts DROP COLUMN lat, DROP COLUMN lng;

-- migrate:down
ALTER TABLE posts ADD COLUMN lat float8, ADD COLUMN lng float8;
";

const SYNC_PHASE: &str = "  - id: sync-loc
    kind: sync
    title: Keep loc and lat/lng in step while both app versions run
    sync:
      table: public.posts
      old: [lat, lng]
      new: [loc]
      up:
        loc: point(lng, lat)
      down:
        lat: loc[1]
        lng: loc[0]
    instructions: |
      The trigger keeps both sides in step; the old app keeps running.
";

/// The whole plan: expand, sync, backfill, the loc-only deploy, contract.
fn whole_plan() -> String {
    format!(
        "plan: posts-sync
phases:
  - id: add-loc
    kind: migration
    role: expand
    title: Add the nullable loc column
    migration: add_posts_loc
{SYNC_PHASE}
  - id: backfill-loc
    kind: backfill
    title: Copy lat and lng into loc for the existing posts
    backfill:
      table: posts
      set: loc = point(lng, lat)
      where: loc IS NULL
      batch_time: 50ms
    checks:
      - name: every post has a loc
        sql: SELECT NOT EXISTS (SELECT 1 FROM posts WHERE loc IS NULL)

  - id: deploy-loc-only
    kind: deploy
    title: Deploy the app version that reads and writes only loc
    instructions: |
      Deploy the version that writes only loc; the trigger fills lat and lng.
    checks:
      - name: posts written since the gate opened carry lat and lng from loc
        sql: |
          SELECT count(*) > 0 AND bool_and(lat = loc[1] AND lng = loc[0])
          FROM posts WHERE created_at >= :gate_opened_at

  - id: drop-lat-lng
    kind: migration
    role: contract
    title: Drop the lat and lng columns
    migration: drop_posts_lat_lng
    guard:
      - name: nothing is left to copy
        sql: SELECT NOT EXISTS (SELECT 1 FROM posts WHERE loc IS NULL)
"
    )
}

fn session(rows: i64) -> Session {
    let s = Session::new();
    s.migration("20240102000000_add_posts_loc.sql", ADD_LOC)
        .migration("20240103000000_drop_posts_lat_lng.sql", DROP_LAT_LNG)
        .plan("posts-sync.yaml", &whole_plan());
    s.execute(&format!(
        "CREATE TABLE posts (
            id bigserial PRIMARY KEY,
            url text NOT NULL,
            lat float8,
            lng float8,
            created_at timestamptz NOT NULL DEFAULT clock_timestamp());
         INSERT INTO posts (url, lat, lng)
         SELECT 'u' || g, (g % 9000) / 100.0 - 45, (g % 36000) / 100.0 - 180
         FROM generate_series(1, {rows}) AS g;
         ANALYZE posts;"
    ));
    s
}

fn confirm(s: &Session, phase: &str) {
    s.orch(&["confirm", "posts-sync", phase, "--by", "tester"])
        .success();
}

/// The sync triggers on posts.
fn triggers(s: &Session) -> Vec<String> {
    s.query("SELECT tgname::text FROM pg_trigger WHERE tgrelid = 'posts'::regclass AND NOT tgisinternal ORDER BY 1")
        .into_iter()
        .map(|r| r[0].clone().unwrap())
        .collect()
}

fn functions(s: &Session) -> i64 {
    s.value("SELECT count(*) FROM pg_proc WHERE proname LIKE 'orch_sync_%'")
        .unwrap()
        .parse()
        .unwrap()
}

const OLD_APP: u8 = 0;
const NEW_APP: u8 = 1;
const STOP: u8 = 2;

/// What one simulated application writer did.
struct Writes {
    ok: u64,
    failed: Vec<String>,
    /// The location each row it wrote last should have: (lng, lat).
    expected: HashMap<i64, (f64, f64)>,
}

/// A writer on its own connection: as the old version (only lat and lng)
/// or the new one (only loc), as `mode` says; inserts, and updates of the
/// rows of `existing` whose id is `lane` modulo `lanes` (so two writers
/// never race on one row and each knows what its rows must hold).
fn writer(
    s: &Session,
    mode: Arc<AtomicU8>,
    counter: Arc<Counters>,
    lane: i64,
    lanes: i64,
    existing: i64,
) -> std::thread::JoinHandle<Writes> {
    let settings = s.db.settings.clone();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let client = settings.connect("sync test writer").await.unwrap();
            let mut writes = Writes {
                ok: 0,
                failed: Vec::new(),
                expected: HashMap::new(),
            };
            let mut n: i64 = 0;
            loop {
                let current = mode.load(Ordering::SeqCst);
                if current == STOP {
                    break;
                }
                n += 1;
                let lat = ((n * 7 + lane) % 17_000) as f64 / 191.0 - 44.0;
                let lng = ((n * 13 + lane) % 35_000) as f64 / 97.0 - 179.0;
                let insert = n % 3 == 0;
                let id = (n * 37 % (existing / lanes)) * lanes + lane + 1;
                let result = match (current, insert) {
                    (OLD_APP, true) => client
                        .query_one(
                            "INSERT INTO posts (url, lat, lng) VALUES ('old', $1, $2) RETURNING id",
                            &[&lat, &lng],
                        )
                        .await
                        .map(|row| row.get::<_, i64>(0)),
                    (OLD_APP, false) => client
                        .execute(
                            "UPDATE posts SET lat = $2, lng = $3 WHERE id = $1",
                            &[&id, &lat, &lng],
                        )
                        .await
                        .map(|_| id),
                    (_, true) => client
                        .query_one(
                            "INSERT INTO posts (url, loc) VALUES ('new', point($2::float8, $1::float8)) RETURNING id",
                            &[&lat, &lng],
                        )
                        .await
                        .map(|row| row.get::<_, i64>(0)),
                    (_, false) => client
                        .execute(
                            "UPDATE posts SET loc = point($3::float8, $2::float8) WHERE id = $1",
                            &[&id, &lat, &lng],
                        )
                        .await
                        .map(|_| id),
                };
                match result {
                    Ok(id) => {
                        writes.ok += 1;
                        writes.expected.insert(id, (lng, lat));
                        counter.ok.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(e) => {
                        counter.failed.fetch_add(1, Ordering::SeqCst);
                        writes.failed.push(format!("{e:?}"));
                    }
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            writes
        })
    })
}

/// The writers' writes so far, over all of them.
#[derive(Default)]
struct Counters {
    ok: AtomicU64,
    failed: AtomicU64,
}

/// Wait until the writers have done `more` writes beyond now, none failing.
#[track_caller]
fn writes_go_on(counter: &Counters, more: u64) {
    let from = counter.ok.load(Ordering::SeqCst);
    let failed = || counter.failed.load(Ordering::SeqCst);
    let went_on = wait_until(Duration::from_secs(120), || {
        counter.ok.load(Ordering::SeqCst) >= from + more || failed() > 0
    });
    assert_eq!(failed(), 0, "writes of the application failed");
    assert!(went_on, "the writers stopped writing");
}

/// Rows whose loc is not point(lng, lat).
fn out_of_step(s: &Session) -> i64 {
    s.value("SELECT count(*) FROM posts WHERE loc IS NULL OR NOT loc ~= point(lng, lat)")
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn whole_plan_with_old_then_new_app_writers_and_no_dual_writing_version() {
    const ROWS: i64 = 50_000;
    const LANES: i64 = 2;
    let s = session(ROWS);
    let mode = Arc::new(AtomicU8::new(OLD_APP));
    let counter = Arc::new(Counters::default());
    let writers: Vec<_> = (0..LANES)
        .map(|lane| writer(&s, mode.clone(), counter.clone(), lane, LANES, ROWS))
        .collect();
    writes_go_on(&counter, 20);

    s.orch(&["advance", "posts-sync"]).success();
    confirm(&s, "add-loc");
    s.orch(&["advance", "posts-sync", "--dry-run"])
        .success()
        .stdout_has("CREATE TRIGGER")
        .stdout_has("BEFORE INSERT OR UPDATE ON \"public\".\"posts\"");
    assert!(triggers(&s).is_empty(), "the dry run installed the trigger");
    s.orch(&["advance", "posts-sync"])
        .success()
        .stdout_has("installed trigger orch_sync_posts_sync_sync_loc_");
    let installed = triggers(&s);
    assert_eq!(installed.len(), 1, "{installed:?}");
    assert!(installed[0].starts_with("orch_sync_posts_sync_sync_loc_"));
    s.orch(&["status", "posts-sync"])
        .success()
        .stdout_has(&format!(
            "sync sync-loc: trigger {} on public.posts installed",
            installed[0]
        ));
    confirm(&s, "sync-loc");

    // While the old version runs: its writes refresh loc. A write of the
    // new version (loc alone) refreshes lat and lng.
    writes_go_on(&counter, 50);
    s.execute("UPDATE posts SET lat = 12.5, lng = -7.25 WHERE id = 101");
    assert_eq!(
        s.value("SELECT loc[0] || ' ' || loc[1] FROM posts WHERE id = 101")
            .as_deref(),
        Some("-7.25 12.5")
    );
    s.execute("UPDATE posts SET loc = point(3.5, 4.25) WHERE id = 103");
    assert_eq!(
        s.value("SELECT lng || ' ' || lat FROM posts WHERE id = 103")
            .as_deref(),
        Some("3.5 4.25")
    );
    let old_rows_in_step: i64 = s
        .value("SELECT count(*) FROM posts WHERE url = 'old' AND loc ~= point(lng, lat) AND created_at > (SELECT started_at FROM orch.phases WHERE id = 'sync-loc')")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        old_rows_in_step > 0,
        "no insert of the old version got its loc"
    );

    s.orch(&["advance", "posts-sync"])
        .success()
        .stdout_has("backfill finished");
    confirm(&s, "backfill-loc");
    // Every row, old or just written by either side, is in step.
    assert_eq!(out_of_step(&s), 0);

    s.orch(&["advance", "posts-sync"]).success();
    mode.store(NEW_APP, Ordering::SeqCst);
    writes_go_on(&counter, 100);
    let new_rows: i64 = s
        .value("SELECT count(*) FROM posts WHERE url = 'new' AND lat = loc[1] AND lng = loc[0]")
        .unwrap()
        .parse()
        .unwrap();
    assert!(new_rows > 0, "no insert of the new version got lat and lng");
    confirm(&s, "deploy-loc-only");
    assert_eq!(
        out_of_step(&s),
        0,
        "the new version's writes left rows out of step"
    );

    // The contract drops the trigger with the columns, in one transaction:
    // the new version's writes never meet a trigger that reads lat.
    s.orch(&["advance", "posts-sync"])
        .success()
        .stdout_has("applied 20240103000000_drop_posts_lat_lng");
    writes_go_on(&counter, 50);
    confirm(&s, "drop-lat-lng");
    mode.store(STOP, Ordering::SeqCst);
    let results: Vec<Writes> = writers.into_iter().map(|w| w.join().unwrap()).collect();

    for (lane, w) in results.iter().enumerate() {
        assert!(
            w.failed.is_empty(),
            "writer {lane}: {} failed writes of {}: {:?}",
            w.failed.len(),
            w.ok + w.failed.len() as u64,
            &w.failed[..w.failed.len().min(3)]
        );
        assert!(w.ok > 0);
    }
    assert!(triggers(&s).is_empty(), "{:?}", triggers(&s));
    assert_eq!(functions(&s), 0);
    assert!(!s.columns("posts").contains(&"lat".to_string()));
    assert_eq!(
        s.value("SELECT count(*) FROM posts WHERE loc IS NULL")
            .as_deref(),
        Some("0")
    );
    // Every row a writer wrote last holds what it wrote (the old version's
    // lat/lng, as loc).
    let rows: HashMap<i64, (f64, f64)> = s
        .query("SELECT id, loc[0], loc[1] FROM posts")
        .into_iter()
        .map(|r| {
            let get = |i: usize| r[i].as_deref().unwrap().to_string();
            (
                get(0).parse().unwrap(),
                (get(1).parse().unwrap(), get(2).parse().unwrap()),
            )
        })
        .collect();
    assert!(rows.len() as i64 > ROWS);
    let mut checked = 0;
    for w in &results {
        for (id, expected) in &w.expected {
            if *id == 101 || *id == 103 {
                continue;
            }
            assert_eq!(rows.get(id), Some(expected), "row {id}");
            checked += 1;
        }
    }
    assert!(checked > 100, "only {checked} rows checked");
    s.orch(&["status", "posts-sync"])
        .success()
        .stdout_has("dropped by phase drop-lat-lng");
    let json = s
        .orch(&["status", "posts-sync", "--json"])
        .success()
        .stdout
        .clone();
    let status: serde_json::Value = serde_json::from_str(&json).unwrap();
    let sync = status.as_array().map(|a| &a[0]).unwrap_or(&status)["phases"][1].clone();
    assert_eq!(sync["trigger"]["installed"], false, "{sync:#}");
    assert_eq!(sync["trigger"]["dropped_by"], "drop-lat-lng", "{sync:#}");
}

/// A plan of three phases: add loc, sync, drop lat/lng (reversible).
fn short_plan(s: &Session) {
    s.plan(
        "posts-sync.yaml",
        &format!(
            "plan: posts-sync
phases:
  - id: add-loc
    kind: migration
    role: expand
    title: Add the nullable loc column
    migration: add_posts_loc
{SYNC_PHASE}
  - id: drop-lat-lng
    kind: migration
    role: contract
    title: Drop the lat and lng columns
    migration: drop_posts_lat_lng
    guard:
      - name: nothing is left to copy
        sql: SELECT NOT EXISTS (SELECT 1 FROM posts WHERE loc IS NULL)
"
        ),
    );
}

#[test]
fn rolling_back_sync_drops_the_trigger_and_the_contract_restores_it() {
    let s = session(10);
    short_plan(&s);
    s.orch(&["advance", "posts-sync"]).success();
    confirm(&s, "add-loc");
    s.orch(&["advance", "posts-sync"]).success();
    let name = triggers(&s).pop().expect("the trigger is installed");
    s.orch(&["checklist", "posts-sync"])
        .success()
        .stdout_has(
            "sync trigger on `public.posts`: the old version writes `lat, lng`, the new one `loc`",
        )
        .stdout_has("    - down: `lat = loc[1]`")
        .stdout_has(&format!("  - trigger {name} on public.posts installed"));
    let json = s
        .orch(&["status", "posts-sync", "--json"])
        .success()
        .stdout
        .clone();
    assert!(json.contains(&format!("\"trigger\": \"{name}\"")), "{json}");
    assert!(json.contains("\"installed\": true"), "{json}");

    // Rolling the sync phase back drops the trigger and its function.
    s.orch(&["rollback", "posts-sync", "sync-loc"])
        .success()
        .stdout_has(&format!("dropped trigger {name} on public.posts"));
    assert!(triggers(&s).is_empty());
    assert_eq!(functions(&s), 0);
    s.orch(&["status", "posts-sync"])
        .success()
        .stdout_lacks("installed");
    s.execute("UPDATE posts SET lat = 1, lng = 2 WHERE id = 1");
    assert_eq!(
        s.value("SELECT loc IS NULL FROM posts WHERE id = 1")
            .as_deref(),
        Some("t")
    );

    // Again, then the contract: the trigger goes with the columns.
    s.orch(&["advance", "posts-sync"]).success();
    confirm(&s, "sync-loc");
    s.execute("UPDATE posts SET loc = point(lng, lat)");
    s.orch(&["advance", "posts-sync"]).success();
    assert!(triggers(&s).is_empty());
    assert_eq!(functions(&s), 0);
    assert_eq!(
        s.value(
            "SELECT result->>'sync_triggers_dropped' FROM orch.phases WHERE id = 'drop-lat-lng'"
        ),
        Some(format!("[\"{name}\"]"))
    );
    assert_eq!(
        s.value("SELECT count(*) FROM orch.events WHERE action = 'trigger_dropped' AND detail->>'by' = 'drop-lat-lng'")
            .as_deref(),
        Some("1")
    );

    // Rolling the contract back brings the columns back, and the trigger
    // with them: the new version's writes fill lat and lng again.
    s.orch(&["rollback", "posts-sync", "drop-lat-lng"])
        .success()
        .stdout_has("installed the sync trigger(s) it had dropped again");
    assert_eq!(triggers(&s), vec![name.clone()]);
    s.execute("INSERT INTO posts (url, loc) VALUES ('new', point(5, 6))");
    assert_eq!(
        s.value("SELECT lng || ' ' || lat FROM posts WHERE url = 'new'")
            .as_deref(),
        Some("5 6")
    );
    s.orch(&["status", "posts-sync"])
        .success()
        .stdout_has(&format!(
            "sync sync-loc: trigger {name} on public.posts installed"
        ));

    // Dropped by hand: status says the record and the table disagree.
    s.execute(&format!("DROP TRIGGER \"{name}\" ON posts"));
    s.orch(&["status", "posts-sync"]).success().stdout_has(&format!(
        "trigger {name} on public.posts installed (recorded as installed, but the table has no such trigger"
    ));
}

#[test]
fn check_online_checks_the_table_columns_and_expressions_where_the_phase_runs() {
    let s = session(10);
    short_plan(&s);
    // loc does not exist yet: the preview applies add-loc first.
    s.orch(&["check", "--online"]).success().stdout_has(
        "phase 2 sync-loc: public.posts: its columns exist and its expressions compile",
    );
    assert!(!s.columns("posts").contains(&"loc".to_string()));

    let broken = std::fs::read_to_string(s.path("plans/posts-sync.yaml"))
        .unwrap()
        .replace("loc: point(lng, lat)", "loc: point(lng, latt)");
    s.plan("posts-sync.yaml", &broken);
    let run = s.orch(&["check", "--online"]);
    assert_ne!(run.code, 0, "{run:?}");
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains("plans/posts-sync.yaml:16:14: phases[1].sync.up.loc: the expression for loc does not compile against public.posts"),
        "{said}"
    );
    assert!(said.contains("column \"latt\" does not exist"), "{said}");

    let broken = broken
        .replace("loc: point(lng, latt)", "loc: point(lng, lat)")
        .replace("old: [lat, lng]", "old: [lat, lngg]")
        .replace("lng: loc[0]", "lngg: loc[0]");
    s.plan("posts-sync.yaml", &broken);
    let run = s.orch(&["check", "--online"]);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains("phases[1].sync.old[1]: column \"lngg\" of public.posts does not exist at this point of the plan"),
        "{said}"
    );

    s.execute("ALTER TABLE posts ALTER COLUMN lat SET DEFAULT 0");
    let with_default = broken
        .replace("old: [lat, lngg]", "old: [lat, lng]")
        .replace("lngg: loc[0]", "lng: loc[0]");
    s.plan("posts-sync.yaml", &with_default);
    s.orch(&["check", "--online"]).success().stdout_has(
        "phase 2 sync-loc: public.posts: its columns exist and its expressions compile; warning: lat of public.posts has a default, so on INSERT the trigger counts it as written",
    );
    // Without down, an old column's default changes nothing (an insert that
    // leaves the old side out is left alone either way): no warning.
    let without_down = with_default.replace(
        "      down:\n        lat: loc[1]\n        lng: loc[0]\n",
        "",
    );
    assert_ne!(without_down, with_default);
    s.plan("posts-sync.yaml", &without_down);
    s.orch(&["check", "--online"])
        .success()
        .stdout_lacks("warning");
    // A new column's default is warned about, with down or without: an
    // insert of the old version would keep it instead of `up`.
    let new_side = without_down
        .replace("old: [lat, lng]", "old: [loc]")
        .replace("new: [loc]", "new: [lat]")
        .replace("loc: point(lng, lat)", "lat: loc[1]");
    s.plan("posts-sync.yaml", &new_side);
    s.orch(&["check", "--online"]).success().stdout_has(
        "warning: lat of public.posts has a default, so on INSERT the trigger counts it as written",
    );
    s.execute("ALTER TABLE posts ALTER COLUMN lat DROP DEFAULT");

    s.execute("ALTER TABLE posts ADD COLUMN lat2 float8 GENERATED ALWAYS AS (lat * 2) STORED");
    let generated = broken
        .replace("old: [lat, lngg]", "old: [lat, lng, lat2]")
        .replace("lngg: loc[0]", "lng: loc[0]\n        lat2: loc[1] * 2");
    s.plan("posts-sync.yaml", &generated);
    let run = s.orch(&["check", "--online"]);
    let said = format!("{}{}", run.stdout, run.stderr);
    assert!(
        said.contains("phases[1].sync.old[2]: column \"lat2\" of public.posts is a generated column: a trigger cannot write it"),
        "{said}"
    );
}

/// Installing the trigger waits for its lock at most lock_timeout per
/// attempt, retries, and gives up without installing anything: a writer's
/// open transaction (ROW EXCLUSIVE) blocks CREATE TRIGGER (SHARE ROW
/// EXCLUSIVE), and the application's writes never queue behind orch for
/// longer than an attempt.
#[test]
fn installing_waits_for_its_lock_briefly_and_gives_up_cleanly() {
    let s = session(10);
    short_plan(&s);
    s.orch(&["advance", "posts-sync"]).success();
    confirm(&s, "add-loc");
    let writer = s.db.connect();
    writer.execute("BEGIN; UPDATE posts SET url = 'busy' WHERE id = 1;");
    let run = s.orch(&[
        "advance",
        "posts-sync",
        "--lock-timeout",
        "100ms",
        "--lock-retries",
        "2",
    ]);
    run.code(5)
        .stderr_has("lock timeout (100 ms) at plans/posts-sync.yaml:11 (sync trigger of phase sync-loc), attempt 1/3")
        .stderr_has(
            "plans/posts-sync.yaml:11: migration sync trigger of phase sync-loc (up) gave up after 3 attempts",
        );
    assert!(triggers(&s).is_empty());
    assert_eq!(functions(&s), 0, "the function was left behind");
    assert_eq!(
        s.value("SELECT state FROM orch.phases WHERE id = 'sync-loc'")
            .as_deref(),
        Some("failed")
    );
    writer.execute("COMMIT");
    s.orch(&["advance", "posts-sync"]).success();
    assert_eq!(triggers(&s).len(), 1);
}

/// The trigger goes BEFORE the contract's statements, in its transaction:
/// a contract that drops lat and lng and then writes the table would
/// otherwise fire a trigger reading the dropped columns. `check --online`
/// previews it the same way (the trigger installed, the contract pending).
#[test]
fn a_contract_that_writes_the_table_after_its_drop_meets_no_trigger() {
    let s = session(10);
    short_plan(&s);
    s.migration(
        "20240103000000_drop_posts_lat_lng.sql",
        "-- migrate:up
ALTER TABLE posts DROP COLUMN lat, DROP COLUMN lng;
UPDATE posts SET url = url || '!' WHERE id = 1;

-- migrate:down
ALTER TABLE posts ADD COLUMN lat float8, ADD COLUMN lng float8;
",
    );
    s.orch(&["advance", "posts-sync"]).success();
    confirm(&s, "add-loc");
    s.orch(&["advance", "posts-sync"]).success();
    confirm(&s, "sync-loc");
    s.execute("UPDATE posts SET loc = point(lng, lat)");
    s.orch(&["check", "--online"])
        .success()
        .stdout_has("phase 3 drop-lat-lng: 1 guard compiles; applies to the schema it will meet");
    s.orch(&["advance", "posts-sync", "--dry-run"])
        .success()
        .stdout_has("dropped first, in the same transaction")
        .stdout_has("DROP TRIGGER IF EXISTS \"orch_sync_posts_sync_sync_loc_");
    assert_eq!(
        triggers(&s).len(),
        1,
        "the preview dropped the live trigger"
    );
    s.orch(&["advance", "posts-sync"]).success();
    assert!(triggers(&s).is_empty());
    assert_eq!(
        s.value("SELECT count(*) FROM posts WHERE url LIKE '%!'")
            .as_deref(),
        Some("1")
    );
}
