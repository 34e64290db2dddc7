//! Line charts as self-contained SVG strings (plotters' SVG backend: no fonts,
//! no bitmaps), for the HTML report and `enas bench nb201 --plot`.
use anyhow::{anyhow, Result};
use plotters::prelude::*;

/// One line, optionally with a band (lower, upper) around it.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub band: Option<Vec<(f64, f64, f64)>>,
}

impl Series {
    pub fn line(name: &str, points: Vec<(f64, f64)>) -> Series {
        Series { name: name.to_string(), points, band: None }
    }
}

const COLORS: [RGBColor; 6] =
    [RGBColor(31, 119, 180), RGBColor(214, 39, 40), RGBColor(44, 160, 44), RGBColor(255, 127, 14), RGBColor(148, 103, 189), RGBColor(140, 86, 75)];

fn bounds(series: &[Series]) -> Option<((f64, f64), (f64, f64))> {
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1).chain(s.band.iter().flatten().flat_map(|b| [b.1, b.2])));
    let (x0, x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    let (y0, y1) = ys.filter(|y| y.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| (a.min(y), b.max(y)));
    if !x0.is_finite() || !y0.is_finite() {
        return None;
    }
    let pad = |a: f64, b: f64| if b > a { (b - a) * 0.05 } else { a.abs().max(1.0) * 0.05 };
    Some(((x0, if x1 > x0 { x1 } else { x0 + 1.0 }), (y0 - pad(y0, y1), y1 + pad(y0, y1))))
}

/// A titled line chart with its legend under it; None when there is nothing to draw.
pub fn line_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Result<Option<String>> {
    chart(title, x_label, y_label, series, true)
}

/// A titled scatter plot, a colour per series, its legend under it; None when there is nothing to draw.
pub fn scatter_chart(title: &str, x_label: &str, y_label: &str, series: &[Series]) -> Result<Option<String>> {
    chart(title, x_label, y_label, series, false)
}

fn chart(title: &str, x_label: &str, y_label: &str, series: &[Series], lines: bool) -> Result<Option<String>> {
    let Some(((mut x0, mut x1), (y0, y1))) = bounds(series) else { return Ok(None) };
    if !lines {
        // Points at the edges whole, not cut by the axes.
        let pad = (x1 - x0) * 0.05;
        (x0, x1) = (x0 - pad, x1 + pad);
    }
    let mut svg = String::new();
    // The legend goes in a strip under the chart, a line per series, never over the curves.
    let legend_h = if series.len() > 1 { 10 + 18 * series.len() as u32 } else { 0 };
    {
        let root = SVGBackend::with_string(&mut svg, (640, 340 + legend_h)).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<_>| anyhow!("plot {title}: {e:?}");
        root.fill(&WHITE).map_err(e)?;
        let (plot_area, legend_area) = root.split_vertically(340);
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(56)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(e)?;
        // Epochs, ranks and query counts are whole numbers: ticks on whole numbers, labelled without decimals.
        let whole = series.iter().flat_map(|s| &s.points).all(|p| p.0.fract() == 0.0);
        let x_ticks = if whole { ((x1 - x0) as usize + 1).min(10) } else { 10 };
        let x_format = |x: &f64| match (whole, x.fract() == 0.0) {
            (true, true) => format!("{x:.0}"),
            (true, false) => String::new(),
            // Rounded, so float noise (0.060000000000000005) stays off the axis.
            (false, _) => format!("{x:.4}").trim_end_matches('0').trim_end_matches('.').to_string(),
        };
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_labels(x_ticks)
            .x_label_formatter(&x_format)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(e)?;
        for (i, s) in series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            if let Some(band) = &s.band {
                let upper = band.iter().map(|b| (b.0, b.2));
                let lower = band.iter().rev().map(|b| (b.0, b.1));
                chart.draw_series(std::iter::once(Polygon::new(upper.chain(lower).collect::<Vec<_>>(), color.mix(0.15)))).map_err(e)?;
            }
            if lines {
                chart.draw_series(LineSeries::new(s.points.iter().copied(), color.stroke_width(2))).map_err(e)?;
            }
            if s.points.len() <= 30 || !lines {
                chart.draw_series(s.points.iter().map(|&p| Circle::new(p, if lines { 3 } else { 5 }, color.filled()))).map_err(e)?;
            }
            if legend_h > 0 {
                let y = 12 + 18 * i as i32;
                if lines {
                    legend_area.draw(&PathElement::new(vec![(70, y), (94, y)], color.stroke_width(2))).map_err(e)?;
                } else {
                    legend_area.draw(&Circle::new((82, y), 5, color.filled())).map_err(e)?;
                }
                legend_area.draw(&Text::new(s.name.clone(), (102, y - 7), ("sans-serif", 13))).map_err(e)?;
            }
        }
        root.present().map_err(e)?;
    }
    Ok(Some(svg))
}

/// Two charts side by side in one SVG (each its own nested `<svg>`).
pub fn side_by_side(left: &str, right: &str) -> String {
    let size =
        |svg: &str, name: &str| -> u32 { svg.split(&format!("{name}=\"")).nth(1).and_then(|r| r.split('"').next()).and_then(|v| v.parse().ok()).unwrap_or(0) };
    let (w1, w2) = (size(left, "width"), size(right, "width"));
    let height = size(left, "height").max(size(right, "height"));
    let nested = |svg: &str, x: u32| svg.replacen("<svg ", &format!("<svg x=\"{x}\" "), 1);
    format!(
        "<svg width=\"{}\" height=\"{height}\" viewBox=\"0 0 {} {height}\" xmlns=\"http://www.w3.org/2000/svg\">\n{}\n{}\n</svg>\n",
        w1 + w2,
        w1 + w2,
        nested(left, 0),
        nested(right, w1)
    )
}
