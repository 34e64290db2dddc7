//! Architectures of the fixed-length spaces as a vector of choices, each with
//! its number of options: what evolution mutates and Q-learning walks over.
//! The order is the authors' string format (micro: normal then reduction cell,
//! `x_id x_op y_id y_op` per node; macro: op then skip bits per layer; NB201: edges).
use super::nb201::NB201_EDGES;
use super::{Arch, MacroArch, MacroLayer, MicroArch, Nb201Arch, SpaceKind, MACRO_OPS, MICRO_OPS, NB201_OPS};

/// Options per choice; `size` is nodes per cell (micro) or layers (macro). None
/// for MetaQNN, whose chains vary in length.
pub fn cardinalities(space: SpaceKind, size: usize) -> Option<Vec<usize>> {
    match space {
        SpaceKind::Micro => {
            let cell: Vec<usize> = (0..size).flat_map(|i| [i + 2, MICRO_OPS.len(), i + 2, MICRO_OPS.len()]).collect();
            Some([cell.clone(), cell].concat())
        }
        SpaceKind::Macro => Some((0..size).flat_map(|i| std::iter::once(MACRO_OPS.len()).chain(std::iter::repeat_n(2, i))).collect()),
        SpaceKind::Nb201 => Some(vec![NB201_OPS.len(); NB201_EDGES]),
        SpaceKind::Metaqnn => None,
    }
}

impl Arch {
    /// The choices behind this architecture (None for MetaQNN).
    pub fn choices(&self) -> Option<Vec<usize>> {
        match self {
            Arch::Micro(_) | Arch::Macro(_) => {
                Some(self.to_arc_string().split_whitespace().map(|t| t.parse().expect("the authors' format is integers")).collect())
            }
            Arch::Nb201(a) => Some(a.ops.to_vec()),
            Arch::Metaqnn(_) => None,
        }
    }

    /// The architecture of `space` made of `choices` (each below its cardinality).
    pub fn from_choices(space: SpaceKind, choices: &[usize]) -> Option<Arch> {
        match space {
            SpaceKind::Micro => {
                let text: Vec<String> = choices.iter().map(|c| c.to_string()).collect();
                text.join(" ").parse::<MicroArch>().ok().map(Arch::Micro)
            }
            SpaceKind::Macro => {
                let mut layers = Vec::new();
                let mut at = 0;
                while at < choices.len() {
                    let i = layers.len();
                    let skips = choices.get(at + 1..at + 1 + i)?.iter().map(|&b| b == 1).collect();
                    layers.push(MacroLayer { op: choices[at], skips });
                    at += 1 + i;
                }
                Some(Arch::Macro(MacroArch { layers }))
            }
            SpaceKind::Nb201 => Some(Arch::Nb201(Nb201Arch { ops: choices.try_into().ok()? })),
            SpaceKind::Metaqnn => None,
        }
    }
}
