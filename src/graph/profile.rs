//! Profiles as data: each profile is one row of [`PROFILES`] saying which opsets it imports,
//! which op form the norm, attention and activation take, and the tolerance its goldens are judged with. The emitters read the row; adding a
//! profile is adding a row (and, for a new op form, one match arm where that part is emitted).
//!
//! Precision is a second, independent axis ([`PRECISIONS`]): how the block matrices are stored
//! and multiplied (float32, float16, 8- or 4-bit blocks), the type the trunk computes in, and the
//! accuracy budget that goes with it.
//!
//! What a row needs of a runtime ([`Feature`]) follows from its op forms and types, so a row
//! cannot claim one thing and emit another: the runtimes' table (`runtime::support`) answers
//! which runtime runs which row.

use super::io::CacheMode;
use crate::base::values::Choice;
use crate::base::DataType;
use crate::config::ImageGptConfig;
use crate::onnx::opset::DEFAULT_OPSET;
use crate::onnx::Op;

/// Something a graph may ask of a runtime beyond standard ONNX ops on float32 and int64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feature {
    /// ONNX Runtime's contrib ops with their `com.microsoft` meaning: the fused RMS norms and
    /// `QuickGelu`.
    ContribOps,
    /// `MultiHeadAttention` (contrib) with an additive causal bias and a past. tract loads it by
    /// name but runs it bidirectionally: a causal model would be silently wrong there.
    CausalMultiHeadAttention,
    /// `MatMulNBits` (contrib): block-quantised weights, 8 or 4 bits.
    BlockMatMul,
    /// `DynamicQuantizeLinear` and `MatMulInteger`: int8 products with activations quantised
    /// at run time.
    IntegerMatMul,
    /// Float16 tensors: weights, activations and the decoder's cache.
    Float16,
    /// The contrib ops above on float16 tensors. A runtime can take each alone and not the
    /// two together: OpenVINO 2026.4's frontend converts QuickGelu with a float32 constant and
    /// refuses a float16 input.
    ContribOpsFloat16,
    /// `QuantizeLinear` / `DequantizeLinear` (per tensor and per axis): the QDQ form of static
    /// int8, which a runtime may fuse into integer kernels or run as written.
    QuantizeDequantize,
}

impl Feature {
    /// Every feature, in the order messages and tables list them.
    pub const ALL: [Feature; 7] = [
        Feature::ContribOps,
        Feature::CausalMultiHeadAttention,
        Feature::BlockMatMul,
        Feature::IntegerMatMul,
        Feature::Float16,
        Feature::ContribOpsFloat16,
        Feature::QuantizeDequantize,
    ];

    /// How messages and tables name it.
    pub fn describe(self) -> &'static str {
        match self {
            Feature::ContribOps => "ONNX Runtime contrib ops",
            Feature::CausalMultiHeadAttention => "causal MultiHeadAttention",
            Feature::BlockMatMul => "MatMulNBits",
            Feature::IntegerMatMul => "MatMulInteger",
            Feature::Float16 => "float16",
            Feature::ContribOpsFloat16 => "ONNX Runtime contrib ops on float16",
            Feature::QuantizeDequantize => "QuantizeLinear/DequantizeLinear",
        }
    }
}

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

impl NormForm {
    fn needs(self) -> &'static [Feature] {
        match self {
            NormForm::Decomposed => &[],
            NormForm::Fused => &[Feature::ContribOps],
        }
    }
}

impl AttentionForm {
    fn needs(self) -> &'static [Feature] {
        match self {
            AttentionForm::MatMulSoftmax => &[],
            AttentionForm::MultiHead => &[Feature::CausalMultiHeadAttention],
        }
    }
}

/// How quick_gelu is emitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivationForm {
    /// `x * sigmoid(1.702 x)` with Mul and Sigmoid.
    Decomposed,
    /// ONNX Runtime's `QuickGelu` (alpha 1.702).
    QuickGelu,
}

impl ActivationForm {
    fn needs(self) -> &'static [Feature] {
        match self {
            ActivationForm::Decomposed => &[],
            ActivationForm::QuickGelu => &[Feature::ContribOps],
        }
    }
}

/// How the block matrices (attention and MLP Conv1D weights) are stored and multiplied; the
/// `--quantize` / `--dtype` choice: a row of [`PRECISIONS`]. The rows have named constants for
/// code that names one (`Precision::Float32`, `Precision::Int8`, ...); a precision is its name.
#[derive(Clone, Copy)]
pub struct Precision(&'static PrecisionSpec);

/// The rows by name. A test checks each against its row.
#[allow(non_upper_case_globals)]
impl Precision {
    /// Float32 weights and activations.
    pub const Float32: Precision = Precision(&PRECISIONS[0]);
    /// Weight-only 8-bit blocks (`MatMulNBits`, symmetric, one float32 scale per block of
    /// `block_size` input rows); activations stay float32.
    pub const Int8: Precision = Precision(&PRECISIONS[1]);
    /// Float16 weights and activations in the trunk; the heads read it as float32.
    pub const Float16: Precision = Precision(&PRECISIONS[2]);
    /// Weight-only 4-bit blocks, as `Int8` with two values a byte.
    pub const Int4: Precision = Precision(&PRECISIONS[3]);
    /// Dynamic int8: signed 8-bit weights with one scale per output column, activations
    /// quantised to uint8 at run time with one scale per tensor, integer products.
    pub const Int8Dynamic: Precision = Precision(&PRECISIONS[4]);
    /// Static int8 (QDQ): signed 8-bit weights per output column, activations quantised with
    /// one scale per tensor fixed at export from a calibration set.
    pub const Int8Static: Precision = Precision(&PRECISIONS[5]);
}

impl PartialEq for Precision {
    fn eq(&self, other: &Self) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for Precision {}

impl std::hash::Hash for Precision {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.name.hash(state);
    }
}

impl std::fmt::Debug for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.name)
    }
}

/// How a precision emits a block matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatMulForm {
    /// `MatMul` with the weight in the activation type, then `Add` the bias.
    Float,
    /// `MatMulNBits` with `bits` 8 or 4 and the bias as its input: `block_size` rows of K per
    /// scale, and `accuracy_level` (4: ONNX Runtime quantises activations to int8 per block and
    /// multiplies in integers; 1: float32 compute; 0: unset, the kernel's default).
    Blocks {
        bits: u8,
        block_size: usize,
        accuracy_level: i64,
    },
    /// Dynamic int8 (`DynamicQuantizeLinear` → `MatMulInteger` → scale, standard ops; ONNX
    /// Runtime's `DynamicQuantizeMatMul` in a profile with contrib ops), then `Add` the bias.
    Dynamic,
    /// Static int8 in the QDQ form every engine reads: the input through `QuantizeLinear` →
    /// `DequantizeLinear` with one scale (and zero point) per tensor from calibration, in
    /// `activations` (int8, zero point 0, or uint8); the weight signed 8-bit per output column
    /// through `DequantizeLinear` (axis 1); a float `MatMul` between them, then `Add` the bias.
    /// Runtimes fuse the pattern into integer kernels (ONNX Runtime: `MatMulIntegerToFloat`;
    /// OpenVINO: its low-precision transformations) or run it as written (tract).
    QuantDequant { activations: DataType },
}

impl MatMulForm {
    fn needs(self) -> &'static [Feature] {
        match self {
            MatMulForm::Float => &[],
            MatMulForm::Blocks { .. } => &[Feature::BlockMatMul],
            MatMulForm::Dynamic => &[Feature::IntegerMatMul],
            MatMulForm::QuantDequant { .. } => &[Feature::QuantizeDequantize],
        }
    }

    /// Whether its graphs need activation ranges from a calibration set at export.
    pub fn calibrated(self) -> bool {
        matches!(self, MatMulForm::QuantDequant { .. })
    }
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
    /// Highest relative increase of the teacher-forced next-token NLL over the reference's
    /// (0.001 = +0.1 %), where the case has labelled tokens.
    pub max_nll_increase: f64,
    /// Highest drop in classification accuracy on a labelled set, in percentage points.
    pub max_accuracy_drop: f64,
}

/// One precision: a row of [`PRECISIONS`]. A new precision that reuses a matrix form is one
/// more row; help, `igpt-onnx support`, the README's matrix and the `ci/` scripts read the rows.
#[derive(Debug)]
pub struct PrecisionSpec {
    /// Its name in metadata and reports.
    pub name: &'static str,
    /// What it is, for help and the support table.
    pub about: &'static str,
    /// The `--quantize` value that asks for it (`None`: not a quantisation).
    pub quantize: Option<&'static str>,
    /// The `--dtype` value that asks for it (`None`: not a float type of its own).
    pub dtype: Option<&'static str>,
    /// The type the trunk's activations, its float weights and the decoder's cache are in.
    pub activations: DataType,
    pub matmul: MatMulForm,
    /// Profiles it can be combined with (an ONNX Runtime contrib op needs the ort profile).
    pub profiles: &'static [Profile],
    pub budget: Budget,
}

/// Every precision. Int8 block size 32 and accuracy level 4: measured fastest for the decoder
/// step on ORT 1.31.1 CPU. Int4 block size 32 and accuracy level 4, measured on the trained
/// model's held-out set (`ci/bench.py trained`) and a small-size decoder step (`ci/bench.py
/// steps`): blocks of 16 / 32 / 64 / 128 give KL 2.0e-4 / 3.4e-4 / 4.3e-4 / 5.5e-4, NLL
/// −0.023 / −0.010 / +0.011 / +0.026 %, classification 34.7 / 35.3 / 34.3 / 36.0 % (float32
/// 35.3 %); level 4 stepped faster than levels 0 and 1 at every size (blocks of 32: 51.3 ms
/// against 54.7 at level 1; float32 128 ms) for the same accuracy. 32 keeps accuracy and NLL
/// exactly; 64 and 128 step at most 8 % faster but nearly double the worst flip gap (0.37). See
/// docs/profiles.md.
pub const PRECISIONS: &[PrecisionSpec] = &[
    PrecisionSpec {
        name: "float32",
        about: "float32 weights and activations",
        quantize: None,
        dtype: None,
        activations: DataType::Float32,
        matmul: MatMulForm::Float,
        profiles: &[Profile::Portable, Profile::Ort],
        budget: Budget {
            atol: 1e-4,
            rtol: 1e-3,
            min_cosine: 0.999_999,
            min_argmax_agreement: 1.0,
            max_kl: 1e-6,
            tie_gap: 0.0,
            max_nll_increase: 1e-5,
            max_accuracy_drop: 0.0,
        },
    },
    PrecisionSpec {
        name: "int8",
        about: "8-bit weight blocks (MatMulNBits), float32 activations",
        quantize: Some("int8"),
        dtype: None,
        activations: DataType::Float32,
        matmul: MatMulForm::Blocks {
            bits: 8,
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
            max_nll_increase: 1e-3,
            max_accuracy_drop: 0.5,
        },
    },
    PrecisionSpec {
        name: "float16",
        about: "float16 weights and activations; the heads answer float32",
        quantize: None,
        dtype: Some("fp16"),
        activations: DataType::Float16,
        matmul: MatMulForm::Float,
        // ONNX Runtime 1.31.1's CPU provider has float16 kernels for every op of both profiles
        // (SimplifiedLayerNormalization, SkipSimplifiedLayerNormalization, MultiHeadAttention
        // and QuickGelu included), and tract 0.23 runs the portable graphs (decoder included),
        // so neither profile refuses float16.
        profiles: &[Profile::Portable, Profile::Ort],
        // Measured on the golden fixtures (both profiles, ONNX Runtime and tract, the decoder
        // step by step) and the trained model's case: max abs 0.012 (fixtures), 0.032 (the
        // trained model's residual stream), cosine ≥ 0.9999987, KL ≤ 2.0e-6, argmax ≥ 94.4 %
        // (random fixtures' near-ties, none beyond 0.05 nats). On the trained model's 300
        // held-out images (76,800 teacher-forced positions): NLL +0.000 %, 16 (portable) / 38
        // (ort) flips, all where float32's top-two gap is ≤ 0.001 nats, classes identical.
        budget: Budget {
            atol: 0.05,
            rtol: 0.01,
            min_cosine: 0.99999,
            min_argmax_agreement: 0.9,
            max_kl: 1e-5,
            tie_gap: 0.05,
            max_nll_increase: 5e-4,
            max_accuracy_drop: 0.0,
        },
    },
    PrecisionSpec {
        name: "int4",
        about: "4-bit weight blocks (MatMulNBits), float32 activations",
        quantize: Some("int4"),
        dtype: None,
        activations: DataType::Float32,
        matmul: MatMulForm::Blocks {
            bits: 4,
            block_size: 32,
            accuracy_level: 4,
        },
        profiles: &[Profile::Ort],
        // Measured on the golden fixtures (tiny random models, near-tied logits: the worst
        // case) in ONNX Runtime CPU: max abs 1.46, cosine ≥ 0.965, argmax ≥ 50 %, KL ≤ 0.034,
        // one flip beyond a 0.2-nat gap (at 0.65). On the trained digits model's 300 held-out
        // images (19,200 teacher-forced positions, `verify --fixtures fixtures/trained`): NLL
        // +0.20 %, 391 flips of which the largest reference gap is 0.84 nats (one above 0.7),
        // classification 91.0 % against the reference's 90.3 % (2 of 300 change class). Four
        // bits move logits by up to ~1: a flip needs a gap above 1 nat to be damage here.
        budget: Budget {
            atol: 2.0,
            rtol: 0.2,
            min_cosine: 0.95,
            min_argmax_agreement: 0.4,
            max_kl: 0.07,
            tie_gap: 1.0,
            max_nll_increase: 1e-2,
            max_accuracy_drop: 1.0,
        },
    },
    PrecisionSpec {
        name: "int8-dynamic",
        about: "int8 weights per column, activations quantised at run time (standard ops)",
        quantize: Some("int8-dynamic"),
        dtype: None,
        activations: DataType::Float32,
        matmul: MatMulForm::Dynamic,
        // Standard ops in the portable profile (ONNX Runtime fuses them into
        // `DynamicQuantizeMatMul`, tract runs them as written): the int8 for runtimes without
        // `MatMulNBits` or with a slow one (onnxruntime-web's wasm: 4x faster a step than
        // `MatMulNBits` int8, and smaller: no per-block scales).
        profiles: &[Profile::Portable, Profile::Ort],
        // Measured on the golden fixtures (tiny random models, near-tied logits), both profiles,
        // ONNX Runtime and tract alike: max abs 0.34 (a hidden state of `no-attn-scale`), 0.25
        // on logits, cosine >= 0.99927, argmax >= 87.5 % with no flip beyond a 0.2-nat gap, KL
        // <= 8.4e-4. On the trained digits model's held-out set: NLL +0.014 %, 88 flips of
        // 19,200 all at gaps <= 0.14 nats, classification unchanged (90.33 %). One activation
        // scale per tensor is coarser than `MatMulNBits`' per-block one (int8: +0.001 %), and
        // couples the rows of a batch: a row's rounding depends on the others' range.
        budget: Budget {
            atol: 0.5,
            rtol: 0.1,
            min_cosine: 0.999,
            min_argmax_agreement: 0.85,
            max_kl: 2e-3,
            tie_gap: 0.2,
            max_nll_increase: 1e-3,
            max_accuracy_drop: 0.5,
        },
    },
    PrecisionSpec {
        name: "int8-static",
        about: "int8 weights per column, activations int8 per tensor from calibration (QDQ)",
        quantize: Some("int8-static"),
        dtype: None,
        activations: DataType::Float32,
        matmul: MatMulForm::QuantDequant {
            activations: STATIC_ACTIVATIONS,
        },
        // Standard QuantizeLinear/DequantizeLinear around float MatMuls: the form ONNX
        // Runtime, OpenVINO, TensorRT and tract all read, in either profile.
        profiles: &[Profile::Portable, Profile::Ort],
        budget: Budget {
            atol: 0.5,
            rtol: 0.1,
            min_cosine: 0.999,
            min_argmax_agreement: 0.85,
            max_kl: 2e-3,
            tie_gap: 0.5,
            max_nll_increase: 3e-3,
            max_accuracy_drop: 1.0,
        },
    },
];

/// The type static int8 quantises activations to.
pub const STATIC_ACTIVATIONS: DataType = DataType::Int8;

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
        self.0
    }

    /// Whether `profile` can carry this precision.
    pub fn fits(self, profile: Profile) -> bool {
        self.spec().profiles.contains(&profile)
    }
}

impl PrecisionSpec {
    /// The precision this row is.
    pub fn precision(&'static self) -> Precision {
        Precision(self)
    }

    /// What its graphs need of a runtime: its matrix form's ops, its activation type.
    pub fn needs(&self) -> Vec<Feature> {
        let mut needs = self.matmul.needs().to_vec();
        if self.activations == DataType::Float16 {
            needs.push(Feature::Float16);
        }
        needs
    }
}

/// What a graph of `profile` in `precision` needs beyond what each needs alone.
pub fn pair_needs(profile: &ProfileSpec, precision: &PrecisionSpec) -> Vec<Feature> {
    let contrib = profile.needs().contains(&Feature::ContribOps);
    match contrib && precision.activations == DataType::Float16 {
        true => vec![Feature::ContribOpsFloat16],
        false => vec![],
    }
}

impl ProfileSpec {
    /// How the decoder this profile emits for `config` passes its cache: in place where it steps
    /// with `GroupQueryAttention`, which can write into a past buffer longer than the past (ONNX
    /// Runtime's kernels take head sizes in multiples of 8 only; others keep
    /// `MultiHeadAttention`, which concatenates). The export card records the answer; readers
    /// never work it out again.
    pub fn cache_mode(&self, config: &ImageGptConfig) -> CacheMode {
        match self.attention == AttentionForm::MultiHead && config.head_dim().is_multiple_of(8) {
            true => CacheMode::Shared,
            false => CacheMode::Concat,
        }
    }

    /// What its graphs need of a runtime: its op forms'.
    pub fn needs(&self) -> Vec<Feature> {
        let mut needs: Vec<Feature> = [
            self.norm.needs(),
            self.attention.needs(),
            self.activation.needs(),
        ]
        .concat();
        needs.sort();
        needs.dedup();
        needs
    }
}

/// One profile.
#[derive(Debug)]
pub struct ProfileSpec {
    pub profile: Profile,
    /// Its name on the command line and in metadata.
    pub name: &'static str,
    /// What it is, for help and the support table.
    pub about: &'static str,
    /// Default-domain opset, unless an export asks for another (`--opset`, down to the pair's
    /// [`OPSET_FLOORS`] row); the IR version follows from it (`onnx::opset::ir_version`).
    pub opset: i64,
    /// `com.microsoft` opset, for profiles that use ONNX Runtime's contrib ops.
    pub contrib_opset: Option<i64>,
    pub norm: NormForm,
    pub attention: AttentionForm,
    pub activation: ActivationForm,
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
        about: "standard ops only, opset 17, IR 8",
        opset: DEFAULT_OPSET,
        contrib_opset: None,
        norm: NormForm::Decomposed,
        attention: AttentionForm::MatMulSoftmax,
        activation: ActivationForm::Decomposed,
        tolerance: (1e-4, 1e-3),
    },
    ProfileSpec {
        profile: Profile::Ort,
        name: "ort",
        about:
            "ONNX Runtime's fused ops: RMS norms with the residual adds, QuickGelu, one attention",
        opset: DEFAULT_OPSET,
        contrib_opset: Some(1),
        norm: NormForm::Fused,
        // MultiHeadAttention: see the measurements in docs/profiles.md.
        attention: AttentionForm::MultiHead,
        activation: ActivationForm::QuickGelu,
        tolerance: (1e-4, 1e-3),
    },
];

/// The lowest default-domain opset graphs of a profile in a precision can be emitted at, and
/// the op whose first usable form sets it ([`Op::since`]): below it `export --opset` refuses,
/// naming the op. Every head of every pair is checked against its row (tests/it/matrix.rs).
#[derive(Debug)]
pub struct OpsetFloor {
    pub profile: Profile,
    /// A [`PRECISIONS`] row's name.
    pub precision: &'static str,
    /// The op that needs the most: the floor is its [`Op::since`].
    pub op: Op,
}

impl OpsetFloor {
    /// The lowest opset the pair reaches.
    pub fn opset(&self) -> i64 {
        self.op.since()
    }
}

/// Every profile and precision's floor. The trunk slices the position embeddings and the causal
/// mask to the sequence length, known at run time only: `Slice` with its bounds as inputs
/// (opset 10). The portable dynamic int8 quantises activations with `DynamicQuantizeLinear`
/// (opset 11); the ort profile's is the contrib `DynamicQuantizeMatMul`. Contrib ops live in
/// their own domain and ask nothing of the default one.
pub const OPSET_FLOORS: &[OpsetFloor] = &[
    OpsetFloor {
        profile: Profile::Portable,
        precision: "float32",
        op: Op::Slice,
    },
    OpsetFloor {
        profile: Profile::Portable,
        precision: "float16",
        op: Op::Slice,
    },
    OpsetFloor {
        profile: Profile::Portable,
        precision: "int8-dynamic",
        op: Op::DynamicQuantizeLinear,
    },
    OpsetFloor {
        profile: Profile::Ort,
        precision: "float32",
        op: Op::Slice,
    },
    OpsetFloor {
        profile: Profile::Ort,
        precision: "int8",
        op: Op::Slice,
    },
    OpsetFloor {
        profile: Profile::Ort,
        precision: "float16",
        op: Op::Slice,
    },
    OpsetFloor {
        profile: Profile::Ort,
        precision: "int4",
        op: Op::Slice,
    },
    OpsetFloor {
        profile: Profile::Ort,
        precision: "int8-dynamic",
        op: Op::Slice,
    },
    OpsetFloor {
        profile: Profile::Portable,
        precision: "int8-static",
        op: Op::DequantizeLinear,
    },
    OpsetFloor {
        profile: Profile::Ort,
        precision: "int8-static",
        op: Op::DequantizeLinear,
    },
];

/// The floor of `profile` in `precision` (`None` for a pair without a row: it is emitted at the
/// profile's own opset only).
pub fn opset_floor(profile: Profile, precision: Precision) -> Option<&'static OpsetFloor> {
    OPSET_FLOORS
        .iter()
        .find(|f| f.profile == profile && f.precision == precision.name())
}

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
        PRECISIONS.iter().map(PrecisionSpec::precision).collect()
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
            .map(|p| Quantization(p.precision()))
            .collect()
    }

    fn name(self) -> &'static str {
        self.0.spec().quantize.unwrap_or(self.0.spec().name)
    }
}

/// A `--dtype` value: the precisions whose row names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloatType(pub Precision);

impl Choice for FloatType {
    const WHAT: &'static str = "dtype";

    fn all() -> Vec<Self> {
        PRECISIONS
            .iter()
            .filter(|p| p.dtype.is_some())
            .map(|p| FloatType(p.precision()))
            .collect()
    }

    fn name(self) -> &'static str {
        self.0.spec().dtype.unwrap_or(self.0.spec().name)
    }
}

/// `--quantize` and `--dtype` given together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("--quantize {} and --dtype {} cannot be combined: quantised weights take float32 activations", Choice::name(*.quantize), Choice::name(*.dtype))]
pub struct BothPrecisions {
    pub quantize: Quantization,
    pub dtype: FloatType,
}

impl Precision {
    /// The precision the command line's `--quantize` and `--dtype` ask for (float32 when
    /// neither); both at once is refused: quantised blocks take float32 activations.
    pub fn chosen(
        quantize: Option<Quantization>,
        dtype: Option<FloatType>,
    ) -> Result<Precision, BothPrecisions> {
        match (quantize, dtype) {
            (Some(quantize), Some(dtype)) => Err(BothPrecisions { quantize, dtype }),
            (Some(Quantization(p)), None) | (None, Some(FloatType(p))) => Ok(p),
            (None, None) => Ok(Precision::Float32),
        }
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
        // The named constants are their rows; names are unique, so a precision is its name.
        for (p, name) in [
            (Precision::Float32, "float32"),
            (Precision::Int8, "int8"),
            (Precision::Float16, "float16"),
            (Precision::Int4, "int4"),
            (Precision::Int8Dynamic, "int8-dynamic"),
            (Precision::Int8Static, "int8-static"),
        ] {
            assert_eq!(p.name(), name);
        }
        for (i, row) in PRECISIONS.iter().enumerate() {
            assert!(PRECISIONS[..i].iter().all(|r| r.name != row.name));
            assert_eq!(Precision::parse(row.name), Some(row.precision()));
            assert!(!row.profiles.is_empty(), "{} fits no profile", row.name);
        }
        assert!(Profile::all().iter().all(|&p| Precision::Float32.fits(p)));
        assert!(!Precision::Int8.fits(Profile::Portable));
        assert!(!Precision::Int4.fits(Profile::Portable));
        assert!(
            Precision::Float16.fits(Profile::Portable) && Precision::Float16.fits(Profile::Ort)
        );
        assert_eq!(
            Quantization::all(),
            vec![
                Quantization(Precision::Int8),
                Quantization(Precision::Int4),
                Quantization(Precision::Int8Dynamic),
                Quantization(Precision::Int8Static)
            ]
        );
        assert_eq!(FloatType::all(), vec![FloatType(Precision::Float16)]);
        for p in PRECISIONS {
            for &profile in p.profiles {
                let floor = opset_floor(profile, p.precision());
                assert!(floor.is_some(), "no opset floor for {profile:?} {}", p.name);
            }
        }
        assert_eq!(
            opset_floor(Profile::Portable, Precision::Int8Dynamic).map(OpsetFloor::opset),
            Some(11)
        );
        assert_eq!(
            Precision::chosen(None, Some(FloatType(Precision::Float16))),
            Ok(Precision::Float16)
        );
        assert_eq!(
            Precision::chosen(
                Some(Quantization(Precision::Int4)),
                Some(FloatType(Precision::Float16))
            ),
            Err(BothPrecisions {
                quantize: Quantization(Precision::Int4),
                dtype: FloatType(Precision::Float16)
            })
        );
        assert_eq!(
            Precision::chosen(
                Some(Quantization(Precision::Int4)),
                Some(FloatType(Precision::Float16))
            )
            .expect_err("both")
            .to_string(),
            "--quantize int4 and --dtype fp16 cannot be combined: quantised weights take float32 activations"
        );
    }
}
