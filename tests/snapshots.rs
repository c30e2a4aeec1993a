//! What operators read, pinned by snapshots: `orch status` (text and JSON),
//! `orch migrate status` and `orch checklist` at points of the repository's
//! posts-location plan, so any change to that output is reviewed as a diff
//! of tests/snapshots/. Times, durations, pids, database names and paths are
//! redacted, so the snapshots are the same on every machine and run.

use crate::support::{Run, Session};

const PLAN: &str = "posts-location";

/// The repository's migrations and plans, `orch migrate up` run (it stops
/// before the plan's first migration), and a few posts written by app v1.
fn posts_session() -> Session {
    let s = Session::new();
    s.with_repository_files();
    s.orch(&["migrate", "up"]).success();
    s.execute(
        "INSERT INTO posts (url, lat, lng)
         SELECT 'https://example.com/' || g, g, g FROM generate_series(1, 10) AS g",
    );
    s
}

/// Measurements in a backfill's or a migration's recorded result: they
/// depend on the machine's speed (and byte counts on the server's build).
const MEASURED: [&str; 13] = [
    "duration_ms",
    "execution_ms",
    "elapsed_ms",
    "vacuum_ms",
    "batch_ms_max",
    "batch_ms_mean",
    "batch_ms_p50",
    "rows_per_second",
    "running_ms",
    "table_bytes_before",
    "table_bytes_after",
    "total_bytes_before",
    "total_bytes_after",
];

/// Filters for what differs between machines and runs. Times and durations
/// have a fixed width in tables except durations, so a duration swallows the
/// padding after it.
fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.set_omit_expression(true);
    let duration = r"\b(\d+(\.\d+)? m?s|\d+m \d{2}s|\d+h \d{2}m)\b";
    let padded_duration = format!("{duration}  +");
    let measured = format!(r#""({})":-?[\d.]+"#, MEASURED.join("|"));
    for (regex, replacement) in [
        // timefmt::utc, and RFC 3339 in JSON.
        (r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC", "[time]"),
        (
            r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})",
            "[time]",
        ),
        // timefmt::duration: 0.4 ms, 850 ms, 2.4 s, 3m 05s, 1h 02m.
        (padded_duration.as_str(), "[duration]  "),
        (duration, "[duration]"),
        (r"\b\d+(\.\d+)? rows/s\b", "[rate] rows/s"),
        // A result recorded as compact JSON, e.g. in the checklist.
        (measured.as_str(), r#""$1":"[measured]""#),
        (r"\bpid \d+", "pid [pid]"),
        (r"\borch_test_\d+_\d+\b", "[database]"),
        (r"(/[^/\s]+)*/orch-project-[^/\s]+", "[project]"),
    ] {
        settings.add_filter(regex, replacement);
    }
    // The same measurements in `status --json`.
    for key in MEASURED {
        settings.add_redaction(&format!(".**.{key}"), "[measured]");
    }
    // The heartbeat: which orch process ran a phase, on which host.
    for (key, replacement) in [("run_pid", "[pid]"), ("run_host", "[host]")] {
        settings.add_dynamic_redaction(&format!(".**.{key}"), move |value, _| {
            if value == insta::internals::Content::Unit || value == insta::internals::Content::None
            {
                value
            } else {
                replacement.into()
            }
        });
    }
    settings
}

/// What a person at the terminal saw: the command, its exit code, stdout,
/// and stderr when there is any.
fn transcript(run: &Run) -> String {
    let mut text = format!(
        "$ orch {}\n[exit {}]\n{}",
        run.args.join(" "),
        run.code,
        run.stdout
    );
    if !run.stderr.is_empty() {
        text.push_str(&format!("--- stderr\n{}", run.stderr));
    }
    text
}

/// Snapshot the four views at one point of the walk, named `<point>-<view>`.
fn snapshot_views(s: &Session, plan: &str, point: &str) {
    settings().bind(|| {
        for (view, args) in [
            ("status", vec!["status"]),
            ("migrate-status", vec!["migrate", "status"]),
            ("checklist", vec!["checklist", plan]),
        ] {
            let run = s.orch(&args);
            let mut view_settings = insta::Settings::clone_current();
            if view == "migrate-status" {
                // The HELD column is as wide as its measured durations:
                // compare the table's words, not its padding.
                view_settings.add_filter(" {3,}", "  ");
            }
            view_settings.bind(|| {
                insta::assert_snapshot!(format!("{point}-{view}"), transcript(&run));
            });
        }
        let run = s.orch(&["status", "--json"]);
        run.success();
        let json: serde_json::Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("status --json printed no JSON ({e})\n{run:?}"));
        insta::assert_json_snapshot!(format!("{point}-status-json"), json);
    });
}

#[test]
fn posts_location_walk() {
    let s = posts_session();
    snapshot_views(&s, PLAN, "1-not-started");

    s.orch(&["advance", PLAN]).success();
    snapshot_views(&s, PLAN, "2-migration-ran");

    s.orch(&[
        "confirm",
        PLAN,
        "add-loc",
        "--by",
        "alice",
        "--note",
        "column is there",
    ])
    .success();
    s.orch(&["advance", PLAN]).success();
    // A refused confirmation is part of the record the checklist shows.
    s.orch(&["confirm", PLAN, "--by", "bob"]).code(8);
    snapshot_views(&s, PLAN, "3-gate-open");

    s.execute(
        "INSERT INTO posts (url, lat, lng, loc)
         SELECT 'https://v2.example.com/' || g, 10.5, 20.25, point(20.25, 10.5)
         FROM generate_series(1, 3) AS g",
    );
    s.orch(&["confirm", PLAN, "--by", "bob"]).success();
    s.orch(&["advance", PLAN]).success();
    s.orch(&["confirm", PLAN, "backfill-loc", "--by", "alice"])
        .success();
    s.orch(&["advance", PLAN]).success();
    s.execute(
        "INSERT INTO posts (url, loc)
         SELECT 'https://v3.example.com/' || g, point(1, 2) FROM generate_series(1, 3) AS g",
    );
    s.orch(&["confirm", PLAN, "--by", "bob"]).success();
    s.orch(&["advance", PLAN]).success();
    s.orch(&["confirm", PLAN, "--by", "carol", "--note", "release 42"])
        .success();
    snapshot_views(&s, PLAN, "4-complete");
}

/// The checklist of a plan read from its file alone: no database is
/// configured, so no state is read and every phase shows unticked.
#[test]
fn checklist_without_a_database() {
    let s = Session::new();
    s.with_repository_files();
    settings().bind(|| {
        let run = s.orch_without_database(&["checklist", PLAN]);
        insta::assert_snapshot!("0-no-database-checklist", transcript(&run));
    });
}

#[test]
fn a_failed_phase() {
    let s = Session::new();
    s.migration(
        "1_create_t.sql",
        "-- migrate:up\nCREATE TABLE t (a int);\nINSERT INTO t VALUES (1), (1);\nCREATE UNIQUE INDEX ON t (a);\n-- migrate:down\nDROP TABLE t;\n",
    );
    s.plan(
        "small.yaml",
        "plan: small\nphases:\n  - id: add-t\n    kind: migration\n    title: Create t\n    migration: create_t\n  - id: gate\n    kind: deploy\n    title: Deploy\n    instructions: deploy it\n",
    );
    s.orch(&["advance", "small"]).code(1);
    snapshot_views(&s, "small", "failed");
}

/// A sync phase's trigger, installed and then dropped by the contract: the
/// line `status PLAN` and the checklist show for it, and `status --json`'s
/// `trigger` object.
#[test]
fn a_sync_phase() {
    let s = Session::new();
    s.migration(
        "1_create_posts.sql",
        "-- migrate:up\nCREATE TABLE posts (id bigserial PRIMARY KEY, lat float8, lng float8);\n-- migrate:down\nDROP TABLE posts;\n",
    )
    .migration(
        "2_add_loc.sql",
        "-- migrate:up\nALTER TABLE posts ADD COLUMN loc point;\n-- migrate:down\nALTER TABLE posts DROP COLUMN loc;\n",
    )
    .migration(
        "3_drop_lat_lng.sql",
        "-- migrate:up\nALTER TABLE posts DROP COLUMN lat, DROP COLUMN lng;\n-- migrate:down\nALTER TABLE posts ADD COLUMN lat float8, ADD COLUMN lng float8;\n",
    )
    .plan(
        "posts-sync.yaml",
        "plan: posts-sync
phases:
  - id: add-loc
    kind: migration
    role: expand
    title: Add loc
    migration: add_loc
  - id: sync-loc
    kind: sync
    title: Keep loc and lat/lng in step
    sync:
      table: posts
      old: [lat, lng]
      new: [loc]
      up:
        loc: point(lng, lat)
      down:
        lat: loc[1]
        lng: loc[0]
  - id: drop-lat-lng
    kind: migration
    role: contract
    title: Drop lat and lng
    migration: drop_lat_lng
    guard:
      - name: nothing is left to copy
        sql: SELECT NOT EXISTS (SELECT 1 FROM posts WHERE loc IS NULL)
",
    );
    s.orch(&["migrate", "up"]).success();
    s.orch(&["advance", "posts-sync"]).success();
    s.orch(&["confirm", "posts-sync", "add-loc", "--by", "alice"])
        .success();
    s.orch(&["advance", "posts-sync"]).success();
    snapshot_views(&s, "posts-sync", "sync-installed");
    settings().bind(|| {
        let run = s.orch(&["status", "posts-sync"]);
        insta::assert_snapshot!("sync-installed-status-plan", transcript(&run));
    });
    s.orch(&["confirm", "posts-sync", "sync-loc", "--by", "alice"])
        .success();
    s.orch(&["advance", "posts-sync"]).success();
    settings().bind(|| {
        let run = s.orch(&["status", "posts-sync"]);
        insta::assert_snapshot!("sync-dropped-status-plan", transcript(&run));
    });
}
