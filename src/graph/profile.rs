//! Profiles as data: each profile is one row of [`PROFILES`] saying which opsets it imports,
//! which op form the norm, attention and activation take, its precision, whether tract can run
//! it, and the tolerance its goldens are judged with. The emitters read the row; adding a
//! profile is adding a row (and, for a new op form, one match arm where that part is emitted).
//!
//! Precision is a second, independent axis ([`PRECISIONS`]): how the block matrices are stored
//! and multiplied (float32, 8-bit blocks, float16) and the accuracy budget that goes with it.

use crate::base::values::Choice;

/// How the RMS norm is emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormForm {
    /// Mul, ReduceMean, Add, Sqrt, Div, Mul: standard ops, any runtime.
    Decomposed,
    /// ONNX Runtime's `SimplifiedLayerNormalization` (default domain) for the first norm and
    /// `SkipSimplifiedLayerNormalization` for every norm that follows a residual add, which it
    /// absorbs (its fourth output is the sum, the block output the hidden states expose).
    Fused,
}

/// How attention is emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttentionForm {
    /// Reshape/Transpose, MatMul, additive bias, Softmax, MatMul: standard ops, any runtime.
    MatMulSoftmax,
    /// ONNX Runtime's `MultiHeadAttention` with the same additive bias as `MatMulSoftmax` (so any
    /// mask, left or right padding, means what HF means) and BNSH `past_key`/`past_value`, the
    /// cache layout of the portable decoder.
    ///
    /// Measured against GroupQueryAttention and contrib Attention on ORT 1.31.1 CPU
    /// (`ci/bench.py attention`, one small-size layer, 2 threads, shared machine, medians):
    /// forward b1 seq 1024 MHA 101 ms, GQA+bias 109, Attention 105, decomposed 127; b8 seq
    /// 1024 578 / 565 / 504 / 654; decoder step past 1023 b1 1.86 / 3.19 / 1.88 / 2.59 ms, b8
    /// 13.3 / 16.1 / 16.0 / 15.8 ms. GQA without a bias is faster for one long prompt but can
    /// express right padding only and is slowest per step (whole small model, b8 step: 210 vs
    /// 150 ms); Attention is faster at b8 but needs GPT-2's stacked `past` [2, B, N, P, H],
    /// which would change the decoder's inputs and copy the cache twice more per step. MHA is
    /// never far from the best, takes the same bias (any mask) and the same cache. The decoder
    /// step is the exception: there `GroupQueryAttention` on the same bias and cache can write
    /// the cache in place, which pays (see attention.rs, `group_query_step`).
    MultiHead,
}

/// How quick_gelu is emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationForm {
    /// `x * sigmoid(1.702 x)` with Mul and Sigmoid.
    Decomposed,
    /// ONNX Runtime's `QuickGelu` (alpha 1.702).
    QuickGelu,
}

/// How the block matrices (attention and MLP Conv1D weights) are stored and multiplied; the
/// `--quantize` / `--dtype` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Precision {
    /// Float32 weights and activations.
    Float32,
    /// Weight-only 8-bit blocks (`MatMulNBits`, symmetric, one float32 scale per block of
    /// `block_size` input rows); activations stay float32.
    Int8,
}

/// How a precision emits a block matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatMulForm {
    /// `MatMul` with a float32 weight, then `Add` the bias.
    Float32,
    /// `MatMulNBits` bits 8 with the bias as its input: `block_size` rows of K per scale, and
    /// `accuracy_level` (4: ONNX Runtime quantises activations to int8 per block and multiplies
    /// in integers; 0: dequantise to float32).
    Blocks8 {
        block_size: usize,
        accuracy_level: i64,
    },
}

/// Accuracy a precision must reach against the float32 goldens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Elementwise `|a − e| ≤ atol + rtol·|e|`.
    pub atol: f64,
    pub rtol: f64,
    /// Lowest cosine similarity of each output with its golden.
    pub min_cosine: f64,
    /// Lowest share of positions whose next-token argmax agrees with the golden's.
    pub min_argmax_agreement: f64,
    /// Highest mean KL(golden ‖ ours) of the next-token distributions, in nats.
    pub max_kl: f64,
    /// The golden's top-1/top-2 logit gap (nats) up to which a flipped argmax is a near-tie;
    /// a flip where the gap is larger is damage and fails the check.
    pub tie_gap: f64,
}

/// One precision.
#[derive(Debug)]
pub struct PrecisionSpec {
    pub precision: Precision,
    /// Its name in metadata and reports.
    pub name: &'static str,
    /// The `--quantize` value that asks for it (`None`: not a quantisation).
    pub quantize: Option<&'static str>,
    pub matmul: MatMulForm,
    /// Profiles it can be combined with (an ONNX Runtime contrib op needs the ort profile).
    pub profiles: &'static [Profile],
    pub budget: Budget,
}

/// Every precision. Int8 block size 32 and accuracy level 4: measured fastest for the decoder
/// step on ORT 1.31.1 CPU (see README, "Profiles and precisions").
pub const PRECISIONS: &[PrecisionSpec] = &[
    PrecisionSpec {
        precision: Precision::Float32,
        name: "float32",
        quantize: None,
        matmul: MatMulForm::Float32,
        profiles: &[Profile::Portable, Profile::Ort],
        budget: Budget {
            atol: 1e-4,
            rtol: 1e-3,
            min_cosine: 0.999_999,
            min_argmax_agreement: 1.0,
            max_kl: 1e-6,
            tie_gap: 0.0,
        },
    },
    PrecisionSpec {
        precision: Precision::Int8,
        name: "int8",
        quantize: Some("int8"),
        matmul: MatMulForm::Blocks8 {
            block_size: 32,
            accuracy_level: 4,
        },
        profiles: &[Profile::Ort],
        // Measured on the fixtures (tiny random models, the worst case: near-tied logits):
        // logits max abs ≤ 0.14, cosine ≥ 0.9998, argmax agreement ≥ 91.7 %; on a random
        // small-size checkpoint against the reference: KL 3.5e-5, argmax 96 %.
        budget: Budget {
            atol: 0.2,
            rtol: 0.1,
            min_cosine: 0.999,
            min_argmax_agreement: 0.9,
            max_kl: 1e-3,
            // On a trained small ImageGPT every int8 flip (390 of 51,200 teacher-forced
            // positions) fell where float32's own top-two gap was at most 0.135 nats.
            tie_gap: 0.2,
        },
    },
];

impl Precision {
    /// Lower-case name, as in metadata and reports.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// Parses a name written by [`Precision::name`] (graph metadata).
    pub fn parse(name: &str) -> Option<Precision> {
        <Precision as Choice>::parse(name)
    }

    /// The precision's row.
    pub fn spec(self) -> &'static PrecisionSpec {
        // Every variant has a row: the test below checks it.
        PRECISIONS
            .iter()
            .find(|p| p.precision == self)
            .unwrap_or(&PRECISIONS[0])
    }

    /// Whether `profile` can carry this precision.
    pub fn fits(self, profile: Profile) -> bool {
        self.spec().profiles.contains(&profile)
    }
}

/// One profile.
#[derive(Debug)]
pub struct ProfileSpec {
    pub profile: Profile,
    /// Its name on the command line and in metadata.
    pub name: &'static str,
    /// Default-domain opset.
    pub opset: i64,
    pub ir_version: i64,
    /// `com.microsoft` opset, for profiles that use ONNX Runtime's contrib ops.
    pub contrib_opset: Option<i64>,
    pub norm: NormForm,
    pub attention: AttentionForm,
    pub activation: ActivationForm,
    /// Whether tract runs it (tract ignores op domains and mis-runs some contrib ops, so a
    /// runtime-specific profile says no, and verify reports tract as not applicable).
    pub tract: bool,
    /// Default comparison budget of its float32 graphs against the goldens: (atol, rtol).
    pub tolerance: (f64, f64),
}

/// Which profile a graph uses (the `--profile` value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Standard ops only, opset 17, IR 8: ONNX Runtime, tract, TensorRT, browser runtimes.
    Portable,
    /// ONNX Runtime's fused ops (CPU and CUDA kernels): fused RMS norms with the residual adds,
    /// QuickGelu, one fused attention. ONNX Runtime only.
    Ort,
}

/// Every profile.
pub const PROFILES: &[ProfileSpec] = &[
    ProfileSpec {
        profile: Profile::Portable,
        name: "portable",
        opset: 17,
        ir_version: 8,
        contrib_opset: None,
        norm: NormForm::Decomposed,
        attention: AttentionForm::MatMulSoftmax,
        activation: ActivationForm::Decomposed,
        tract: true,
        tolerance: (1e-4, 1e-3),
    },
    ProfileSpec {
        profile: Profile::Ort,
        name: "ort",
        opset: 17,
        ir_version: 8,
        contrib_opset: Some(1),
        norm: NormForm::Fused,
        // MultiHeadAttention: see the measurements in README ("Profiles and precisions").
        attention: AttentionForm::MultiHead,
        activation: ActivationForm::QuickGelu,
        // tract matches ops by name and runs MultiHeadAttention bidirectionally (its
        // `unidirectional` attribute is ignored), so a causal model would be wrong there.
        tract: false,
        tolerance: (1e-4, 1e-3),
    },
];

impl Profile {
    /// Lower-case name, as on the command line and in metadata.
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    /// Parses a name written by [`Profile::name`] (graph metadata).
    pub fn parse(name: &str) -> Option<Profile> {
        <Profile as Choice>::parse(name)
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

/// The command line's profiles and precisions are the tables' rows, in table order.
impl Choice for Profile {
    const WHAT: &'static str = "profile";

    fn all() -> Vec<Self> {
        PROFILES.iter().map(|p| p.profile).collect()
    }

    fn name(self) -> &'static str {
        Profile::name(self)
    }
}

impl Choice for Precision {
    const WHAT: &'static str = "precision";

    fn all() -> Vec<Self> {
        PRECISIONS.iter().map(|p| p.precision).collect()
    }

    fn name(self) -> &'static str {
        Precision::name(self)
    }
}

/// A `--quantize` value: the precisions whose row names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quantization(pub Precision);

impl Choice for Quantization {
    const WHAT: &'static str = "quantization";

    fn all() -> Vec<Self> {
        PRECISIONS
            .iter()
            .filter(|p| p.quantize.is_some())
            .map(|p| Quantization(p.precision))
            .collect()
    }

    fn name(self) -> &'static str {
        self.0.spec().quantize.unwrap_or(self.0.spec().name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every enum value has exactly one row (so `spec()` never falls back), and names are
    /// unique (so parsing is exact).
    #[test]
    fn every_profile_and_precision_has_one_row() {
        for p in [Profile::Portable, Profile::Ort] {
            assert_eq!(PROFILES.iter().filter(|s| s.profile == p).count(), 1);
            assert_eq!(Profile::parse(p.name()), Some(p));
        }
        for p in [Precision::Float32, Precision::Int8] {
            assert_eq!(PRECISIONS.iter().filter(|s| s.precision == p).count(), 1);
            assert_eq!(Precision::parse(p.name()), Some(p));
        }
        assert!(Profile::all().iter().all(|&p| Precision::Float32.fits(p)));
        assert!(!Precision::Int8.fits(Profile::Portable));
        assert_eq!(Quantization::all(), vec![Quantization(Precision::Int8)]);
    }
}
