//! ImageGPT as an ONNX graph: one trunk emitter ([`trunk`], with [`attention`]) shared by
//! every head, heads ([`heads`]) that add only their tail, and profiles and precisions
//! ([`profile`]) as data the emitters read.
//! Math: HF `modeling_imagegpt.py` (docs/design.md §2).
//!
//! This file is the façade: it builds a whole graph from the parts; the parts never use it.

pub mod attention;
pub mod calibration;
pub mod card;
pub mod ctx;
pub mod head;
pub mod heads;
pub mod io;
pub mod keep;
pub mod linear;
pub mod profile;
pub mod quant;
pub mod trunk;

pub use calibration::{Calibration, CalibrationMethod, CalibrationRecord};
pub use card::{CardError, ExportCard, GraphCardError, Provenance};
pub use ctx::Ctx;
pub use head::Head;
pub use io::{DecoderIo, LogitsWidth, BATCH, PAST_SEQUENCE, SEQUENCE, TOTAL_SEQUENCE};
pub use keep::KeepFloat32;
pub use profile::{Feature, Precision, PrecisionSpec, Profile, ProfileSpec, PRECISIONS, PROFILES};

use crate::base::DataType;
use crate::checkpoint::{Checkpoint, WeightsError};
use crate::onnx::proto::GraphProto;
use crate::onnx::{Dim, Domain, GraphBuilder, Initializer, Op};

/// What to emit besides the head's main output, and the attention's query blocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct GraphOptions {
    /// Add `hidden_states.{0..n_layer}` outputs (base head), as HF's `output_hidden_states`.
    pub hidden_states: bool,
    /// Add each block matrix's input as an output `matrix_input.<matrix>` (float32): the graph
    /// a calibration runs to find static int8's activation ranges.
    pub matrix_inputs: bool,
    /// The query rows per attention block of a full-sequence standard-op graph.
    pub query_block: QueryBlock,
}

/// Query rows per block of a full-sequence graph's standard-op attention (the portable
/// profile; not the decoder, whose step reads one query row): block `i` reads only keys
/// `0..rows·(i+1)`, so the causally masked upper blocks of the `[seq, seq]` square are never
/// computed. `QueryBlock(0)` emits the full square. A model of at most `rows` positions has one
/// block, the square.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryBlock(pub usize);

impl QueryBlock {
    /// 128 rows: at sequence 1024 the blocks compute 36 of the square's 64 tiles (56 %).
    pub const DEFAULT_ROWS: usize = 128;
}

impl Default for QueryBlock {
    fn default() -> Self {
        QueryBlock(Self::DEFAULT_ROWS)
    }
}

/// Why a graph could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Weights(#[from] WeightsError),
    #[error("no activation range for matrix {matrix}: static int8 needs a calibration of this checkpoint")]
    Uncalibrated { matrix: String },
}

/// A graph ready for the writer: nodes and I/O, initializers streamed separately, and the
/// opsets its nodes need.
pub struct BuiltGraph<'w> {
    pub graph: GraphProto,
    pub initializers: Vec<Initializer<'w>>,
    /// `(domain, version)` for `opset_import`.
    pub opsets: Vec<(&'static str, i64)>,
    /// The op that needs the highest default-domain opset ([`Op::since`](crate::onnx::Op::since)).
    pub needs: Option<crate::onnx::Op>,
}

/// Emits `head` of `ckpt` in `profile`, float32, at the profile's opset.
pub fn build<'w>(
    ckpt: &'w Checkpoint,
    head: Head,
    profile: Profile,
    opts: GraphOptions,
) -> Result<BuiltGraph<'w>, BuildError> {
    let form = (profile, Precision::Float32, profile.spec().opset);
    build_in(
        ckpt,
        head,
        form,
        &KeepFloat32::default(),
        opts,
        LogitsWidth::Colours,
        None,
    )
}

/// Emits `head` of `ckpt` in a profile and precision at a default-domain opset (the caller
/// checked that the two fit, [`Precision::fits`], and that the opset is within reach,
/// [`profile::opset_floor`]) with the matrices `keep` names in float32, and the LM heads'
/// logits `logits` wide (the whole vocabulary for onnxruntime-genai; the other heads ignore
/// it), and the activation ranges a calibrated precision (static int8) reads.
pub fn build_in<'w>(
    ckpt: &'w Checkpoint,
    head: Head,
    (profile, precision, opset): (Profile, Precision, i64),
    keep: &KeepFloat32,
    opts: GraphOptions,
    logits: LogitsWidth,
    calibration: Option<&'w Calibration>,
) -> Result<BuiltGraph<'w>, BuildError> {
    let spec = profile.spec();
    let mut g = GraphBuilder::with_opset(opset);
    let mut cx = Ctx {
        g: &mut g,
        ckpt,
        profile: spec,
        precision: precision.spec(),
        keep,
        past: head == Head::Decoder,
        query_block: opts.query_block.0,
        calibration,
        matrices: Vec::new(),
        uncalibrated: Vec::new(),
    };
    let trunk = trunk::emit(&mut cx);
    heads::emit(&mut cx, head, &trunk, opts.hidden_states, logits)?;
    if let Some(matrix) = cx.uncalibrated.first() {
        return Err(BuildError::Uncalibrated {
            matrix: matrix.clone(),
        });
    }
    if opts.matrix_inputs {
        let matrices = std::mem::take(&mut cx.matrices);
        for m in matrices {
            let name = format!("{}{}", calibration::MATRIX_INPUT_PREFIX, m.matrix);
            cx.g.op(Op::Identity, name.clone(), &[&m.input], vec![]);
            let dims = [
                Dim::Symbol(BATCH),
                Dim::Symbol(io::SEQUENCE),
                Dim::Fixed(m.width),
            ];
            cx.g.output(&name, DataType::Float32, &dims);
        }
    }
    let mut opsets = vec![(Domain::Onnx.as_str(), opset)];
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
        needs: g.needs,
    })
}
