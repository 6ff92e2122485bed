//! [`LoadedModel`] for an ONNX Runtime session: a run by name, the decoder step in the mode the
//! card and the provider allow, the provider that ran, and its node counts.

use std::borrow::Cow;
use std::collections::BTreeMap;

use ort::session::SessionInputValue;

use super::model::{count_nodes, output_tensor, run_error, Contiguous, OrtModel};
use super::step::SharedCache;
use crate::base::{IoSpec, Tensor};
use crate::graph::io::CacheMode;
use crate::runtime::model::{
    check_input_names, Cache, Failure, LoadedModel, NamedOutputs, RuntimeError,
};

impl LoadedModel for OrtModel {
    fn reserve_cache(&mut self, positions: usize) {
        self.reserved = Some(positions);
    }

    /// On a decoder whose card records a shared cache (its attention writes in place), after
    /// [`LoadedModel::reserve_cache`]: one buffer per layer and key/value, bound as both the past
    /// and the present, so a step reads the cache once and writes one position. Otherwise the
    /// presents stay ONNX Runtime values and go back in as the next step's past by reference:
    /// no copy out of and into the runtime per step, though the graph's concatenation still
    /// copies the past into each present.
    fn step(
        &mut self,
        inputs: &[(&str, &Tensor)],
        cache_names: &[String],
        cache: &mut Cache,
    ) -> Result<Tensor, RuntimeError> {
        let fresh = matches!(&*cache, Cache::Host(past) if past.iter().all(|t| t.shape().get(2) == Some(&0)));
        let reserved = if fresh { self.reserved.take() } else { None };
        let held_shared = matches!(&*cache, Cache::Held(b) if b.is::<SharedCache>());
        if self.shared_cache && (held_shared || reserved.is_some()) {
            return self.step_shared(inputs, cache_names, cache, reserved);
        }
        self.step_concat(inputs, cache_names, cache)
    }

    /// The shared cache rolls back by bookkeeping alone: the next step's mask is shorter, and
    /// `GroupQueryAttention` writes that step's positions from `total − seq` on, over the
    /// rejected ones. Held presents are copied out, sliced, and fed from the host next step.
    fn truncate_cache(&mut self, cache: &mut Cache, positions: usize) -> Result<(), RuntimeError> {
        if matches!(&*cache, Cache::Held(b) if b.is::<SharedCache>()) {
            return Ok(());
        }
        let mut past = match std::mem::replace(cache, Cache::Host(vec![])) {
            Cache::Host(past) => past,
            Cache::Held(b) => match b.downcast::<Vec<ort::value::DynValue>>() {
                // Cut in ONNX Runtime's memory: one copy, no trip through host tensors.
                Ok(values) => {
                    let cut = values
                        .iter()
                        .map(|v| truncated(v, positions))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| self.run_error(e))?;
                    *cache = Cache::Held(Box::new(cut));
                    return Ok(());
                }
                Err(other) => {
                    *cache = Cache::Held(other);
                    return Err(self.run_error(Failure::ForeignCache));
                }
            },
        };
        crate::runtime::model::truncate_host(&mut past, positions);
        *cache = Cache::Host(past);
        Ok(())
    }

    fn inputs(&self) -> &[IoSpec] {
        &self.inputs
    }

    fn cache_mode(&self) -> CacheMode {
        match self.shared_cache {
            true => CacheMode::Shared,
            false => CacheMode::Concat,
        }
    }

    fn outputs(&self) -> &[IoSpec] {
        &self.outputs
    }

    fn provider(&self) -> String {
        self.provider.clone()
    }

    fn pool_threads_spin(&self) -> Option<bool> {
        Some(self.spin)
    }

    /// Ends the session's profiling (once: the counts are kept) and counts, per execution
    /// provider, the distinct nodes with a `*_kernel_time` event in ONNX Runtime's profile
    /// (Chrome trace JSON: `{cat: "Node", name, args: {provider, ...}}`).
    fn node_providers(&mut self) -> Option<BTreeMap<String, usize>> {
        let (_, counts) = self.profile.as_mut()?;
        if counts.is_none() {
            let file = self.session.end_profiling().ok()?;
            let text = std::fs::read_to_string(&file).ok()?;
            *counts = Some(count_nodes(&text));
        }
        counts.clone()
    }

    fn run(&mut self, inputs: &[(&str, &Tensor)]) -> Result<NamedOutputs, RuntimeError> {
        let ordered = check_input_names(&self.inputs, inputs).map_err(|e| self.run_error(e))?;
        let contiguous: Vec<Contiguous<'_>> = ordered.iter().map(|t| Contiguous::of(t)).collect();
        let mut values: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::new();
        for (spec, c) in self.inputs.iter().zip(&contiguous) {
            let v = c
                .value()
                .map_err(|e| self.run_error(Failure::native("", e).of("input", &spec.name)))?;
            values.push((Cow::Borrowed(spec.name.as_str()), v));
        }
        let (kind, file) = (self.kind, self.file.as_str());
        let results = self
            .session
            .run(values)
            .map_err(|e| run_error(kind, file, Failure::native("", e)))?;
        let mut out = Vec::with_capacity(self.outputs.len());
        for spec in &self.outputs {
            let name = &spec.name;
            let value = results
                .get(name)
                .ok_or_else(|| run_error(kind, file, Failure::NoOutput(name.clone())))?;
            let t =
                output_tensor(value).map_err(|e| run_error(kind, file, e.of("output", name)))?;
            out.push((name.clone(), t));
        }
        Ok(out)
    }
}

/// The first `positions` of a held `[batch, heads, positions, head_dim]` cache value, as a new
/// value: each (row, head)'s kept positions are one contiguous run, copied once.
fn truncated(
    value: &ort::value::DynValue,
    positions: usize,
) -> Result<ort::value::DynValue, Failure> {
    fn cut<T>(
        a: ndarray::ArrayViewD<'_, T>,
        positions: usize,
    ) -> Result<ort::value::DynValue, Failure>
    where
        T: Copy + ort::value::PrimitiveTensorElementType + std::fmt::Debug + 'static,
    {
        let shape = a.shape().to_vec();
        let (Some(data), &[b, h, p, d]) = (a.as_slice(), &shape[..]) else {
            return Err(Failure::Unreadable(format!("a cache of shape {shape:?}")));
        };
        let keep = positions.min(p);
        let mut out = Vec::with_capacity(b * h * keep * d);
        for run in data.chunks_exact((p * d).max(1)).take(b * h) {
            out.extend_from_slice(&run[..keep * d]);
        }
        let array = ndarray::Array4::from_shape_vec((b, h, keep, d), out)
            .map_err(|e| Failure::Unreadable(e.to_string()))?;
        ort::value::Tensor::from_array(array)
            .map(|t| t.into_dyn())
            .map_err(|e| Failure::native("cannot cut the cache", e))
    }
    if let Ok(a) = value.try_extract_array::<f32>() {
        return cut(a, positions);
    }
    if let Ok(a) = value.try_extract_array::<half::f16>() {
        return cut(a, positions);
    }
    Err(Failure::Unreadable(format!("{:?}", value.dtype())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn input_name_mismatches_are_named() {
        use crate::base::DataType;
        use crate::base::DimSpec;
        let spec = |name: &str| IoSpec {
            name: name.into(),
            dtype: DataType::Int64,
            dims: vec![
                DimSpec::Symbol("batch".into()),
                DimSpec::Symbol("sequence".into()),
            ],
        };
        let graph = vec![spec("input_ids"), spec("attention_mask")];
        let a = Tensor::from(ArrayD::<i64>::zeros(IxDyn(&[1, 1])));
        let ok = [("attention_mask", &a), ("input_ids", &a)];
        let ordered = check_input_names(&graph, &ok).expect("names match");
        assert_eq!(ordered.len(), 2);
        let bad = [("input_ids", &a), ("input_ids", &a)];
        let e = check_input_names(&graph, &bad).expect_err("mismatch");
        let e = e.to_string();
        assert!(e.contains("missing input(s) attention_mask"), "{e}");
        assert!(e.contains("input_ids given twice"), "{e}");
        let f = Tensor::from(ArrayD::<f32>::zeros(IxDyn(&[1, 1])));
        let e = check_input_names(&graph, &[("attention_mask", &a), ("input_ids", &f)])
            .expect_err("float ids");
        assert_eq!(
            e.to_string(),
            "input `input_ids`: expected input_ids int64 [batch, sequence], found float32 [1, 1]"
        );
    }
}
