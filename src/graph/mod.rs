//! ImageGPT as an ONNX graph: one trunk emitter ([`trunk`]) shared by every head, and heads
//! ([`heads`]) that add only their tail. Math: HF `modeling_imagegpt.py` (DESIGN.md §2).

pub mod heads;
pub mod trunk;

use crate::checkpoint::{Checkpoint, Head};
use crate::onnx::proto::GraphProto;
use crate::onnx::{GraphBuilder, Initializer};
use crate::weights::WeightsError;

/// Opset of the portable profile.
pub const PORTABLE_OPSET: i64 = 17;
/// IR version of the portable profile.
pub const PORTABLE_IR_VERSION: i64 = 8;

/// Names of the graph's symbolic dimensions.
pub const BATCH: &str = "batch";
pub const SEQUENCE: &str = "sequence";

/// Which op set a graph uses. Faster runtime-specific profiles are added as variants, each
/// verified like the portable one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Profile {
    /// Standard ops only, opset 17, IR 8: ONNX Runtime, tract, TensorRT, browser runtimes.
    Portable,
}

impl Profile {
    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Portable => "portable",
        }
    }
}

/// What to emit besides the head's main output.
#[derive(Debug, Clone, Copy, Default)]
pub struct GraphOptions {
    /// Add `hidden_states.{0..n_layer}` outputs (base head), as HF's `output_hidden_states`.
    pub hidden_states: bool,
}

/// A graph ready for the writer: nodes and I/O, and initializers streamed separately.
pub struct BuiltGraph<'w> {
    pub graph: GraphProto,
    pub initializers: Vec<Initializer<'w>>,
}

/// Emits `head` of `ckpt`.
pub fn build<'w>(
    ckpt: &'w Checkpoint,
    head: Head,
    opts: GraphOptions,
) -> Result<BuiltGraph<'w>, WeightsError> {
    let mut g = GraphBuilder::default();
    let trunk = trunk::emit(&mut g, ckpt);
    heads::emit(&mut g, ckpt, head, &trunk, opts.hidden_states)?;
    Ok(BuiltGraph {
        graph: GraphProto {
            node: g.nodes,
            name: format!("imagegpt-{}", head.name()),
            input: g.inputs,
            output: g.outputs,
            ..Default::default()
        },
        initializers: g.initializers,
    })
}
