//! A deterministic mutation fuzzer over untrusted `.onnx` files, run as an ordinary test
//! (stable toolchain, fixed seed, fixed iteration count): two committed graphs from `graphs/`
//! are mutated (bit flips, byte inserts and deletes, truncation, spliced varints, and an
//! initializer with huge or negative dims merged into the graph) and each mutant goes through
//! `inspect`, a tract load and an ONNX Runtime load (when available). No call may panic past
//! its own guard, every error is one line, and the process's peak resident memory stays
//! bounded: a hostile length must not make anyone allocate gigabytes.

use crate::common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Instant;

use common::Rng;
use igpt_onnx::onnx::inspect::inspect;
use igpt_onnx::onnx::proto::{data_type, GraphProto, ModelProto, TensorProto};
use igpt_onnx::runtime::{self, Runtime, RuntimeKind, RuntimeOptions};
use prost::Message;

/// Mutants per seed graph.
const ITERATIONS: usize = 1000;
/// Peak resident memory allowed for the whole run (the runtimes themselves take ~200 MB).
const MAX_PEAK_KB: u64 = 1536 * 1024;

/// A protobuf varint.
fn varint(mut v: u64) -> Vec<u8> {
    let mut out = vec![];
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return out;
        }
        out.push(b | 0x80);
    }
}

/// A position, half the time near either end of the file, where the graph's structure sits
/// (the middle is mostly weight bytes).
fn position(rng: &mut Rng, len: usize) -> usize {
    let edge = 4096.min(len);
    match rng.below(4) {
        0 => rng.below(edge),
        1 => len - 1 - rng.below(edge),
        _ => rng.below(len),
    }
}

/// An extra `graph { initializer { ... } }` appended: protobuf merges it into the graph.
fn hostile_initializer(rng: &mut Rng) -> Vec<u8> {
    let dims = match rng.below(4) {
        0 => vec![1 << 40, 1 << 40],
        1 => vec![-1, 512],
        2 => vec![i64::MAX, 2],
        _ => vec![1 << 31, 1 << 31, 4],
    };
    let names = ["wte.weight", "h.0.attn.c_attn.weight", "fuzz.huge"];
    let t = TensorProto {
        dims,
        data_type: Some([data_type::FLOAT, data_type::INT64, 42][rng.below(3)]),
        name: names[rng.below(names.len())].into(),
        raw_data: vec![0; rng.below(64)],
        ..Default::default()
    };
    ModelProto {
        graph: Some(GraphProto {
            initializer: vec![t],
            ..Default::default()
        }),
        ..Default::default()
    }
    .encode_to_vec()
}

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    let rounds = if rng.below(10) < 7 {
        1
    } else {
        2 + rng.below(3)
    };
    for _ in 0..rounds {
        let len = b.len().max(1);
        match rng.below(7) {
            0 => {
                let i = position(rng, len).min(b.len().saturating_sub(1));
                if let Some(x) = b.get_mut(i) {
                    *x ^= 1 << rng.below(8);
                }
            }
            1 => {
                let i = position(rng, len).min(b.len());
                b.insert(i, rng.next() as u8);
            }
            2 if !b.is_empty() => {
                let i = position(rng, len).min(b.len() - 1);
                let n = (1 + rng.below(16)).min(b.len() - i);
                b.drain(i..i + n);
            }
            3 => b.truncate(rng.below(len)),
            4 => {
                // A length or count that claims far more than the file holds.
                let i = position(rng, len).min(b.len());
                let v = [u64::MAX, 1 << 40, 1 << 31, 0x7fff_ffff][rng.below(4)];
                b.splice(i..i, varint(v));
            }
            5 => b.extend(hostile_initializer(rng)),
            _ => {
                let i = position(rng, len).min(b.len());
                let j = position(rng, seed.len()).min(seed.len());
                let n = rng.below(64).min(seed.len() - j);
                b.splice(i..i, seed[j..j + n].iter().copied());
            }
        }
    }
    b
}

fn peak_rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Runs `f`; a panic escaping it fails the test, an error must be one line. Returns the error.
fn one_line(what: &str, file: &Path, f: impl FnOnce() -> Result<(), String>) -> Option<String> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => None,
        Ok(Err(e)) => {
            let shown = file.display();
            assert!(
                !e.contains('\n'),
                "{what} on {shown}: a multi-line error: {e}"
            );
            Some(e)
        }
        Err(_) => panic!("{what} panicked on {}", file.display()),
    }
}

#[test]
fn mutated_graphs_never_panic_or_balloon() {
    runtime::install_panic_hook();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("graphs");
    let seeds = [
        root.join("short-seq/base.onnx"),
        root.join("classifier/classifier.onnx"),
    ];
    let mut runtimes: Vec<Box<dyn Runtime>> = vec![];
    for kind in [RuntimeKind::Tract, RuntimeKind::OrtCpu] {
        runtimes.extend(common::open_runtime(kind, &RuntimeOptions::default()));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let start = Instant::now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut ran, mut inspected, mut caught) = (0usize, 0usize, 0usize);
    let mut loaded = vec![0usize; runtimes.len()];
    for seed in &seeds {
        let bytes = std::fs::read(seed).expect("seed graph");
        for i in 0..ITERATIONS {
            let mutant = mutate(&mut rng, &bytes);
            let path = dir.path().join(format!("mutant-{i}.onnx"));
            std::fs::write(&path, &mutant).expect("write mutant");
            one_line("inspect", &path, || {
                inspect(&path)
                    .map(|_| inspected += 1)
                    .map_err(|e| e.to_string())
            });
            for (rt, n) in runtimes.iter().zip(loaded.iter_mut()) {
                let e = one_line(rt.kind().name(), &path, || {
                    rt.load(&path).map(|_| *n += 1).map_err(|e| e.to_string())
                });
                caught += usize::from(e.is_some_and(|e| e.contains("panicked")));
            }
            std::fs::remove_file(&path).expect("remove mutant");
            ran += 1;
        }
    }
    let peak = peak_rss_kb();
    println!(
        "fuzz: {ran} mutants in {:.1} s; inspect accepted {inspected}, loads accepted {loaded:?}, \
         {caught} runtime panics caught; peak RSS {} MB",
        start.elapsed().as_secs_f64(),
        peak / 1024
    );
    assert_eq!(ran, 2 * ITERATIONS);
    assert!(peak < MAX_PEAK_KB, "peak RSS {peak} kB");
}
