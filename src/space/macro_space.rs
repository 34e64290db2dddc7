//! The ENAS macro space (Pham et al. 2018, Sec. 2.2): per layer an op, then one
//! skip bit for every earlier output (the stem first).
use super::{integers, ArchError};
use std::fmt;
use std::str::FromStr;

pub const MACRO_OPS: [&str; 6] = ["conv_3x3", "sep_conv_3x3", "conv_5x5", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3"];

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MacroLayer {
    pub op: usize,
    /// skips[i]: the layer also takes output i (0 = the stem, i = layer i-1's output).
    pub skips: Vec<bool>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MacroArch {
    pub layers: Vec<MacroLayer>,
}

impl MacroArch {
    /// Every op uniform and every skip bit a fair coin: random search's draw.
    pub fn random(layers: usize, rng: &mut impl rand::Rng) -> MacroArch {
        let layers = (0..layers).map(|i| MacroLayer { op: rng.gen_range(0..MACRO_OPS.len()), skips: (0..i).map(|_| rng.gen_bool(0.5)).collect() }).collect();
        MacroArch { layers }
    }

    pub fn to_json(&self) -> serde_json::Value {
        let layers: Vec<_> = self
            .layers
            .iter()
            .map(|l| {
                let skips: Vec<usize> = l.skips.iter().enumerate().filter(|(_, s)| **s).map(|(i, _)| i).collect();
                serde_json::json!({"op": MACRO_OPS[l.op], "skip_from": skips})
            })
            .collect();
        serde_json::json!({"space": "macro", "arc": self.to_string(), "layers": layers})
    }
}

impl FromStr for MacroArch {
    type Err = ArchError;

    fn from_str(text: &str) -> Result<Self, ArchError> {
        let v = integers(text)?;
        // L layers take L + L(L-1)/2 integers.
        let mut n: usize = 0;
        while n + n * n.saturating_sub(1) / 2 < v.len() {
            n += 1;
        }
        if v.is_empty() || n + n * (n - 1) / 2 != v.len() {
            return Err(ArchError::whole(text, format!("{} integers; L macro layers take L + L(L-1)/2 (layer i: op, then i skip bits)", v.len())));
        }
        let mut layers = Vec::with_capacity(n);
        let mut at = 0;
        for i in 0..n {
            if v[at] >= MACRO_OPS.len() {
                return Err(ArchError::at(text, at, format!("op of layer {i} must be below {}", MACRO_OPS.len())));
            }
            let op = v[at];
            let mut skips = Vec::with_capacity(i);
            for j in 0..i {
                let t = at + 1 + j;
                if v[t] > 1 {
                    return Err(ArchError::at(text, t, format!("skip bit {j} of layer {i} must be 0 or 1")));
                }
                skips.push(v[t] == 1);
            }
            layers.push(MacroLayer { op, skips });
            at += 1 + i;
        }
        Ok(MacroArch { layers })
    }
}

impl fmt::Display for MacroArch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut all = Vec::new();
        for l in &self.layers {
            all.push(l.op.to_string());
            all.extend(l.skips.iter().map(|&s| (s as u8).to_string()));
        }
        write!(f, "{}", all.join(" "))
    }
}
