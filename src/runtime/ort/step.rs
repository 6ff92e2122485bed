//! The decoder step on ONNX Runtime: the past fed by reference and the presents kept as the
//! next past, or, for a decoder whose card records a shared cache, one preallocated buffer per
//! layer and key/value bound as both past and present and written in place.

use std::borrow::Cow;

use ort::memory::{Allocator, MemoryInfo};
use ort::session::{IoBinding, Session, SessionInputValue};
use ort::value::{DynTensor, DynValue};

use super::model::{output_tensor, run_error, Contiguous, OrtModel};
use crate::base::Tensor;
use crate::graph::io::{present_for, ATTENTION_MASK, LOGITS};
use crate::runtime::model::{Cache, Failure, RuntimeError};

impl OrtModel {
    /// A step with the past fed by reference and the presents kept as the next past.
    pub(super) fn step_concat(
        &mut self,
        inputs: &[(&str, &Tensor)],
        cache_names: &[String],
        cache: &mut Cache,
    ) -> Result<Tensor, RuntimeError> {
        let contiguous: Vec<(&str, Contiguous<'_>)> = inputs
            .iter()
            .map(|(n, t)| (*n, Contiguous::of(t)))
            .collect();
        let host_past: Vec<Contiguous<'_>> = match &*cache {
            Cache::Host(past) => past.iter().map(Contiguous::of).collect(),
            Cache::Held(_) => vec![],
        };
        let held: Option<&Vec<DynValue>> = match &*cache {
            Cache::Held(b) => b.downcast_ref::<Vec<DynValue>>(),
            Cache::Host(_) => None,
        };
        let mut values: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::new();
        for spec in &self.inputs {
            let name = spec.name.as_str();
            let value = if let Some((_, c)) = contiguous.iter().find(|(n, _)| *n == name) {
                c.value()
                    .map_err(|e| self.run_error(Failure::native("", e).of("input", name)))?
            } else if let Some(i) = cache_names.iter().position(|n| n == name) {
                match (held, host_past.get(i)) {
                    (Some(h), _) => match h.get(i) {
                        Some(v) => SessionInputValue::from(v),
                        None => return Err(self.run_error(Failure::MissingInput(name.into()))),
                    },
                    (None, Some(c)) => c
                        .value()
                        .map_err(|e| self.run_error(Failure::native("", e).of("input", name)))?,
                    (None, None) => return Err(self.run_error(Failure::MissingInput(name.into()))),
                }
            } else {
                return Err(self.run_error(Failure::MissingInput(name.into())));
            };
            values.push((Cow::Borrowed(name), value));
        }
        let (kind, file) = (self.kind, self.file.as_str());
        let mut results = self
            .session
            .run(values)
            .map_err(|e| run_error(kind, file, Failure::native("", e)))?;
        let logits = results
            .get(LOGITS)
            .ok_or_else(|| run_error(kind, file, Failure::NoOutput(LOGITS.into())))
            .and_then(|v| {
                output_tensor(v).map_err(|e| run_error(kind, file, e.of("output", LOGITS)))
            })?;
        let mut presents = Vec::with_capacity(cache_names.len());
        for name in cache_names {
            let present = present_for(name).unwrap_or_default();
            presents.push(
                results
                    .remove(&present)
                    .ok_or_else(|| run_error(kind, file, Failure::NoOutput(present)))?,
            );
        }
        drop(results);
        drop(host_past);
        *cache = Cache::Held(Box::new(presents));
        Ok(logits)
    }

    /// A step on the preallocated cache: `reserved` positions are allocated (zeroed) when the
    /// session starts; every later step binds the same buffers as past and present.
    pub(super) fn step_shared(
        &mut self,
        inputs: &[(&str, &Tensor)],
        cache_names: &[String],
        cache: &mut Cache,
        reserved: Option<usize>,
    ) -> Result<Tensor, RuntimeError> {
        let (kind, file) = (self.kind, self.file.clone());
        let fail = |f: Failure| run_error(kind, &file, f);
        let native = |name: &str, e: ort::Error| fail(Failure::native("", e).of("input", name));
        if let (Some(positions), Cache::Host(past)) = (reserved, &*cache) {
            let shared = SharedCache::new(&self.session, past, cache_names, positions)
                .map_err(|e| fail(Failure::native("cannot allocate the cache", e)))?;
            *cache = Cache::Held(Box::new(shared));
        }
        let Cache::Held(held) = cache else {
            return Err(fail(Failure::ForeignCache));
        };
        let Some(shared) = held.downcast_mut::<SharedCache>() else {
            return Err(fail(Failure::ForeignCache));
        };
        let needed = inputs
            .iter()
            .find(|(n, _)| *n == ATTENTION_MASK)
            .and_then(|(_, t)| t.shape().get(1).copied())
            .ok_or_else(|| fail(Failure::MissingInput(ATTENTION_MASK.into())))?;
        if needed > shared.positions {
            return Err(fail(Failure::CacheFull {
                needed,
                reserved: shared.positions,
            }));
        }
        for spec in &self.inputs {
            let name = spec.name.as_str();
            if cache_names.iter().any(|n| n == name) {
                continue;
            }
            let Some((_, t)) = inputs.iter().find(|(n, _)| *n == name) else {
                return Err(fail(Failure::MissingInput(name.into())));
            };
            // Owned copies (a few ids and mask columns): ort 2.0.0-rc.15 deadlocks when a
            // binding copies a borrowed tensor itself.
            let bound = match t {
                Tensor::F32(a) => ort::value::Tensor::from_array(a.to_owned())
                    .and_then(|v| shared.binding.bind_input(name, &v)),
                Tensor::F16(a) => ort::value::Tensor::from_array(a.to_owned())
                    .and_then(|v| shared.binding.bind_input(name, &v)),
                Tensor::I64(a) => ort::value::Tensor::from_array(a.to_owned())
                    .and_then(|v| shared.binding.bind_input(name, &v)),
            };
            bound.map_err(|e| native(name, e))?;
        }
        // Allocated by the run, its shape the step's: a binding would otherwise keep the
        // first run's logits as a preallocated output.
        shared
            .binding
            .bind_output_to_device(LOGITS, &MemoryInfo::default())
            .map_err(|e| fail(Failure::native("", e).of("output", LOGITS)))?;
        let mut results = self
            .session
            .run_binding(&shared.binding)
            .map_err(|e| fail(Failure::native("", e)))?;
        let logits = results
            .remove(LOGITS)
            .ok_or_else(|| fail(Failure::NoOutput(LOGITS.into())))?;
        output_tensor(&logits).map_err(|e| fail(e.of("output", LOGITS)))
    }
}

/// The cache of an in-place decoder: per layer a key and a value buffer `[batch, n_head,
/// positions, head_dim]`, bound once as both `past_key_values.*` and `present.*`.
pub(super) struct SharedCache {
    binding: IoBinding,
    /// Kept alive for the binding.
    _buffers: Vec<DynTensor>,
    positions: usize,
}

impl SharedCache {
    /// `empty` holds the session's empty past (`[batch, n_head, 0, head_dim]`, its element type).
    fn new(
        session: &Session,
        empty: &[Tensor],
        names: &[String],
        positions: usize,
    ) -> ort::Result<SharedCache> {
        let mut binding = session.create_binding()?;
        let allocator = Allocator::default();
        let mut buffers = Vec::with_capacity(names.len());
        for (name, t) in names.iter().zip(empty) {
            let mut shape: Vec<i64> = t.shape().iter().map(|&d| d as i64).collect();
            if let Some(d) = shape.get_mut(2) {
                *d = positions as i64;
            }
            let mut buffer: DynTensor = match t {
                Tensor::F16(_) => {
                    let mut b = ort::value::Tensor::<half::f16>::new(&allocator, shape)?;
                    b.extract_tensor_mut().1.fill(half::f16::ZERO);
                    b.upcast()
                }
                _ => {
                    let mut b = ort::value::Tensor::<f32>::new(&allocator, shape)?;
                    b.extract_tensor_mut().1.fill(0.0);
                    b.upcast()
                }
            };
            binding.bind_input(name.as_str(), &buffer)?;
            let present = present_for(name).unwrap_or_default();
            binding.bind_output(present, &mut buffer)?;
            buffers.push(buffer);
        }
        Ok(SharedCache {
            binding,
            _buffers: buffers,
            positions,
        })
    }
}
