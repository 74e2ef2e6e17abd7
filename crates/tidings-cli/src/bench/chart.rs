//! The run drawn as an SVG: throughput per transport and case, and latency percentiles, raw
//! client beside tidings, on logarithmic scales (memory moves millions of events a second,
//! a durable store thousands).

use std::path::Path;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::report::Report;

const RAW: RGBColor = RGBColor(0x9e, 0x9e, 0x9e);
const TIDINGS: RGBColor = RGBColor(0x1f, 0x6f, 0xb4);
const FONT: &str = "sans-serif";

/// A bar: its group, its slot within the group, its value.
struct Bar {
    group: usize,
    slot: usize,
    value: f64,
    tidings: bool,
}

/// Draws `report` at `path`.
pub(crate) fn draw(report: &Report, path: &Path) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (1200, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let (top, bottom) = root.split_vertically(450);
    let names: Vec<&str> = report.transports.iter().map(|t| t.transport).collect();

    let mut throughput = Vec::new();
    for (group, t) in report.transports.iter().enumerate() {
        for (case, paired) in [&t.publish, &t.consume, &t.end_to_end]
            .into_iter()
            .enumerate()
        {
            throughput.push(Bar {
                group,
                slot: case * 2,
                value: paired.raw_median,
                tidings: false,
            });
            throughput.push(Bar {
                group,
                slot: case * 2 + 1,
                value: paired.tidings_median,
                tidings: true,
            });
        }
    }
    panel(
        &top,
        &format!(
            "Throughput, events/s: publish | consume | end-to-end (median of {} rounds of {} events)",
            report.rounds, report.events
        ),
        &names,
        &throughput,
        6,
    )?;

    let mut latency = Vec::new();
    for (group, t) in report.transports.iter().enumerate() {
        if let Some(l) = &t.latency {
            for (p, (raw, tidings)) in [
                (l.raw.p50_ms, l.tidings.p50_ms),
                (l.raw.p99_ms, l.tidings.p99_ms),
                (l.raw.p999_ms, l.tidings.p999_ms),
            ]
            .into_iter()
            .enumerate()
            {
                latency.push(Bar {
                    group,
                    slot: p * 2,
                    value: raw,
                    tidings: false,
                });
                latency.push(Bar {
                    group,
                    slot: p * 2 + 1,
                    value: tidings,
                    tidings: true,
                });
            }
        }
    }
    panel(
        &bottom,
        "Publish-to-handled latency, ms: p50 | p99 | p999 (at half the end-to-end maximum)",
        &names,
        &latency,
        6,
    )?;
    root.present()?;
    Ok(())
}

/// One panel of grouped bars on a log scale, with the groups named under them.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    groups: &[&str],
    bars: &[Bar],
    slots: usize,
) -> anyhow::Result<()>
where
    DB::ErrorType: 'static,
{
    let positive = bars.iter().map(|b| b.value).filter(|v| *v > 0.0);
    let low = positive.clone().fold(f64::INFINITY, f64::min);
    let high = positive.fold(0.0, f64::max);
    let (low, high) = if low.is_finite() {
        (
            10f64.powf(low.log10().floor() - 1.0),
            10f64.powf(high.log10().ceil()),
        )
    } else {
        (0.1, 10.0)
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 17))
        .margin(12)
        .y_label_area_size(70)
        .x_label_area_size(10)
        .build_cartesian_2d(0f64..groups.len().max(1) as f64, (low..high).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .disable_x_axis()
        .y_label_formatter(&|v| {
            if *v >= 1000.0 {
                format!("{:.0}k", v / 1000.0)
            } else {
                format!("{v}")
            }
        })
        .draw()?;
    let width = 0.8 / slots as f64;
    chart
        .draw_series(
            bars.iter()
                .filter(|b| !b.tidings)
                .map(|b| bar(b, width, low * 3.0, RAW)),
        )?
        .label("raw client")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], RAW.filled()));
    chart
        .draw_series(
            bars.iter()
                .filter(|b| b.tidings)
                .map(|b| bar(b, width, low * 3.0, TIDINGS)),
        )?
        .label("tidings")
        .legend(|(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], TIDINGS.filled()));
    let label = TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Center, VPos::Bottom));
    chart.draw_series(groups.iter().enumerate().map(|(i, name)| {
        Text::new(
            (*name).to_owned(),
            (i as f64 + 0.5, low * 1.15),
            label.clone(),
        )
    }))?;
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.3))
        .draw()?;
    Ok(())
}

fn bar(b: &Bar, width: f64, floor: f64, color: RGBColor) -> Rectangle<(f64, f64)> {
    let x = b.group as f64 + 0.1 + b.slot as f64 * width;
    Rectangle::new(
        [(x, floor), (x + width * 0.9, b.value.max(floor))],
        color.filled(),
    )
}
