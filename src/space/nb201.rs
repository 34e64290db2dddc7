//! The NAS-Bench-201 cell (Dong & Yang 2020, Sec. 2.1): 4 nodes, an op on each
//! of the 6 edges j -> i (j < i), written `|op~0|+|op~0|op~1|+|op~0|op~1|op~2|`.
use super::ArchError;
use std::fmt;
use std::str::FromStr;

pub const NB201_OPS: [&str; 5] = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"];

/// Edges in the string's order: (1<-0), (2<-0), (2<-1), (3<-0), (3<-1), (3<-2).
pub const NB201_EDGES: usize = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Nb201Arch {
    pub ops: [usize; NB201_EDGES],
}

impl Nb201Arch {
    pub fn random(rng: &mut impl rand::Rng) -> Nb201Arch {
        let mut ops = [0; NB201_EDGES];
        for o in &mut ops {
            *o = rng.gen_range(0..NB201_OPS.len());
        }
        Nb201Arch { ops }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"space": "nb201", "arc": self.to_string()})
    }
}

impl FromStr for Nb201Arch {
    type Err = ArchError;

    fn from_str(text: &str) -> Result<Self, ArchError> {
        let t = text.trim();
        let nodes: Vec<&str> = t.split('+').collect();
        if nodes.len() != 3 {
            return Err(ArchError::whole(text, format!("an NB201 cell has 3 '+'-separated nodes, found {}", nodes.len())));
        }
        let mut ops = [0; NB201_EDGES];
        let mut at = 0;
        for (i, node) in nodes.iter().enumerate() {
            let inner = node.strip_prefix('|').and_then(|n| n.strip_suffix('|'));
            let Some(inner) = inner else {
                return Err(ArchError::whole(text, format!("node {} ('{node}') must start and end with '|'", i + 1)));
            };
            let edges: Vec<&str> = inner.split('|').collect();
            if edges.len() != i + 1 {
                return Err(ArchError::whole(text, format!("node {} must have {} edges, has {}", i + 1, i + 1, edges.len())));
            }
            for (j, edge) in edges.iter().enumerate() {
                let (op, from) = edge.split_once('~').ok_or_else(|| ArchError::whole(text, format!("edge '{edge}' is not op~input")))?;
                if from != j.to_string() {
                    return Err(ArchError::whole(text, format!("edge '{edge}' of node {} must read from {j}", i + 1)));
                }
                ops[at] = NB201_OPS
                    .iter()
                    .position(|o| *o == op)
                    .ok_or_else(|| ArchError::whole(text, format!("unknown op '{op}' (ops: {})", NB201_OPS.join(", "))))?;
                at += 1;
            }
        }
        Ok(Nb201Arch { ops })
    }
}

impl fmt::Display for Nb201Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut at = 0;
        for node in 1..4 {
            if node > 1 {
                write!(f, "+")?;
            }
            write!(f, "|")?;
            for j in 0..node {
                write!(f, "{}~{j}|", NB201_OPS[self.ops[at]])?;
                at += 1;
            }
        }
        Ok(())
    }
}
