//! PNG plots of latency histograms, drawn with plotters' bitmap backend and the DejaVu Sans
//! font embedded from the `dejavu` crate, so no system font or font library is needed.
//!
//! The percentile spectrum puts "how many nines" on the x axis, so the tail gets as much room
//! as the median: x = -log10(1 - q), and the labels say which percentile each x is.
//!
//! ```text
//!   x:     0     0.3    1      2      3       4
//!   q:     0%    50%    90%    99%    99.9%   99.99%
//! ```
//!
//! The y axis is logarithmic microseconds, since a disk's fdatasync latencies can span
//! two orders of magnitude in one run.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{anyhow, Context};
use hdrhistogram::Histogram;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontStyle;

/// The font family name registered with plotters for every text on a plot.
const FONT_FAMILY: &str = "sans-serif";

const PLOT_SIZE_PX: (u32, u32) = (1000, 600);

/// The most nines the x axis shows (99.9999%).
const NINES_MAX: f64 = 6.0;

/// Points per nine along the spectrum line.
const POINTS_PER_NINE: usize = 50;

const SERIES_COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
    RGBColor(23, 190, 207),
];

/// One line on a percentile-spectrum plot.
#[derive(Debug)]
pub struct SpectrumSeries<'a> {
    pub label: String,
    pub histogram: &'a Histogram<u64>,
    /// Microseconds per histogram unit: 1.0 for microseconds, 0.001 for nanoseconds.
    pub unit_us: f64,
}

/// Registers the embedded font once per process.
fn ensure_font() -> anyhow::Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        plotters::style::register_font(FONT_FAMILY, FontStyle::Normal, dejavu::sans::regular())
            .is_ok()
    });
    ok.then_some(())
        .ok_or_else(|| anyhow!("the embedded DejaVu Sans font could not be parsed"))
}

/// The quantile at x position `x`.
fn quantile_at(x: f64) -> f64 {
    1.0 - 10f64.powf(-x)
}

/// An x-axis label: `0%`, `90%`, `99.9%`.
fn percentile_label(x: f64) -> String {
    let percent = quantile_at(x) * 100.0;
    let decimals = (x.round() as i64 - 2).clamp(0, 6) as usize;
    format!("{percent:.decimals$}%")
}

/// Draws the percentile spectrum of every series into a PNG at `path`.
pub fn plot_percentile_spectrum(
    path: &Path,
    title: &str,
    series: &[SpectrumSeries<'_>],
) -> anyhow::Result<()> {
    ensure_font()?;
    draw_spectrum(path, title, series)
        .map_err(anyhow::Error::from_boxed)
        .with_context(|| format!("drawing {}", path.display()))
}

/// The drawing itself. plotters' errors are generic over the backend, so they travel boxed.
fn draw_spectrum(
    path: &Path,
    title: &str,
    series: &[SpectrumSeries<'_>],
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let count_max = series.iter().map(|s| s.histogram.len()).max().unwrap_or(0);
    // Show as many nines as the sample count supports: 10^k samples resolve k nines.
    let x_max = ((count_max.max(10) as f64).log10().floor()).clamp(1.0, NINES_MAX);
    let lines: Vec<Vec<(f64, f64)>> = series.iter().map(|s| spectrum_points(s, x_max)).collect();
    let (y_min, y_max) = lines
        .iter()
        .flatten()
        .fold((f64::MAX, f64::MIN), |(lo, hi), &(_, y)| {
            (lo.min(y), hi.max(y))
        });
    let (y_min, y_max) = if y_min <= y_max {
        (y_min * 0.8, y_max * 1.25)
    } else {
        (1.0, 10.0)
    };
    let root = BitMapBackend::new(path, PLOT_SIZE_PX).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT_FAMILY, 24))
        .margin(20)
        // Room for the last x label, which is centred on the right edge.
        .margin_right(50)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(
            0f64..x_max,
            (y_min..y_max)
                .log_scale()
                .with_key_points(y_label_ticks(y_min, y_max))
                .with_light_points(log_ticks(y_min, y_max, &ALL_MANTISSAS)),
        )?;
    chart
        .configure_mesh()
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|x| percentile_label(*x))
        .y_label_formatter(&|y| format_tick(*y))
        .x_desc("percentile")
        .y_desc("latency (µs)")
        .label_style((FONT_FAMILY, 16))
        .axis_desc_style((FONT_FAMILY, 18))
        .draw()?;
    for (index, (spec, points)) in series.iter().zip(lines).enumerate() {
        let color = SERIES_COLORS[index % SERIES_COLORS.len()];
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))?
            .label(spec.label.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font((FONT_FAMILY, 16))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// One bar of a bar chart: a label, a value, and which of the palette's colours it takes
/// (bars of one kind share a colour, so raw limits and engine figures read apart).
#[derive(Debug, Clone)]
pub struct Bar {
    pub label: String,
    pub value: f64,
    pub color_index: usize,
}

/// Bar colours: grey for raw limits, then the series colours.
const BAR_COLORS: [RGBColor; 4] = [
    RGBColor(150, 150, 150),
    SERIES_COLORS[0],
    RGBColor(158, 202, 225),
    SERIES_COLORS[2],
];

/// Draws horizontal bars, one per row with its label on the left and its value, formatted
/// with `unit`, at its end. Rows run top to bottom in the order given.
pub fn plot_bars(path: &Path, title: &str, unit: &str, bars: &[Bar]) -> anyhow::Result<()> {
    anyhow::ensure!(!bars.is_empty(), "no bars to draw in {}", path.display());
    ensure_font()?;
    draw_bars(path, title, unit, bars)
        .map_err(anyhow::Error::from_boxed)
        .with_context(|| format!("drawing {}", path.display()))
}

fn draw_bars(
    path: &Path,
    title: &str,
    unit: &str,
    bars: &[Bar],
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let rows = i32::try_from(bars.len())?;
    let value_max = bars.iter().map(|b| b.value).fold(0.0, f64::max).max(1.0);
    let height = u32::try_from(bars.len())? * 34 + 140;
    let root = BitMapBackend::new(path, (PLOT_SIZE_PX.0, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, (FONT_FAMILY, 24))
        .margin(20)
        .margin_right(40)
        .x_label_area_size(40)
        .y_label_area_size(330)
        // A segmented range of 0..n has n + 1 segments in plotters; 0..rows - 1 has one a bar.
        .build_cartesian_2d(0f64..value_max * 1.22, (0..rows - 1).into_segmented())?;
    let labels: Vec<&str> = bars.iter().map(|b| b.label.as_str()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(bars.len())
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => usize::try_from(rows - 1 - *i)
                .ok()
                .and_then(|row| labels.get(row))
                .map_or_else(String::new, |l| (*l).to_owned()),
            _ => String::new(),
        })
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc(unit)
        .label_style((FONT_FAMILY, 15))
        .axis_desc_style((FONT_FAMILY, 17))
        .draw()?;
    for (row, bar) in bars.iter().enumerate() {
        // Row 0 at the top: plotters counts segments from the bottom.
        let y = rows - 1 - i32::try_from(row)?;
        let color = BAR_COLORS[bar.color_index % BAR_COLORS.len()];
        let mut rect = Rectangle::new(
            [
                (0.0, SegmentValue::Exact(y)),
                (bar.value, SegmentValue::Exact(y + 1)),
            ],
            color.filled(),
        );
        rect.set_margin(5, 5, 0, 0);
        chart.draw_series(std::iter::once(rect))?;
        chart.draw_series(std::iter::once(Text::new(
            format!(" {}", format_tick(bar.value)),
            (bar.value, SegmentValue::CenterOf(y)),
            (FONT_FAMILY, 15)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Left, VPos::Center)),
        )))?;
    }
    root.present()?;
    Ok(())
}

/// One line of an x-y plot, drawn with a marker at every point.
#[derive(Debug, Clone)]
pub struct XySeries {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Draws x-y lines (latency against throughput, throughput over time) into a PNG at `path`.
/// With `log_y` the y axis is logarithmic (latencies); otherwise linear from zero.
pub fn plot_xy(
    path: &Path,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    series: &[XySeries],
    log_y: bool,
) -> anyhow::Result<()> {
    ensure_font()?;
    draw_xy(path, title, (x_desc, y_desc), series, log_y)
        .map_err(anyhow::Error::from_boxed)
        .with_context(|| format!("drawing {}", path.display()))
}

fn draw_xy(
    path: &Path,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    series: &[XySeries],
    log_y: bool,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let points = || series.iter().flat_map(|s| s.points.iter());
    let x_max = points().map(|p| p.0).fold(0.0, f64::max).max(1e-9) * 1.05;
    let y_max = points().map(|p| p.1).fold(0.0, f64::max).max(1e-9);
    let y_min = points()
        .map(|p| p.1)
        .filter(|y| *y > 0.0)
        .fold(f64::MAX, f64::min);
    let root = BitMapBackend::new(path, PLOT_SIZE_PX).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(title, (FONT_FAMILY, 24))
        .margin(20)
        .margin_right(40)
        .x_label_area_size(50)
        .y_label_area_size(80);
    if log_y {
        let (low, high) = if y_min <= y_max {
            (y_min * 0.8, y_max * 1.25)
        } else {
            (1.0, 10.0)
        };
        let mut chart = builder.build_cartesian_2d(
            0f64..x_max,
            (low..high)
                .log_scale()
                .with_key_points(y_label_ticks(low, high))
                .with_light_points(log_ticks(low, high, &ALL_MANTISSAS)),
        )?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .y_label_formatter(&|y| format_tick(*y))
            .label_style((FONT_FAMILY, 16))
            .axis_desc_style((FONT_FAMILY, 18))
            .draw()?;
        for (index, spec) in series.iter().enumerate() {
            let color = SERIES_COLORS[index % SERIES_COLORS.len()];
            chart
                .draw_series(LineSeries::new(spec.points.clone(), color.stroke_width(2)))?
                .label(spec.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
                });
            chart.draw_series(
                spec.points
                    .iter()
                    .map(|&p| Circle::new(p, 4, color.filled())),
            )?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT_FAMILY, 16))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    } else {
        let mut chart = builder.build_cartesian_2d(0f64..x_max, 0f64..y_max * 1.15)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style((FONT_FAMILY, 16))
            .axis_desc_style((FONT_FAMILY, 18))
            .draw()?;
        for (index, spec) in series.iter().enumerate() {
            let color = SERIES_COLORS[index % SERIES_COLORS.len()];
            chart
                .draw_series(LineSeries::new(spec.points.clone(), color.stroke_width(2)))?
                .label(spec.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font((FONT_FAMILY, 16))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

const ALL_MANTISSAS: [f64; 9] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0];

/// Labelled y ticks: 1-2-5 per decade, or every digit when the range is too narrow for that
/// to give at least three labels.
fn y_label_ticks(low: f64, high: f64) -> Vec<f64> {
    let ticks = log_ticks(low, high, &[1.0, 2.0, 5.0]);
    if ticks.len() >= 3 {
        ticks
    } else {
        log_ticks(low, high, &ALL_MANTISSAS)
    }
}

/// A tick label: whole numbers without decimals (`50`, `2000`), others as `format_us`.
fn format_tick(value: f64) -> String {
    if value >= 1.0 && (value - value.round()).abs() < 1e-9 {
        format!("{value:.0}")
    } else {
        crate::report::format_us(value)
    }
}

/// Tick values `mantissa * 10^k` inside `[low, high]`, for every decade the range touches:
/// with mantissas 1, 2, 5 a range of 130..2400 gets 200, 500, 1000, 2000.
fn log_ticks(low: f64, high: f64, mantissas: &[f64]) -> Vec<f64> {
    if !(low > 0.0 && high > low) {
        return Vec::new();
    }
    let first_decade = low.log10().floor() as i32;
    let last_decade = high.log10().ceil() as i32;
    (first_decade..=last_decade)
        .flat_map(|decade| mantissas.iter().map(move |m| m * 10f64.powi(decade)))
        .filter(|tick| (low..=high).contains(tick))
        .collect()
}

/// (nines, microseconds) points from the 0th percentile up to `x_max` nines.
fn spectrum_points(series: &SpectrumSeries<'_>, x_max: f64) -> Vec<(f64, f64)> {
    if series.histogram.is_empty() {
        return Vec::new();
    }
    let point_count = (x_max * POINTS_PER_NINE as f64) as usize;
    (0..=point_count)
        .map(|step| {
            let x = x_max * step as f64 / point_count as f64;
            let value = series.histogram.value_at_quantile(quantile_at(x));
            // The log axis cannot show 0; a recorded value is always at least 1 unit.
            (x, (value.max(1) as f64) * series.unit_us)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_percentiles_by_nines() {
        assert_eq!(percentile_label(0.0), "0%");
        assert_eq!(percentile_label(1.0), "90%");
        assert_eq!(percentile_label(2.0), "99%");
        assert_eq!(percentile_label(3.0), "99.9%");
        assert_eq!(percentile_label(4.0), "99.99%");
        assert!((quantile_at(3.0) - 0.999).abs() < 1e-9);
    }

    #[test]
    fn picks_log_ticks() {
        assert_eq!(
            log_ticks(130.0, 2400.0, &[1.0, 2.0, 5.0]),
            [200.0, 500.0, 1000.0, 2000.0]
        );
        assert_eq!(log_ticks(0.5, 3.0, &[1.0, 5.0]), [0.5, 1.0]);
        assert!(log_ticks(0.0, 1.0, &[1.0]).is_empty());
        assert_eq!(y_label_ticks(90.0, 380.0), [90.0, 100.0, 200.0, 300.0]);
        assert_eq!(format_tick(50.0), "50");
        assert_eq!(format_tick(0.5), "0.50");
    }

    #[test]
    fn draws_bars() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("bars.png");
        let bars = [("raw", 2000.0, 0), ("engine", 1500.0, 1)].map(|(l, v, c)| Bar {
            label: l.to_owned(),
            value: v,
            color_index: c,
        });
        plot_bars(&path, "bars", "MB/s", &bars)?;
        assert_eq!(&std::fs::read(&path)?[..4], b"\x89PNG");
        Ok(())
    }

    #[test]
    fn draws_xy_lines() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let series = [XySeries {
            label: "a".into(),
            points: vec![(10.0, 500.0), (20.0, 800.0), (30.0, 4000.0)],
        }];
        for log_y in [true, false] {
            let path = dir.path().join(format!("xy_{log_y}.png"));
            plot_xy(&path, "xy", ("MB/s", "µs"), &series, log_y)?;
            assert_eq!(&std::fs::read(&path)?[..4], b"\x89PNG");
        }
        Ok(())
    }

    #[test]
    fn writes_a_png() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("spectrum.png");
        let mut histogram = crate::histogram::new_histogram(1_000_000)?;
        for value in 1..=10_000u64 {
            histogram.saturating_record(100 + value % 1000 + (value / 9990) * 50_000);
        }
        let series = [SpectrumSeries {
            label: "test".into(),
            histogram: &histogram,
            unit_us: 1.0,
        }];
        plot_percentile_spectrum(&path, "test spectrum", &series)?;
        let bytes = std::fs::read(&path)?;
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
        Ok(())
    }
}
