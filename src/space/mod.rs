//! Search spaces and their architecture types, with the authors' string
//! formats and JSON.
pub mod encoding;
pub mod macro_space;
pub mod metaqnn;
pub mod micro;
pub mod nb201;

pub use macro_space::{MacroArch, MacroLayer, MACRO_OPS};
pub use metaqnn::MetaArch;
pub use micro::{Cell, MicroArch, Node, MICRO_OPS};
pub use nb201::{Nb201Arch, NB201_OPS};

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum SpaceKind {
    Micro,
    Macro,
    /// MetaQNN's layer chains (multi-trial search only: no shared weights).
    Metaqnn,
    /// The NAS-Bench-201 cell (tabular: `enas bench nb201`).
    Nb201,
}

impl SpaceKind {
    pub fn name(self) -> &'static str {
        match self {
            SpaceKind::Micro => "micro",
            SpaceKind::Macro => "macro",
            SpaceKind::Metaqnn => "metaqnn",
            SpaceKind::Nb201 => "nb201",
        }
    }

    /// The space `name` names (the inverse of `name`).
    pub fn from_name(name: &str) -> Option<SpaceKind> {
        [SpaceKind::Micro, SpaceKind::Macro, SpaceKind::Metaqnn, SpaceKind::Nb201].into_iter().find(|s| s.name() == name)
    }

    /// Spaces with an ENAS supernet (shared weights).
    pub fn has_supernet(self) -> bool {
        matches!(self, SpaceKind::Micro | SpaceKind::Macro)
    }
}

/// A parse error that points at the offending token.
#[derive(Debug, thiserror::Error)]
#[error("{}", self.render())]
pub struct ArchError {
    pub source_text: String,
    /// Index of the bad token, if the error is about one.
    pub token: Option<usize>,
    pub message: String,
}

impl ArchError {
    fn at(text: &str, token: usize, message: impl Into<String>) -> Self {
        ArchError { source_text: text.to_string(), token: Some(token), message: message.into() }
    }
    fn whole(text: &str, message: impl Into<String>) -> Self {
        ArchError { source_text: text.to_string(), token: None, message: message.into() }
    }
    fn render(&self) -> String {
        match self.token {
            Some(i) => {
                let tok = self.source_text.split_whitespace().nth(i).unwrap_or("");
                format!("architecture token {} ('{tok}'): {}", i + 1, self.message)
            }
            None => format!("architecture: {}", self.message),
        }
    }
}

/// Whitespace-separated non-negative integers, or an error at the first token that is not one.
fn integers(text: &str) -> Result<Vec<usize>, ArchError> {
    text.split_whitespace().enumerate().map(|(i, t)| t.parse::<usize>().map_err(|_| ArchError::at(text, i, "not a non-negative integer"))).collect()
}

/// An architecture of either space.
#[derive(Clone, Debug, PartialEq)]
pub enum Arch {
    Micro(MicroArch),
    Macro(MacroArch),
    Metaqnn(MetaArch),
    Nb201(Nb201Arch),
}

impl Arch {
    pub fn space(&self) -> SpaceKind {
        match self {
            Arch::Micro(_) => SpaceKind::Micro,
            Arch::Macro(_) => SpaceKind::Macro,
            Arch::Metaqnn(_) => SpaceKind::Metaqnn,
            Arch::Nb201(_) => SpaceKind::Nb201,
        }
    }

    /// The authors' string format.
    pub fn to_arc_string(&self) -> String {
        match self {
            Arch::Micro(a) => a.to_string(),
            Arch::Macro(a) => a.to_string(),
            Arch::Metaqnn(a) => a.to_string(),
            Arch::Nb201(a) => a.to_string(),
        }
    }

    pub fn parse(space: SpaceKind, text: &str) -> Result<Arch, ArchError> {
        Ok(match space {
            SpaceKind::Micro => Arch::Micro(text.parse()?),
            SpaceKind::Macro => Arch::Macro(text.parse()?),
            SpaceKind::Metaqnn => Arch::Metaqnn(text.parse()?),
            SpaceKind::Nb201 => Arch::Nb201(text.parse()?),
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Arch::Micro(a) => a.to_json(),
            Arch::Macro(a) => a.to_json(),
            Arch::Metaqnn(a) => a.to_json(),
            Arch::Nb201(a) => a.to_json(),
        }
    }

    pub fn from_json(space: SpaceKind, v: &serde_json::Value) -> Result<Arch, ArchError> {
        let text = v.to_string();
        if let Some(s) = v.get("space").and_then(|s| s.as_str()) {
            let want = space.name();
            if s != want {
                return Err(ArchError::whole(&text, format!("JSON is a {s} architecture, expected {want}")));
            }
        }
        let arc = v.get("arc").and_then(|a| a.as_str()).ok_or_else(|| ArchError::whole(&text, "JSON has no string field \"arc\""))?;
        Arch::parse(space, arc)
    }

    /// `arg` is an architecture string, or a path to a text file with one, or to an `arch.json`.
    pub fn load(space: SpaceKind, arg: &str) -> anyhow::Result<Arch> {
        Arch::load_in(Some(space), arg)
    }

    /// As `load`; with no space given, the one an `arch.json` records, else micro.
    /// An architecture that does not parse in its space but does in another says which.
    pub fn load_in(space: Option<SpaceKind>, arg: &str) -> anyhow::Result<Arch> {
        use anyhow::Context;
        let path = std::path::Path::new(arg);
        let parse = |text: &str| -> anyhow::Result<Arch> {
            let want = space.unwrap_or(SpaceKind::Micro);
            Arch::parse(want, text).map_err(|e| {
                let other = [SpaceKind::Micro, SpaceKind::Macro, SpaceKind::Nb201, SpaceKind::Metaqnn]
                    .into_iter()
                    .find(|s| *s != want && Arch::parse(*s, text).is_ok());
                match other {
                    Some(o) => anyhow::anyhow!("{e} (it reads as a {} architecture: add --space {})", o.name(), o.name()),
                    None => e.into(),
                }
            })
        };
        if path.is_file() {
            let text = std::fs::read_to_string(path).with_context(|| format!("{arg}: cannot read"))?;
            if text.trim_start().starts_with('{') {
                let v: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("{arg}: not valid JSON"))?;
                let recorded = v.get("space").and_then(|s| s.as_str()).and_then(SpaceKind::from_name);
                let space = space.or(recorded).unwrap_or(SpaceKind::Micro);
                return Arch::from_json(space, &v).with_context(|| arg.to_string());
            }
            return parse(&text).with_context(|| arg.to_string());
        }
        // A single word with a folder or an extension is a file name, mistyped or missing, not an architecture.
        let word = !arg.trim().is_empty() && !arg.contains(char::is_whitespace) && !arg.starts_with('|');
        let extension = path.extension().and_then(|e| e.to_str()).is_some_and(|e| !e.is_empty() && e.chars().all(|c| c.is_ascii_alphabetic()));
        if word && (arg.contains('/') || extension) {
            anyhow::bail!("{arg}: no such file (give an architecture file or the architecture itself)");
        }
        parse(arg)
    }
}
