//! Times a forward graph (inputs `input_ids`, `attention_mask`) in one runtime through the
//! crate's runtime trait — how `ci/bench.py forward` measures tract, which has no Python binding here.
//!
//! ```text
//! cargo run --release --example forward_bench -- MODEL.onnx RUNTIME BATCH SEQ ROUNDS
//! ```
//! Prints `median_s <s> min_s <s> rounds <n>` after one untimed warm-up run.

use std::path::PathBuf;
use std::time::Instant;

use ndarray::{Array2, IxDyn};

use igpt_onnx::runtime::{self, RuntimeKind, RuntimeOptions, Tensor};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, rt, batch, seq, rounds] = args.as_slice() else {
        return Err("usage: forward_bench MODEL RUNTIME BATCH SEQ ROUNDS".into());
    };
    let kind = RuntimeKind::parse(rt).ok_or_else(|| format!("unknown runtime {rt}"))?;
    let (batch, seq, rounds): (usize, usize, usize) =
        (batch.parse()?, seq.parse()?, rounds.parse()?);
    let loaded = runtime::open(kind, &RuntimeOptions::default())?;
    let mut m = loaded.load(&PathBuf::from(model))?;
    // The same seeded token pattern for every runtime: SOS, then ids cycling through 0..512.
    let ids = Array2::from_shape_fn((batch, seq), |(b, s)| {
        if s == 0 {
            512
        } else {
            ((b * 131 + s * 71) % 512) as i64
        }
    });
    let mask = Array2::<i64>::ones((batch, seq));
    let ids = Tensor::I64(ids.into_dyn().into_shape_with_order(IxDyn(&[batch, seq]))?);
    let mask = Tensor::I64(mask.into_dyn());
    let inputs = [("input_ids", &ids), ("attention_mask", &mask)];
    m.run(&inputs)?;
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        m.run(&inputs)?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    let min = times.first().copied().unwrap_or(f64::NAN);
    println!("median_s {median:.3} min_s {min:.3} rounds {rounds}");
    Ok(())
}
