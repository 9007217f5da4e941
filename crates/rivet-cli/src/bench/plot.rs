//! The chart of `rivet bench`: latency percentiles per model and backend, and throughput against
//! concurrency, drawn with plotters to SVG or PNG (text in DejaVu Sans, embedded, so no system
//! fonts are needed).

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use rivet::{Error, Result};

use super::{Report, Row};

/// Checks that `path` names a format the chart can be drawn in.
pub fn check_path(path: &Path) -> Result<()> {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("svg" | "png") => Ok(()),
        _ => Err(super::arg_error(
            "--plot",
            format!("expected a file name ending in .svg or .png, got \"{}\"", path.display()),
        )),
    }
}

pub(crate) fn register_font() {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        // The embedded font parses; if it ever did not, text would be missing, not the chart.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

/// Draws the chart of `report` to `path` (.svg or .png).
pub fn draw(report: &Report, path: &Path) -> Result<()> {
    check_path(path)?;
    register_font();
    let size = (1280, 560);
    let svg = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("svg"));
    let outcome = if svg {
        let root = SVGBackend::new(path, size).into_drawing_area();
        paint(&root, report).and_then(|_| root.present().map_err(PlotError::new))
    } else {
        let root = BitMapBackend::new(path, size).into_drawing_area();
        paint(&root, report).and_then(|_| root.present().map_err(PlotError::new))
    };
    outcome.map_err(|e| Error::file(path, format!("cannot draw the chart: {e}")))
}

/// Why the chart could not be drawn: the drawing backend's error.
#[derive(Debug)]
struct PlotError(Box<dyn std::error::Error + Send + Sync>);

impl PlotError {
    fn new<E: std::error::Error + Send + Sync + 'static>(e: DrawingAreaErrorKind<E>) -> PlotError {
        PlotError(Box::new(e))
    }
}

impl std::fmt::Display for PlotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

type Pick = fn(&super::stats::Summary) -> f64;

const PERCENTILES: [(&str, Pick); 4] =
    [("p50", |s| s.p50), ("p90", |s| s.p90), ("p95", |s| s.p95), ("p99", |s| s.p99)];

/// The rows with latencies at the smallest batch and concurrency measured: one per model and
/// backend.
fn latency_rows(report: &Report) -> Vec<&Row> {
    let ok = report.results.iter().filter(|r| r.latency_ms.is_some());
    let batch = ok.clone().map(|r| r.batch).min().unwrap_or(1);
    let clients = ok.clone().map(|r| r.concurrency).min().unwrap_or(1);
    ok.filter(|r| r.batch == batch && r.concurrency == clients).collect()
}

/// An axis label: no trailing ".0" on round numbers.
fn short(v: f64) -> String {
    if v >= 1.0 {
        format!("{v:.0}")
    } else {
        format!("{}", (v * 1e4).round() / 1e4)
    }
}

fn log_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values
        .filter(|v| *v > 0.0 && v.is_finite())
        .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo > hi {
        return 0.001..1.0;
    }
    lo / 1.5..hi * 1.5
}

fn paint<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    report: &Report,
) -> std::result::Result<(), PlotError>
where
    DB::ErrorType: 'static,
{
    let err = PlotError::new::<DB::ErrorType>;
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(720);

    // Latency percentiles: a group of four bars per model × backend.
    let rows = latency_rows(report);
    let groups = rows.len().max(1);
    let (batch, clients) = rows.first().map_or((1, 1), |r| (r.batch, r.concurrency));
    let y =
        log_range(rows.iter().flat_map(|r| r.latency_ms.iter().flat_map(|s| PERCENTILES.map(|p| (p.1)(s)))));
    let floor = y.start;
    let mut chart = ChartBuilder::on(&left)
        .caption(format!("Latency percentiles (batch {batch}, {clients} client(s))"), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d((0..groups * 5).into_segmented(), y.log_scale())
        .map_err(err)?;
    let names: Vec<String> = rows.iter().map(|r| format!("{} {}", r.model, r.backend)).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(groups * 5 + 1)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) if i % 5 == 2 => names.get(i / 5).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .y_desc("latency (ms, log scale)")
        .y_label_formatter(&|v| short(*v))
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    for (k, (label, value)) in PERCENTILES.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        chart
            .draw_series(rows.iter().enumerate().filter_map(|(g, row)| {
                let v = value(row.latency_ms.as_ref()?);
                let x = g * 5 + k;
                Some(Rectangle::new(
                    [(SegmentValue::Exact(x), floor), (SegmentValue::Exact(x + 1), v)],
                    color.filled(),
                ))
            }))
            .map_err(err)?
            .label(*label)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(err)?;

    // Throughput against concurrency: a line per model × backend at the smallest batch.
    let lines: Vec<(String, Vec<(f64, f64)>)> = rows
        .iter()
        .map(|first| {
            let mut points: Vec<(f64, f64)> = report
                .results
                .iter()
                .filter(|r| r.model == first.model && r.backend == first.backend && r.batch == first.batch)
                .filter_map(|r| Some((r.concurrency as f64, r.inferences_per_s?)))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            (format!("{} {}", first.model, first.backend), points)
        })
        .collect();
    let max_clients = lines.iter().flat_map(|(_, p)| p.iter().map(|p| p.0)).fold(1.0, f64::max);
    let y = log_range(lines.iter().flat_map(|(_, p)| p.iter().map(|p| p.1)));
    let mut chart = ChartBuilder::on(&right)
        .caption(format!("Throughput against concurrency (batch {batch})"), ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0.5..max_clients + 0.5, y.log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("client threads")
        .y_desc("inferences/s (log scale)")
        .y_label_formatter(&|v| short(*v))
        .x_labels(max_clients as usize + 1)
        .x_label_formatter(&|v| if v.fract() == 0.0 { format!("{v:.0}") } else { String::new() })
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    for (k, (label, points)) in lines.iter().enumerate() {
        let color = Palette99::pick(k + 4).to_rgba();
        chart
            .draw_series(LineSeries::new(points.iter().copied(), color.stroke_width(2)))
            .map_err(err)?
            .label(label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
        chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, color.filled()))).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    Ok(())
}
