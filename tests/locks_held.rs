//! What each migration statement locked, and for how long: recorded in
//! `orch.migrations.locks` and a plan phase's audit entry, shown by `migrate
//! status` and the checklist.

use crate::support::Session;

/// (statement, line, lock, relation) of each recorded lock of `version`.
fn locks(s: &Session, version: i64) -> Vec<Vec<Option<String>>> {
    s.query(&format!(
        "SELECT l->>'statement', l->>'line', l->>'lock', l->>'relation'
         FROM orch.migrations, jsonb_array_elements(locks) AS l
         WHERE version = {version}
         ORDER BY (l->>'statement')::int, l->>'relation'"
    ))
}

fn row(values: [&str; 4]) -> Vec<Option<String>> {
    values.iter().map(|v| Some(v.to_string())).collect()
}

const POSTS: &str = "-- migrate:up
CREATE TABLE posts (id int PRIMARY KEY, title text);
CREATE TABLE tags (id int);
INSERT INTO posts SELECT g, 't' || g FROM generate_series(1, 100) AS g;
-- migrate:down
";

#[test]
fn each_statement_records_the_locks_it_took_on_relations_that_existed() {
    let s = Session::new();
    s.migration("1_posts.sql", POSTS);
    s.migration(
        "2_change.sql",
        "-- migrate:up
SET search_path = pg_catalog;
ALTER TABLE public.posts ADD COLUMN body text;
CREATE TABLE public.comments (id int PRIMARY KEY, post_id int REFERENCES public.posts);
UPDATE public.posts SET title = 'x' WHERE id = 1;
LOCK TABLE public.tags IN SHARE MODE;
DROP TABLE public.tags;
-- migrate:down
",
    );
    s.orch(&["migrate", "up"]).success();
    // Creating tables and filling them locks nothing anyone else can see.
    assert_eq!(locks(&s, 1), Vec::<Vec<Option<String>>>::new());
    assert_eq!(
        s.value("SELECT locks::text FROM orch.migrations WHERE version = 1")
            .as_deref(),
        Some("[]")
    );
    // The ALTER's ACCESS EXCLUSIVE covers what the later statements take on
    // posts (named as regclass prints it under the search_path the script
    // set); comments is new; tags is named though dropped.
    assert_eq!(
        locks(&s, 2),
        [
            row(["2", "3", "AccessExclusiveLock", "public.posts"]),
            row(["4", "5", "RowExclusiveLock", "public.posts_pkey"]),
            row(["5", "6", "ShareLock", "public.tags"]),
            row(["6", "7", "AccessExclusiveLock", "public.tags"]),
        ]
    );
    // Held until the transaction ended: the ALTER's lock longest of all.
    assert_eq!(
        s.value(
            "SELECT bool_and((l->>'held_ms')::float8 <= (
                      SELECT (m2.l->>'held_ms')::float8 FROM jsonb_array_elements(locks) AS m2(l) WHERE m2.l->>'statement' = '2'))
                    AND bool_and((l->>'held_ms')::float8 <= duration_ms + 1)
             FROM orch.migrations, jsonb_array_elements(locks) AS l WHERE version = 2"
        )
        .as_deref(),
        Some("t")
    );
    let status = s.orch(&["migrate", "status"]);
    status
        .success()
        .stdout_has("HELD")
        .stdout_has("none")
        .stdout_has("ACCESS EXCLUSIVE on public.posts for ");
    assert!(status.stdout.contains("(+3 more)"), "{}", status.stdout);
    let json = s.orch(&["migrate", "status", "--json"]);
    json.success()
        .stdout_has("\"lock\": \"AccessExclusiveLock\"");
}

#[test]
fn statements_outside_a_transaction_hold_locks_for_themselves() {
    let s = Session::new();
    s.migration("1_posts.sql", POSTS);
    s.migration(
        "2_index.sql",
        "-- migrate:up transaction:false
CREATE INDEX CONCURRENTLY posts_title ON posts (title);
ALTER TABLE posts ADD COLUMN body text;
VACUUM posts;
-- migrate:down transaction:false
DROP INDEX CONCURRENTLY posts_title;
",
    );
    s.orch(&["migrate", "up"]).success();
    // CREATE INDEX CONCURRENTLY cannot be probed in a transaction: its lock
    // is the one PostgreSQL documents; VACUUM's goes unrecorded.
    assert_eq!(
        locks(&s, 2),
        [
            row(["1", "2", "ShareUpdateExclusiveLock", "posts"]),
            row(["2", "3", "AccessExclusiveLock", "posts"]),
        ]
    );
}

#[test]
fn a_statement_refused_in_a_transaction_block_runs_alone() {
    // Guards against the probe, which makes a statement part of an
    // implicit transaction, breaking statements orch does not know
    // PostgreSQL refuses in one.
    let s = Session::new();
    s.migration(
        "1_type.sql",
        "-- migrate:up transaction:false
CREATE TYPE mood AS ENUM ('happy');
-- orch:allow rewrite-table: no table is clustered here, CLUSTER does nothing
CLUSTER;
-- migrate:down
",
    );
    s.orch(&["migrate", "up"]).success();
    assert_eq!(locks(&s, 1), Vec::<Vec<Option<String>>>::new());
}

#[test]
fn a_plan_phase_records_its_locks_in_the_audit_log_and_the_checklist() {
    let s = Session::new();
    s.migration("1_posts.sql", POSTS);
    s.migration(
        "2_add_body.sql",
        "-- migrate:up\nALTER TABLE posts ADD COLUMN body text;\n-- migrate:down\nALTER TABLE posts DROP COLUMN body;\n",
    );
    s.plan(
        "p.yaml",
        "plan: p
phases:
  - id: add-body
    kind: migration
    title: Add body
    migration: add_body
",
    );
    s.orch(&["migrate", "up"]).success();
    s.orch(&["advance", "p"]).success();
    assert_eq!(
        s.query(
            "SELECT l->>'statement', l->>'line', l->>'lock', l->>'relation'
             FROM orch.events, jsonb_array_elements(detail->'locks') AS l
             WHERE action = 'migration_applied'"
        ),
        [row(["1", "2", "AccessExclusiveLock", "posts"])]
    );
    assert_eq!(
        locks(&s, 2),
        [row(["1", "2", "AccessExclusiveLock", "posts"])]
    );
    s.orch(&["checklist", "p"])
        .success()
        .stdout_has("  - held ACCESS EXCLUSIVE on posts for ")
        .stdout_has(" (line 2)\n");
}

#[test]
fn a_schema_3_database_is_read_as_it_is_and_upgraded_by_the_next_write() {
    // Guards against a database of the previous orch (schema 3, without
    // orch.migrations.locks) breaking migrate status or the next migration.
    let s = Session::new();
    s.migration("1_posts.sql", POSTS);
    s.orch(&["migrate", "up"]).success();
    s.execute(
        "ALTER TABLE orch.migrations DROP COLUMN locks;
         UPDATE orch.meta SET schema_version = 3",
    );
    s.orch(&["migrate", "status"])
        .success()
        .stdout_lacks("none");
    assert_eq!(
        s.value("SELECT schema_version FROM orch.meta").as_deref(),
        Some("3"),
        "status does not write"
    );
    s.migration(
        "2_add_body.sql",
        "-- migrate:up\nALTER TABLE posts ADD COLUMN body text;\n-- migrate:down\n",
    );
    s.orch(&["migrate", "up"]).success();
    assert_eq!(
        s.value("SELECT schema_version FROM orch.meta").as_deref(),
        Some("7")
    );
    assert_eq!(
        locks(&s, 2),
        [row(["1", "2", "AccessExclusiveLock", "posts"])]
    );
}

#[test]
fn a_migration_that_deallocates_the_probe_still_runs() {
    // Guards against orch's look at pg_locks, a prepared statement of its
    // session, failing a migration that deallocates prepared statements.
    let s = Session::new();
    s.migration("1_posts.sql", POSTS);
    s.migration(
        "2_whole.sql",
        "-- migrate:up\nDEALLOCATE ALL;\nALTER TABLE posts ADD COLUMN body text;\n-- migrate:down\n",
    );
    s.migration(
        "3_each.sql",
        "-- migrate:up transaction:false\nDEALLOCATE ALL;\nALTER TABLE posts ADD COLUMN note text;\n-- migrate:down\n",
    );
    s.orch(&["migrate", "up"]).success();
    assert!(s.columns("posts").contains(&"note".to_string()));
    // Sent whole, the section cannot be looked at; one by one, the
    // statements after it are.
    assert_eq!(
        s.value("SELECT locks IS NULL FROM orch.migrations WHERE version = 2")
            .as_deref(),
        Some("t")
    );
    assert_eq!(
        locks(&s, 3),
        [row(["2", "3", "AccessExclusiveLock", "posts"])]
    );
}
