//! The IDX format of MNIST and Fashion-MNIST, gzipped or raw.
use super::error::{read_file, DataError};
use std::io::Read;
use std::path::{Path, PathBuf};

const IMAGES_MAGIC: u32 = 0x0000_0803;
const LABELS_MAGIC: u32 = 0x0000_0801;

/// Reads a file, un-gzipping it when it starts with the gzip magic bytes.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = read_file(path)?;
    if raw.len() >= 2 && raw[0] == 0x1f && raw[1] == 0x8b {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_end(&mut out)
            .map_err(|e| DataError::Invalid { path: path.to_path_buf(), what: format!("bad gzip data: {e}") })?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

fn header(path: &Path, bytes: &[u8], magic: u32, what: &'static str, dims: usize) -> Result<Vec<usize>, DataError> {
    let header_len = 4 + 4 * dims;
    if bytes.len() < 4 {
        return Err(DataError::Truncated { path: path.to_path_buf(), expected: header_len, found: bytes.len() });
    }
    let found = be_u32(bytes, 0);
    if found != magic {
        return Err(DataError::BadMagic { path: path.to_path_buf(), found, expected: magic, what });
    }
    if bytes.len() < header_len {
        return Err(DataError::Invalid { path: path.to_path_buf(), what: format!("truncated header: {} bytes, need {header_len}", bytes.len()) });
    }
    let shape: Vec<usize> = (0..dims).map(|d| be_u32(bytes, 4 + 4 * d) as usize).collect();
    let expected: usize = shape.iter().product();
    let found = bytes.len() - header_len;
    if found < expected {
        return Err(DataError::Truncated { path: path.to_path_buf(), expected, found });
    }
    if found > expected {
        return Err(DataError::Invalid { path: path.to_path_buf(), what: format!("{} bytes after the {expected} the header announces", found - expected) });
    }
    Ok(shape)
}

/// Images as (count, rows, cols) and their bytes.
pub fn read_images(path: &Path) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    let bytes = read_maybe_gz(path)?;
    let shape = header(path, &bytes, IMAGES_MAGIC, "IDX images, ubyte x3", 3)?;
    Ok((shape[0], shape[1], shape[2], bytes[16..].to_vec()))
}

pub fn read_labels(path: &Path, classes: usize) -> Result<Vec<u8>, DataError> {
    let bytes = read_maybe_gz(path)?;
    header(path, &bytes, LABELS_MAGIC, "IDX labels, ubyte x1", 1)?;
    let labels = bytes[8..].to_vec();
    if let Some(index) = labels.iter().position(|&l| l as usize >= classes) {
        return Err(DataError::LabelOutOfRange { path: path.to_path_buf(), index, label: labels[index], classes });
    }
    Ok(labels)
}

/// `stem-idx3-ubyte` or `stem-idx3-ubyte.gz`, whichever exists.
pub fn find(dir: &Path, stem: &str) -> Option<PathBuf> {
    [stem.to_string(), format!("{stem}.gz")].into_iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// Writes an IDX file (used by tests and tools that make small datasets).
pub fn write(path: &Path, shape: &[usize], data: &[u8], gzip: bool) -> std::io::Result<()> {
    let magic = 0x0800u32 | shape.len() as u32;
    let mut bytes = magic.to_be_bytes().to_vec();
    for &d in shape {
        bytes.extend_from_slice(&(d as u32).to_be_bytes());
    }
    bytes.extend_from_slice(data);
    if gzip {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&bytes)?;
        bytes = enc.finish()?;
    }
    std::fs::write(path, bytes)
}
