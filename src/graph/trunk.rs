//! The trunk every head shares (HF `ImageGPTModel`): embeddings, `n_layer` pre-norm blocks,
//! `ln_f`, the norms, Conv1D (in the precision's form) and the MLP; attention is in
//! [`super::attention`]. Node and value names follow the checkpoint's (`h.3.attn.c_proj`).
//!
//! With a past (the decoder), the same emitters take `position_ids` and per-layer
//! `past_key_values`, offset the causal mask by the past length and return the `present`
//! key/values; without one, the graph is the plain forward.

use super::attention::{
    attention, attention_bias, attention_bias_with_past, sequence_length, SeqLen,
};
use super::ctx::Ctx;
use super::io::{
    Kv, ATTENTION_MASK, BATCH, INPUT_IDS, PAST_SEQUENCE, POSITION_IDS, SEQUENCE, TOTAL_SEQUENCE,
};
use super::linear::conv1d;
use super::profile::{ActivationForm, NormForm};
use crate::base::DataType;
use crate::onnx::builder::{attr_float, attr_int};
use crate::onnx::{Dim, Op, Scope};

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

/// Per-layer past inputs, when the trunk has a past.
struct Past {
    keys_values: Vec<(String, String)>,
}

/// Emits inputs, embeddings, blocks and `ln_f`.
pub fn emit(cx: &mut Ctx<'_, '_>) -> Trunk {
    let c = cx.ckpt.config.clone();
    let bs = [Dim::Symbol(BATCH), Dim::Symbol(SEQUENCE)];
    let ids = cx.g.input(INPUT_IDS, DataType::Int64, &bs);
    let (mask, past) = if cx.past {
        let total = [Dim::Symbol(BATCH), Dim::Symbol(TOTAL_SEQUENCE)];
        let mask = cx.g.input(ATTENTION_MASK, DataType::Int64, &total);
        let positions = cx.g.input(POSITION_IDS, DataType::Int64, &bs);
        let io = cx.decoder_io();
        let cache = io.cache_dims(PAST_SEQUENCE);
        let keys_values = (0..io.n_layer)
            .map(|i| {
                let k = super::io::past_name(i, Kv::Key);
                let v = super::io::past_name(i, Kv::Value);
                cx.g.input(&k, io.dtype, &cache);
                cx.g.input(&v, io.dtype, &cache);
                (k, v)
            })
            .collect();
        (mask, Some((positions, Past { keys_values })))
    } else {
        (cx.g.input(ATTENTION_MASK, DataType::Int64, &bs), None)
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

/// ImageGPTLayerNorm: `x / sqrt(mean(x², -1) + eps) * weight` — RMS norm, no bias. The fused
/// form keeps its statistics in float32 (`stash_type` 1); the decomposed form computes in
/// float32 whatever the activations' type (`x²` overflows float16 above |x| ≈ 256).
fn rms_norm(cx: &mut Ctx<'_, '_>, s: &Scope, x: &str) -> String {
    let (d, eps) = (cx.ckpt.config.n_embd, cx.ckpt.config.layer_norm_epsilon);
    if cx.profile.norm == NormForm::Fused {
        let weight = cx.weight(&s.name("weight"), &[d]);
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
    let (act, f32) = (cx.act(), DataType::Float32);
    let weight = cx.weight_as(&s.name("weight"), &[d], f32);
    let x = cx.cast(&s.name("float32"), x, act, f32);
    let out = if act == f32 {
        s.path().to_string()
    } else {
        s.name("normed_float32")
    };
    let g = &mut *cx.g;
    let eps = g.const_f32(&s.name("eps"), &[], &[eps as f32]);
    let sq = g.op(Op::Mul, s.name("square"), &[&x, &x], vec![]);
    let mean = g.reduce_mean(s.name("mean"), &sq, ("const.axes_last", &[-1]), true, 3);
    let var = g.op(Op::Add, s.name("mean_eps"), &[&mean, &eps], vec![]);
    let rms = g.op(Op::Sqrt, s.name("rms"), &[&var], vec![]);
    let normed = g.op(Op::Div, s.name("normed"), &[&x, &rms], vec![]);
    let out = g.op(Op::Mul, out, &[&normed, &weight], vec![]);
    cx.cast(s.path(), &out, f32, act)
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

/// `c_proj(quick_gelu(c_fc(x)))`, quick_gelu = `x * sigmoid(1.702 x)`.
fn mlp(cx: &mut Ctx<'_, '_>, s: &Scope, x: &str) -> String {
    let (d, inner) = (cx.ckpt.config.n_embd, cx.ckpt.config.n_inner);
    let fc = conv1d(cx, &s.pp("c_fc"), x, d, inner);
    let act = match cx.profile.activation {
        ActivationForm::Decomposed => {
            let k = cx.constant("const.quick_gelu", &[], &[QUICK_GELU_ALPHA]);
            let g = &mut *cx.g;
            let scaled = g.op(Op::Mul, s.name("act.scaled"), &[&fc, &k], vec![]);
            let gate = g.op(Op::Sigmoid, s.name("act.gate"), &[&scaled], vec![]);
            g.op(Op::Mul, s.name("act"), &[&fc, &gate], vec![])
        }
        ActivationForm::QuickGelu => cx.g.op(
            Op::QuickGelu,
            s.name("act"),
            &[&fc],
            vec![attr_float("alpha", QUICK_GELU_ALPHA)],
        ),
    };
    conv1d(cx, &s.pp("c_proj"), &act, inner, d)
}
