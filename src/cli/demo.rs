//! `orch demo`: run the demo and print its per-phase table and verdict.

use crate::cli::Context;
use crate::cli::args::DemoArgs;
use crate::cli::report::HumanReporter;
use crate::cli::table;
use crate::demo::{self, DemoOptions, DemoReport};
use crate::error::{Error, Result};

pub async fn run(ctx: &Context, args: &DemoArgs) -> Result<()> {
    let options = DemoOptions {
        database_url: ctx.database_url.clone(),
        rows: args.rows,
        writers: args.writers.max(1),
        rate: args.rate.max(1),
        naive: args.naive,
        long_reader: args.long_reader,
        dwell: args.dwell,
        policy: args.locks.policy(),
        backfill_workers: args.workers,
    };
    // With --json, narration goes to stderr so stdout is only the report.
    let report = if args.json {
        demo::run(&options, &HumanReporter::on_stderr()).await?
    } else {
        demo::run(&options, ctx.reporter.as_ref()).await?
    };
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Error::failed(format!("cannot encode JSON: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", render(&report));
    }
    match &report.problem {
        None => Ok(()),
        Some(problem) if report.mode == "naive" => Err(Error::failed(format!(
            "as expected, the textbook migration broke the application: {problem}; `orch demo` without --naive runs the plan instead"
        ))),
        Some(problem) => Err(Error::failed(format!(
            "the demo found a problem: {problem}"
        ))),
    }
}

/// The per-phase table and the verification summary.
pub fn render(report: &DemoReport) -> String {
    let mut rows = vec![
        [
            "PHASE",
            "SECONDS",
            "WRITES",
            "FAILED",
            "READS FAILED",
            "P50 MS",
            "P99 MS",
            "MAX MS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for s in &report.stages {
        rows.push(vec![
            s.stage.clone(),
            format!("{:.1}", s.seconds),
            s.writes_ok.to_string(),
            s.writes_failed.to_string(),
            s.reads_failed.to_string(),
            format!("{:.1}", s.p50_ms),
            format!("{:.1}", s.p99_ms),
            format!("{:.1}", s.max_ms),
        ]);
    }
    let mut out = format!("\napplication traffic per phase ({} mode):\n", report.mode);
    out.push_str(&table::render(&rows));
    for s in report.stages.iter().filter(|s| s.first_error.is_some()) {
        out.push_str(&format!(
            "  first error in {}: {}\n",
            s.stage,
            s.first_error.as_deref().unwrap_or_default()
        ));
    }
    let v = &report.verification;
    out.push_str(&format!(
        "\nverification: {} posts expected, {} found, {} missing, {} with a wrong loc; lat/lng {}\n",
        v.rows_expected,
        v.rows_found,
        v.rows_missing,
        v.rows_wrong,
        if v.lat_lng_dropped { "dropped" } else { "still there" }
    ));
    for example in &v.examples {
        out.push_str(&format!("  {example}\n"));
    }
    out.push_str(match &report.problem {
        None => "result: no write failed, no post lost, every loc right\n",
        Some(_) => "result: FAILED (see above)\n",
    });
    out
}
