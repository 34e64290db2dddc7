//! What `enas bench ranking` found, in words and as a scatter plot, for the
//! command's output, `report.md` and `report.html`.
use super::plots::{scatter_chart, Series};
use crate::train::rank_stats::Interval;
use crate::train::ranking::Ranking;
use anyhow::Result;

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn with_interval(i: &Interval) -> String {
    format!("{:.3} (95% bootstrap interval {:.3} to {:.3})", i.value, i.low, i.high)
}

/// The measurement and its verdict in plain sentences.
pub fn statement(r: &Ranking) -> String {
    let uniform = r.archs.iter().filter(|a| a.source == "uniform").count();
    let what = if uniform < r.archs.len() { format!("{} uniform draws and the derived one", uniform) } else { format!("{uniform} uniform draws") };
    let verdict = if r.kendall_tau.low > 0.0 {
        "the shared weights do rank architectures as training them does (tau's interval lies above 0)"
    } else if r.kendall_tau.high < 0.0 {
        "the shared weights rank architectures against training them (tau's interval lies below 0)"
    } else {
        "no evidence that the shared weights rank architectures as training them does (tau's interval holds 0)"
    };
    let are = if r.top_overlap == 1 { "is" } else { "are" };
    let mut s = format!(
        "The supernet's ranking of {} architectures ({what}) against {} from scratch at the search's size, on the same {} validation images: Kendall's tau {}, Spearman's rho {}; {} of the {} best by shared weights {are} among the {} best from scratch: {verdict}.",
        r.archs.len(),
        super::count_of(r.options.epochs, "epoch"),
        r.valid_images,
        with_interval(&r.kendall_tau),
        with_interval(&r.spearman_rho),
        r.top_overlap,
        r.top_k,
        r.top_k
    );
    if let Some(d) = r.archs.iter().find(|a| a.source == "derived") {
        let place = |f: fn(&crate::train::ranking::RankedArch) -> f64| 1 + r.archs.iter().filter(|a| f(a) > f(d)).count();
        s.push_str(&format!(
            " The derived architecture is {} of {} by shared weights and {} from scratch.",
            ordinal(place(|a| a.shared_accuracy)),
            r.archs.len(),
            ordinal(place(|a| a.standalone_accuracy))
        ));
    }
    s
}

/// Shared-weight accuracy against accuracy from scratch, a point per architecture.
pub fn scatter(r: &Ranking) -> Result<Option<String>> {
    let points = |source: &str| r.archs.iter().filter(|a| a.source == source).map(|a| (a.shared_accuracy, a.standalone_accuracy)).collect::<Vec<_>>();
    let mut series = vec![Series::line("uniformly random architecture", points("uniform"))];
    let derived = points("derived");
    if !derived.is_empty() {
        series.push(Series::line("derived architecture", derived));
    }
    scatter_chart(
        &format!("supernet ranking: Kendall's tau {:.2}, Spearman's rho {:.2}", r.kendall_tau.value, r.spearman_rho.value),
        "validation accuracy with the shared weights",
        &format!("validation accuracy after {} from scratch", super::count_of(r.options.epochs, "epoch")),
        &series,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::ranking::{RankedArch, RankingOptions};

    fn ranking(tau: (f64, f64, f64)) -> Ranking {
        let arch = |source: &str, shared, standalone| RankedArch {
            source: source.into(),
            arch: String::new(),
            shared_accuracy: shared,
            standalone_accuracy: standalone,
            params: 0,
            seconds: 0.0,
        };
        Ranking {
            options: RankingOptions { archs: 2, epochs: 1, train_limit: None, resamples: 10 },
            archs: vec![arch("derived", 0.6, 0.8), arch("uniform", 0.5, 0.9), arch("uniform", 0.4, 0.7)],
            kendall_tau: Interval { value: tau.0, low: tau.1, high: tau.2 },
            spearman_rho: Interval { value: 0.5, low: -0.5, high: 1.0 },
            top_overlap: 3,
            top_k: 3,
            train_images: 100,
            valid_images: 50,
            seconds: 1.0,
        }
    }

    #[test]
    fn the_verdict_follows_the_interval_and_places_the_derived_architecture() {
        let held = statement(&ranking((0.33, -0.2, 0.9)));
        assert!(held.contains("no evidence") && held.contains("Kendall's tau 0.330 (95% bootstrap interval -0.200 to 0.900)"), "{held}");
        assert!(held.contains("3 architectures (2 uniform draws and the derived one) against 1 epoch"), "{held}");
        assert!(held.contains("1st of 3 by shared weights and 2nd from scratch"), "{held}");
        assert!(statement(&ranking((0.6, 0.2, 0.9))).contains("do rank architectures"));
        assert!(statement(&ranking((-0.6, -0.9, -0.2))).contains("against training them"));
        assert_eq!([ordinal(11), ordinal(22), ordinal(3), ordinal(104)], ["11th", "22nd", "3rd", "104th"]);
    }
}
