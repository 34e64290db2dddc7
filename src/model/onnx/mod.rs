//! A trained network as an ONNX graph (opset 17) in inference mode: batch norm
//! as `BatchNormalization` over the running statistics, dropout and drop-path
//! gone, the input's normalisation inside the graph (it takes float pixels
//! 0-255, NCHW), the batch dimension free. Each layer writes its own nodes
//! (`onnx` beside its `forward`); this holds the graph they are written to.
pub mod proto;
pub mod read;
pub mod run;

use crate::ops::PoolKind;
use candle_core::{Result, Tensor};
use proto::{Attr, Dim, Msg};

pub const OPSET: i64 = 17;
/// The IR version of opset 17 (ONNX 1.12).
const IR_VERSION: i64 = 8;
/// The name of the graph's input and output.
pub const INPUT: &str = "pixels";
pub const OUTPUT: &str = "logits";
/// The metadata key of the class names (a JSON array, by output index).
pub const CLASSES: &str = "classes";

/// A tensor of the graph under construction: its name and spatial size.
#[derive(Clone, Debug)]
pub struct Value {
    pub name: String,
    pub hw: (usize, usize),
}

/// 'Same' padding as ours (ops::Window::same, TensorFlow's): ceil(n / stride)
/// outputs, the padding split with the odd pixel after. The output size and
/// ONNX's pads (begin h, begin w, end h, end w).
fn same((h, w): (usize, usize), k: usize, stride: usize) -> ((usize, usize), Vec<i64>) {
    let axis = |n: usize| {
        let out = n.div_ceil(stride);
        let total = ((out - 1) * stride + k).saturating_sub(n);
        (out, (total / 2) as i64, (total - total / 2) as i64)
    };
    let ((oh, th, bh), (ow, tw, bw)) = (axis(h), axis(w));
    ((oh, ow), vec![th, tw, bh, bw])
}

#[derive(Default)]
pub struct Graph {
    nodes: Vec<Msg>,
    initializers: Vec<Msg>,
    count: usize,
    /// Multiply-adds per image of the convolutions and fully connected layers written so far.
    pub multiply_adds: u64,
}

impl Graph {
    fn fresh(&mut self, hint: &str) -> String {
        self.count += 1;
        format!("{hint}_{}", self.count)
    }

    /// Adds a node of `op_type`; returns its output's name.
    pub fn op(&mut self, op_type: &str, inputs: &[&str], attrs: &[(&str, Attr)]) -> String {
        let out = self.fresh(&op_type.to_lowercase());
        self.nodes.push(proto::node(op_type, &out, inputs, &out, attrs));
        out
    }

    /// A float constant (a weight) of the given shape.
    pub fn floats(&mut self, hint: &str, dims: &[usize], data: &[f32]) -> String {
        let name = self.fresh(hint);
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
        self.initializers.push(proto::tensor(&name, &dims, proto::FLOAT, &raw));
        name
    }

    /// A weight, in `shape` (candle's row-major order is ONNX's).
    pub fn weight(&mut self, hint: &str, t: &Tensor, shape: &[usize]) -> Result<String> {
        let data = t.flatten_all()?.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        if data.len() != shape.iter().product::<usize>() {
            candle_core::bail!("onnx: {hint} has {} values, not the {shape:?} asked for", data.len());
        }
        Ok(self.floats(hint, shape, &data))
    }

    /// A 1-D int64 constant (Pad's and Slice's arguments).
    pub fn ints(&mut self, hint: &str, data: &[i64]) -> String {
        let name = self.fresh(hint);
        let raw: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.initializers.push(proto::tensor(&name, &[data.len() as i64], proto::INT64, &raw));
        name
    }

    pub fn relu(&mut self, x: &Value) -> Value {
        Value { name: self.op("Relu", &[&x.name], &[]), hw: x.hw }
    }

    /// A k x k convolution (weight (C_out, C_in / group, k, k)), 'same' padding, optional ReLU before it.
    pub fn conv(&mut self, x: &Value, w: &Tensor, k: usize, stride: usize, group: usize, relu_in: bool) -> Result<Value> {
        let x = if relu_in { self.relu(x) } else { x.clone() };
        let c_out = w.dim(0)?;
        let per_group = w.elem_count() / (c_out * k * k);
        let w = self.weight("w", w, &[c_out, per_group, k, k])?;
        let (hw, pads) = same(x.hw, k, stride);
        self.multiply_adds += (hw.0 * hw.1 * c_out * per_group * k * k) as u64;
        let name = self.op(
            "Conv",
            &[&x.name, &w],
            &[
                ("kernel_shape", Attr::Ints(vec![k as i64; 2])),
                ("pads", Attr::Ints(pads)),
                ("strides", Attr::Ints(vec![stride as i64; 2])),
                ("group", Attr::Int(group as i64)),
            ],
        );
        Ok(Value { name, hw })
    }

    /// k x k pooling at `stride`: 'same' padding (average pooling leaves the padding out of the count, as ours), or none.
    pub fn pool(&mut self, x: &Value, kind: PoolKind, k: usize, stride: usize, pad_same: bool) -> Value {
        let valid = |n: usize| (n - k) / stride + 1;
        let (hw, pads) = if pad_same { same(x.hw, k, stride) } else { ((valid(x.hw.0), valid(x.hw.1)), vec![0; 4]) };
        let op = if kind == PoolKind::Max { "MaxPool" } else { "AveragePool" };
        let attrs = [
            ("kernel_shape", Attr::Ints(vec![k as i64; 2])),
            ("pads", Attr::Ints(pads)),
            ("strides", Attr::Ints(vec![stride as i64; 2])),
            ("count_include_pad", Attr::Int(0)),
        ];
        let attrs = if kind == PoolKind::Max { &attrs[..3] } else { &attrs[..] };
        Value { name: self.op(op, &[&x.name], attrs), hw }
    }

    /// Every second pixel from `offset` on both axes, odd sizes zero-padded at the end first (ops::subsample2).
    pub fn subsample2(&mut self, x: &Value, offset: i64) -> Value {
        let (h, w) = x.hw;
        let mut input = x.name.clone();
        if offset == 1 && (h % 2 == 1 || w % 2 == 1) {
            let pads = self.ints("pads", &[0, 0, 0, 0, 0, 0, (h % 2) as i64, (w % 2) as i64]);
            input = self.op("Pad", &[&input, &pads], &[]);
        }
        let (starts, ends, axes, steps) =
            (self.ints("starts", &[offset; 2]), self.ints("ends", &[i64::MAX; 2]), self.ints("axes", &[2, 3]), self.ints("steps", &[2; 2]));
        let name = self.op("Slice", &[&input, &starts, &ends, &axes, &steps], &[]);
        Value { name, hw: (h.div_ceil(2), w.div_ceil(2)) }
    }

    pub fn add(&mut self, a: &Value, b: &Value) -> Value {
        Value { name: self.op("Add", &[&a.name, &b.name], &[]), hw: a.hw }
    }

    /// Concatenated along the channels.
    pub fn concat(&mut self, xs: &[Value]) -> Value {
        let names: Vec<&str> = xs.iter().map(|x| x.name.as_str()).collect();
        Value { name: self.op("Concat", &names, &[("axis", Attr::Int(1))]), hw: xs[0].hw }
    }

    /// (N, C, H, W) to (N, C) by averaging over the pixels.
    pub fn global_avg_pool(&mut self, x: &Value) -> Value {
        let pooled = self.op("GlobalAveragePool", &[&x.name], &[]);
        self.flatten(&Value { name: pooled, hw: (1, 1) })
    }

    /// (N, ...) to (N, everything else), in candle's order.
    pub fn flatten(&mut self, x: &Value) -> Value {
        Value { name: self.op("Flatten", &[&x.name], &[("axis", Attr::Int(1))]), hw: (1, 1) }
    }

    /// x W^T for a weight (out, in), without bias.
    pub fn linear(&mut self, x: &Value, w: &Tensor) -> Result<Value> {
        self.multiply_adds += w.elem_count() as u64;
        let w = self.weight("fc", w, w.dims())?;
        Ok(Value { name: self.op("Gemm", &[&x.name, &w], &[("transB", Attr::Int(1))]), hw: (1, 1) })
    }

    /// `(x / 255 - mean) / std` per channel, as the loader normalises.
    pub fn normalise(&mut self, x: &Value, mean: &[f32], std: &[f32]) -> Value {
        let c = mean.len();
        let scale: Vec<f32> = std.iter().map(|s| 1.0 / (255.0 * s)).collect();
        let shift: Vec<f32> = mean.iter().zip(std).map(|(m, s)| -m / s).collect();
        let (scale, shift) = (self.floats("scale", &[1, c, 1, 1], &scale), self.floats("shift", &[1, c, 1, 1], &shift));
        let scaled = self.op("Mul", &[&x.name, &scale], &[]);
        Value { name: self.op("Add", &[&scaled, &shift], &[]), hw: x.hw }
    }

    /// The ModelProto: `ir_version = 1; producer_name = 2; graph = 7; opset_import = 8`, the graph
    /// `node = 1; name = 2; initializer = 5; input = 11; output = 12`, its output renamed `logits`.
    pub fn finish(mut self, input: [usize; 3], output: &Value, classes: &[String]) -> Vec<u8> {
        self.nodes.push(proto::node("Identity", "output", &[&output.name], OUTPUT, &[]));
        let mut graph = Msg::default();
        for n in &self.nodes {
            graph.msg(1, n);
        }
        graph.string(2, "enas");
        for t in &self.initializers {
            graph.msg(5, t);
        }
        let [c, h, w] = input.map(|d| Dim::Fixed(d as i64));
        graph.msg(11, &proto::value_info(INPUT, &[Dim::Named("N"), c, h, w]));
        graph.msg(12, &proto::value_info(OUTPUT, &[Dim::Named("N"), Dim::Fixed(classes.len() as i64)]));
        let mut opset = Msg::default();
        opset.string(1, "").int(2, OPSET);
        let mut model = Msg::default();
        // metadata_props = 14, `StringStringEntryProto { key = 1; value = 2 }`: the class names by output index.
        let mut names = Msg::default();
        names.string(1, CLASSES).string(2, &serde_json::to_string(classes).expect("strings serialise"));
        model.int(1, IR_VERSION).string(2, "enas").msg(7, &graph).msg(8, &opset).msg(14, &names);
        model.0
    }
}
