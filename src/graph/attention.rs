//! Causal self-attention (HF `ImageGPTAttention`): the additive bias every layer shares, and
//! each layer's attention in the profile's form — MatMul/Softmax with standard ops (in query
//! blocks for a long forward: [`query_blocks`]), or ONNX Runtime's `MultiHeadAttention`
//! (`com.microsoft` contrib op) on the same bias and the same cache layout.

use super::ctx::Ctx;
use super::io::{present_name, CacheMode, Kv, ATTENTION_MASK};
use super::linear::conv1d;
use super::profile::AttentionForm;
use crate::base::DataType;
use crate::config::ImageGptConfig;
use crate::onnx::builder::{attr_float, attr_int, attr_ints};
use crate::onnx::{Op, Scope};

/// The sequence length as a 1-D tensor, as `Slice` takes it.
pub struct SeqLen {
    pub(super) as_1d: String,
}

/// The value [`sequence_length`] emits.
const SEQUENCE_LENGTH: &str = "sequence_length";

pub fn sequence_length(cx: &mut Ctx<'_, '_>, ids: &str) -> SeqLen {
    let g = &mut *cx.g;
    let shape = g.op(Op::Shape, "input_shape", &[ids], vec![]);
    let one_1d = g.const_i64("const.one_1d", &[1], &[1]);
    SeqLen {
        as_1d: g.op(Op::Gather, SEQUENCE_LENGTH, &[&shape, &one_1d], vec![]),
    }
}

/// The value torch writes for masked scores: `torch.finfo(float32).min`, not -inf.
const MASK_VALUE: f32 = f32::MIN;
/// In float16, half its minimum (−32752): float32 min would round to −inf, and a padded query
/// whose every visible key is padding would get a softmax of all −inf, NaN, which its key and
/// value then carry into every later query (0 · NaN). Half keeps a causally masked padded key
/// (two masks added) finite at −65504, and still drowns any score (|w| ≪ 16,000).
const MASK_VALUE_F16: f32 = -32752.0;
/// The additive attention bias `[batch, 1, seq, seq]`, computed once for all layers:
/// `where(causal, 0, MIN) + (1 - mask) * MIN`.
///
/// HF computes `where(causal, w, MIN) + (1 - mask) * MIN` per layer. Adding one precomputed bias
/// gives the same floats: a masked score `w + MIN` rounds to `MIN` (|w| is far below MIN's ulp),
/// and a causally masked padded key is `MIN + MIN = -inf` either way. The causal part is sliced
/// from a lower-triangular `[n_positions, n_positions]` bool constant, as HF slices its `bias`
/// buffer: index arithmetic with `Range` on a symbolic length is mis-planned by tract 0.23.
pub fn attention_bias(cx: &mut Ctx<'_, '_>, seq: &SeqLen, mask: &str) -> String {
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
pub fn attention_bias_with_past(cx: &mut Ctx<'_, '_>, seq: &SeqLen, mask: &str) -> String {
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

/// `where(allowed, 0, MIN) + (1 - mask) * MIN` in the activations' type, the mask broadcast
/// over heads and queries.
fn bias_from(cx: &mut Ctx<'_, '_>, s: &Scope, allowed: &str, mask: &str) -> String {
    let act = cx.act();
    let (min, mask_name) = match act {
        DataType::Float16 => (MASK_VALUE_F16, "mask_f16"),
        _ => (MASK_VALUE, "mask_f32"),
    };
    let fzero = cx.constant("const.f_zero", &[], &[0.0]);
    let fmin = cx.constant("const.f_mask", &[], &[min]);
    let fone = cx.constant("const.f_one", &[], &[1.0]);
    let g = &mut *cx.g;
    let causal = g.op(
        Op::Where,
        s.name("causal_bias"),
        &[allowed, &fzero, &fmin],
        vec![],
    );
    let maskf = g.op(
        Op::Cast,
        s.name(mask_name),
        &[mask],
        vec![attr_int("to", act.onnx() as i64)],
    );
    let inv = g.op(Op::Sub, s.name("mask_inv"), &[&fone, &maskf], vec![]);
    let pad = g.op(Op::Mul, s.name("pad"), &[&inv, &fmin], vec![]);
    let pad4 = g.unsqueeze(s.name("pad_4d"), &pad, ("const.axes_1_2", &[1, 2]));
    g.op(Op::Add, s.path().to_string(), &[&causal, &pad4], vec![])
}

/// Causal self-attention with the precomputed additive bias.
pub(super) fn attention(
    cx: &mut Ctx<'_, '_>,
    layer: usize,
    s: &Scope,
    x: &str,
    bias: &str,
    past: Option<&(String, String)>,
) -> (String, Option<(String, String)>) {
    let c = cx.ckpt.config.clone();
    let (d, h, hd) = (c.n_embd, c.n_head, c.head_dim());
    let n_positions = c.n_positions;
    let qkv = conv1d(cx, &s.pp("c_attn"), x, d, 3 * d);
    if let (Some(past), CacheMode::Shared) = (past, cx.profile.cache_mode(&c)) {
        // The decoder step's GroupQueryAttention reads c_attn's [q | k | v] packed: no Split.
        let name = s.name("context");
        let scale = fused_scale(&c, layer);
        let present = group_query_step(cx, layer, &name, &qkv, bias, past, scale);
        let out = conv1d(cx, &s.pp("c_proj"), &name, d, d);
        return (out, Some(present));
    }
    let names = [s.name("q"), s.name("k"), s.name("v")];
    let sizes = [d as i64; 3];
    let sizes = ("const.split_qkv", &sizes[..]);
    cx.g.split(&s.name("split"), &qkv, sizes, 2, &names);
    let blocks = query_blocks(cx);
    if cx.profile.attention == AttentionForm::MultiHead && blocks.is_none() {
        // The full square (a decoder, or a model of one block): ONNX Runtime's kernel over
        // query blocks measured no faster (see `query_blocks`).
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
            present_name(layer, Kv::Key),
            &[past_k, &heads[1]],
            vec![attr_int("axis", 2)],
        );
        let value = g.op(
            Op::Concat,
            present_name(layer, Kv::Value),
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
    let ctx = match (&blocks, past) {
        (Some(blocks), None) => {
            let parts: Vec<String> = blocks
                .iter()
                .enumerate()
                .map(|(i, &(start, end))| {
                    let b = s.pp("block").pp(i);
                    let q = slice_axis(cx, &b.name("q"), &heads[0], 2, start, end);
                    // The last block reads every key: no copy of them.
                    let (kt, v) = match end as usize >= n_positions {
                        true => (heads[1].clone(), heads[2].clone()),
                        false => {
                            let (zero, keys) = (bound(cx, 0), key_bound(cx, start, end));
                            (
                                slice_to(cx, &b.name("k"), &heads[1], 3, &zero, &keys),
                                slice_to(cx, &b.name("v"), &heads[2], 2, &zero, &keys),
                            )
                        }
                    };
                    let bias = bias_block(cx, bias, i, start, end);
                    scores_context(cx, layer, &b, [&q, &kt, &v], &bias)
                })
                .collect();
            let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
            cx.g.op(
                Op::Concat,
                s.name("context"),
                &refs,
                vec![attr_int("axis", 2)],
            )
        }
        _ => scores_context(cx, layer, s, [&heads[0], &heads[1], &heads[2]], bias),
    };
    let g = &mut *cx.g;
    let ctx_t = g.op(
        Op::Transpose,
        s.name("context.transposed"),
        &[&ctx],
        vec![attr_ints("perm", &[0, 2, 1, 3])],
    );
    // Blocks: the concatenated sequence axis is a sum of clamped bounds to a symbolic-shape
    // engine; the input's own shape puts the plain sequence length back (tract otherwise carries
    // that sum through every later shape).
    let merged_shape = match (&blocks, past) {
        (Some(_), None) => g.op(Op::Shape, s.name("merged_shape"), &[&names[0]], vec![]),
        _ => g.const_i64("const.shape_merged", &[3], &[0, 0, d as i64]),
    };
    let mut merged = g.op(
        Op::Reshape,
        s.name("merged"),
        &[&ctx_t, &merged_shape],
        vec![],
    );
    if blocks.is_some() && past.is_none() {
        merged = keyless_mean(cx, s, &names[2], &merged);
    }
    (conv1d(cx, &s.pp("c_proj"), &merged, d, d), present)
}

/// `softmax(q·kᵀ / scale + bias) · v` on heads `[b, h, rows, hd]`, `kᵀ` `[b, h, hd, keys]`.
fn scores_context(
    cx: &mut Ctx<'_, '_>,
    layer: usize,
    s: &Scope,
    [q, kt, v]: [&str; 3],
    bias: &str,
) -> String {
    let c = cx.ckpt.config.clone();
    let hd = c.head_dim();
    let mut scores = cx.g.op(Op::MatMul, s.name("scores"), &[q, kt], vec![]);
    // Two divisions, as HF does them, so the floats match.
    let sqrt_head_dim = c
        .scale_attn_weights
        .then(|| cx.constant("const.sqrt_head_dim", &[], &[(hd as f64).sqrt() as f32]));
    let layer_scale = c.scale_attn_by_inverse_layer_idx.then(|| {
        let name = Scope::root("h").pp(layer).pp("attn").name("layer_scale");
        cx.constant(&name, &[], &[(layer + 1) as f32])
    });
    let g = &mut *cx.g;
    if let Some(k) = sqrt_head_dim {
        scores = g.op(Op::Div, s.name("scaled"), &[&scores, &k], vec![]);
    }
    if let Some(k) = layer_scale {
        scores = g.op(Op::Div, s.name("layer_scaled"), &[&scores, &k], vec![]);
    }
    let masked = g.op(Op::Add, s.name("masked"), &[&scores, bias], vec![]);
    let probs = g.softmax_last(s.name("probs"), &masked, 4);
    g.op(Op::MatMul, s.name("context"), &[&probs, v], vec![])
}

/// The blocked forward's query blocks `[start, end)` over `0..n_positions`, or `None` for the
/// full `[seq, seq]` square (a decoder, blocks switched off by
/// [`QueryBlock`](super::QueryBlock)`(0)`, a model no longer than one block, or an opset before
/// `Min` on int64).
///
/// Block `i` reads keys `0..end` only: the keys after a block are causally masked for all its
/// queries, so the scores, softmax and context of the masked upper blocks are never computed
/// (about half of the square at `seq` = 1024). The bounds are constants: `Slice` clamps them to
/// the run's sequence length (`min(bound, seq)`), so a sequence of one block computes the full
/// square, and blocks past its end are empty. Left padding needs one repair, [`keyless_mean`].
///
/// The blocks are standard ops in both profiles: ONNX Runtime's `MultiHeadAttention` kernel
/// spent as long on eight blocks as on the square (its profiler), while the standard-op blocks
/// take about 0.85× of the fused square's forward at sequence 1024 (docs/benchmarks.md,
/// "Attention in query blocks"). A decoder, and a model of one block, keep the fused square.
fn query_blocks(cx: &Ctx<'_, '_>) -> Option<Vec<(i64, i64)>> {
    let rows = cx.query_block;
    let n = cx.ckpt.config.n_positions;
    if cx.past || rows == 0 || n <= rows || cx.g.opset < Op::Min.since() {
        return None;
    }
    Some(
        (0..n.div_ceil(rows))
            .map(|i| ((i * rows) as i64, ((i + 1) * rows).min(n) as i64))
            .collect(),
    )
}

/// `x[.., start..end, ..]` along `axis`.
fn slice_axis(
    cx: &mut Ctx<'_, '_>,
    name: &str,
    x: &str,
    axis: i64,
    start: i64,
    end: i64,
) -> String {
    let (starts, ends) = (bound(cx, start), bound(cx, end));
    slice_to(cx, name, x, axis, &starts, &ends)
}

/// `x[.., starts..ends, ..]` along `axis`, the bounds 1-D tensors.
fn slice_to(
    cx: &mut Ctx<'_, '_>,
    name: &str,
    x: &str,
    axis: i64,
    starts: &str,
    ends: &str,
) -> String {
    let g = &mut *cx.g;
    let axes = g.const_i64(&format!("const.axis_{axis}"), &[1], &[axis]);
    g.op(Op::Slice, name, &[x, starts, ends, &axes], vec![])
}

/// The keys query block `start..end` reads, `0..` this: `min(end, seq)` while the block has
/// queries (`start < seq`), else 0, so a block past the sequence's end copies no keys (emitted
/// once per block: `min(min(end, seq), max(seq - start, 0) · end)`).
fn key_bound(cx: &mut Ctx<'_, '_>, start: i64, end: i64) -> String {
    let last = bound(cx, end);
    if start == 0 {
        return last;
    }
    let name = format!("attn_block.keys_{start}_{end}");
    let g = &mut *cx.g;
    if g.nodes.iter().any(|n| n.name == name) {
        return name;
    }
    let first = g.const_i64(&format!("const.block_{start}"), &[1], &[start]);
    let left = g.op(
        Op::Sub,
        format!("{name}.left"),
        &[SEQUENCE_LENGTH, &first],
        vec![],
    );
    let zero = g.const_i64("const.zero_1d", &[1], &[0]);
    let left = g.op(Op::Max, format!("{name}.queries"), &[&left, &zero], vec![]);
    let scale = g.const_i64(&format!("const.block_{end}"), &[1], &[end]);
    let wide = g.op(Op::Mul, format!("{name}.wide"), &[&left, &scale], vec![]);
    g.op(Op::Min, name, &[&last, &wide], vec![])
}

/// A block bound clamped to the sequence length, `min(at, seq)` as a 1-D tensor; emitted once
/// per bound. ONNX's `Slice` clamps bounds itself, but tract 0.23 fixes a constant bound on a
/// symbolic axis and fails at run time when the sequence is shorter.
fn bound(cx: &mut Ctx<'_, '_>, at: i64) -> String {
    let name = format!("attn_block.bound_{at}");
    let g = &mut *cx.g;
    if at == 0 || g.nodes.iter().any(|n| n.name == name) {
        return match at {
            0 => g.const_i64("const.zero_1d", &[1], &[0]),
            _ => name,
        };
    }
    let k = g.const_i64(&format!("const.block_{at}"), &[1], &[at]);
    g.op(Op::Min, name, &[&k, SEQUENCE_LENGTH], vec![])
}

/// The bias rows of query block `i` and its keys, `bias[.., start..end, 0..end]`; emitted once
/// (layer 0's call) and shared by every layer.
fn bias_block(cx: &mut Ctx<'_, '_>, bias: &str, i: usize, start: i64, end: i64) -> String {
    let name = Scope::root("attn_bias")
        .pp("block")
        .pp(i)
        .path()
        .to_string();
    if cx.g.nodes.iter().any(|n| n.name == name) {
        return name;
    }
    let (first, last) = (bound(cx, start), bound(cx, end));
    // The columns: the keys the block reads (all of them in the last block).
    let keys = match end as usize >= cx.ckpt.config.n_positions {
        true => last.clone(),
        false => key_bound(cx, start, end),
    };
    let g = &mut *cx.g;
    let zero = g.const_i64("const.zero_1d", &[1], &[0]);
    let starts = g.op(
        Op::Concat,
        format!("{name}.starts"),
        &[&first, &zero],
        vec![attr_int("axis", 0)],
    );
    let ends = g.op(
        Op::Concat,
        format!("{name}.ends"),
        &[&last, &keys],
        vec![attr_int("axis", 0)],
    );
    let axes = g.const_i64("const.axes_2_3", &[2], &[2, 3]);
    g.op(Op::Slice, name, &[bias, &starts, &ends, &axes], vec![])
}

/// The rows of `ctx` (`[batch, seq, n_embd]`) whose query has no unpadded key at or before it
/// (a left-padded row's padding), replaced by what the full square gives them.
///
/// Such a query's visible keys are all padded, so every score of its row is masked: the keys up
/// to it by the padding bias (MIN), the later unpadded keys by the causal bias (MIN), the later
/// padded ones by both (−inf). A masked score `w + MIN` rounds to MIN, so the full square's
/// softmax is uniform: the plain mean of the values of keys `0..=i` and of every unpadded key —
/// keys beyond the query's block, which the blocked form does not read. It is rebuilt here from
/// prefix sums over the sequence, in float32: `(Σ_{j≤i} v_j + Σ_{j unpadded} v_j) / (i + 1 + n)`,
/// `n` the row's unpadded count. Every other row keeps `ctx`.
fn keyless_mean(cx: &mut Ctx<'_, '_>, s: &Scope, v: &str, ctx: &str) -> String {
    let (has_key, count, mask) = keyless_rows(cx);
    let (act, f32) = (cx.act(), DataType::Float32);
    let v = cx.cast(&s.name("v.float32"), v, act, f32);
    let g = &mut *cx.g;
    let axis = g.const_i64("const.cumsum_axis", &[], &[1]);
    let prefix = g.op(Op::CumSum, s.name("v.prefix"), &[&v, &axis], vec![]);
    let unpadded = g.op(Op::Mul, s.name("v.unpadded"), &[&v, &mask], vec![]);
    let unpadded = g.op(
        Op::CumSum,
        s.name("v.unpadded_prefix"),
        &[&unpadded, &axis],
        vec![],
    );
    let last = last_row(g, &s.name("v.unpadded_sum"), &unpadded);
    let sum = g.op(Op::Add, s.name("v.keyless_sum"), &[&prefix, &last], vec![]);
    let mean = g.op(Op::Div, s.name("v.keyless_mean"), &[&sum, &count], vec![]);
    let mean = cx.cast(&s.name("v.keyless_mean_act"), &mean, f32, act);
    let name = s.name("context.keyless");
    let has_key = wide(cx, &has_key, ctx);
    cx.g.op(Op::Where, name, &[&has_key, ctx, &mean], vec![])
}

/// `has_key` expanded to the context's full shape, once: ONNX Runtime's `Where` is several
/// times slower when its condition broadcasts along the last axis.
fn wide(cx: &mut Ctx<'_, '_>, has_key: &str, like: &str) -> String {
    let name = Scope::root("keyless").name("has_key_wide");
    let g = &mut *cx.g;
    if g.nodes.iter().any(|n| n.name == name) {
        return name;
    }
    let shape = g.op(
        Op::Shape,
        Scope::root("keyless").name("shape"),
        &[like],
        vec![],
    );
    g.op(Op::Expand, name, &[has_key, &shape], vec![])
}

/// `x[:, -1:, ..]`: the last row of a prefix sum over the sequence, its total.
fn last_row(g: &mut crate::onnx::GraphBuilder<'_>, name: &str, x: &str) -> String {
    let starts = g.const_i64("const.last_start", &[1], &[-1]);
    let ends = g.const_i64("const.last_end", &[1], &[i64::MAX]);
    let axes = g.const_i64("const.axis_1", &[1], &[1]);
    g.op(Op::Slice, name, &[x, &starts, &ends, &axes], vec![])
}

/// What [`keyless_mean`] needs of the mask, `[batch, seq, 1]` each, emitted once and shared by
/// every layer: whether a query has an unpadded key at or before it (bool), the count of its
/// row's mean (`i + 1 + n`, float32, meaningful where it has none) and the mask (float32).
fn keyless_rows(cx: &mut Ctx<'_, '_>) -> (String, String, String) {
    let s = Scope::root("keyless");
    let (has_key, count, mask) = (s.name("has_key"), s.name("count"), s.name("mask"));
    let g = &mut *cx.g;
    if g.nodes.iter().any(|n| n.name == has_key) {
        return (has_key, count, mask);
    }
    let f32 = attr_int("to", DataType::Float32.onnx() as i64);
    let maskf = g.op(Op::Cast, s.name("mask_f32"), &[ATTENTION_MASK], vec![f32]);
    let mask = g.unsqueeze(mask, &maskf, ("const.axes_2", &[2]));
    let axis = g.const_i64("const.cumsum_axis", &[], &[1]);
    let seen = g.op(Op::CumSum, s.name("seen"), &[&mask, &axis], vec![]);
    let to_bool = attr_int("to", DataType::Bool.onnx() as i64);
    let has_key = g.op(Op::Cast, has_key, &[&seen], vec![to_bool]);
    let one = g.const_f32("const.f32_one", &[], &[1.0]);
    let padded = g.op(Op::Sub, s.name("padded"), &[&one, &mask], vec![]);
    let padded_seen = g.op(Op::CumSum, s.name("padded_seen"), &[&padded, &axis], vec![]);
    let total = last_row(g, &s.name("unpadded"), &seen);
    let count = g.op(Op::Add, count, &[&padded_seen, &total], vec![]);
    (has_key, count, mask)
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
    let attrs = vec![
        attr_int("num_heads", c.n_head as i64),
        attr_float("scale", fused_scale(c, layer) as f32),
    ];
    let name = s.name("context");
    let (past_k, past_v) = past.map_or(("", ""), |(k, v)| (k.as_str(), v.as_str()));
    let present = past.map(|_| (present_name(layer, Kv::Key), present_name(layer, Kv::Value)));
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

/// HF divides the scores by sqrt(head_dim) and by (layer + 1) when asked; a fused op multiplies
/// once, by this.
fn fused_scale(c: &ImageGptConfig, layer: usize) -> f64 {
    let mut scale = 1.0f64;
    if c.scale_attn_weights {
        scale /= (c.head_dim() as f64).sqrt();
    }
    if c.scale_attn_by_inverse_layer_idx {
        scale /= (layer + 1) as f64;
    }
    scale
}

/// The decoder's attention in the ort profile where its cache mode is shared ([`ProfileSpec::cache_mode`]): ONNX Runtime's
/// `GroupQueryAttention` (as many key/value heads as query heads) on c_attn's packed output,
/// with the same additive bias. Its cache contract is the
/// portable decoder's — `past_key_values.*` `[batch, n_head, past, head_dim]` in,
/// `present.*` out — and it also accepts a past buffer longer than the past: with `present`
/// bound to the same memory the kernel writes the new key/value in place after
/// `total_sequence_length − 1 − seq` positions instead of copying the whole past each step
/// (`past_present_share_buffer`, as onnxruntime-genai runs it). Both lengths come from the
/// mask's shape, so the inputs are unchanged: `seqlens_k` (int32 `[batch]`) is `total − 1`
/// for every row — padding lives in the bias, never in the kernel's lengths — and
/// `total_sequence_length` (int32 scalar) is `total`.
fn group_query_step(
    cx: &mut Ctx<'_, '_>,
    layer: usize,
    name: &str,
    qkv: &str,
    bias: &str,
    past: &(String, String),
    scale: f64,
) -> (String, String) {
    let n_head = cx.ckpt.config.n_head as i64;
    let (seqlens, total) = gqa_lengths(cx);
    let present = (present_name(layer, Kv::Key), present_name(layer, Kv::Value));
    // query (packed [q | k | v], key and value then empty), key, value, past_key, past_value,
    // seqlens_k, total_sequence_length, cos_cache, sin_cache, position_ids, attention_bias.
    let inputs = [
        qkv, "", "", &past.0, &past.1, &seqlens, &total, "", "", "", bias,
    ];
    let outputs = [name.to_string(), present.0.clone(), present.1.clone()];
    let attrs = vec![
        attr_int("num_heads", n_head),
        attr_int("kv_num_heads", n_head),
        attr_float("scale", scale as f32),
    ];
    cx.g.op_multi(Op::GroupQueryAttention, name, &inputs, &outputs, attrs);
    present
}

/// `seqlens_k` and `total_sequence_length` for `GroupQueryAttention`, from the mask's shape;
/// emitted once (layer 0's call) and shared by every layer.
fn gqa_lengths(cx: &mut Ctx<'_, '_>) -> (String, String) {
    const SEQLENS: &str = "gqa.seqlens_k";
    const TOTAL: &str = "gqa.total_sequence_length";
    let g = &mut *cx.g;
    if g.nodes.iter().any(|n| n.output.iter().any(|o| o == TOTAL)) {
        return (SEQLENS.into(), TOTAL.into());
    }
    let s = Scope::root("gqa");
    let int32 = attr_int("to", DataType::Int32.onnx() as i64);
    let shape = g.op(Op::Shape, s.name("mask_shape"), &[ATTENTION_MASK], vec![]);
    let zero = g.const_i64("const.zero_1d", &[1], &[0]);
    let one = g.const_i64("const.one", &[], &[1]);
    let batch = g.op(Op::Gather, s.name("batch"), &[&shape, &zero], vec![]);
    let total64 = g.op(Op::Gather, s.name("total_i64"), &[&shape, &one], vec![]);
    let total = g.op(Op::Cast, TOTAL, &[&total64], vec![int32.clone()]);
    let last64 = g.op(Op::Sub, s.name("last_i64"), &[&total64, &one], vec![]);
    let last = g.op(Op::Cast, s.name("last"), &[&last64], vec![int32]);
    let seqlens = g.op(Op::Expand, SEQLENS, &[&last, &batch], vec![]);
    (seqlens, total)
}
