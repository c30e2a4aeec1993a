//! `orch demo`: run the demo and print its per-phase table and verdict.

use crate::cli::Context;
use crate::cli::args::DemoArgs;
use crate::cli::report::HumanReporter;
use crate::cli::{plot, table};
use crate::demo::{self, DemoOptions, DemoReport};
use crate::error::{Error, Result};
use crate::events::{Event, Reporter};

pub async fn run(ctx: &Context, args: &DemoArgs) -> Result<()> {
    let options = DemoOptions {
        database_url: ctx.database_url.clone(),
        rows: args.rows,
        writers: args.writers.max(1),
        rate: args.rate.max(1),
        naive: args.naive,
        long_reader: args.long_reader,
        dwell: args.dwell,
        policy: args.locks.policy(&ctx.config),
        backfill_workers: args.workers,
    };
    // With --json, narration goes to stderr so stdout is only the report.
    let on_stderr = HumanReporter::on_stderr();
    let reporter: &dyn Reporter = if args.json {
        &on_stderr
    } else {
        ctx.reporter.as_ref()
    };
    let report = demo::run(&options, reporter).await?;
    if let Some(path) = &args.plot {
        plot::write(&report, path)?;
        reporter.report(Event::Info {
            message: format!("wrote the latency plot to {}", path.display()),
        });
    }
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
    out.push_str(
        "  each write and read counts in the phase in which it started, or, if it was still\n  running when the next phase began, in the phase in which it spent most of its time\n",
    );
    for m in &report.moved {
        let mut what = Vec::new();
        if m.writes > 0 {
            what.push(format!(
                "{} write(s) ({} failed)",
                m.writes, m.writes_failed
            ));
        }
        if m.reads > 0 {
            what.push(format!("{} read(s) ({} failed)", m.reads, m.reads_failed));
        }
        out.push_str(&format!(
            "  moved: {} that started in {} count in {} (longest {:.1} ms)\n",
            what.join(" and "),
            m.from,
            m.to,
            m.max_ms
        ));
    }
    let d = &report.dropped;
    if d.writes + d.reads > 0 {
        out.push_str(&format!(
            "  not in the table: {} writes ({} failed) and {} reads ({} failed) past the sample limit\n",
            d.writes, d.writes_failed, d.reads, d.reads_failed
        ));
    }
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
