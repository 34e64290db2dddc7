//! `enas data fetch`: download the official CIFAR tarball, check its published
//! MD5, and extract it into the cache directory.
use anyhow::{bail, Context, Result};
use md5::{Digest, Md5};
use std::io::Read;
use std::path::{Path, PathBuf};

use super::cifar::Variant;

pub struct Source {
    pub url: String,
    pub md5: String,
}

/// The official tarballs and the MD5 sums published beside them.
pub fn official(variant: Variant) -> Source {
    match variant {
        Variant::Cifar10 => Source { url: "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz".into(), md5: "c32a1d4ab5d03f1284b67883e8d87530".into() },
        Variant::Cifar100 => Source { url: "https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz".into(), md5: "03b5dce01913d631647c71ecec9e9cb8".into() },
    }
}

/// `$ENAS_DATA`, else `$XDG_CACHE_HOME/enas`, else `~/.cache/enas`.
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("ENAS_DATA") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(d).join("enas");
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    home.join(".cache").join("enas")
}

/// Downloads, verifies and extracts; returns the directory with the batch files.
/// Nothing is left in `dir` unless the checksum matched and extraction finished.
pub fn fetch(variant: Variant, source: &Source, dir: &Path, progress: bool) -> Result<PathBuf> {
    let target = dir.join(variant.folder());
    if target.join(variant.test_file()).is_file() {
        return Ok(target);
    }
    let by_hand = || {
        format!(
            "without a network here, download {} elsewhere, check that its MD5 is {}, and extract it into {} (giving {})",
            source.url,
            source.md5,
            dir.display(),
            target.join(variant.test_file()).display()
        )
    };
    let resp = ureq::get(&source.url).call().map_err(|e| {
        // ureq names the URL itself; say it once.
        let why = e.to_string();
        let why = why.strip_prefix(&format!("{}: ", source.url)).unwrap_or(&why).to_string();
        anyhow::anyhow!("{}: download failed: {why}; {}", source.url, by_hand())
    })?;
    let total: Option<u64> = resp.header("Content-Length").and_then(|v| v.parse().ok());
    let bar = crate::train::progress::bytes_bar(total, progress);
    let mut body = Vec::new();
    let mut reader = bar.wrap_read(resp.into_reader());
    reader.read_to_end(&mut body).map_err(|e| anyhow::anyhow!("{}: download interrupted: {e}; {}", source.url, by_hand()))?;
    bar.finish_and_clear();
    let digest = format!("{:x}", Md5::digest(&body));
    if digest != source.md5.to_lowercase() {
        bail!("{}: MD5 {digest} does not match the published {}; nothing was extracted", source.url, source.md5);
    }
    std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create directory", dir.display()))?;
    let staging = dir.join(format!(".{}.partial", variant.folder()));
    let _ = std::fs::remove_dir_all(&staging);
    let gz = flate2::read::GzDecoder::new(&body[..]);
    tar::Archive::new(gz).unpack(&staging).with_context(|| format!("{}: cannot extract the tarball into {}", source.url, staging.display()))?;
    let extracted = staging.join(variant.folder());
    if !extracted.join(variant.test_file()).is_file() {
        let _ = std::fs::remove_dir_all(&staging);
        bail!("{}: the tarball has no {}/{}", source.url, variant.folder(), variant.test_file());
    }
    std::fs::rename(&extracted, &target).with_context(|| format!("{}: cannot move into place", target.display()))?;
    let _ = std::fs::remove_dir_all(&staging);
    Ok(target)
}
