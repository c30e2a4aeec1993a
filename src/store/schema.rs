//! orch's own schema in the target database, created on first use.

/// Bumped when the DDL below changes; recorded in `orch.meta`. A database
/// an older orch created is brought up to date by `UPGRADES`.
pub const SCHEMA_VERSION: i32 = 7;

/// The steps from each earlier version to the next: `(from, DDL)`. Each
/// only adds, so an older orch's statements keep working on the tables.
pub const UPGRADES: [(i32, &str); 6] = [
    (
        1,
        "ALTER TABLE orch.phases ADD COLUMN IF NOT EXISTS run_pid int;
         ALTER TABLE orch.phases ADD COLUMN IF NOT EXISTS run_host text;",
    ),
    (
        2,
        "ALTER TABLE orch.migrations ADD COLUMN IF NOT EXISTS state text NOT NULL DEFAULT 'applied';
         ALTER TABLE orch.migrations ADD COLUMN IF NOT EXISTS origin text NOT NULL DEFAULT 'ran';
         ALTER TABLE orch.migrations ADD COLUMN IF NOT EXISTS dirty jsonb;",
    ),
    (
        3,
        "ALTER TABLE orch.migrations ADD COLUMN IF NOT EXISTS locks jsonb;",
    ),
    (
        4,
        "ALTER TABLE orch.backfill_workers ADD COLUMN IF NOT EXISTS waiting text;",
    ),
    (5, COMMAND_BACKFILL_TABLES),
    (
        6,
        "ALTER TABLE orch.backfill_workers ADD COLUMN IF NOT EXISTS ahead text[];",
    ),
];

/// A command backfill's rows the program rejected or left out, and the rows
/// it must visit again (changed by the application while the program ran).
const COMMAND_BACKFILL_TABLES: &str = "
CREATE TABLE IF NOT EXISTS orch.backfill_errors (
    plan       text NOT NULL,
    phase      text NOT NULL,
    worker     int NOT NULL,
    key        text[] NOT NULL,           -- the row's key, as text
    kind       text NOT NULL,             -- rejected (the program said why) | left_out (no answer)
    message    text NOT NULL,             -- capped at 1000 characters
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (plan, phase, key)
);
CREATE TABLE IF NOT EXISTS orch.backfill_queue (
    plan       text NOT NULL,
    phase      text NOT NULL,
    worker     int NOT NULL,
    key        text[] NOT NULL,           -- a row a command backfill must visit again
    pass       int NOT NULL,              -- the pass that will visit it (the walk is pass 1)
    PRIMARY KEY (plan, phase, key)
);
CREATE INDEX IF NOT EXISTS backfill_queue_worker ON orch.backfill_queue (plan, phase, worker, pass);";

/// Advisory lock (two-int form) classid shared by all orch locks: "orch".
pub const LOCK_CLASS: i32 = 0x6f72_6368;
/// objid of the lock that serialises migration runs (plans use hashtext(name)).
pub const MIGRATIONS_LOCK: i32 = 0;
/// objid of the lock that serialises creating the schema itself.
pub const BOOTSTRAP_LOCK: i32 = 1;

/// Is the schema there already? (One cheap query on the hot path.)
pub const EXISTS: &str = "SELECT to_regclass('orch.meta') IS NOT NULL";

/// Created inside one transaction, under a transaction-level advisory lock so
/// two first runs at once do not race on CREATE SCHEMA.
pub const CREATE: &str = r#"
CREATE SCHEMA IF NOT EXISTS orch;
COMMENT ON SCHEMA orch IS 'State of orch (zero-downtime schema changes): applied migrations, plans, phases, backfill cursors, event log';

CREATE TABLE IF NOT EXISTS orch.meta (
    schema_version int NOT NULL
);

CREATE TABLE IF NOT EXISTS orch.migrations (
    version      bigint PRIMARY KEY,
    name         text NOT NULL,
    checksum     text NOT NULL,          -- hex sha256 of the file as applied
    applied_at   timestamptz NOT NULL DEFAULT now(),
    applied_by   text NOT NULL,
    duration_ms  bigint NOT NULL,        -- wall time, lock waits and retries included
    execution_ms bigint NOT NULL,        -- the successful attempt's SQL only
    attempts     int NOT NULL DEFAULT 1,
    plan         text,                   -- set when a plan phase applied it
    phase        text,
    state        text NOT NULL DEFAULT 'applied', -- or 'dirty': a transaction:false section stopped half-way
    origin       text NOT NULL DEFAULT 'ran',     -- ran, adopted (from another tool), baseline, resolved (by hand)
    dirty        jsonb,                  -- for a dirty row: the statement that failed (file, line) and why
    locks        jsonb                   -- what each statement locked and how long: [{statement, line, lock, relation, held_ms}]
);

CREATE TABLE IF NOT EXISTS orch.plans (
    name             text PRIMARY KEY,
    file             text NOT NULL,
    started_checksum text NOT NULL,      -- sha256 of the YAML the plan started with
    checksum         text NOT NULL,      -- sha256 of the YAML last accepted
    definition       jsonb NOT NULL,     -- the accepted plan, for status when the file is gone
    started_at       timestamptz NOT NULL DEFAULT now(),
    started_by       text NOT NULL,
    completed_at     timestamptz
);

CREATE TABLE IF NOT EXISTS orch.phases (
    plan            text NOT NULL REFERENCES orch.plans (name),
    position        int NOT NULL,        -- 1-based
    id              text NOT NULL,
    kind            text NOT NULL,
    state           text NOT NULL,
    definition_checksum text,            -- of the phase's definition when it last ran
    started_at      timestamptz,
    finished_at     timestamptz,
    ran_by          text,
    gate_opened_at  timestamptz,
    confirmed_by    text,
    confirmed_at    timestamptz,
    note            text,
    error           text,
    result          jsonb,
    pause_requested boolean NOT NULL DEFAULT false,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    run_pid         int,                 -- the orch process that last started the phase (heartbeat) ...
    run_host        text,                -- ... and its host; the time is updated_at, or the last batch's
    PRIMARY KEY (plan, position),
    UNIQUE (plan, id)
);

CREATE TABLE IF NOT EXISTS orch.check_results (
    plan         text NOT NULL,
    phase        text NOT NULL,
    check_name   text NOT NULL,
    sql          text NOT NULL,
    passed       boolean NOT NULL,
    detail       text,
    evaluated_at timestamptz NOT NULL DEFAULT now(),
    evaluated_by text NOT NULL,
    PRIMARY KEY (plan, phase, check_name)
);

CREATE TABLE IF NOT EXISTS orch.backfill_errors (
    plan       text NOT NULL,
    phase      text NOT NULL,
    worker     int NOT NULL,
    key        text[] NOT NULL,           -- the row's key, as text
    kind       text NOT NULL,             -- rejected (the program said why) | left_out (no answer)
    message    text NOT NULL,             -- capped at 1000 characters
    recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (plan, phase, key)
);
CREATE TABLE IF NOT EXISTS orch.backfill_queue (
    plan       text NOT NULL,
    phase      text NOT NULL,
    worker     int NOT NULL,
    key        text[] NOT NULL,           -- a row a command backfill must visit again
    pass       int NOT NULL,              -- the pass that will visit it (the walk is pass 1)
    PRIMARY KEY (plan, phase, key)
);
CREATE INDEX IF NOT EXISTS backfill_queue_worker ON orch.backfill_queue (plan, phase, worker, pass);

CREATE TABLE IF NOT EXISTS orch.backfill_workers (
    plan           text NOT NULL,
    phase          text NOT NULL,
    worker         int NOT NULL,
    key_columns    text[] NOT NULL,      -- the key walked, for status and resume
    range_start    text[],               -- exclusive lower bound of the key (NULL: table start)
    range_end      text[] NOT NULL,      -- inclusive upper bound (the max key when the backfill started)
    cursor         text[],               -- last key done (NULL: nothing yet)
    rows_updated   bigint NOT NULL DEFAULT 0,
    rows_scanned   bigint NOT NULL DEFAULT 0,
    batches_done   bigint NOT NULL DEFAULT 0,
    batch_ms_total bigint NOT NULL DEFAULT 0,
    batch_ms_max   int NOT NULL DEFAULT 0,
    rows_estimate  bigint NOT NULL,      -- rows in this worker's range when it started
    estimate_source text NOT NULL,
    table_bytes_before bigint NOT NULL,
    total_bytes_before bigint NOT NULL,
    done           boolean NOT NULL DEFAULT false,
    -- started_at to the latest updated_at is the time the backfill ran: a resume moves both
    -- later by the time it stood stopped (the rate in status is rows_scanned over that span)
    started_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    waiting        text,                 -- why the worker waits before its next batch (replica lag, WAL rate)
    ahead          text[],               -- key walk: the rows after cursor through ahead whose key is in the first half are done
    PRIMARY KEY (plan, phase, worker)   -- phase: the phase id, or "<id>@rerun" for `orch backfill PLAN PHASE`
);

CREATE TABLE IF NOT EXISTS orch.events (
    id     bigserial PRIMARY KEY,
    at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    plan   text,
    phase  text,
    actor  text NOT NULL,
    action text NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}'
);

CREATE OR REPLACE FUNCTION orch.events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $fn$
BEGIN
    RAISE EXCEPTION 'orch.events is append-only (% refused)', TG_OP;
END
$fn$;

DROP TRIGGER IF EXISTS events_append_only ON orch.events;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON orch.events
    FOR EACH STATEMENT EXECUTE FUNCTION orch.events_append_only();
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upgrades_lead_from_every_older_version_to_this_one() {
        let froms: Vec<i32> = UPGRADES.iter().map(|(from, _)| *from).collect();
        let expected: Vec<i32> = (1..SCHEMA_VERSION).collect();
        assert_eq!(froms, expected);
    }

    #[test]
    fn a_new_schema_has_what_the_upgrade_adds() {
        assert!(CREATE.contains(COMMAND_BACKFILL_TABLES.trim()));
    }
}
