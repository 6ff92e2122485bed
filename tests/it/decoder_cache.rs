//! The ort profile's decoder step on ONNX Runtime with its cache preallocated and written in
//! place (`GroupQueryAttention` with past and present bound to one buffer per layer): greedy
//! generations token for token equal to the portable decoder's (which reproduces the reference's,
//! tests/it/generate.rs) and tract's, batch rows independent of each other, padded masks giving the
//! portable decoder's logits, and a step past the reservation refused. The checkpoint is the
//! kv-cache fixture's (head size 8: the kernel takes multiples of 8).

use crate::common;

use std::path::{Path, PathBuf};

use common::open_runtime;
use igpt_onnx::generate::{self, DecoderDims, DecoderSession, Sampler, Strategy};
use igpt_onnx::graph::Profile;
use igpt_onnx::runtime::{LoadedModel, RuntimeKind, RuntimeOptions};
use ndarray::{array, Array2, ArrayD, Axis};

const DIMS: DecoderDims = DecoderDims {
    vocab_size: 513,
    n_positions: 32,
};
const CASE: &str = "kv-cache";

fn decoder(dir: &Path, profile: Profile) -> PathBuf {
    common::export_decoder(CASE, dir, profile)
}

fn ort_model(path: &Path) -> Option<Box<dyn LoadedModel>> {
    let rt = open_runtime(RuntimeKind::OrtCpu, &RuntimeOptions::default())?;
    Some(rt.load(path).expect("loads"))
}

fn greedy(model: &mut dyn LoadedModel, prompts: &[Vec<i64>], new: usize) -> Vec<Vec<i64>> {
    let mut sampler = Sampler::new(Strategy::Greedy, 0);
    generate::generate(model, &DIMS, prompts, new, &mut sampler, &mut |_, _| {})
        .expect("generates")
        .tokens
}

#[test]
fn in_place_cache_generates_the_portable_decoders_tokens() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(mut ort) = ort_model(&decoder(&tmp.path().join("ort"), Profile::Ort)) else {
        return;
    };
    let portable = decoder(&tmp.path().join("portable"), Profile::Portable);
    let mut on_ort = ort_model(&portable).expect("loads");
    let mut tract = igpt_onnx::runtime::open(RuntimeKind::Tract, &RuntimeOptions::default())
        .expect("tract")
        .load(&portable)
        .expect("loads");
    let mut others: [&mut dyn LoadedModel; 2] = [on_ort.as_mut(), tract.as_mut()];
    let cases: [(Vec<Vec<i64>>, usize); 4] = [
        (vec![vec![512]], 32),
        (vec![vec![512, 17, 300, 4]], 29),
        (vec![vec![512]; 3], 20),
        (vec![vec![512, 9], vec![512, 400]], 31),
    ];
    for (prompts, new) in &cases {
        let got = greedy(ort.as_mut(), prompts, *new);
        assert_eq!(got[0].len(), prompts[0].len() + new);
        for other in others.iter_mut() {
            assert_eq!(got, greedy(*other, prompts, *new), "{prompts:?}");
        }
    }
    // The same model, generation after generation: each session gets fresh buffers.
    let again = greedy(ort.as_mut(), &cases[0].0, 8);
    assert_eq!(again[0][..], greedy(ort.as_mut(), &cases[0].0, 32)[0][..9]);
}

#[test]
fn batch_rows_are_independent_of_each_other() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(mut model) = ort_model(&decoder(tmp.path(), Profile::Ort)) else {
        return;
    };
    let prompts = vec![vec![512, 7, 300], vec![512, 511, 0], vec![512, 42, 42]];
    let together = greedy(model.as_mut(), &prompts, 20);
    for (row, prompt) in prompts.iter().enumerate() {
        let alone = greedy(model.as_mut(), std::slice::from_ref(prompt), 20);
        assert_eq!(together[row], alone[0], "row {row}");
    }
}

/// Feeds a left-padded prompt and four single steps; returns every call's logits.
fn padded_run(model: &mut dyn LoadedModel, reserve: Option<usize>) -> Vec<ArrayD<f32>> {
    let mut session = match reserve {
        Some(n) => DecoderSession::with_capacity(model, 2, n),
        None => DecoderSession::new(model, 2),
    }
    .expect("session");
    let prompt = array![[512i64, 512, 17, 250], [512, 3, 99, 400]];
    let mut mask = array![[0i64, 1, 1, 1], [1, 1, 1, 1]];
    let mut out = vec![session
        .feed(prompt.view(), Some(mask.view()))
        .expect("prompt")];
    for step in 0..4 {
        let ids = Array2::from_shape_fn((2, 1), |(r, _)| (step * 31 + r as i64 * 7) % 512);
        mask.push_column(array![1i64, 1].view()).expect("column");
        out.push(session.feed(ids.view(), Some(mask.view())).expect("step"));
    }
    out
}

#[test]
fn a_padded_mask_gives_the_portable_decoders_logits() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(mut ort) = ort_model(&decoder(&tmp.path().join("ort"), Profile::Ort)) else {
        return;
    };
    let mut portable =
        ort_model(&decoder(&tmp.path().join("portable"), Profile::Portable)).expect("loads");
    let want = padded_run(portable.as_mut(), None);
    let in_place = padded_run(ort.as_mut(), Some(8));
    let copied = padded_run(ort.as_mut(), None);
    for (step, w) in want.iter().enumerate() {
        for (how, got) in [("in place", &in_place[step]), ("copied", &copied[step])] {
            assert_eq!(got.shape(), w.shape());
            // Row 0's padded first position attends to padding only: its logits are any
            // runtime's choice (the reference's too). Every other position must agree.
            for b in 0..2 {
                let (g, e) = (got.index_axis(Axis(0), b), w.index_axis(Axis(0), b));
                for s in 0..g.len_of(Axis(0)) {
                    if (step, b, s) == (0, 0, 0) {
                        continue;
                    }
                    let d = (&g.index_axis(Axis(0), s) - &e.index_axis(Axis(0), s))
                        .mapv(f32::abs)
                        .fold(0f32, |m, &x| m.max(x));
                    assert!(d < 1e-4, "{how}, step {step}, row {b}, position {s}: {d}");
                }
            }
        }
    }
}

#[test]
fn a_step_beyond_the_reservation_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let Some(mut model) = ort_model(&decoder(tmp.path(), Profile::Ort)) else {
        return;
    };
    let mut session = DecoderSession::with_capacity(model.as_mut(), 1, 2).expect("session");
    session
        .feed(array![[512i64, 5]].view(), None)
        .expect("fits");
    let err = session
        .feed(array![[6i64]].view(), None)
        .expect_err("past the reservation");
    let text = err.to_string();
    assert!(
        text.ends_with("the step needs 3 cache positions, 2 were reserved"),
        "{text}"
    );
}
