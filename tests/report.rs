//! `report.html` of a smoke run: every section there, self-contained, and
//! opened in headless Chromium (Debian's `chromium`, installed by
//! scripts/setup.sh) with no console error and no resource that fails to load.
mod common;

use std::path::Path;
use std::process::Command;

fn enas(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_enas")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

/// A copy of `page` with a probe that logs every failed resource and script error to the console.
const PROBE: &str =
    r#"<script>addEventListener("error", e => console.error("failed: " + (e.target && (e.target.src || e.target.href) || e.message)), true)</script>"#;

/// Loads `page` in headless Chromium with the probe; returns the console lines and the screenshot's bytes.
fn open_in_chromium(page: &Path, shot: &Path) -> (Vec<String>, Vec<u8>) {
    let html = std::fs::read_to_string(page).unwrap();
    let probed = page.with_file_name("probed.html");
    std::fs::write(&probed, html.replacen("<head>", &format!("<head>{PROBE}"), 1)).unwrap();
    let profile = tempfile::tempdir().unwrap();
    // `timeout` so a hung browser fails the test instead of stalling CI.
    let out = Command::new("timeout")
        .args(["120", "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        .args(["--no-first-run", "--hide-scrollbars", "--enable-logging=stderr", "--v=0", "--window-size=1200,2400"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", probed.display()))
        .output()
        .expect("chromium (scripts/setup.sh installs Debian's chromium)");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    let console = String::from_utf8_lossy(&out.stderr).lines().filter(|l| l.contains(":CONSOLE")).map(String::from).collect();
    (console, std::fs::read(shot).unwrap_or_default())
}

#[test]
fn smoke_run_report_opens_in_chromium_without_errors() {
    let t = tempfile::tempdir().unwrap();
    let data = common::smoke_fashion(t.path());
    let run = t.path().join("run");
    let (code, _, err) = enas(&["train", "--preset", "smoke", "--data-dir", data.to_str().unwrap(), "--out", run.to_str().unwrap(), "--seed", "2", "--quiet"]);
    assert_eq!(code, 0, "{err}");
    let page = run.join("report.html");
    let html = std::fs::read_to_string(&page).unwrap();
    let result: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("result.json")).unwrap()).unwrap();
    for must in [
        "Test accuracy",
        "Reproduce with:",
        "enas train --preset smoke",
        "<h2>Stages",
        "<h2>Architecture",
        "normal cell",
        "<h2>Search",
        "<h2>Derive",
        "<h2>Retrain",
        "<h2>Configuration",
    ] {
        assert!(html.contains(must), "{must} missing");
    }
    assert!(html.contains(result["arch"].as_str().unwrap()));
    assert!(html.matches("<svg").count() >= 7, "drawing and plots");
    // Only in-page references (the drawings' arrow marker, url(#...)).
    let outside = html.replace("url(#", "");
    for external in ["src=", "href=", "url(", "@import", "<script"] {
        assert!(!outside.contains(external), "the report must be self-contained: found {external}");
    }

    let shot = t.path().join("report.png");
    let (console, png) = open_in_chromium(&page, &shot);
    assert!(console.is_empty(), "console: {console:?}");
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "screenshot of {} bytes", png.len());

    // The probe does catch a missing resource.
    let bad = t.path().join("bad.html");
    std::fs::write(&bad, "<html><head></head><body><img src=\"missing.png\"></body></html>").unwrap();
    let (console, _) = open_in_chromium(&bad, &t.path().join("bad.png"));
    assert!(console.iter().any(|l| l.contains("missing.png")), "{console:?}");
}

#[test]
fn report_works_on_a_stage_directory_and_names_a_bad_one() {
    let t = tempfile::tempdir().unwrap();
    let data = common::smoke_fashion(t.path());
    let run = t.path().join("run");
    let (code, _, err) = enas(&["search", "--preset", "smoke", "--data-dir", data.to_str().unwrap(), "--out", run.to_str().unwrap(), "--quiet"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = enas(&["report", run.join("search").to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("report.html"));
    let html = std::fs::read_to_string(run.join("search").join("report.html")).unwrap();
    assert!(html.contains("<h2>Search") && !html.contains("<h2>Retrain"));
    let (code, _, err) = enas(&["report", t.path().join("nothing").to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(err.contains("nothing") && err.contains("not a directory"), "{err}");
}

#[test]
fn epoch_axes_have_whole_ticks() {
    use enas::report::plots::{line_chart, Series};
    // Two epochs: ticks at 1 and 2 only, not 1.0, 1.1 ... 2.0 (issue 21).
    let svg = line_chart("loss", "epoch", "loss", &[Series::line("train", vec![(1.0, 0.9), (2.0, 0.7)])]).unwrap().unwrap();
    let labels: Vec<&str> = svg.split("</text>").filter_map(|t| t.rsplit('>').next()).map(str::trim).collect();
    assert!(labels.contains(&"1") && labels.contains(&"2"), "{labels:?}");
    assert!(!labels.iter().any(|l| ["1.0", "1.1", "1.5", "2.0"].contains(l)), "{labels:?}");
    // Fractional x values keep their decimals.
    let svg = line_chart("loss", "x", "y", &[Series::line("a", vec![(0.5, 100.0), (1.5, 200.0)])]).unwrap().unwrap();
    let labels: Vec<&str> = svg.split("</text>").filter_map(|t| t.rsplit('>').next()).map(str::trim).collect();
    assert!(labels.iter().any(|l| l.contains('.') && l.parse::<f64>().is_ok_and(|v| (0.5..=1.5).contains(&v) && v.fract() != 0.0)), "{labels:?}");
}

#[test]
fn legends_sit_under_the_chart_not_over_the_curves() {
    use enas::report::plots::{line_chart, Series};
    let series = [Series::line("train", vec![(1.0, 0.9), (2.0, 0.7), (3.0, 0.6)]), Series::line("valid", vec![(1.0, 0.8), (2.0, 0.75), (3.0, 0.7)])];
    let svg = line_chart("loss", "epoch", "loss", &series).unwrap().unwrap();
    // The lowest point of any curve (the polylines of three points: grid lines and legend samples have two), and where the legend's names are.
    let curves: Vec<Vec<f64>> = svg
        .split("<polyline")
        .skip(1)
        .map(|p| {
            p.split("points=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .split_whitespace()
                .map(|xy| xy.split(',').nth(1).unwrap().parse::<f64>().unwrap())
                .collect()
        })
        .filter(|ys: &Vec<f64>| ys.len() == 3)
        .collect();
    assert_eq!(curves.len(), 2);
    let bottom_of_curves = curves.iter().flatten().copied().fold(0.0, f64::max);
    for name in ["train", "valid"] {
        // plotters writes each text on its own line inside the element.
        let at = svg.find(&format!(">\n{name}\n</text>")).or_else(|| svg.find(&format!(">{name}</text>"))).unwrap();
        let tag = &svg[svg[..at].rfind("<text").unwrap()..at];
        let y: f64 = tag.split(" y=\"").nth(1).unwrap().split('"').next().unwrap().parse().unwrap();
        assert!(y > bottom_of_curves + 30.0, "{name} at y {y}, curves down to {bottom_of_curves}");
    }
}

#[test]
fn the_report_says_whether_the_policy_beat_uniform_draws() {
    use enas::report::{entropy_trend, policy_against_uniform};
    // Means 0.6 and 0.4; sample sd 0.0115, so standard errors 0.0058 each: 0.2 / 0.0082 = 24.5 standard errors.
    let policy = [0.59, 0.61, 0.59, 0.61];
    let uniform = [0.39, 0.41, 0.39, 0.41];
    let said = policy_against_uniform(&policy, &uniform).unwrap();
    assert!(
        said.contains("samples beat the 4 uniform draws") && said.contains("0.6000 ± 0.0058") && said.contains("0.2000 ± 0.0082, 24.5 standard errors"),
        "{said}"
    );
    // Within two standard errors: not a win.
    let said = policy_against_uniform(&[0.40, 0.44], &[0.41, 0.42]).unwrap();
    assert!(said.contains("do not clearly beat"), "{said}");
    let said = policy_against_uniform(&uniform, &policy).unwrap();
    assert!(said.contains("do worse than"), "{said}");
    assert!(policy_against_uniform(&[], &uniform).is_none());
    assert!(entropy_trend(56.98, 50.78).contains("fell") && entropy_trend(56.9, 57.2).contains("did not fall"));
}
