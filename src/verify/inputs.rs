//! Seeded random inputs for a graph, made from its declared inputs: int64 `*input_ids` within
//! the vocabulary (SOS first), 0/1 `*attention_mask` (the second row right-padded), int64
//! `position_ids` after the past, and values in [-1, 1) for float inputs. Dims: `batch` 2,
//! `sequence` at most 32, any other symbol (a past length) small, and sums of them
//! (`past_sequence + sequence`) evaluated.

use std::collections::BTreeMap;

use ndarray::{Array2, ArrayD, IxDyn};

use crate::base::DataType;
use crate::base::{DimSpec, IoSpec, Tensor};
use crate::graph::{
    self,
    io::{ATTENTION_MASK, INPUT_IDS, POSITION_IDS, SEQUENCE},
};
use crate::random::SplitMix64;

/// Why a graph cannot be fed at random, naming the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputsError {
    #[error("cannot make random values for {dtype} input `{input}`")]
    Type { input: String, dtype: DataType },
    #[error("cannot size dim `{dim}` of input `{input}` for random inputs")]
    Dim { input: String, dim: String },
    #[error("input `{input}` would be {shape:?}: too large for random inputs")]
    TooLarge { input: String, shape: Vec<usize> },
}

/// Batch rows of every random set.
const ROWS: usize = 2;
/// Longest random sequence (past included).
const MAX_SEQUENCE: u64 = 32;

/// One seeded feed for `inputs`, or why the graph cannot be fed at random (naming the input).
pub(crate) fn seeded(
    seed: u64,
    inputs: &[IoSpec],
    vocab: u64,
    n_positions: u64,
) -> Result<Vec<(String, Tensor)>, InputsError> {
    let symbols = symbol_values(inputs, n_positions);
    let past = symbols
        .iter()
        .filter(|(k, _)| k.as_str() != graph::io::BATCH && k.as_str() != SEQUENCE)
        .map(|(_, v)| *v)
        .max()
        .unwrap_or(0);
    let mut rng = SplitMix64::new(0x1617_0000 + seed);
    let mut feed = Vec::with_capacity(inputs.len());
    for spec in inputs {
        let shape = shape_of(spec, &symbols)?;
        let rank2 = shape.len() == 2;
        let t = match spec.dtype {
            DataType::Int64 if spec.name.ends_with(INPUT_IDS) => {
                let t = ArrayD::from_shape_fn(IxDyn(&shape), |ix| {
                    if rank2 && ix[1] == 0 && past == 0 {
                        (vocab - 1) as i64
                    } else {
                        (rng.next_u64() % (vocab - 1)) as i64
                    }
                });
                Tensor::I64(t)
            }
            DataType::Int64 if spec.name.ends_with(ATTENTION_MASK) => {
                let len = shape.last().copied().unwrap_or(0);
                let pad_from = (len * 3).div_ceil(4).max(1);
                Tensor::I64(ArrayD::from_shape_fn(IxDyn(&shape), |ix| {
                    let padded = rank2 && ix[0] == 1 && ix[1] >= pad_from;
                    i64::from(!padded)
                }))
            }
            DataType::Int64 if spec.name == POSITION_IDS => {
                let last = shape.len().saturating_sub(1);
                Tensor::I64(ArrayD::from_shape_fn(IxDyn(&shape), |ix| {
                    (past + ix[last]) as i64
                }))
            }
            DataType::Float32 => {
                Tensor::F32(ArrayD::from_shape_fn(IxDyn(&shape), |_| unit(&mut rng)))
            }
            DataType::Float16 => Tensor::F16(ArrayD::from_shape_fn(IxDyn(&shape), |_| {
                half::f16::from_f32(unit(&mut rng))
            })),
            other => {
                return Err(InputsError::Type {
                    input: spec.name.clone(),
                    dtype: other,
                })
            }
        };
        feed.push((spec.name.clone(), t));
    }
    Ok(feed)
}

/// A value in [-1, 1) from the top 24 bits (exact in float32).
fn unit(rng: &mut SplitMix64) -> f32 {
    (rng.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
}

/// `batch` → 2; without other symbols `sequence` → min(n_positions, 32); with them (a past)
/// the budget is split so that past + sequence still fits.
fn symbol_values(inputs: &[IoSpec], n_positions: u64) -> BTreeMap<String, usize> {
    let budget = n_positions.min(MAX_SEQUENCE) as usize;
    let mut others: Vec<&str> = inputs
        .iter()
        .flat_map(|s| &s.dims)
        .filter_map(|d| match d {
            DimSpec::Symbol(s) => Some(s.as_str()),
            _ => None,
        })
        .flat_map(|s| s.split('+').map(str::trim))
        .filter(|s| !s.is_empty() && s.parse::<usize>().is_err())
        .filter(|s| *s != graph::io::BATCH && *s != SEQUENCE)
        .collect();
    others.sort_unstable();
    others.dedup();
    let mut values = BTreeMap::from([(graph::io::BATCH.to_string(), ROWS)]);
    let past = if others.is_empty() { 0 } else { budget / 2 };
    values.insert(SEQUENCE.into(), (budget - past).max(1));
    for s in others {
        values.insert(s.to_string(), past);
    }
    values
}

/// The concrete shape: fixed dims as declared, symbols (and sums of symbols and numbers) from
/// `symbols`, undeclared dims as batch (axis 0) and sequence (axis 1), else 1.
fn shape_of(spec: &IoSpec, symbols: &BTreeMap<String, usize>) -> Result<Vec<usize>, InputsError> {
    let mut shape = Vec::with_capacity(spec.dims.len());
    for (axis, d) in spec.dims.iter().enumerate() {
        let n = match d {
            DimSpec::Fixed(n) => *n,
            DimSpec::Unknown => match axis {
                0 => symbols[graph::io::BATCH],
                1 => symbols[SEQUENCE],
                _ => 1,
            },
            DimSpec::Symbol(expr) => {
                expr.split('+').map(str::trim).try_fold(0usize, |acc, t| {
                    let v = t.parse::<usize>().ok().or_else(|| symbols.get(t).copied());
                    v.and_then(|v| acc.checked_add(v))
                        .ok_or_else(|| InputsError::Dim {
                            input: spec.name.clone(),
                            dim: expr.clone(),
                        })
                })?
            }
        };
        shape.push(n);
    }
    if shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .is_none_or(|n| n > 1 << 26)
    {
        return Err(InputsError::TooLarge {
            input: spec.name.clone(),
            shape,
        });
    }
    Ok(shape)
}

/// A seeded token sequence for a decoder run step by step: batch 2, SOS first, colour tokens
/// after, at most [`MAX_SEQUENCE`] (and `n_positions`) long, every position attended.
pub(crate) fn sequence(seed: u64, vocab: u64, n_positions: u64) -> (Array2<i64>, Array2<i64>) {
    let seq = n_positions.clamp(1, MAX_SEQUENCE) as usize;
    let mut rng = SplitMix64::new(0x5eed_0000 + seed);
    let ids = Array2::from_shape_fn((2, seq), |(_, t)| {
        if t == 0 {
            (vocab - 1) as i64
        } else {
            (rng.next_u64() % (vocab - 1)) as i64
        }
    });
    (ids, Array2::ones((2, seq)))
}
