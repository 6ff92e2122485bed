//! Head tails on top of the trunk: each adds its projection and declares its outputs.

use super::ctx::Ctx;
use super::head::Head;
use super::io::{
    hidden_state, LogitsWidth, BATCH, LAST_HIDDEN_STATE, LOGITS, SEQUENCE, TOTAL_SEQUENCE,
};
use super::trunk::Trunk;
use crate::base::DataType;
use crate::checkpoint::source::Transposed;
use crate::checkpoint::WeightsError;
use crate::onnx::{Dim, Op};

/// Emits `head`'s tail and outputs; with `hidden_states` (base head only), also the
/// `hidden_states.{0..n_layer}` outputs; `logits` sets the LM heads' width.
pub fn emit(
    cx: &mut Ctx<'_, '_>,
    head: Head,
    trunk: &Trunk,
    hidden_states: bool,
    logits: LogitsWidth,
) -> Result<(), WeightsError> {
    let c = cx.ckpt.config.clone();
    // The heads compute and answer in float32 whatever the trunk's type: logits, pooled
    // features and hidden states keep float32's range and every reader one output type.
    let act = cx.act();
    let x = cx.cast(
        "last_hidden_state.float32",
        &trunk.last_hidden_state,
        act,
        DataType::Float32,
    );
    let x = x.as_str();
    let per_position = |width| [Dim::Symbol(BATCH), Dim::Symbol(SEQUENCE), Dim::Fixed(width)];
    match head {
        Head::Base => {
            let out = cx.g.op(Op::Identity, LAST_HIDDEN_STATE, &[x], vec![]);
            let dims = per_position(c.n_embd);
            cx.g.output(&out, DataType::Float32, &dims);
            if hidden_states {
                for (i, s) in trunk.hidden_states.iter().enumerate() {
                    let name = hidden_state(i);
                    let s = cx.cast(&format!("{name}.float32"), s, act, DataType::Float32);
                    cx.g.op(Op::Identity, name.clone(), &[&s], vec![]);
                    cx.g.output(&name, DataType::Float32, &dims);
                }
            }
        }
        Head::CausalLm | Head::Decoder => {
            let w = transposed(cx, "lm_head.weight", c.lm_vocab(), c.n_embd)?;
            let width = match logits {
                LogitsWidth::Colours => {
                    cx.g.op(Op::MatMul, LOGITS, &[x, &w], vec![]);
                    c.lm_vocab()
                }
                LogitsWidth::Vocabulary => {
                    let colours = cx.g.op(Op::MatMul, "logits.colours", &[x, &w], vec![]);
                    // One column after the last axis's end (begins for 3 axes, then ends).
                    let pads = ("const.pads_last_plus_1", &[0, 0, 0, 0, 0, 1][..]);
                    let fill = ("const.start_token_logit", f32::MIN);
                    cx.g.pad_constant(LOGITS, &colours, pads, fill);
                    c.vocab_size
                }
            };
            cx.g.output(LOGITS, DataType::Float32, &per_position(width));
            let io = cx.decoder_io();
            let cache = io.cache_dims(TOTAL_SEQUENCE);
            for (k, v) in &trunk.presents {
                cx.g.output(k, io.dtype, &cache);
                cx.g.output(v, io.dtype, &cache);
            }
        }
        Head::Classifier => {
            // HF averages over every position, padded ones included.
            let pooled =
                cx.g.reduce_mean("pooled", x, ("const.axes_1", &[1]), false, 3);
            let w = transposed(cx, "score.weight", c.num_labels, c.n_embd)?;
            cx.g.op(Op::MatMul, LOGITS, &[&pooled, &w], vec![]);
            let dims = [Dim::Symbol(BATCH), Dim::Fixed(c.num_labels)];
            cx.g.output(LOGITS, DataType::Float32, &dims);
        }
    }
    Ok(())
}

/// A `Linear` weight `[out, in]` stored transposed `[in, out]`, so the head is one MatMul.
fn transposed(
    cx: &mut Ctx<'_, '_>,
    name: &str,
    rows: usize,
    cols: usize,
) -> Result<String, WeightsError> {
    let store = &cx.ckpt.weights;
    store.require(name, &[rows, cols])?;
    let source = Transposed {
        store,
        name: name.to_string(),
        rows,
        cols,
    };
    Ok(cx.g.initializer(
        &format!("{name}.transposed"),
        DataType::Float32,
        &[cols, rows],
        Box::new(source),
    ))
}
