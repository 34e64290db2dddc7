//! Reading back an ONNX model of the kind `enas export` writes: the graph's
//! nodes, initializers, input and output (the same messages as proto.rs).
use anyhow::{bail, Context, Result};
use std::collections::HashMap;

/// One field of a message: its number and value.
enum Field<'a> {
    Int(u64),
    Fixed32(u32),
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], at: &mut usize) -> Result<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let Some(&b) = buf.get(*at) else { bail!("truncated varint") };
        *at += 1;
        v |= ((b & 0x7f) as u64) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    bail!("varint longer than ten bytes")
}

fn fields(buf: &[u8]) -> Result<Vec<(u64, Field<'_>)>> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < buf.len() {
        let key = varint(buf, &mut at)?;
        let value = match key & 7 {
            0 => Field::Int(varint(buf, &mut at)?),
            1 => {
                at += 8;
                Field::Int(0)
            }
            2 => {
                let len = varint(buf, &mut at)? as usize;
                let end = at.checked_add(len).filter(|&e| e <= buf.len()).context("field runs past the end")?;
                let bytes = &buf[at..end];
                at = end;
                Field::Bytes(bytes)
            }
            5 => {
                let b = buf.get(at..at + 4).context("truncated fixed32")?;
                at += 4;
                Field::Fixed32(u32::from_le_bytes(b.try_into().expect("four bytes")))
            }
            w => bail!("wire type {w} not supported"),
        };
        if at > buf.len() {
            bail!("field runs past the end");
        }
        out.push((key >> 3, value));
    }
    Ok(out)
}

fn text(b: &[u8]) -> Result<String> {
    Ok(std::str::from_utf8(b).context("a name is not UTF-8")?.to_string())
}

fn packed(b: &[u8]) -> Result<Vec<i64>> {
    let (mut at, mut v) = (0, Vec::new());
    while at < b.len() {
        v.push(varint(b, &mut at)? as i64);
    }
    Ok(v)
}

#[derive(Clone, Debug)]
pub enum AttrValue {
    Int(i64),
    Ints(Vec<i64>),
    Float(f32),
}

pub struct Node {
    pub op: String,
    pub inputs: Vec<String>,
    pub output: String,
    pub attrs: HashMap<String, AttrValue>,
}

impl Node {
    pub fn int(&self, name: &str, default: i64) -> i64 {
        match self.attrs.get(name) {
            Some(AttrValue::Int(i)) => *i,
            _ => default,
        }
    }
    pub fn ints(&self, name: &str) -> Option<&[i64]> {
        match self.attrs.get(name) {
            Some(AttrValue::Ints(v)) => Some(v),
            _ => None,
        }
    }
    pub fn float(&self, name: &str, default: f32) -> f32 {
        match self.attrs.get(name) {
            Some(AttrValue::Float(f)) => *f,
            _ => default,
        }
    }
}

/// A constant of the graph.
pub enum Constant {
    Floats(Vec<usize>, Vec<f32>),
    Ints(Vec<i64>),
}

pub struct Model {
    pub nodes: Vec<Node>,
    pub constants: HashMap<String, Constant>,
    pub input: String,
    /// The input's dimensions after the batch.
    pub input_dims: Vec<usize>,
    pub output: String,
    /// `metadata_props`, key to value.
    pub metadata: HashMap<String, String>,
}

fn node(b: &[u8]) -> Result<Node> {
    let mut n = Node { op: String::new(), inputs: Vec::new(), output: String::new(), attrs: HashMap::new() };
    for (f, v) in fields(b)? {
        match (f, v) {
            (1, Field::Bytes(s)) => n.inputs.push(text(s)?),
            (2, Field::Bytes(s)) => n.output = text(s)?,
            (4, Field::Bytes(s)) => n.op = text(s)?,
            (5, Field::Bytes(a)) => {
                let (mut name, mut value) = (String::new(), None);
                for (f, v) in fields(a)? {
                    match (f, v) {
                        (1, Field::Bytes(s)) => name = text(s)?,
                        (2, Field::Fixed32(x)) => value = Some(AttrValue::Float(f32::from_bits(x))),
                        (3, Field::Int(i)) => value = Some(AttrValue::Int(i as i64)),
                        (8, Field::Bytes(p)) => value = Some(AttrValue::Ints(packed(p)?)),
                        _ => {}
                    }
                }
                if let Some(v) = value {
                    n.attrs.insert(name, v);
                }
            }
            _ => {}
        }
    }
    Ok(n)
}

fn constant(b: &[u8]) -> Result<(String, Constant)> {
    let (mut dims, mut kind, mut name, mut raw) = (Vec::new(), 0, String::new(), &[][..]);
    for (f, v) in fields(b)? {
        match (f, v) {
            (1, Field::Bytes(p)) => dims = packed(p)?,
            (2, Field::Int(t)) => kind = t,
            (8, Field::Bytes(s)) => name = text(s)?,
            (9, Field::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    let dims: Vec<usize> = dims.iter().map(|&d| usize::try_from(d).context("a negative dimension")).collect::<Result<_>>()?;
    let count: usize = dims.iter().product();
    Ok(match kind as i64 {
        super::proto::FLOAT if raw.len() == 4 * count => {
            (name, Constant::Floats(dims, raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4"))).collect()))
        }
        super::proto::INT64 if raw.len() == 8 * count => {
            (name, Constant::Ints(raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8"))).collect()))
        }
        _ => bail!("initializer {name}: only float and int64 raw data are read, {count} values"),
    })
}

/// The dimensions of a ValueInfoProto's tensor type (a named dimension as 0).
fn dims_of(info: &[u8]) -> Result<(String, Vec<usize>)> {
    let mut name = String::new();
    let mut dims = Vec::new();
    for (f, v) in fields(info)? {
        match (f, v) {
            (1, Field::Bytes(s)) => name = text(s)?,
            (2, Field::Bytes(t)) => {
                for (f, v) in fields(t)? {
                    let (1, Field::Bytes(tensor)) = (f, v) else { continue };
                    for (f, v) in fields(tensor)? {
                        let (2, Field::Bytes(shape)) = (f, v) else { continue };
                        for (f, v) in fields(shape)? {
                            let (1, Field::Bytes(dim)) = (f, v) else { continue };
                            let fixed = fields(dim)?.into_iter().find_map(|(f, v)| if let (1, Field::Int(d)) = (f, v) { Some(d as usize) } else { None });
                            dims.push(fixed.unwrap_or(0));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Ok((name, dims))
}

/// Reads an ONNX model's graph.
pub fn model(bytes: &[u8]) -> Result<Model> {
    let top = fields(bytes)?;
    let mut metadata = HashMap::new();
    for (f, v) in &top {
        if let (14, Field::Bytes(entry)) = (f, v) {
            let (mut key, mut value) = (String::new(), String::new());
            for (f, v) in fields(entry)? {
                match (f, v) {
                    (1, Field::Bytes(k)) => key = text(k)?,
                    (2, Field::Bytes(v)) => value = text(v)?,
                    _ => {}
                }
            }
            metadata.insert(key, value);
        }
    }
    let graph = top.into_iter().find_map(|(f, v)| if let (7, Field::Bytes(g)) = (f, v) { Some(g) } else { None }).context("no graph in it")?;
    let mut m = Model { nodes: Vec::new(), constants: HashMap::new(), input: String::new(), input_dims: Vec::new(), output: String::new(), metadata };
    for (f, v) in fields(graph)? {
        match (f, v) {
            (1, Field::Bytes(n)) => m.nodes.push(node(n)?),
            (5, Field::Bytes(t)) => {
                let (name, c) = constant(t)?;
                m.constants.insert(name, c);
            }
            (11, Field::Bytes(i)) => {
                let (name, dims) = dims_of(i)?;
                if !m.constants.contains_key(&name) && m.input.is_empty() {
                    m.input = name;
                    m.input_dims = dims.into_iter().skip(1).collect();
                }
            }
            (12, Field::Bytes(o)) if m.output.is_empty() => m.output = dims_of(o)?.0,
            _ => {}
        }
    }
    if m.input.is_empty() || m.output.is_empty() || m.input_dims.len() != 3 {
        bail!("not an image classifier: it needs one (N, C, H, W) input and an output");
    }
    Ok(m)
}
