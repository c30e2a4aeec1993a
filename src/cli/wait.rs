//! `orch wait [--timeout 60s]`: wait until the database accepts
//! connections, saying on stderr what it waits for and, when the reason
//! changes, why it is not there yet.

use std::time::Duration;

use crate::cli::Context;
use crate::engine::wait::{WaitPolicy, wait_for_database};
use crate::error::{Error, Result};
use crate::timefmt;

pub async fn run(ctx: &Context, timeout: Duration) -> Result<()> {
    let settings = ctx.connection()?;
    let how_long = match timeout.is_zero() {
        true => "once (--timeout 0)".to_string(),
        false => format!("up to {}", timefmt::duration(timeout)),
    };
    eprintln!(
        "waiting {how_long} for PostgreSQL to accept connections on {} ({})",
        settings.targets(),
        settings.describe()
    );
    let mut last_reason = String::new();
    let attempts = wait_for_database(
        &settings,
        &ctx.application_name("wait"),
        WaitPolicy::new(timeout),
        |retry| {
            let reason = match retry.error {
                Error::Connect { reason, .. } => reason.replace("\n  ", "\n    "),
                other => other.to_string(),
            };
            // Once per reason: a server that is starting says something new.
            if reason != last_reason {
                eprintln!("  not yet (attempt {}): {reason}", retry.attempt);
                last_reason = reason;
            }
        },
    )
    .await?;
    let plural = if attempts == 1 { "" } else { "s" };
    eprintln!("PostgreSQL accepts connections ({attempts} attempt{plural})");
    Ok(())
}
