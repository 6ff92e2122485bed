//! The trunk every head shares (HF `ImageGPTModel`): embeddings, `n_layer` pre-norm blocks,
//! `ln_f`. Node and value names follow the checkpoint's (`h.3.attn.c_proj`).

use crate::checkpoint::Checkpoint;
use crate::config::ImageGptConfig;
use crate::graph::{BATCH, SEQUENCE};
use crate::onnx::builder::{attr_int, attr_ints};
use crate::onnx::proto::data_type;
use crate::onnx::{Dim, GraphBuilder, Op, Scope};
use crate::weights::WeightStore;

/// What the trunk leaves for the heads.
pub struct Trunk {
    /// `ln_f` of the last block: HF's `last_hidden_state`.
    pub last_hidden_state: String,
    /// HF's `output_hidden_states` tuple: the block inputs 0..n_layer-1, then `ln_f` of the
    /// last block's output (the last block's raw output is not among them).
    pub hidden_states: Vec<String>,
}

/// The value torch writes for masked scores: `torch.finfo(float32).min`, not -inf.
const MASK_VALUE: f32 = f32::MIN;

/// Emits inputs, embeddings, blocks and `ln_f`.
pub fn emit<'w>(g: &mut GraphBuilder<'w>, ckpt: &'w Checkpoint) -> Trunk {
    let c = &ckpt.config;
    let w = &ckpt.weights;
    let bs = [Dim::Symbol(BATCH), Dim::Symbol(SEQUENCE)];
    let ids = g.input("input_ids", data_type::INT64, &bs);
    let mask = g.input("attention_mask", data_type::INT64, &bs);

    let seq = sequence_length(g, &ids);
    let x = embeddings(g, w, c, &ids, &seq);
    let bias = attention_bias(g, c, &seq, &mask);
    let mut states = vec![x.clone()];
    let mut x = x;
    for i in 0..c.n_layer {
        x = block(g, w, c, i, &x, &bias);
        states.push(x.clone());
    }
    let last = rms_norm(g, w, c, &Scope::root("ln_f"), &x);
    states[c.n_layer] = last.clone();
    Trunk {
        last_hidden_state: last,
        hidden_states: states,
    }
}

/// `wte(input_ids) + wpe(0..seq)`. Positions are a slice of `wpe`: the forward does not derive
/// them from the mask.
fn embeddings<'w>(
    g: &mut GraphBuilder<'w>,
    w: &'w WeightStore,
    c: &ImageGptConfig,
    ids: &str,
    seq: &SeqLen,
) -> String {
    let wte = g.weight(w, "wte.weight", &[c.vocab_size, c.n_embd]);
    let wpe = g.weight(w, "wpe.weight", &[c.n_positions, c.n_embd]);
    let s = Scope::root("embed");
    let tokens = g.op(Op::Gather, s.name("tokens"), &[&wte, ids], vec![]);
    let zero = g.const_i64("const.zero_1d", &[1], &[0]);
    let axis0 = zero.clone();
    let positions = g.op(
        Op::Slice,
        s.name("positions"),
        &[&wpe, &zero, &seq.as_1d, &axis0],
        vec![],
    );
    g.op(Op::Add, s.name("sum"), &[&tokens, &positions], vec![])
}

/// The sequence length as a 1-D tensor, as `Slice` takes it.
struct SeqLen {
    as_1d: String,
}

fn sequence_length(g: &mut GraphBuilder<'_>, ids: &str) -> SeqLen {
    let shape = g.op(Op::Shape, "input_shape", &[ids], vec![]);
    let one_1d = g.const_i64("const.one_1d", &[1], &[1]);
    SeqLen {
        as_1d: g.op(Op::Gather, "sequence_length", &[&shape, &one_1d], vec![]),
    }
}

/// The additive attention bias `[batch, 1, seq, seq]`, computed once for all layers:
/// `where(causal, 0, MIN) + (1 - mask) * MIN`.
///
/// HF computes `where(causal, w, MIN) + (1 - mask) * MIN` per layer. Adding one precomputed bias
/// gives the same floats: a masked score `w + MIN` rounds to `MIN` (|w| is far below MIN's ulp),
/// and a causally masked padded key is `MIN + MIN = -inf` either way. The causal part is sliced
/// from a lower-triangular `[n_positions, n_positions]` bool constant, as HF slices its `bias`
/// buffer: index arithmetic with `Range` on a symbolic length is mis-planned by tract 0.23.
fn attention_bias(
    g: &mut GraphBuilder<'_>,
    c: &ImageGptConfig,
    seq: &SeqLen,
    mask: &str,
) -> String {
    let s = Scope::root("attn_bias");
    let n = c.n_positions;
    let tril: Vec<u8> = (0..n * n).map(|i| u8::from(i % n <= i / n)).collect();
    let tril = g.const_bool("causal_mask", &[n, n], tril);
    let zeros = g.const_i64("const.zeros_2", &[2], &[0, 0]);
    let axes = g.const_i64("const.axes_0_1", &[2], &[0, 1]);
    let ends = g.op(
        Op::Concat,
        s.name("ends"),
        &[&seq.as_1d, &seq.as_1d],
        vec![attr_int("axis", 0)],
    );
    let allowed = g.op(
        Op::Slice,
        s.name("causal"),
        &[&tril, &zeros, &ends, &axes],
        vec![],
    );
    let fzero = g.const_f32("const.f_zero", &[], &[0.0]);
    let fmin = g.const_f32("const.f_mask", &[], &[MASK_VALUE]);
    let fone = g.const_f32("const.f_one", &[], &[1.0]);
    let causal = g.op(
        Op::Where,
        s.name("causal_bias"),
        &[&allowed, &fzero, &fmin],
        vec![],
    );
    let maskf = g.op(
        Op::Cast,
        s.name("mask_f32"),
        &[mask],
        vec![attr_int("to", data_type::FLOAT as i64)],
    );
    let inv = g.op(Op::Sub, s.name("mask_inv"), &[&fone, &maskf], vec![]);
    let pad = g.op(Op::Mul, s.name("pad"), &[&inv, &fmin], vec![]);
    let axes12 = g.const_i64("const.axes_1_2", &[2], &[1, 2]);
    let pad4 = g.op(Op::Unsqueeze, s.name("pad_4d"), &[&pad, &axes12], vec![]);
    g.op(Op::Add, s.path().to_string(), &[&causal, &pad4], vec![])
}

/// ImageGPTLayerNorm: `x / sqrt(mean(x², -1) + eps) * weight` — RMS norm, no bias.
fn rms_norm<'w>(
    g: &mut GraphBuilder<'w>,
    w: &'w WeightStore,
    c: &ImageGptConfig,
    s: &Scope,
    x: &str,
) -> String {
    let weight = g.weight(w, &s.name("weight"), &[c.n_embd]);
    let eps = g.const_f32(&s.name("eps"), &[], &[c.layer_norm_epsilon as f32]);
    let sq = g.op(Op::Mul, s.name("square"), &[x, x], vec![]);
    let mean = g.op(
        Op::ReduceMean,
        s.name("mean"),
        &[&sq],
        vec![attr_ints("axes", &[-1]), attr_int("keepdims", 1)],
    );
    let var = g.op(Op::Add, s.name("mean_eps"), &[&mean, &eps], vec![]);
    let rms = g.op(Op::Sqrt, s.name("rms"), &[&var], vec![]);
    let normed = g.op(Op::Div, s.name("normed"), &[x, &rms], vec![]);
    g.op(Op::Mul, s.path().to_string(), &[&normed, &weight], vec![])
}

/// HF Conv1D: `x @ W + b` with W stored `[in, out]`.
fn conv1d<'w>(
    g: &mut GraphBuilder<'w>,
    w: &'w WeightStore,
    s: &Scope,
    x: &str,
    n_in: usize,
    n_out: usize,
) -> String {
    let weight = g.weight(w, &s.name("weight"), &[n_in, n_out]);
    let bias = g.weight(w, &s.name("bias"), &[n_out]);
    let mm = g.op(Op::MatMul, s.name("matmul"), &[x, &weight], vec![]);
    g.op(Op::Add, s.path().to_string(), &[&mm, &bias], vec![])
}

/// One pre-norm block: `h = x + attn(ln_1(x)); out = h + mlp(ln_2(h))`.
fn block<'w>(
    g: &mut GraphBuilder<'w>,
    w: &'w WeightStore,
    c: &ImageGptConfig,
    layer: usize,
    x: &str,
    bias: &str,
) -> String {
    let s = Scope::root("h").pp(layer);
    let ln_1 = rms_norm(g, w, c, &s.pp("ln_1"), x);
    let attn = attention(g, w, c, layer, &s.pp("attn"), &ln_1, bias);
    let h = g.op(Op::Add, s.name("residual_attn"), &[x, &attn], vec![]);
    let ln_2 = rms_norm(g, w, c, &s.pp("ln_2"), &h);
    let mlp = mlp(g, w, c, &s.pp("mlp"), &ln_2);
    g.op(Op::Add, s.name("out"), &[&h, &mlp], vec![])
}

/// Causal self-attention with the precomputed additive bias.
fn attention<'w>(
    g: &mut GraphBuilder<'w>,
    w: &'w WeightStore,
    c: &ImageGptConfig,
    layer: usize,
    s: &Scope,
    x: &str,
    bias: &str,
) -> String {
    let (d, h, hd) = (c.n_embd, c.n_head, c.head_dim());
    let qkv = conv1d(g, w, &s.pp("c_attn"), x, d, 3 * d);
    let split = g.const_i64("const.split_qkv", &[3], &[d as i64; 3]);
    let names = [s.name("q"), s.name("k"), s.name("v")];
    g.op_multi(
        Op::Split,
        &s.name("split"),
        &[&qkv, &split],
        &names,
        vec![attr_int("axis", 2)],
    );
    let heads_shape = g.const_i64("const.shape_heads", &[4], &[0, 0, h as i64, hd as i64]);
    let mut heads = Vec::with_capacity(3);
    // q and v to [b, h, s, hd]; k straight to [b, h, hd, s] so q·kᵀ is a plain MatMul.
    for (name, perm) in names.iter().zip([[0, 2, 1, 3], [0, 2, 3, 1], [0, 2, 1, 3]]) {
        let r = g.op(
            Op::Reshape,
            format!("{name}.heads"),
            &[name, &heads_shape],
            vec![],
        );
        heads.push(g.op(
            Op::Transpose,
            format!("{name}.transposed"),
            &[&r],
            vec![attr_ints("perm", &perm)],
        ));
    }
    let mut scores = g.op(
        Op::MatMul,
        s.name("scores"),
        &[&heads[0], &heads[1]],
        vec![],
    );
    // Two divisions, as HF does them, so the floats match.
    if c.scale_attn_weights {
        let k = g.const_f32("const.sqrt_head_dim", &[], &[(hd as f64).sqrt() as f32]);
        scores = g.op(Op::Div, s.name("scaled"), &[&scores, &k], vec![]);
    }
    if c.scale_attn_by_inverse_layer_idx {
        let k = g.const_f32(&s.name("layer_scale"), &[], &[(layer + 1) as f32]);
        scores = g.op(Op::Div, s.name("layer_scaled"), &[&scores, &k], vec![]);
    }
    let masked = g.op(Op::Add, s.name("masked"), &[&scores, bias], vec![]);
    let probs = g.op(
        Op::Softmax,
        s.name("probs"),
        &[&masked],
        vec![attr_int("axis", -1)],
    );
    let ctx = g.op(Op::MatMul, s.name("context"), &[&probs, &heads[2]], vec![]);
    let ctx_t = g.op(
        Op::Transpose,
        s.name("context.transposed"),
        &[&ctx],
        vec![attr_ints("perm", &[0, 2, 1, 3])],
    );
    let merged_shape = g.const_i64("const.shape_merged", &[3], &[0, 0, d as i64]);
    let merged = g.op(
        Op::Reshape,
        s.name("merged"),
        &[&ctx_t, &merged_shape],
        vec![],
    );
    conv1d(g, w, &s.pp("c_proj"), &merged, d, d)
}

/// `c_proj(quick_gelu(c_fc(x)))`, quick_gelu = `x * sigmoid(1.702 x)`.
fn mlp<'w>(
    g: &mut GraphBuilder<'w>,
    w: &'w WeightStore,
    c: &ImageGptConfig,
    s: &Scope,
    x: &str,
) -> String {
    let fc = conv1d(g, w, &s.pp("c_fc"), x, c.n_embd, c.n_inner);
    let k = g.const_f32("const.quick_gelu", &[], &[1.702]);
    let scaled = g.op(Op::Mul, s.name("act.scaled"), &[&fc, &k], vec![]);
    let gate = g.op(Op::Sigmoid, s.name("act.gate"), &[&scaled], vec![]);
    let act = g.op(Op::Mul, s.name("act"), &[&fc, &gate], vec![]);
    conv1d(g, w, &s.pp("c_proj"), &act, c.n_inner, c.n_embd)
}
