//! Which ONNX Runtime release a graph needs: the newest IR version and default-domain opset each
//! release reads ([`RELEASES`]), and the release from which each contrib op runs in the form our
//! graphs use it ([`CONTRIB_OPS`]). [`needs`] joins them with what a file holds
//! ([`ModelInfo`]): `igpt-onnx inspect` prints the answer, and the tests check it by running the
//! pinned older releases (`ort-python@VERSION`, tests/it/matrix.rs).
//!
//! The answer covers what a release can read and which of its kernels exist in our form; not
//! every release's kernel of every standard op in every element type.

use std::fmt;

use crate::onnx::inspect::{ModelInfo, OpUse};

/// An ONNX Runtime release, major and minor (patch releases change no format or op).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u32, pub u32);

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0, self.1)
    }
}

impl Version {
    /// `1.21` or `1.21.1` (the patch is ignored).
    pub fn parse(text: &str) -> Option<Version> {
        let mut parts = text.split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        match parts.next() {
            None => Some(Version(major, minor)),
            Some(patch) if patch.parse::<u32>().is_ok() && parts.next().is_none() => {
                Some(Version(major, minor))
            }
            Some(_) => None,
        }
    }
}

/// What one release reads: the newest IR version and default-domain opset (every release reads
/// opsets from 7 up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Release {
    pub version: Version,
    pub opset: i64,
    pub ir_version: i64,
}

const fn release(major: u32, minor: u32, opset: i64, ir_version: i64) -> Release {
    Release {
        version: Version(major, minor),
        opset,
        ir_version,
    }
}

/// Every release, oldest first. Source: ONNX Runtime's compatibility table (`docs/Versioning.md`
/// points to it: onnxruntime.ai/docs/reference/compatibility.html, "ONNX opset support"), which
/// ends at 1.20. From 1.15 on (every release PyPI serves for CPython 3.11) each row was measured
/// instead: a one-node model per IR version and per opset, loaded and run in the release's
/// `onnxruntime` wheel; the measurement wins where the two differ (the table gives 1.15 IR 8,
/// and 1.15.0 reads IR 9; it has no rows after 1.20).
pub const RELEASES: &[Release] = &[
    release(0, 1, 8, 3),
    release(0, 2, 8, 3),
    release(0, 3, 9, 3),
    release(0, 4, 10, 5),
    release(0, 5, 10, 5),
    release(1, 0, 11, 6),
    release(1, 1, 11, 6),
    release(1, 2, 11, 6),
    release(1, 3, 12, 7),
    release(1, 4, 12, 7),
    release(1, 5, 12, 7),
    release(1, 6, 13, 7),
    release(1, 7, 13, 7),
    release(1, 8, 14, 7),
    release(1, 9, 15, 8),
    release(1, 10, 15, 8),
    release(1, 11, 16, 8),
    release(1, 12, 17, 8),
    release(1, 13, 17, 8),
    release(1, 14, 18, 8),
    // Measured from here on.
    release(1, 15, 19, 9),
    release(1, 16, 19, 9),
    release(1, 17, 20, 9),
    release(1, 18, 21, 10),
    release(1, 19, 21, 10),
    release(1, 20, 21, 10),
    release(1, 21, 22, 10),
    release(1, 22, 22, 10),
    release(1, 23, 23, 11),
    release(1, 24, 25, 13),
    release(1, 25, 26, 13),
    release(1, 26, 26, 13),
    release(1, 27, 26, 13),
    release(1, 28, 26, 13),
    release(1, 29, 26, 13),
    release(1, 30, 26, 13),
    release(1, 31, 26, 13),
];

/// A contrib op in one form: from which release ONNX Runtime's CPU provider runs it right.
#[derive(Debug, Clone, Copy)]
pub struct ContribOp {
    /// The node's domain (`ai.onnx` for ONNX Runtime's own ops registered in the default one).
    pub domain: &'static str,
    pub op: &'static str,
    /// The form: an input that must be given (its position and name).
    pub input: Option<(usize, &'static str)>,
    /// The form: an integer attribute's value.
    pub attr: Option<(&'static str, i64)>,
    pub since: Version,
    /// What the releases before `since` do with it.
    pub before: &'static str,
}

impl ContribOp {
    fn matches(&self, u: &OpUse) -> bool {
        u.domain == self.domain
            && u.op_type == self.op
            && self.input.is_none_or(|(i, _)| u.has_input(i))
            && self.attr.is_none_or(|(name, v)| u.int(name) == Some(v))
    }

    /// `com.microsoft:MatMulNBits with bits 8`.
    pub fn describe(&self) -> String {
        let mut s = format!("{}:{}", self.domain, self.op);
        if let Some((name, v)) = self.attr {
            s += &format!(" with {name} {v}");
        }
        if let Some((_, name)) = self.input {
            s += &format!(" with {name}");
        }
        s
    }
}

/// Where ONNX Runtime's own ops live.
const MS: &str = "com.microsoft";

/// The contrib ops our graphs use, in the forms they use them, most specific form first. Checked
/// by loading and running every profile and precision's graphs in every release from 1.15 to
/// 1.31 against 1.31.1's outputs; an op that already ran in 1.15 (the oldest release PyPI serves
/// for CPython 3.11) is given as 1.15, though it may be older.
pub const CONTRIB_OPS: &[ContribOp] = &[
    ContribOp {
        domain: "ai.onnx",
        op: "SimplifiedLayerNormalization",
        input: None,
        attr: None,
        since: Version(1, 15),
        before: "not checked before 1.15",
    },
    ContribOp {
        domain: MS,
        op: "SkipSimplifiedLayerNormalization",
        input: None,
        attr: None,
        since: Version(1, 16),
        before: "1.15 has no CPU kernel",
    },
    ContribOp {
        domain: MS,
        op: "QuickGelu",
        input: None,
        attr: None,
        since: Version(1, 15),
        before: "not checked before 1.15",
    },
    ContribOp {
        domain: MS,
        op: "MultiHeadAttention",
        input: Some((5, "attention_bias")),
        attr: None,
        since: Version(1, 21),
        before: "1.16-1.19 refuse a bias broadcast over heads at run time, 1.20 computes wrong \
                 values for a batch above 1",
    },
    ContribOp {
        domain: MS,
        op: "GroupQueryAttention",
        input: Some((10, "attention_bias")),
        attr: None,
        since: Version(1, 22),
        before: "1.16-1.21 refuse the node's 11 inputs",
    },
    ContribOp {
        domain: MS,
        op: "MatMulNBits",
        input: None,
        attr: Some(("bits", 8)),
        since: Version(1, 22),
        before: "1.19-1.21 take 4 bits only",
    },
    ContribOp {
        domain: MS,
        op: "MatMulNBits",
        input: Some((5, "bias")),
        attr: None,
        since: Version(1, 19),
        before: "1.16-1.18 refuse the node's 6 inputs",
    },
    ContribOp {
        domain: MS,
        op: "DynamicQuantizeMatMul",
        input: None,
        attr: None,
        since: Version(1, 15),
        before: "not checked before 1.15",
    },
];

/// One thing a graph needs of ONNX Runtime, and the oldest release that has it (`None`: no
/// release in the tables).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    pub what: String,
    pub release: Option<Version>,
    /// Why older releases fall short (empty for a format version).
    pub why: String,
}

/// What a graph needs of ONNX Runtime: its IR version, each imported opset, each contrib op in
/// its form; and the oldest release that has them all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    pub needs: Vec<Need>,
}

impl Needs {
    /// The oldest release that has everything (`None` when something is in no release of the
    /// tables), and the need that decides it.
    pub fn oldest(&self) -> Option<(Version, &Need)> {
        let mut oldest: Option<(Version, &Need)> = None;
        for n in &self.needs {
            let v = n.release?;
            if oldest.is_none_or(|(o, _)| v > o) {
                oldest = Some((v, n));
            }
        }
        oldest
    }

    /// The needs as lines, then `oldest ONNX Runtime: X.Y (…)`.
    pub fn to_text(&self) -> String {
        let mut s = String::from("needs:\n");
        let width = self.needs.iter().map(|n| n.what.len()).max().unwrap_or(0);
        for n in &self.needs {
            let release = match n.release {
                Some(v) => format!("ONNX Runtime {v}"),
                None => "no ONNX Runtime release in igpt-onnx's tables".to_string(),
            };
            s += &format!("  {:<width$}  {release}\n", n.what);
        }
        match self.oldest() {
            Some((v, n)) if n.why.is_empty() => {
                s += &format!("oldest ONNX Runtime: {v} (for {})\n", n.what)
            }
            Some((v, n)) => s += &format!("oldest ONNX Runtime: {v} ({}: {})\n", n.what, n.why),
            None => s += "oldest ONNX Runtime: unknown (a need is in no release of the tables)\n",
        }
        s
    }
}

/// The oldest release in [`RELEASES`] for which `ok` holds.
fn first_release(ok: impl Fn(&Release) -> bool) -> Option<Version> {
    RELEASES.iter().find(|r| ok(r)).map(|r| r.version)
}

/// What the graph `info` describes needs of ONNX Runtime.
pub fn needs(info: &ModelInfo) -> Needs {
    let mut needs = vec![Need {
        what: format!("ir_version {}", info.ir_version),
        release: first_release(|r| r.ir_version >= info.ir_version),
        why: String::new(),
    }];
    for (domain, version) in &info.opsets {
        let default = domain.is_empty() || domain == "ai.onnx";
        let what = format!(
            "opset {}:{version}",
            if default { "ai.onnx" } else { domain }
        );
        let release = match default {
            true => first_release(|r| r.opset >= *version),
            // ONNX Runtime's contrib domain has one version; its ops are listed below.
            false if domain == MS && *version == 1 => RELEASES.first().map(|r| r.version),
            false => None,
        };
        needs.push(Need {
            what,
            release,
            why: String::new(),
        });
    }
    let mut contrib: Vec<Need> = Vec::new();
    for u in &info.uses {
        let row = CONTRIB_OPS.iter().find(|c| c.matches(u));
        let standard = u.domain == "ai.onnx" && row.is_none();
        if standard {
            continue;
        }
        let need = match row {
            Some(c) => Need {
                what: c.describe(),
                release: Some(c.since),
                why: c.before.to_string(),
            },
            None => Need {
                what: format!("{}:{}", u.domain, u.op_type),
                release: None,
                why: "not in igpt-onnx's table of contrib ops".to_string(),
            },
        };
        if !contrib.contains(&need) {
            contrib.push(need);
        }
    }
    contrib.sort_by(|a, b| a.what.cmp(&b.what));
    needs.extend(contrib);
    Needs { needs }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_are_in_order_and_never_read_less() {
        for w in RELEASES.windows(2) {
            assert!(w[0].version < w[1].version, "{:?}", w[1]);
            assert!(w[0].opset <= w[1].opset && w[0].ir_version <= w[1].ir_version);
        }
        assert_eq!(Version::parse("1.21.1"), Some(Version(1, 21)));
        assert_eq!(Version::parse("1.15"), Some(Version(1, 15)));
        assert_eq!(Version::parse("1.x"), None);
        assert_eq!(Version::parse("1.2.3.4"), None);
    }

    fn use_of(domain: &str, op: &str, inputs: &[usize], ints: &[(&str, i64)]) -> OpUse {
        OpUse {
            domain: domain.into(),
            op_type: op.into(),
            inputs: inputs.to_vec(),
            ints: ints.iter().map(|&(n, v)| (n.to_string(), v)).collect(),
        }
    }

    #[test]
    fn the_oldest_release_is_the_newest_need() {
        let info = |uses: Vec<OpUse>, opset: i64, ir: i64| ModelInfo {
            ir_version: ir,
            opsets: vec![(String::new(), opset), (MS.to_string(), 1)],
            producer: String::new(),
            inputs: vec![],
            outputs: vec![],
            ops: Default::default(),
            uses,
            initializers: 0,
            initializer_bytes: 0,
            external_initializers: 0,
            metadata: Default::default(),
            malformed: vec![],
        };
        let portable = needs(&info(
            vec![use_of("ai.onnx", "MatMul", &[0, 1], &[])],
            17,
            8,
        ));
        assert_eq!(portable.oldest().map(|o| o.0), Some(Version(1, 12)));
        let old = needs(&info(
            vec![use_of("ai.onnx", "Slice", &[0, 1, 2, 3], &[])],
            10,
            5,
        ));
        assert_eq!(old.oldest().map(|o| o.0), Some(Version(0, 4)));
        let int4 = use_of(MS, "MatMulNBits", &[0, 1, 2, 5], &[("bits", 4)]);
        let int8 = use_of(MS, "MatMulNBits", &[0, 1, 2, 5], &[("bits", 8)]);
        assert_eq!(
            needs(&info(vec![int4.clone()], 17, 8))
                .oldest()
                .map(|o| o.0),
            Some(Version(1, 19))
        );
        let both = needs(&info(vec![int4, int8], 17, 8));
        let (v, n) = both.oldest().expect("known");
        assert_eq!(
            (v, n.what.as_str()),
            (Version(1, 22), "com.microsoft:MatMulNBits with bits 8")
        );
        assert!(both
            .to_text()
            .ends_with("oldest ONNX Runtime: 1.22 (com.microsoft:MatMulNBits with bits 8: 1.19-1.21 take 4 bits only)\n"));
        let unknown = needs(&info(vec![use_of(MS, "Attention", &[0], &[])], 17, 8));
        assert_eq!(unknown.oldest(), None);
    }
}
