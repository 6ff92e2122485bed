//! Head tails on top of the trunk: each adds its projection and declares its outputs.

use super::trunk::Trunk;
use super::{BATCH, SEQUENCE};
use crate::checkpoint::{Checkpoint, Head};
use crate::onnx::builder::{attr_int, attr_ints};
use crate::onnx::proto::data_type;
use crate::onnx::{Dim, GraphBuilder, Op};
use crate::weights::WeightsError;

/// Emits `head`'s tail and outputs; with `hidden_states` (base head only), also the
/// `hidden_states.{0..n_layer}` outputs.
pub fn emit<'w>(
    g: &mut GraphBuilder<'w>,
    ckpt: &'w Checkpoint,
    head: Head,
    trunk: &Trunk,
    hidden_states: bool,
) -> Result<(), WeightsError> {
    let c = &ckpt.config;
    let x = trunk.last_hidden_state.as_str();
    match head {
        Head::Base => {
            let out = g.op(Op::Identity, "last_hidden_state", &[x], vec![]);
            let dims = [
                Dim::Symbol(BATCH),
                Dim::Symbol(SEQUENCE),
                Dim::Fixed(c.n_embd),
            ];
            g.output(&out, data_type::FLOAT, &dims);
            if hidden_states {
                for (i, s) in trunk.hidden_states.iter().enumerate() {
                    let name = format!("hidden_states.{i}");
                    g.op(Op::Identity, name.clone(), &[s], vec![]);
                    g.output(&name, data_type::FLOAT, &dims);
                }
            }
        }
        Head::CausalLm => {
            let w = transposed(g, ckpt, "lm_head.weight", c.lm_vocab(), c.n_embd)?;
            g.op(Op::MatMul, "logits", &[x, &w], vec![]);
            let dims = [
                Dim::Symbol(BATCH),
                Dim::Symbol(SEQUENCE),
                Dim::Fixed(c.lm_vocab()),
            ];
            g.output("logits", data_type::FLOAT, &dims);
        }
        Head::Classifier => {
            // HF averages over every position, padded ones included.
            let pooled = g.op(
                Op::ReduceMean,
                "pooled",
                &[x],
                vec![attr_ints("axes", &[1]), attr_int("keepdims", 0)],
            );
            let w = transposed(g, ckpt, "score.weight", c.num_labels, c.n_embd)?;
            g.op(Op::MatMul, "logits", &[&pooled, &w], vec![]);
            let dims = [Dim::Symbol(BATCH), Dim::Fixed(c.num_labels)];
            g.output("logits", data_type::FLOAT, &dims);
        }
    }
    Ok(())
}

/// A `Linear` weight `[out, in]` stored transposed `[in, out]`, so the head is one MatMul. The
/// head weights are small (512 × n_embd at most), so this one is materialised at export.
fn transposed(
    g: &mut GraphBuilder<'_>,
    ckpt: &Checkpoint,
    name: &str,
    rows: usize,
    cols: usize,
) -> Result<String, WeightsError> {
    ckpt.weights.require(name, &[rows, cols])?;
    let w = ckpt.weights.read_f32(name)?;
    let mut t = vec![0f32; rows * cols];
    for (r, row) in w.chunks_exact(cols).enumerate() {
        for (col, v) in row.iter().enumerate() {
            t[col * rows + r] = *v;
        }
    }
    Ok(g.const_f32(&format!("{name}.transposed"), &[cols, rows], &t))
}
