//! The MetaQNN layer space (Baker et al. 2017, Sec. 4.1 and Table 1): a chain of
//! convolution, pooling and fully connected layers ended by global average
//! pooling or softmax, with transitions restricted by the representation size.
//! Written `C(64,3) P(3,2) FC(512) SM`: C(filters, receptive field) at stride 1,
//! P(receptive field, stride) max pooling, FC(units), then `GAP` or `SM`.
use super::ArchError;
use std::fmt;
use std::str::FromStr;

pub const CONV_FIELDS: [usize; 3] = [1, 3, 5];
pub const CONV_DEPTHS: [usize; 4] = [64, 128, 256, 512];
/// (receptive field, stride).
pub const POOLS: [(usize, usize); 3] = [(5, 3), (3, 2), (2, 2)];
pub const FC_UNITS: [usize; 3] = [512, 256, 128];
/// Layer depth i < 12 (Table 1): at most 11 layers before the termination.
pub const MAX_LAYERS: usize = 11;
pub const MAX_CONSECUTIVE_FC: usize = 2;
/// Fully connected layers only once the representation is this small (Sec. 4.1).
pub const FC_MAX_SIZE: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layer {
    Conv { depth: usize, field: usize },
    Pool { field: usize, stride: usize },
    Fc { units: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Termination {
    GlobalAvgPool,
    Softmax,
}

/// An action of the Q-learning agent: the next layer, or the end of the net.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    Layer(Layer),
    End(Termination),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MetaArch {
    pub layers: Vec<Layer>,
    pub end: Termination,
}

/// Where a partial network stands: what the legal next steps depend on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Position {
    pub depth: usize,
    /// Side of the current representation (square images).
    pub size: usize,
    pub last: Option<Layer>,
    pub consecutive_fc: usize,
}

/// The representation-size bucket of Table 1: (inf, 8], (8, 4], (4, 1].
pub fn size_bucket(size: usize) -> usize {
    match size {
        s if s > 8 => 0,
        s if s > 4 => 1,
        _ => 2,
    }
}

impl Position {
    pub fn start(image_size: usize) -> Position {
        Position { depth: 0, size: image_size, last: None, consecutive_fc: 0 }
    }

    /// The state the Q-table is keyed by: the last layer, its depth and the size bucket (Sec. 4.1).
    pub fn key(&self) -> String {
        match self.last {
            None => "start".to_string(),
            Some(l) => format!("{}@{}/n{}", layer_token(&l), self.depth, size_bucket(self.size)),
        }
    }

    /// Every legal next step (Sec. 4.1): receptive fields no larger than the
    /// representation, no pooling after pooling, fully connected layers only at
    /// size <= 8, at most two in a row and never wider than the one before,
    /// nothing but fully connected layers or the end after one, and the end
    /// after at most 11 layers.
    pub fn legal(&self) -> Vec<Step> {
        let mut steps = Vec::new();
        let after_fc = matches!(self.last, Some(Layer::Fc { .. }));
        if self.depth < MAX_LAYERS {
            if !after_fc {
                for &field in CONV_FIELDS.iter().filter(|&&f| f <= self.size) {
                    for &depth in &CONV_DEPTHS {
                        steps.push(Step::Layer(Layer::Conv { depth, field }));
                    }
                }
                if !matches!(self.last, Some(Layer::Pool { .. })) {
                    for &(field, stride) in POOLS.iter().filter(|(f, _)| *f <= self.size) {
                        steps.push(Step::Layer(Layer::Pool { field, stride }));
                    }
                }
            }
            if self.size <= FC_MAX_SIZE && self.consecutive_fc < MAX_CONSECUTIVE_FC {
                let cap = match self.last {
                    Some(Layer::Fc { units }) => units,
                    _ => usize::MAX,
                };
                for &units in FC_UNITS.iter().filter(|&&u| u <= cap) {
                    steps.push(Step::Layer(Layer::Fc { units }));
                }
            }
        }
        if self.depth > 0 {
            if !after_fc {
                steps.push(Step::End(Termination::GlobalAvgPool));
            }
            steps.push(Step::End(Termination::Softmax));
        }
        steps
    }

    /// The position after `layer`.
    pub fn after(&self, layer: Layer) -> Position {
        let size = match layer {
            Layer::Pool { field, stride } => (self.size - field) / stride + 1,
            Layer::Fc { .. } => 1,
            Layer::Conv { .. } => self.size,
        };
        let consecutive_fc = if matches!(layer, Layer::Fc { .. }) { self.consecutive_fc + 1 } else { 0 };
        Position { depth: self.depth + 1, size, last: Some(layer), consecutive_fc }
    }
}

impl MetaArch {
    /// Checks every transition against the rules for `image_size` inputs.
    pub fn validate(&self, image_size: usize) -> Result<(), String> {
        let mut pos = Position::start(image_size);
        for (i, l) in self.layers.iter().enumerate() {
            if !pos.legal().contains(&Step::Layer(*l)) {
                return Err(format!("layer {} ({}) is not allowed after {} at representation size {}", i + 1, layer_token(l), pos.key(), pos.size));
            }
            pos = pos.after(*l);
        }
        if !pos.legal().contains(&Step::End(self.end)) {
            return Err(format!("{} cannot end the network after {}", end_token(self.end), pos.key()));
        }
        Ok(())
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"space": "metaqnn", "arc": self.to_string(), "layers": self.layers.len()})
    }
}

pub fn layer_token(l: &Layer) -> String {
    match l {
        Layer::Conv { depth, field } => format!("C({depth},{field})"),
        Layer::Pool { field, stride } => format!("P({field},{stride})"),
        Layer::Fc { units } => format!("FC({units})"),
    }
}

pub fn end_token(t: Termination) -> &'static str {
    match t {
        Termination::GlobalAvgPool => "GAP",
        Termination::Softmax => "SM",
    }
}

pub fn step_token(s: &Step) -> String {
    match s {
        Step::Layer(l) => layer_token(l),
        Step::End(t) => end_token(*t).to_string(),
    }
}

fn parse_args(tok: &str, name: &str) -> Option<Vec<usize>> {
    let inner = tok.strip_prefix(name)?.strip_prefix('(')?.strip_suffix(')')?;
    inner.split(',').map(|v| v.trim().parse().ok()).collect()
}

impl FromStr for MetaArch {
    type Err = ArchError;

    fn from_str(text: &str) -> Result<Self, ArchError> {
        let tokens: Vec<&str> = text.split_whitespace().collect();
        let Some((last, body)) = tokens.split_last() else {
            return Err(ArchError::whole(text, "empty MetaQNN architecture"));
        };
        let end = match *last {
            "GAP" => Termination::GlobalAvgPool,
            "SM" => Termination::Softmax,
            _ => return Err(ArchError::at(text, tokens.len() - 1, "the last token must be GAP or SM")),
        };
        let mut layers = Vec::with_capacity(body.len());
        for (i, tok) in body.iter().enumerate() {
            let layer = if let Some(a) = parse_args(tok, "FC") {
                match a[..] {
                    [units] if FC_UNITS.contains(&units) => Layer::Fc { units },
                    _ => return Err(ArchError::at(text, i, format!("FC(units) takes units in {FC_UNITS:?}"))),
                }
            } else if let Some(a) = parse_args(tok, "C") {
                match a[..] {
                    [depth, field] if CONV_DEPTHS.contains(&depth) && CONV_FIELDS.contains(&field) => Layer::Conv { depth, field },
                    _ => return Err(ArchError::at(text, i, format!("C(filters,field) takes filters in {CONV_DEPTHS:?}, field in {CONV_FIELDS:?}"))),
                }
            } else if let Some(a) = parse_args(tok, "P") {
                match a[..] {
                    [field, stride] if POOLS.contains(&(field, stride)) => Layer::Pool { field, stride },
                    _ => return Err(ArchError::at(text, i, format!("P(field,stride) takes one of {POOLS:?}"))),
                }
            } else {
                return Err(ArchError::at(text, i, "expected C(filters,field), P(field,stride), FC(units), GAP or SM"));
            };
            layers.push(layer);
        }
        Ok(MetaArch { layers, end })
    }
}

impl fmt::Display for MetaArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for l in &self.layers {
            write!(f, "{} ", layer_token(l))?;
        }
        write!(f, "{}", end_token(self.end))
    }
}
