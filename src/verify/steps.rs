//! The decoder checked against the full forward: the case's sequence goes through the decoder
//! as a prompt of `N` tokens and then `K` single-token steps, each step's `present` fed back as
//! the next `past_key_values`; the logits of all `N + K` positions must equal the reference's
//! full-forward `causal-lm/logits`. One golden step cannot catch a cache or mask bug that only
//! shows after several steps (a past offset applied twice, a present concatenated on the wrong
//! axis); this can, on every causal-LM case.

use ndarray::{concatenate, s, Array2, ArrayD, Axis, IxDyn};

use crate::runtime::{Cache, DimSpec, LoadedModel, NamedOutputs, Tensor};

/// Single-token steps after the prompt (fewer when the sequence is shorter).
pub const STEPS: usize = 4;

/// The check's name in reports: which decoder run this was.
pub fn label(seq: usize) -> String {
    let k = steps_for(seq);
    format!("decoder ({} + {k} steps)", seq - k)
}

fn steps_for(seq: usize) -> usize {
    STEPS.min(seq.saturating_sub(1))
}

/// Runs the prompt and the steps; returns `logits` for every position, `[batch, seq, vocab]`.
pub fn prompt_then_steps(
    model: &mut dyn LoadedModel,
    ids: &Array2<i64>,
    mask: &Array2<i64>,
) -> Result<NamedOutputs, String> {
    let (batch, seq) = ids.dim();
    let k = steps_for(seq);
    let cache: Vec<(String, Vec<usize>)> = model
        .inputs()
        .iter()
        .filter(|i| i.name.starts_with("past_key_values."))
        .map(|i| {
            let fixed = |d: Option<&DimSpec>| match d {
                Some(DimSpec::Fixed(n)) => Ok(*n),
                _ => Err(format!("`{}` has no fixed heads / head size", i.name)),
            };
            Ok((
                i.name.clone(),
                vec![batch, fixed(i.dims.get(1))?, 0, fixed(i.dims.get(3))?],
            ))
        })
        .collect::<Result<_, String>>()?;
    if cache.is_empty() {
        return Err("the graph has no past_key_values inputs: not a decoder".into());
    }
    let names: Vec<String> = cache.iter().map(|(n, _)| n.clone()).collect();
    let mut past = Cache::Host(
        cache
            .iter()
            .map(|(_, shape)| Tensor::F32(ArrayD::zeros(IxDyn(shape))))
            .collect(),
    );
    let mut logits = Vec::with_capacity(k + 1);
    let mut start = 0;
    for len in std::iter::once(seq - k).chain(std::iter::repeat_n(1, k)) {
        let end = start + len;
        let step_ids = Tensor::I64(ids.slice(s![.., start..end]).to_owned().into_dyn());
        let step_mask = Tensor::I64(mask.slice(s![.., ..end]).to_owned().into_dyn());
        let positions = Tensor::I64(
            Array2::from_shape_fn((batch, len), |(_, t)| (start + t) as i64).into_dyn(),
        );
        let feed: Vec<(&str, &Tensor)> = vec![
            ("input_ids", &step_ids),
            ("attention_mask", &step_mask),
            ("position_ids", &positions),
        ];
        // The same path `generate` takes: the runtime keeps the cache between steps.
        let l = model
            .step(&feed, &names, &mut past)
            .map_err(|e| e.to_string())?;
        logits.push(l.to_f32());
        start = end;
    }
    let views: Vec<_> = logits.iter().map(|l| l.view()).collect();
    let all = concatenate(Axis(1), &views).map_err(|e| format!("step logits: {e}"))?;
    Ok(vec![("logits".into(), Tensor::F32(all))])
}
