//! ImageGPT as an ONNX graph: one trunk emitter ([`trunk`], with [`attention`]) shared by
//! every head, heads ([`heads`]) that add only their tail, and profiles and precisions
//! ([`profile`]) as data the emitters read.
//! Math: HF `modeling_imagegpt.py` (DESIGN.md §2).

pub mod attention;
pub mod heads;
pub mod profile;
pub mod trunk;

pub use profile::{Precision, PrecisionSpec, Profile, ProfileSpec, PRECISIONS, PROFILES};

use crate::checkpoint::source::{BlockPart, Float32, Int8Blocks};
use crate::checkpoint::{Checkpoint, Head, WeightsError};
use crate::onnx::proto::GraphProto;
use crate::onnx::{DataType, Domain, GraphBuilder, Initializer};

/// Names of the graph's symbolic dimensions.
pub const BATCH: &str = "batch";
pub const SEQUENCE: &str = "sequence";
/// The decoder's cache length before this step.
pub const PAST_SEQUENCE: &str = "past_sequence";
/// The decoder's mask and present length: written as the sum, so runtimes that reason about
/// symbols (tract) see it is the past plus this step, not a fresh unknown.
pub const TOTAL_SEQUENCE: &str = "past_sequence + sequence";

/// What to emit besides the head's main output.
#[derive(Debug, Clone, Copy, Default)]
pub struct GraphOptions {
    /// Add `hidden_states.{0..n_layer}` outputs (base head), as HF's `output_hidden_states`.
    pub hidden_states: bool,
}

/// How wide the language-model logits are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogitsWidth {
    /// The 512 colour clusters, as the reference's `lm_head`.
    #[default]
    Colours,
    /// The whole vocabulary (`vocab_size`, 513): the colour logits and a start-token column at
    /// float32 min, which softmax maps to 0 and argmax never picks. onnxruntime-genai needs it:
    /// it takes the logits' width as `vocab_size`, and its `eos_token_id` must lie inside.
    Vocabulary,
}

/// What every emitter works with: the graph being built, the checkpoint, the profile, and
/// whether the trunk has a past (the decoder).
pub struct Ctx<'a, 'w> {
    pub g: &'a mut GraphBuilder<'w>,
    pub ckpt: &'w Checkpoint,
    pub profile: &'static ProfileSpec,
    pub precision: &'static PrecisionSpec,
    pub past: bool,
}

impl<'w> Ctx<'_, 'w> {
    /// A checkpoint tensor as a float32 initializer named as in the checkpoint (its shape was
    /// checked when the checkpoint opened).
    pub fn weight(&mut self, name: &str, dims: &[usize]) -> String {
        let source = Float32 {
            store: &self.ckpt.weights,
            name: name.to_string(),
        };
        self.g
            .initializer(name, DataType::Float32, dims, Box::new(source))
    }

    /// A Conv1D weight `[n_in, n_out]` as `MatMulNBits` 8-bit blocks: the quantised matrix
    /// `[n_out, blocks, block]` (uint8, zero point 128) and its scales `[n_out, blocks]`.
    pub fn int8_weight(
        &mut self,
        name: &str,
        n_in: usize,
        n_out: usize,
        block: usize,
    ) -> (String, String) {
        let blocks = n_in.div_ceil(block);
        let part = |part| {
            Box::new(Int8Blocks {
                store: &self.ckpt.weights,
                name: name.to_string(),
                n_in,
                n_out,
                block,
                part,
            })
        };
        let (q, scales) = (part(BlockPart::Quantized), part(BlockPart::Scales));
        let q = self.g.initializer(
            &format!("{name}.int8"),
            DataType::UInt8,
            &[n_out, blocks, block],
            q,
        );
        let scales = self.g.initializer(
            &format!("{name}.scales"),
            DataType::Float32,
            &[n_out, blocks],
            scales,
        );
        (q, scales)
    }
}

/// A graph ready for the writer: nodes and I/O, initializers streamed separately, and the
/// opsets its nodes need.
pub struct BuiltGraph<'w> {
    pub graph: GraphProto,
    pub initializers: Vec<Initializer<'w>>,
    /// `(domain, version)` for `opset_import`.
    pub opsets: Vec<(&'static str, i64)>,
}

/// Emits `head` of `ckpt` in `profile`, float32.
pub fn build<'w>(
    ckpt: &'w Checkpoint,
    head: Head,
    profile: Profile,
    opts: GraphOptions,
) -> Result<BuiltGraph<'w>, WeightsError> {
    build_in(
        ckpt,
        head,
        (profile, Precision::Float32),
        opts,
        LogitsWidth::Colours,
    )
}

/// Emits `head` of `ckpt` in a profile and precision (the caller checked that the two fit:
/// [`Precision::fits`]), with the LM heads' logits `logits` wide (the whole vocabulary for
/// onnxruntime-genai; the other heads ignore it).
pub fn build_in<'w>(
    ckpt: &'w Checkpoint,
    head: Head,
    (profile, precision): (Profile, Precision),
    opts: GraphOptions,
    logits: LogitsWidth,
) -> Result<BuiltGraph<'w>, WeightsError> {
    let spec = profile.spec();
    let mut g = GraphBuilder::default();
    let mut cx = Ctx {
        g: &mut g,
        ckpt,
        profile: spec,
        precision: precision.spec(),
        past: head == Head::Decoder,
    };
    let trunk = trunk::emit(&mut cx);
    heads::emit(&mut cx, head, &trunk, opts.hidden_states, logits)?;
    let mut opsets = vec![(Domain::Onnx.as_str(), spec.opset)];
    if g.domains.contains(&Domain::Microsoft) {
        opsets.push((Domain::Microsoft.as_str(), spec.contrib_opset.unwrap_or(1)));
    }
    Ok(BuiltGraph {
        graph: GraphProto {
            node: g.nodes,
            name: format!("imagegpt-{}", head.name()),
            input: g.inputs,
            output: g.outputs,
            ..Default::default()
        },
        initializers: g.initializers,
        opsets,
    })
}
