//! Progress bars (hidden when not wanted, e.g. in tests or with --quiet).
use indicatif::{ProgressBar, ProgressStyle};

pub fn steps_bar(len: u64, prefix: &str, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}").expect("valid template").progress_chars("=> "));
    bar.set_prefix(prefix.to_string());
    bar
}

pub fn bytes_bar(len: Option<u64>, show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::new_spinner(),
    };
    bar.set_style(
        ProgressStyle::with_template("download [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}").expect("valid template").progress_chars("=> "),
    );
    bar
}

/// Prints a line above `bar`, or on its own where the bar is not drawn
/// (stderr redirected): indicatif drops `println` on a hidden bar.
pub fn say(bar: &ProgressBar, show: bool, line: String) {
    if !show {
        return;
    }
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}
