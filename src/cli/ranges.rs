//! Range checks for numeric flags, as clap value parsers: a value out of
//! range is refused before anything runs, in clap's one-line error naming
//! the flag, with the range it must be in.

fn number(s: &str) -> Result<f64, String> {
    let v: f64 = s.trim().parse().map_err(|_| format!("{s} is not a number"))?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("{s} is not a finite number"))
    }
}

/// The number in `s` if `ok` holds for it, else an error saying it must be `range`.
fn checked(s: &str, ok: impl Fn(f64) -> bool, range: &str) -> Result<f64, String> {
    let v = number(s)?;
    if ok(v) {
        Ok(v)
    } else {
        Err(format!("{v} must be {range}"))
    }
}

/// A number > 0 (learning rates, widths, periods).
pub fn positive(s: &str) -> Result<f64, String> {
    checked(s, |v| v > 0.0, "greater than 0")
}

/// A number >= 0 (weight decay, clipping norms and loss weights, where 0 turns them off).
pub fn non_negative(s: &str) -> Result<f64, String> {
    checked(s, |v| v >= 0.0, "0 or more")
}

/// A number >= 1 (growth factors).
pub fn at_least_one(s: &str) -> Result<f64, String> {
    checked(s, |v| v >= 1.0, "1 or more")
}

/// A probability or fraction in [0, 1) (dropout, drop-path, label smoothing, momentum).
pub fn fraction(s: &str) -> Result<f64, String> {
    checked(s, |v| (0.0..1.0).contains(&v), "at least 0 and below 1")
}

/// `fraction` as f32.
pub fn fraction_f32(s: &str) -> Result<f32, String> {
    fraction(s).map(|v| v as f32)
}

/// A count >= 1 (epochs, batch sizes, channels, layers, budgets).
pub fn count(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(0) => Err("0 is not allowed: it must be 1 or more".into()),
        Ok(v) => Ok(v),
        Err(_) => Err(format!("{s} is not a whole number of 1 or more")),
    }
}

/// An image's channel count: 1 (grey) or 3 (RGB).
pub fn one_or_three(s: &str) -> Result<usize, String> {
    match s.trim() {
        "1" => Ok(1),
        "3" => Ok(3),
        _ => Err(format!("{s} must be 1 (grey) or 3 (RGB)")),
    }
}
