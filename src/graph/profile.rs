//! Profiles as data: each profile is one row of [`PROFILES`] saying which opsets it imports,
//! which op form the norm, attention and activation take, its precision, whether tract can run
//! it, and the tolerance its goldens are judged with. The emitters read the row; adding a
//! profile is adding a row (and, for a new op form, one match arm where that part is emitted).

/// How the RMS norm is emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormForm {
    /// Mul, ReduceMean, Add, Sqrt, Div, Mul: standard ops, any runtime.
    Decomposed,
}

/// How attention is emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionForm {
    /// Reshape/Transpose, MatMul, additive bias, Softmax, MatMul: standard ops, any runtime.
    MatMulSoftmax,
}

/// How quick_gelu is emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationForm {
    /// `x * sigmoid(1.702 x)` with Mul and Sigmoid.
    Decomposed,
}

/// The element type of weights and activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    Float32,
}

/// One profile.
#[derive(Debug)]
pub struct ProfileSpec {
    pub profile: Profile,
    /// Default-domain opset.
    pub opset: i64,
    pub ir_version: i64,
    /// `com.microsoft` opset, for profiles that use ONNX Runtime's contrib ops.
    pub contrib_opset: Option<i64>,
    pub norm: NormForm,
    pub attention: AttentionForm,
    pub activation: ActivationForm,
    pub precision: Precision,
    /// Whether tract runs it (tract ignores op domains and mis-runs some contrib ops, so a
    /// runtime-specific profile says no, and verify reports tract as not applicable).
    pub tract: bool,
    /// Default comparison budget against the float32 goldens: (atol, rtol).
    pub tolerance: (f64, f64),
}

/// Which profile a graph uses (the `--profile` value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Profile {
    /// Standard ops only, opset 17, IR 8: ONNX Runtime, tract, TensorRT, browser runtimes.
    Portable,
}

/// Every profile.
pub const PROFILES: &[ProfileSpec] = &[ProfileSpec {
    profile: Profile::Portable,
    opset: 17,
    ir_version: 8,
    contrib_opset: None,
    norm: NormForm::Decomposed,
    attention: AttentionForm::MatMulSoftmax,
    activation: ActivationForm::Decomposed,
    precision: Precision::Float32,
    tract: true,
    tolerance: (1e-4, 1e-3),
}];

impl Profile {
    /// Lower-case name, as on the command line and in metadata.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Portable => "portable",
        }
    }

    /// Parses a name written by [`Profile::name`] (graph metadata).
    pub fn parse(name: &str) -> Option<Profile> {
        PROFILES
            .iter()
            .map(|p| p.profile)
            .find(|p| p.name() == name)
    }

    /// The profile's row.
    pub fn spec(self) -> &'static ProfileSpec {
        // Every variant has a row: the test below checks it.
        PROFILES
            .iter()
            .find(|p| p.profile == self)
            .unwrap_or(&PROFILES[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn every_profile_has_one_row() {
        for p in Profile::value_variants() {
            assert_eq!(PROFILES.iter().filter(|s| s.profile == *p).count(), 1);
            assert_eq!(Profile::parse(p.name()), Some(*p));
        }
    }
}
