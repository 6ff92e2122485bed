//! The trunk every head shares (HF `ImageGPTModel`): embeddings, `n_layer` pre-norm blocks,
//! `ln_f`. Node and value names follow the checkpoint's (`h.3.attn.c_proj`).
//!
//! With a past (the decoder), the same emitters take `position_ids` and per-layer
//! `past_key_values`, offset the causal mask by the past length and return the `present`
//! key/values; without one, the graph is the plain forward.

use super::profile::{ActivationForm, AttentionForm, MatMulForm, NormForm};
use super::{Ctx, BATCH, PAST_SEQUENCE, SEQUENCE, TOTAL_SEQUENCE};
use crate::onnx::builder::{attr_float, attr_int, attr_ints};
use crate::onnx::{DataType, Dim, Op, Scope};

/// What the trunk leaves for the heads.
pub struct Trunk {
    /// `ln_f` of the last block: HF's `last_hidden_state`.
    pub last_hidden_state: String,
    /// HF's `output_hidden_states` tuple: the block inputs 0..n_layer-1, then `ln_f` of the
    /// last block's output (the last block's raw output is not among them).
    pub hidden_states: Vec<String>,
    /// With a past: each layer's `(key, value)` after this step, `[batch, n_head, total, head_dim]`.
    pub presents: Vec<(String, String)>,
}

/// quick_gelu's `x * sigmoid(alpha x)`.
const QUICK_GELU_ALPHA: f32 = 1.702;

/// The value torch writes for masked scores: `torch.finfo(float32).min`, not -inf.
const MASK_VALUE: f32 = f32::MIN;

/// Per-layer past inputs, when the trunk has a past.
struct Past {
    keys_values: Vec<(String, String)>,
}

/// Emits inputs, embeddings, blocks and `ln_f`.
pub fn emit(cx: &mut Ctx<'_, '_>) -> Trunk {
    let c = cx.ckpt.config.clone();
    let bs = [Dim::Symbol(BATCH), Dim::Symbol(SEQUENCE)];
    let ids = cx.g.input("input_ids", DataType::Int64, &bs);
    let (mask, past) = if cx.past {
        let total = [Dim::Symbol(BATCH), Dim::Symbol(TOTAL_SEQUENCE)];
        let mask = cx.g.input("attention_mask", DataType::Int64, &total);
        let positions = cx.g.input("position_ids", DataType::Int64, &bs);
        let cache = [
            Dim::Symbol(BATCH),
            Dim::Fixed(c.n_head),
            Dim::Symbol(PAST_SEQUENCE),
            Dim::Fixed(c.head_dim()),
        ];
        let keys_values = (0..c.n_layer)
            .map(|i| {
                let k = format!("past_key_values.{i}.key");
                let v = format!("past_key_values.{i}.value");
                cx.g.input(&k, DataType::Float32, &cache);
                cx.g.input(&v, DataType::Float32, &cache);
                (k, v)
            })
            .collect();
        (mask, Some((positions, Past { keys_values })))
    } else {
        (cx.g.input("attention_mask", DataType::Int64, &bs), None)
    };

    let seq = sequence_length(cx, &ids);
    let (x, bias) = match &past {
        None => {
            let x = embeddings(cx, &ids, Positions::Prefix(&seq));
            (x, attention_bias(cx, &seq, &mask))
        }
        Some((positions, _)) => {
            let x = embeddings(cx, &ids, Positions::Ids(positions));
            (x, attention_bias_with_past(cx, &seq, &mask))
        }
    };
    // The residual stream `x` and, one step behind, the norm that reads it: every norm after
    // the first also absorbs the residual add before it (fused in the ort profile).
    let mut states = vec![x.clone()];
    let mut presents = Vec::new();
    let mut x = x;
    let mut normed = rms_norm(cx, &Scope::root("h").pp(0).pp("ln_1"), &x);
    for i in 0..c.n_layer {
        let layer_past = past.as_ref().map(|(_, p)| &p.keys_values[i]);
        let s = Scope::root("h").pp(i);
        let (attn, present) = attention(cx, i, &s.pp("attn"), &normed, &bias, layer_past);
        presents.extend(present);
        let (h, ln_2) = add_norm(cx, &s.pp("ln_2"), &s.name("residual_attn"), &x, &attn);
        let mlp = mlp(cx, &s.pp("mlp"), &ln_2);
        let next = if i + 1 < c.n_layer {
            Scope::root("h").pp(i + 1).pp("ln_1")
        } else {
            Scope::root("ln_f")
        };
        (x, normed) = add_norm(cx, &next, &s.name("out"), &h, &mlp);
        states.push(x.clone());
    }
    states[c.n_layer] = normed.clone();
    Trunk {
        last_hidden_state: normed,
        hidden_states: states,
        presents,
    }
}

/// Where position embeddings come from.
enum Positions<'a> {
    /// `0..seq`, a slice of `wpe`: the plain forward does not derive positions from the mask.
    Prefix(&'a SeqLen),
    /// Explicit `position_ids` (the decoder: `past..past+seq`).
    Ids(&'a str),
}

/// `wte(input_ids) + wpe(positions)`.
fn embeddings(cx: &mut Ctx<'_, '_>, ids: &str, positions: Positions<'_>) -> String {
    let c = &cx.ckpt.config;
    let (vocab, n_pos, d) = (c.vocab_size, c.n_positions, c.n_embd);
    let wte = cx.weight("wte.weight", &[vocab, d]);
    let wpe = cx.weight("wpe.weight", &[n_pos, d]);
    let g = &mut *cx.g;
    let s = Scope::root("embed");
    let tokens = g.op(Op::Gather, s.name("tokens"), &[&wte, ids], vec![]);
    let positions = match positions {
        Positions::Prefix(seq) => {
            let zero = g.const_i64("const.zero_1d", &[1], &[0]);
            let axis0 = zero.clone();
            g.op(
                Op::Slice,
                s.name("positions"),
                &[&wpe, &zero, &seq.as_1d, &axis0],
                vec![],
            )
        }
        Positions::Ids(ids) => g.op(Op::Gather, s.name("positions"), &[&wpe, ids], vec![]),
    };
    g.op(Op::Add, s.name("sum"), &[&tokens, &positions], vec![])
}

/// The sequence length as a 1-D tensor, as `Slice` takes it.
struct SeqLen {
    as_1d: String,
}

fn sequence_length(cx: &mut Ctx<'_, '_>, ids: &str) -> SeqLen {
    let g = &mut *cx.g;
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
fn attention_bias(cx: &mut Ctx<'_, '_>, seq: &SeqLen, mask: &str) -> String {
    let s = Scope::root("attn_bias");
    let tril = causal_constant(cx);
    let g = &mut *cx.g;
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
    bias_from(cx, &s, &allowed, mask)
}

/// With a past: query `t` of this step is position `past + t` and sees keys `0..=past + t`.
/// The rows `[total - seq, total)` and columns `[0, total)` of the triangle, where `total` is
/// the mask's length (past + seq), again by `Slice`.
fn attention_bias_with_past(cx: &mut Ctx<'_, '_>, seq: &SeqLen, mask: &str) -> String {
    let s = Scope::root("attn_bias");
    let tril = causal_constant(cx);
    let g = &mut *cx.g;
    let mask_shape = g.op(Op::Shape, s.name("mask_shape"), &[mask], vec![]);
    let one_1d = g.const_i64("const.one_1d", &[1], &[1]);
    let total = g.op(
        Op::Gather,
        "total_sequence_length",
        &[&mask_shape, &one_1d],
        vec![],
    );
    let past = g.op(
        Op::Sub,
        "past_sequence_length",
        &[&total, &seq.as_1d],
        vec![],
    );
    let zero = g.const_i64("const.zero_1d", &[1], &[0]);
    let starts = g.op(
        Op::Concat,
        s.name("starts"),
        &[&past, &zero],
        vec![attr_int("axis", 0)],
    );
    let ends = g.op(
        Op::Concat,
        s.name("ends"),
        &[&total, &total],
        vec![attr_int("axis", 0)],
    );
    let axes = g.const_i64("const.axes_0_1", &[2], &[0, 1]);
    let allowed = g.op(
        Op::Slice,
        s.name("causal"),
        &[&tril, &starts, &ends, &axes],
        vec![],
    );
    bias_from(cx, &s, &allowed, mask)
}

/// The lower-triangular `[n_positions, n_positions]` bool constant.
fn causal_constant(cx: &mut Ctx<'_, '_>) -> String {
    let n = cx.ckpt.config.n_positions;
    let tril: Vec<u8> = (0..n * n).map(|i| u8::from(i % n <= i / n)).collect();
    cx.g.const_bool("causal_mask", &[n, n], tril)
}

/// `where(allowed, 0, MIN) + (1 - mask) * MIN`, the mask broadcast over heads and queries.
fn bias_from(cx: &mut Ctx<'_, '_>, s: &Scope, allowed: &str, mask: &str) -> String {
    let g = &mut *cx.g;
    let fzero = g.const_f32("const.f_zero", &[], &[0.0]);
    let fmin = g.const_f32("const.f_mask", &[], &[MASK_VALUE]);
    let fone = g.const_f32("const.f_one", &[], &[1.0]);
    let causal = g.op(
        Op::Where,
        s.name("causal_bias"),
        &[allowed, &fzero, &fmin],
        vec![],
    );
    let maskf = g.op(
        Op::Cast,
        s.name("mask_f32"),
        &[mask],
        vec![attr_int("to", DataType::Float32.onnx() as i64)],
    );
    let inv = g.op(Op::Sub, s.name("mask_inv"), &[&fone, &maskf], vec![]);
    let pad = g.op(Op::Mul, s.name("pad"), &[&inv, &fmin], vec![]);
    let axes12 = g.const_i64("const.axes_1_2", &[2], &[1, 2]);
    let pad4 = g.op(Op::Unsqueeze, s.name("pad_4d"), &[&pad, &axes12], vec![]);
    g.op(Op::Add, s.path().to_string(), &[&causal, &pad4], vec![])
}

/// ImageGPTLayerNorm: `x / sqrt(mean(x², -1) + eps) * weight` — RMS norm, no bias.
fn rms_norm(cx: &mut Ctx<'_, '_>, s: &Scope, x: &str) -> String {
    let (d, eps) = (cx.ckpt.config.n_embd, cx.ckpt.config.layer_norm_epsilon);
    let weight = cx.weight(&s.name("weight"), &[d]);
    if cx.profile.norm == NormForm::Fused {
        let attrs = vec![
            attr_int("axis", -1),
            attr_float("epsilon", eps as f32),
            attr_int("stash_type", 1),
        ];
        let g = &mut *cx.g;
        return g.op(
            Op::SimplifiedLayerNormalization,
            s.path().to_string(),
            &[x, &weight],
            attrs,
        );
    }
    let g = &mut *cx.g;
    let eps = g.const_f32(&s.name("eps"), &[], &[eps as f32]);
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

/// `sum = residual + delta` (named `sum_name`) and the norm of it (named by `s`): one
/// `SkipSimplifiedLayerNormalization` in the fused form, whose fourth output is the sum.
fn add_norm(
    cx: &mut Ctx<'_, '_>,
    s: &Scope,
    sum_name: &str,
    residual: &str,
    delta: &str,
) -> (String, String) {
    if cx.profile.norm == NormForm::Decomposed {
        let sum = cx.g.op(Op::Add, sum_name, &[residual, delta], vec![]);
        let normed = rms_norm(cx, s, &sum);
        return (sum, normed);
    }
    let (d, eps) = (cx.ckpt.config.n_embd, cx.ckpt.config.layer_norm_epsilon);
    let weight = cx.weight(&s.name("weight"), &[d]);
    let outputs = [
        s.path().to_string(),
        String::new(),
        String::new(),
        sum_name.to_string(),
    ];
    cx.g.op_multi(
        Op::SkipSimplifiedLayerNormalization,
        s.path(),
        &[delta, residual, &weight],
        &outputs,
        // The skip form has no axis or stash_type: last axis, float32 statistics always.
        vec![attr_float("epsilon", eps as f32)],
    );
    (sum_name.to_string(), s.path().to_string())
}

/// HF Conv1D: `x @ W + b` with W stored `[in, out]`; in 8-bit precision one `MatMulNBits`
/// over the weight quantised in blocks along `in` (stored `[out, blocks, block]`).
fn conv1d(cx: &mut Ctx<'_, '_>, s: &Scope, x: &str, n_in: usize, n_out: usize) -> String {
    let bias = |cx: &mut Ctx<'_, '_>| cx.weight(&s.name("bias"), &[n_out]);
    match cx.precision.matmul {
        MatMulForm::Float32 => {
            let weight = cx.weight(&s.name("weight"), &[n_in, n_out]);
            let bias = bias(cx);
            let mm = cx.g.op(Op::MatMul, s.name("matmul"), &[x, &weight], vec![]);
            cx.g.op(Op::Add, s.path().to_string(), &[&mm, &bias], vec![])
        }
        MatMulForm::Blocks8 {
            block_size,
            accuracy_level,
        } => {
            let (q, scales) = cx.int8_weight(&s.name("weight"), n_in, n_out, block_size);
            let bias = bias(cx);
            let attrs = vec![
                attr_int("K", n_in as i64),
                attr_int("N", n_out as i64),
                attr_int("bits", 8),
                attr_int("block_size", block_size as i64),
                attr_int("accuracy_level", accuracy_level),
            ];
            let inputs = [x, &q, &scales, "", "", &bias];
            cx.g.op(Op::MatMulNBits, s.path().to_string(), &inputs, attrs)
        }
    }
}

/// Causal self-attention with the precomputed additive bias.
fn attention(
    cx: &mut Ctx<'_, '_>,
    layer: usize,
    s: &Scope,
    x: &str,
    bias: &str,
    past: Option<&(String, String)>,
) -> (String, Option<(String, String)>) {
    let c = cx.ckpt.config.clone();
    let (d, h, hd) = (c.n_embd, c.n_head, c.head_dim());
    let qkv = conv1d(cx, &s.pp("c_attn"), x, d, 3 * d);
    let g = &mut *cx.g;
    let split = g.const_i64("const.split_qkv", &[3], &[d as i64; 3]);
    let names = [s.name("q"), s.name("k"), s.name("v")];
    g.op_multi(
        Op::Split,
        &s.name("split"),
        &[&qkv, &split],
        &names,
        vec![attr_int("axis", 2)],
    );
    if cx.profile.attention == AttentionForm::MultiHead {
        let ctx = fused_attention(cx, layer, s, &names, bias, past);
        let out = conv1d(cx, &s.pp("c_proj"), &ctx.0, d, d);
        return (out, ctx.1);
    }
    let g = &mut *cx.g;
    let heads_shape = g.const_i64("const.shape_heads", &[4], &[0, 0, h as i64, hd as i64]);
    // q and v to [b, h, s, hd]. Without a past, k goes straight to [b, h, hd, s] so q·kᵀ is a
    // plain MatMul; with one, k stays [b, h, s, hd] (the cache layout) and is transposed after
    // the past is prepended.
    let k_perm = if past.is_some() {
        [0, 2, 1, 3]
    } else {
        [0, 2, 3, 1]
    };
    let mut heads = Vec::with_capacity(3);
    for (name, perm) in names.iter().zip([[0, 2, 1, 3], k_perm, [0, 2, 1, 3]]) {
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
    let mut present = None;
    if let Some((past_k, past_v)) = past {
        let key = g.op(
            Op::Concat,
            format!("present.{layer}.key"),
            &[past_k, &heads[1]],
            vec![attr_int("axis", 2)],
        );
        let value = g.op(
            Op::Concat,
            format!("present.{layer}.value"),
            &[past_v, &heads[2]],
            vec![attr_int("axis", 2)],
        );
        heads[1] = g.op(
            Op::Transpose,
            s.name("k.all_transposed"),
            &[&key],
            vec![attr_ints("perm", &[0, 1, 3, 2])],
        );
        heads[2] = value.clone();
        present = Some((key, value));
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
    (conv1d(cx, &s.pp("c_proj"), &merged, d, d), present)
}

/// `c_proj(quick_gelu(c_fc(x)))`, quick_gelu = `x * sigmoid(1.702 x)`.
fn mlp(cx: &mut Ctx<'_, '_>, s: &Scope, x: &str) -> String {
    let (d, inner) = (cx.ckpt.config.n_embd, cx.ckpt.config.n_inner);
    let fc = conv1d(cx, &s.pp("c_fc"), x, d, inner);
    let g = &mut *cx.g;
    let act = match cx.profile.activation {
        ActivationForm::Decomposed => {
            let k = g.const_f32("const.quick_gelu", &[], &[QUICK_GELU_ALPHA]);
            let scaled = g.op(Op::Mul, s.name("act.scaled"), &[&fc, &k], vec![]);
            let gate = g.op(Op::Sigmoid, s.name("act.gate"), &[&scaled], vec![]);
            g.op(Op::Mul, s.name("act"), &[&fc, &gate], vec![])
        }
        ActivationForm::QuickGelu => g.op(
            Op::QuickGelu,
            s.name("act"),
            &[&fc],
            vec![attr_float("alpha", QUICK_GELU_ALPHA)],
        ),
    };
    conv1d(cx, &s.pp("c_proj"), &act, inner, d)
}

/// ONNX Runtime's `MultiHeadAttention` over the split q, k, v `[batch, seq, n_embd]`, with the
/// precomputed additive bias (so masks mean exactly what they mean in the portable graph) and,
/// with a past, BNSH `past_key`/`past_value` in and `present.{layer}.*` out: the portable
/// decoder's cache layout, so the decoder's inputs and outputs do not change.
fn fused_attention(
    cx: &mut Ctx<'_, '_>,
    layer: usize,
    s: &Scope,
    qkv: &[String; 3],
    bias: &str,
    past: Option<&(String, String)>,
) -> (String, Option<(String, String)>) {
    let c = &cx.ckpt.config;
    // HF divides by sqrt(head_dim) and by (layer + 1) when asked; the op multiplies once.
    let mut scale = 1.0f64;
    if c.scale_attn_weights {
        scale /= (c.head_dim() as f64).sqrt();
    }
    if c.scale_attn_by_inverse_layer_idx {
        scale /= (layer + 1) as f64;
    }
    let attrs = vec![
        attr_int("num_heads", c.n_head as i64),
        attr_float("scale", scale as f32),
    ];
    let name = s.name("context");
    let (past_k, past_v) = past.map_or(("", ""), |(k, v)| (k.as_str(), v.as_str()));
    let present = past.map(|_| {
        (
            format!("present.{layer}.key"),
            format!("present.{layer}.value"),
        )
    });
    let outputs = match &present {
        Some((k, v)) => vec![name.clone(), k.clone(), v.clone()],
        None => vec![name.clone()],
    };
    let [q, k, v] = qkv;
    // Inputs: q, k, v, (packed bias), (key_padding_mask), attention_bias, past_key, past_value.
    let inputs = [q.as_str(), k, v, "", "", bias, past_k, past_v];
    let used = if past.is_some() { 8 } else { 6 };
    cx.g.op_multi(
        Op::MultiHeadAttention,
        &name,
        &inputs[..used],
        &outputs,
        attrs,
    );
    (name, present)
}
