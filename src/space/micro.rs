//! The ENAS micro (cell) space (Pham et al. 2018, Sec. 2.3): a normal and a
//! reduction cell of B nodes, each node `x_id x_op y_id y_op`.
use super::{integers, ArchError};
use std::fmt;
use std::str::FromStr;

/// Op ids as the authors number them.
pub const MICRO_OPS: [&str; 5] = ["sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "identity"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Node {
    pub x_id: usize,
    pub x_op: usize,
    pub y_id: usize,
    pub y_op: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    pub nodes: Vec<Node>,
}

impl Cell {
    /// Which of the B + 2 states (two inputs, then the nodes) feed no node.
    pub fn unused(&self) -> Vec<bool> {
        let mut used = vec![false; self.nodes.len() + 2];
        for n in &self.nodes {
            used[n.x_id] = true;
            used[n.y_id] = true;
        }
        used.iter().map(|u| !u).collect()
    }
    fn ints(&self) -> Vec<usize> {
        self.nodes.iter().flat_map(|n| [n.x_id, n.x_op, n.y_id, n.y_op]).collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MicroArch {
    pub normal: Cell,
    pub reduce: Cell,
}

impl MicroArch {
    /// Every input and op uniform: random search's draw.
    pub fn random(nodes: usize, rng: &mut impl rand::Rng) -> MicroArch {
        let mut cell = || Cell {
            nodes: (0..nodes)
                .map(|i| Node {
                    x_id: rng.gen_range(0..i + 2),
                    x_op: rng.gen_range(0..MICRO_OPS.len()),
                    y_id: rng.gen_range(0..i + 2),
                    y_op: rng.gen_range(0..MICRO_OPS.len()),
                })
                .collect(),
        };
        let normal = cell();
        MicroArch { normal, reduce: cell() }
    }

    pub fn num_nodes(&self) -> usize {
        self.normal.nodes.len()
    }

    pub fn to_json(&self) -> serde_json::Value {
        let cell = |c: &Cell| {
            c.nodes.iter().map(|n| serde_json::json!({"x": n.x_id, "x_op": MICRO_OPS[n.x_op], "y": n.y_id, "y_op": MICRO_OPS[n.y_op]})).collect::<Vec<_>>()
        };
        serde_json::json!({
            "space": "micro",
            "arc": self.to_string(),
            "normal": cell(&self.normal),
            "reduce": cell(&self.reduce),
        })
    }
}

impl FromStr for MicroArch {
    type Err = ArchError;

    fn from_str(text: &str) -> Result<Self, ArchError> {
        let v = integers(text)?;
        if v.is_empty() || v.len() % 8 != 0 {
            return Err(ArchError::whole(
                text,
                format!("{} integers; a micro architecture has 8 per node (4 for the normal cell, 4 for the reduction cell)", v.len()),
            ));
        }
        let b = v.len() / 8;
        let cell = |offset: usize| -> Result<Cell, ArchError> {
            let mut nodes = Vec::with_capacity(b);
            for i in 0..b {
                let at = offset + 4 * i;
                for (j, limit, what) in [(0, i + 2, "input id"), (1, MICRO_OPS.len(), "op"), (2, i + 2, "input id"), (3, MICRO_OPS.len(), "op")] {
                    if v[at + j] >= limit {
                        return Err(ArchError::at(text, at + j, format!("{what} of node {i} must be below {limit}")));
                    }
                }
                nodes.push(Node { x_id: v[at], x_op: v[at + 1], y_id: v[at + 2], y_op: v[at + 3] });
            }
            Ok(Cell { nodes })
        };
        Ok(MicroArch { normal: cell(0)?, reduce: cell(4 * b)? })
    }
}

impl fmt::Display for MicroArch {
    /// The authors' format: the normal cell's integers, then the reduction cell's, space separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let all: Vec<String> = self.normal.ints().into_iter().chain(self.reduce.ints()).map(|i| i.to_string()).collect();
        write!(f, "{}", all.join(" "))
    }
}
