//! Which matrices stay float32 in a reduced precision (`--keep-float32`): scope patterns over
//! the checkpoint's matrix paths, and the one question the emitters ask of them — does this
//! matrix keep float32? ([`super::Ctx::matrix_form`] answers it for every matrix form, so a
//! precision added later honours the list without a line of its own.)
//!
//! The paths are the names the trunk's emitters give the matrices (`h.3.attn.c_attn`,
//! `h.3.attn.c_proj`, `h.3.mlp.c_fc`, `h.3.mlp.c_proj`) and `head`: the LM head or the
//! classifier's `score`, which every precision keeps float32 already, so naming it changes no
//! graph (it is accepted, so a list written for any head reads the same everywhere).
//!
//! A pattern is dot-separated segments; `*` stands for one whole segment, and a pattern names a
//! matrix and everything under a scope: `h.0` is block 0's four matrices, `h.*.mlp.c_proj`
//! every block's second MLP matrix, `h.3.attn` block 3's two attention matrices.

use crate::checkpoint::Checkpoint;

use super::head::Head;
use super::profile::{MatMulForm, PrecisionSpec};
use crate::base::DataType;

/// The matrices of one block, under `h.{i}`, in the order the block multiplies them.
pub const BLOCK_MATRICES: [&str; 4] = ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"];

/// The path that names the head's matrix (`lm_head` or `score`).
pub const HEAD_MATRIX: &str = "head";

/// The path of block `layer`'s matrix `matrix` (one of [`BLOCK_MATRICES`]).
pub fn block_matrix(layer: usize, matrix: &str) -> String {
    format!("{}.{matrix}", block(layer))
}

/// The scope of block `layer`: `h.{layer}`.
pub fn block(layer: usize) -> String {
    format!("h.{layer}")
}

/// One `--keep-float32` pattern, checked for syntax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopePattern(String);

/// A pattern that is not dot-separated names and `*`s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("keep-float32 pattern `{pattern}`: {why} (dot-separated names such as h.0, h.*.mlp.c_proj, h.3.attn or head; `*` is one whole segment)")]
pub struct PatternError {
    pub pattern: String,
    pub why: &'static str,
}

impl ScopePattern {
    /// Parses one pattern: segments of letters, digits and `_`, or `*`.
    pub fn parse(text: &str) -> Result<ScopePattern, PatternError> {
        let err = |why| PatternError {
            pattern: text.to_string(),
            why,
        };
        if text.is_empty() {
            return Err(err("empty"));
        }
        for seg in text.split('.') {
            if seg.is_empty() {
                return Err(err("an empty segment"));
            }
            if seg.contains('*') && seg != "*" {
                return Err(err("`*` inside a segment"));
            }
            let name = |c: char| c.is_ascii_alphanumeric() || c == '_';
            if seg != "*" && !seg.chars().all(name) {
                return Err(err(
                    "a character other than letters, digits, `_`, `.` and `*`",
                ));
            }
        }
        Ok(ScopePattern(text.to_string()))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the pattern names `path` or a scope above it, segment by segment.
    pub fn matches(&self, path: &str) -> bool {
        let mut segments = path.split('.');
        self.0
            .split('.')
            .all(|p| segments.next().is_some_and(|s| p == "*" || p == s))
    }
}

impl std::fmt::Display for ScopePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The keep-list: patterns whose matrices stay float32. Empty: every matrix takes the
/// precision's form.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KeepFloat32(Vec<ScopePattern>);

/// A pattern that names no matrix of the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("keep-float32 pattern `{pattern}` matches no matrix of the checkpoint; it has {has}")]
pub struct NoMatch {
    pub pattern: String,
    /// What the checkpoint has, in words.
    pub has: String,
}

impl KeepFloat32 {
    /// The list of `patterns`, each once, in the order given.
    pub fn new(patterns: impl IntoIterator<Item = ScopePattern>) -> KeepFloat32 {
        let mut out: Vec<ScopePattern> = Vec::new();
        for p in patterns {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        KeepFloat32(out)
    }

    /// Parses a comma-separated list (the export card's entry).
    pub fn parse_list(text: &str) -> Result<KeepFloat32, PatternError> {
        let patterns = text
            .split(',')
            .map(ScopePattern::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(KeepFloat32::new(patterns))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn patterns(&self) -> &[ScopePattern] {
        &self.0
    }

    /// The list comma-separated, as `--keep-float32` takes it and the card records it.
    pub fn to_list(&self) -> String {
        let texts: Vec<&str> = self.0.iter().map(ScopePattern::as_str).collect();
        texts.join(",")
    }

    /// Whether the matrix at `path` stays float32.
    pub fn keeps(&self, path: &str) -> bool {
        self.0.iter().any(|p| p.matches(path))
    }

    /// The list as it applies in `precision`: empty where its own matrices are float32
    /// `MatMul`s already (float32), so such a graph and its card are those of no list at all.
    pub fn in_precision(&self, precision: &PrecisionSpec) -> KeepFloat32 {
        let float32 =
            precision.matmul == MatMulForm::Float && precision.activations == DataType::Float32;
        match float32 {
            true => KeepFloat32::default(),
            false => self.clone(),
        }
    }

    /// Every pattern must name a matrix of `ckpt`: a typo is refused, not ignored.
    pub fn check(&self, ckpt: &Checkpoint) -> Result<(), NoMatch> {
        let paths = matrices(ckpt);
        match self.0.iter().find(|p| !paths.iter().any(|m| p.matches(m))) {
            None => Ok(()),
            Some(p) => Err(NoMatch {
                pattern: p.to_string(),
                has: describe(ckpt),
            }),
        }
    }
}

/// Every matrix path of `ckpt`: each block's, then `head` where it has a head's weight.
pub fn matrices(ckpt: &Checkpoint) -> Vec<String> {
    let mut out: Vec<String> = (0..ckpt.config.n_layer)
        .flat_map(|i| BLOCK_MATRICES.iter().map(move |m| block_matrix(i, m)))
        .collect();
    if has_head(ckpt) {
        out.push(HEAD_MATRIX.to_string());
    }
    out
}

/// Whether the checkpoint holds the LM head's or the classifier's weight.
fn has_head(ckpt: &Checkpoint) -> bool {
    Head::ALL
        .iter()
        .filter_map(|h| h.weight_name())
        .any(|w| ckpt.weights.get(w).is_some())
}

/// The matrices of `ckpt` in words: `h.0 to h.3 (each attn.c_attn, …) and head`.
fn describe(ckpt: &Checkpoint) -> String {
    let blocks = match ckpt.config.n_layer {
        0 => String::from("no block"),
        1 => block(0),
        n => format!("{} to {}", block(0), block(n - 1)),
    };
    let head = match has_head(ckpt) {
        true => format!(" and {HEAD_MATRIX}"),
        false => String::new(),
    };
    format!("{blocks} (each {}){head}", BLOCK_MATRICES.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> ScopePattern {
        ScopePattern::parse(text).expect("a valid pattern")
    }

    /// A pattern names a matrix and the scopes above it, whole segments only: `h.1` is not
    /// `h.10`, `*` is one segment, not a run of characters.
    #[test]
    fn patterns_match_whole_segments() {
        assert!(p("h.1").matches("h.1.attn.c_attn"));
        assert!(!p("h.1").matches("h.10.attn.c_attn"));
        assert!(p("h.*.mlp.c_proj").matches("h.7.mlp.c_proj"));
        assert!(!p("h.*.mlp.c_proj").matches("h.7.mlp.c_fc"));
        assert!(!p("h.*.mlp.c_proj").matches("h.7.attn.c_proj"));
        assert!(p("h.3.attn").matches("h.3.attn.c_proj"));
        assert!(!p("h.3.attn").matches("h.3.mlp.c_fc"));
        assert!(p("*").matches("head") && p("*").matches("h.0.mlp.c_fc"));
        assert!(p("head").matches("head") && !p("h").matches("head"));
        assert!(!p("h.0.attn.c_attn.weight").matches("h.0.attn.c_attn"));
        let keep = KeepFloat32::new([p("h.0"), p("h.*.mlp.c_proj"), p("h.0")]);
        assert_eq!(keep.to_list(), "h.0,h.*.mlp.c_proj");
        assert!(keep.keeps("h.0.attn.c_proj") && keep.keeps("h.2.mlp.c_proj"));
        assert!(!keep.keeps("h.2.mlp.c_fc"));
        assert_eq!(KeepFloat32::parse_list(&keep.to_list()), Ok(keep));
    }

    #[test]
    fn bad_patterns_are_named() {
        let why = |t: &str| ScopePattern::parse(t).expect_err(t).why;
        assert_eq!(why(""), "empty");
        assert_eq!(why("h..0"), "an empty segment");
        assert_eq!(why("h.0."), "an empty segment");
        assert_eq!(why("h.1*"), "`*` inside a segment");
        assert_eq!(
            why("h.0/mlp"),
            "a character other than letters, digits, `_`, `.` and `*`"
        );
        assert_eq!(
            ScopePattern::parse("h..0").expect_err("bad").to_string(),
            "keep-float32 pattern `h..0`: an empty segment (dot-separated names such as h.0, h.*.mlp.c_proj, h.3.attn or head; `*` is one whole segment)"
        );
    }
}
