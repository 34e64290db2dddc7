//! TensorBoard event files (scalars only), written without TensorFlow: TFRecord
//! framing (length, masked CRC-32C of the length, data, masked CRC-32C of the
//! data) around `Event` protos encoded by hand. `read_scalars` parses them back.
use super::child::now;
use anyhow::{bail, Context, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// CRC-32C (Castagnoli), reflected polynomial 0x82F63B78.
pub fn crc32c(data: &[u8]) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 256]> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let mut t = [0u32; 256];
        for (i, e) in t.iter_mut().enumerate() {
            let mut c = i as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { (c >> 1) ^ 0x82F6_3B78 } else { c >> 1 };
            }
            *e = c;
        }
        t
    });
    !data.iter().fold(!0u32, |c, &b| table[((c ^ b as u32) & 0xff) as usize] ^ (c >> 8))
}

/// TFRecord's masked CRC.
fn masked(data: &[u8]) -> u32 {
    let c = crc32c(data);
    (c.rotate_right(15)).wrapping_add(0xa282_ead8)
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(field: u64, data: &[u8], out: &mut Vec<u8>) {
    varint(field << 3 | 2, out);
    varint(data.len() as u64, out);
    out.extend_from_slice(data);
}

/// `Event { wall_time = 1; step = 2; file_version = 3 | summary = 5 }`.
fn event(wall_time: f64, step: i64, body: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut e = vec![0x09];
    e.extend_from_slice(&wall_time.to_le_bytes());
    e.push(0x10);
    varint(step as u64, &mut e);
    body(&mut e);
    e
}

/// `Summary { repeated Value value = 1 }`, `Value { tag = 1; simple_value = 2 }`.
fn summary(scalars: &[(String, f32)]) -> Vec<u8> {
    let mut s = Vec::new();
    for (tag, v) in scalars {
        let mut value = Vec::new();
        bytes_field(1, tag.as_bytes(), &mut value);
        value.push(0x15);
        value.extend_from_slice(&v.to_le_bytes());
        bytes_field(1, &value, &mut s);
    }
    s
}

pub struct EventWriter {
    file: std::fs::File,
    pub path: PathBuf,
}

impl EventWriter {
    /// A new event file in `dir` (TensorBoard reads every file of a directory in turn).
    pub fn create(dir: &Path) -> Result<EventWriter> {
        std::fs::create_dir_all(dir).with_context(|| format!("{}: cannot create", dir.display()))?;
        let t = now();
        let path = dir.join(format!("events.out.tfevents.{}.enas.{}", t as u64, std::process::id()));
        let file = std::fs::File::create(&path).with_context(|| format!("{}: cannot create", path.display()))?;
        let mut w = EventWriter { file, path };
        w.record(&event(t, 0, |e| bytes_field(3, b"brain.Event:2", e)))?;
        Ok(w)
    }

    fn record(&mut self, data: &[u8]) -> Result<()> {
        let len = (data.len() as u64).to_le_bytes();
        let mut r = Vec::with_capacity(data.len() + 16);
        r.extend_from_slice(&len);
        r.extend_from_slice(&masked(&len).to_le_bytes());
        r.extend_from_slice(data);
        r.extend_from_slice(&masked(data).to_le_bytes());
        self.file.write_all(&r).and_then(|_| self.file.flush()).with_context(|| format!("{}: cannot write", self.path.display()))
    }

    pub fn scalars(&mut self, step: i64, scalars: &[(String, f32)]) -> Result<()> {
        let s = summary(scalars);
        self.record(&event(now(), step, |e| bytes_field(5, &s, e)))
    }

    /// Every number of `metrics` (a serialised epoch record) as `prefix/field` at `step`.
    pub fn metrics(&mut self, prefix: &str, step: i64, metrics: &serde_json::Value) -> Result<()> {
        let scalars: Vec<(String, f32)> = metrics
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.as_str() != "epoch")
            .filter_map(|(k, v)| v.as_f64().map(|f| (format!("{prefix}/{k}"), f as f32)))
            .collect();
        self.scalars(step, &scalars)
    }
}

fn read_varint(data: &[u8], at: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*at).context("truncated varint")?;
        *at += 1;
        v |= ((b & 0x7f) as u64) << shift;
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    bail!("varint too long")
}

/// Fields of one proto message: (field number, wire type, payload or value).
fn fields(data: &[u8]) -> Result<Vec<(u64, u8, Vec<u8>)>> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < data.len() {
        let key = read_varint(data, &mut at)?;
        let (field, wire) = (key >> 3, (key & 7) as u8);
        let payload = match wire {
            0 => read_varint(data, &mut at)?.to_le_bytes().to_vec(),
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                let p = data.get(at..at + n).context("truncated fixed field")?.to_vec();
                at += n;
                p
            }
            2 => {
                let n = read_varint(data, &mut at)? as usize;
                let p = data.get(at..at + n).context("truncated length-delimited field")?.to_vec();
                at += n;
                p
            }
            w => bail!("unsupported wire type {w}"),
        };
        out.push((field, wire, payload));
    }
    Ok(out)
}

/// The scalars of an event file as (tag, step, value), checking every CRC.
pub fn read_scalars(path: &Path) -> Result<Vec<(String, i64, f32)>> {
    let data = std::fs::read(path).with_context(|| format!("{}: cannot read", path.display()))?;
    let mut at = 0;
    let mut out = Vec::new();
    let mut first = true;
    while at < data.len() {
        let head = data.get(at..at + 12).with_context(|| format!("{}: truncated record header", path.display()))?;
        let len = u64::from_le_bytes(head[..8].try_into().expect("8 bytes")) as usize;
        if u32::from_le_bytes(head[8..12].try_into().expect("4 bytes")) != masked(&head[..8]) {
            bail!("{}: bad length CRC at byte {at}", path.display());
        }
        let body = data.get(at + 12..at + 12 + len).with_context(|| format!("{}: truncated record", path.display()))?;
        let crc = data.get(at + 12 + len..at + 16 + len).with_context(|| format!("{}: truncated record CRC", path.display()))?;
        if u32::from_le_bytes(crc.try_into().expect("4 bytes")) != masked(body) {
            bail!("{}: bad data CRC at byte {at}", path.display());
        }
        at += 16 + len;
        let event = fields(body)?;
        if first {
            let version = event.iter().find(|f| f.0 == 3).map(|f| String::from_utf8_lossy(&f.2).into_owned());
            if version.as_deref() != Some("brain.Event:2") {
                bail!("{}: the first event does not carry file_version brain.Event:2", path.display());
            }
            first = false;
        }
        let step = event.iter().find(|f| f.0 == 2 && f.1 == 0).map(|f| i64::from_le_bytes(f.2[..8].try_into().expect("8 bytes"))).unwrap_or(0);
        for (_, _, summary) in event.iter().filter(|f| f.0 == 5) {
            for (_, _, value) in fields(summary)?.iter().filter(|f| f.0 == 1) {
                let v = fields(value)?;
                let tag = v.iter().find(|f| f.0 == 1).map(|f| String::from_utf8_lossy(&f.2).into_owned()).unwrap_or_default();
                if let Some(x) = v.iter().find(|f| f.0 == 2 && f.1 == 5) {
                    out.push((tag, step, f32::from_le_bytes(x.2[..4].try_into().expect("4 bytes"))));
                }
            }
        }
    }
    Ok(out)
}
