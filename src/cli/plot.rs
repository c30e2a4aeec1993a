//! `orch demo --plot FILE.svg`: the application's write latency over time
//! (p50, p99 and max per bucket, failed writes marked) with the stages on
//! the same time axis, drawn as SVG with plotters.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::demo::DemoReport;
use crate::demo::timeline::{Bucket, Timeline};
use crate::error::{Error, Result};

const SIZE: (u32, u32) = (1200, 700);
/// Stage names are staggered over this many rows above the chart, so a
/// long name can run past the next boundary without covering its name.
const LABEL_ROWS: i32 = 3;
const LABEL_ROW_HEIGHT: i32 = 17;
const STAGE_SHADE: RGBColor = RGBColor(241, 243, 246);
const P50: RGBColor = RGBColor(31, 119, 180);
const P99: RGBColor = RGBColor(255, 127, 14);
const MAX: RGBColor = RGBColor(120, 120, 120);
const FAILED: RGBColor = RGBColor(214, 39, 40);

/// Draw the report's timeline into `path`.
pub fn write(report: &DemoReport, path: &Path) -> Result<()> {
    let svg = render(report.mode, &report.timeline)?;
    std::fs::write(path, svg).map_err(|e| Error::io("cannot write the plot", path, e))
}

/// The plot of a `mode` ("plan" or "naive") run as SVG text.
pub fn render(mode: &str, timeline: &Timeline) -> Result<String> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
        draw(&root, mode, timeline)
            .map_err(|e| Error::failed(format!("cannot draw the plot: {e}")))?;
        root.present()
            .map_err(|e| Error::failed(format!("cannot draw the plot: {e}")))?;
    }
    Ok(svg)
}

/// Which figure of a bucket a line shows.
type BucketValue = fn(&Bucket) -> f64;

type DrawResult = std::result::Result<(), Box<dyn std::error::Error>>;

fn draw(root: &DrawingArea<SVGBackend<'_>, Shift>, mode: &str, t: &Timeline) -> DrawResult {
    root.fill(&WHITE)?;
    let writes: u64 = t.buckets.iter().map(|b| b.writes).sum();
    let caption = format!(
        "orch demo ({} mode): application write latency, {} ms buckets by start time; {} writes, {} failed",
        mode,
        (t.bucket_seconds * 1000.0).round(),
        writes,
        t.failed_writes.len()
    );
    let (y_low, y_high) = latency_range(t);
    let x_high = t.end_s.max(t.bucket_seconds);
    // The title on its own, then the stage names' band, then the chart.
    let below_title = root.titled(&caption, ("sans-serif", 19))?;
    let mut chart = ChartBuilder::on(&below_title)
        .margin(16)
        .margin_top(12 + LABEL_ROWS * LABEL_ROW_HEIGHT)
        .margin_right(28)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_high, (y_low..y_high).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc("seconds since the app started (each write at the time it started)")
        .y_desc("write latency, ms (log scale)")
        .y_label_formatter(&|v| short_number(*v))
        .x_label_formatter(&|v| short_number(*v))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()?;

    // Every other stage shaded, and a line where each stage begins.
    chart.draw_series(
        t.stages
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, s)| {
                Rectangle::new(
                    [(s.start_s, y_low), (s.end_s, y_high)],
                    STAGE_SHADE.filled(),
                )
            }),
    )?;
    chart.draw_series(t.stages.iter().skip(1).map(|s| {
        PathElement::new(
            vec![(s.start_s, y_low), (s.start_s, y_high)],
            BLACK.mix(0.45).stroke_width(1),
        )
    }))?;

    let series: [(&str, RGBColor, BucketValue); 3] = [
        ("max", MAX, |b| b.max_ms),
        ("p99", P99, |b| b.p99_ms),
        ("p50", P50, |b| b.p50_ms),
    ];
    for (name, color, value) in series {
        let mut labelled = false;
        for run in runs(&t.buckets, t.bucket_seconds) {
            let points = run
                .iter()
                .map(|b| (b.start_s + t.bucket_seconds / 2.0, value(b).max(y_low)));
            let style = color.stroke_width(if name == "max" { 1 } else { 2 });
            let drawn = chart.draw_series(LineSeries::new(points, style))?;
            if !labelled {
                drawn
                    .label(name)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], style));
                labelled = true;
            }
        }
    }
    let failed = chart.draw_series(t.failed_writes.iter().map(|f| {
        Cross::new(
            (f.start_s, f.latency_ms.max(y_low)),
            4,
            FAILED.stroke_width(1),
        )
    }))?;
    failed
        .label(format!("failed write ({})", t.failed_writes.len()))
        .legend(|(x, y)| Cross::new((x + 10, y), 4, FAILED.stroke_width(1)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .label_font(("sans-serif", 13))
        .draw()?;

    // Stage names above the chart, each joined to its boundary by a tick.
    let name_style = TextStyle::from(("sans-serif", 13).into_font()).color(&BLACK);
    let tick = BLACK.mix(0.45).stroke_width(1);
    for (index, stage) in t.stages.iter().enumerate() {
        let (x, top) = chart.backend_coord(&(stage.start_s, y_high));
        let row = index as i32 % LABEL_ROWS;
        let y = top - (LABEL_ROWS - row) * LABEL_ROW_HEIGHT;
        let width = stage.name.chars().count() as i32 * 7;
        let text_x = if x + 4 + width > SIZE.0 as i32 - 4 {
            x - 4 - width
        } else {
            x + 4
        };
        root.draw(&PathElement::new(vec![(x, y), (x, top)], tick))?;
        root.draw(&Text::new(
            stage.name.clone(),
            (text_x, y),
            name_style.clone(),
        ))?;
    }
    Ok(())
}

/// The latency axis: from a power of ten below the fastest bucket's p50
/// (or failed write) to one above the slowest write.
fn latency_range(t: &Timeline) -> (f64, f64) {
    let values = t
        .buckets
        .iter()
        .flat_map(|b| [b.p50_ms, b.max_ms])
        .chain(t.failed_writes.iter().map(|f| f.latency_ms))
        .filter(|v| *v > 0.0);
    let (low, high) = values.fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if high == 0.0 {
        return (0.1, 10.0);
    }
    let low = 10f64.powf(low.log10().floor()).max(0.01);
    let high = 10f64.powf((high * 1.5).log10().ceil()).max(low * 10.0);
    (low, high)
}

/// Consecutive buckets: a bucket in which no write started breaks the lines.
fn runs(buckets: &[Bucket], width: f64) -> Vec<&[Bucket]> {
    let mut runs = Vec::new();
    let mut start = 0;
    for i in 1..=buckets.len() {
        let broken =
            i == buckets.len() || buckets[i].start_s - buckets[i - 1].start_s > width * 1.5;
        if broken {
            runs.push(&buckets[start..i]);
            start = i;
        }
    }
    runs.retain(|r| !r.is_empty());
    runs
}

/// 0.1, 2.5, 10, 1000: no trailing zeros.
fn short_number(v: f64) -> String {
    let text = format!("{v:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::samples::{Measurements, OpKind, Sample};
    use crate::demo::timeline::{BUCKET, timeline};

    #[test]
    fn draws_the_stages_lines_and_failed_writes() {
        let write = |start_ms: u32, latency_ms: u32, stage: u16, failed: bool| Sample {
            start_us: start_ms * 1000,
            latency_us: latency_ms * 1000,
            stage,
            kind: OpKind::Write,
            error: failed.then_some(0),
        };
        let mut samples: Vec<Sample> = (0..300)
            .map(|i| write(i * 5, 1 + i % 4, 0, false))
            .collect();
        samples.push(write(1499, 1205, 0, true));
        samples.extend((0..300).map(|i| write(2700 + i * 10, 1, 2, true)));
        let m = Measurements::synthetic(
            &[
                ("0 baseline (app v1)", 0),
                ("1 textbook migration (one transaction)", 1_500_000),
                ("2 after it (app v1 still deployed)", 2_700_000),
            ],
            5_700_000,
            samples,
        );
        let svg = render("naive", &timeline(&m, BUCKET)).unwrap();
        assert!(svg.starts_with("<svg"), "{svg}");
        for text in [
            "0 baseline (app v1)",
            "1 textbook migration (one transaction)",
            "2 after it (app v1 still deployed)",
            "failed write (301)",
            "p50",
            "p99",
            "naive mode",
        ] {
            assert!(svg.contains(text), "no {text:?} in the plot");
        }
    }

    fn bucket(start_s: f64) -> Bucket {
        Bucket {
            start_s,
            writes: 1,
            failed: 0,
            p50_ms: 1.0,
            p99_ms: 1.0,
            max_ms: 1.0,
        }
    }

    #[test]
    fn an_empty_bucket_breaks_the_lines() {
        let buckets = [bucket(0.0), bucket(0.25), bucket(1.0), bucket(1.25)];
        let runs = runs(&buckets, 0.25);
        let starts: Vec<Vec<f64>> = runs
            .iter()
            .map(|r| r.iter().map(|b| b.start_s).collect())
            .collect();
        assert_eq!(starts, [vec![0.0, 0.25], vec![1.0, 1.25]]);
        assert!(super::runs(&[], 0.25).is_empty());
    }

    #[test]
    fn numbers_lose_trailing_zeros() {
        assert_eq!(short_number(0.1), "0.1");
        assert_eq!(short_number(1000.0), "1000");
        assert_eq!(short_number(2.5), "2.5");
    }
}
