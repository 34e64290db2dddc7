//! The children of a multi-trial search against wall time: a row per executor
//! slot (a local slot, or a Slurm node), each child a bar from its start to
//! its end, a thin line before it while it was queued; and the best
//! validation accuracy so far as the children finished.
use super::plots::{line_chart, Series};
use anyhow::{anyhow, Result};
use plotters::prelude::*;

/// One child's times, in seconds since the Unix epoch.
pub struct Span {
    pub slot: String,
    pub submitted: f64,
    pub started: f64,
    pub finished: f64,
    pub reward: f64,
    pub failed: bool,
}

/// The spans of `trials` (trials.jsonl records) that carry times (older runs' do not).
pub fn spans(trials: &[serde_json::Value]) -> Vec<Span> {
    trials
        .iter()
        .filter_map(|t| {
            let (started, finished) = (t["started"].as_f64()?, t["finished"].as_f64()?);
            (started > 0.0 && finished >= started).then(|| Span {
                slot: t["slot"].as_str().unwrap_or("").to_string(),
                submitted: t["submitted"].as_f64().filter(|&s| s > 0.0 && s <= started).unwrap_or(started),
                started,
                finished,
                reward: t["reward"].as_f64().unwrap_or(0.0),
                failed: !t["failed"].is_null(),
            })
        })
        .collect()
}

/// The two charts, or None for a run without times.
pub fn charts(spans: &[Span]) -> Result<Option<(String, String)>> {
    let Some(t0) = spans.iter().map(|s| s.submitted).min_by(f64::total_cmp) else { return Ok(None) };
    let t1 = spans.iter().map(|s| s.finished).max_by(f64::total_cmp).unwrap_or(t0);
    let minutes = |t: f64| (t - t0) / 60.0;
    let mut slots: Vec<&str> = spans.iter().map(|s| s.slot.as_str()).collect();
    slots.sort();
    slots.dedup();
    let mut svg = String::new();
    {
        let height = 120 + 28 * slots.len() as u32;
        let root = SVGBackend::with_string(&mut svg, (640, height)).into_drawing_area();
        let e = |e: DrawingAreaErrorKind<_>| anyhow!("plot the children's timeline: {e:?}");
        root.fill(&WHITE).map_err(e)?;
        let x1 = minutes(t1).max(1e-3);
        let mut chart = ChartBuilder::on(&root)
            .caption("children on the executor's slots", ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(150)
            .build_cartesian_2d(0.0..x1 * 1.02, -0.6..slots.len() as f64 - 0.4)
            .map_err(e)?;
        let label = |y: &f64| {
            let i = y.round();
            if (y - i).abs() < 1e-6 && i >= 0.0 {
                slots.get(i as usize).map_or(String::new(), |s| s.chars().take(24).collect())
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_desc("minutes since the first submission")
            .y_labels(slots.len() * 2 + 1)
            .y_label_formatter(&label)
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(e)?;
        let blue = RGBColor(31, 119, 180);
        let red = RGBColor(214, 39, 40);
        for s in spans {
            let y = slots.iter().position(|&x| x == s.slot).unwrap_or(0) as f64;
            let color = if s.failed { red } else { blue };
            if s.started > s.submitted {
                chart.draw_series(std::iter::once(PathElement::new(vec![(minutes(s.submitted), y), (minutes(s.started), y)], color.mix(0.5)))).map_err(e)?;
            }
            let bar =
                Rectangle::new([(minutes(s.started), y - 0.3), (minutes(s.finished), y + 0.3)], color.mix(0.35 + 0.5 * s.reward.clamp(0.0, 1.0)).filled());
            chart.draw_series(std::iter::once(bar)).map_err(e)?;
        }
        root.present().map_err(e)?;
    }
    let mut done: Vec<&Span> = spans.iter().collect();
    done.sort_by(|a, b| a.finished.total_cmp(&b.finished));
    let mut best = f64::NEG_INFINITY;
    let curve: Vec<(f64, f64)> = done
        .iter()
        .map(|s| {
            best = best.max(s.reward);
            (minutes(s.finished), best)
        })
        .collect();
    let best_svg =
        line_chart("best child so far against wall time", "minutes since the first submission", "validation accuracy", &[Series::line("best so far", curve)])?;
    Ok(best_svg.map(|b| (svg, b)))
}
