//! A deterministic mutation fuzzer, run as an ordinary test on the stable toolchain: a fixed
//! seed and a fixed number of inputs over the three readers that take bytes from strangers —
//! the torch pickle reader, the torch zip/legacy container reader (`torch::parse_bytes`) and
//! the safetensors header parser. Seeds are the committed fixtures and the hostile corpus;
//! mutations are bit flips, "interesting" integers written over lengths and offsets,
//! truncations, duplicated and deleted chunks. Every input must give a value or an error:
//! no panic, and no call may allocate more than a bound (a counting global allocator records
//! the peak of live bytes).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use crate::alloc::peak_of;
use crate::common;

use common::Rng;
use igpt_onnx::checkpoint::safetensors::parse_header;
use igpt_onnx::checkpoint::torch::{self, pickle, zip};

/// Inputs per target (plus the seeds): ~30 000 calls, ~15 s in the dev profile.
const ITERATIONS: usize = 10_000;
const SEED: u64 = 0x1f2e_3d4c_5b6a_7988;

const INTERESTING: [u64; 9] = [
    0,
    1,
    0x7f,
    0xff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

fn mutate(rng: &mut Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..=rng.below(4) {
        if b.is_empty() {
            b.push(rng.next() as u8);
        }
        let at = rng.below(b.len());
        match rng.below(6) {
            0 => b[at] ^= 1 << rng.below(8),
            1 => b[at] = INTERESTING[rng.below(4)] as u8,
            2 => {
                // An interesting integer over a 4- or 8-byte field (lengths, offsets, counts).
                let v = INTERESTING[rng.below(INTERESTING.len())].to_le_bytes();
                let w = if rng.below(2) == 0 { 4 } else { 8 };
                let end = (at + w).min(b.len());
                b[at..end].copy_from_slice(&v[..end - at]);
            }
            3 => b.truncate(at),
            4 => {
                let len = rng.below(64).min(b.len() - at);
                let chunk = b[at..at + len].to_vec();
                let to = rng.below(b.len());
                b.splice(to..to, chunk);
            }
            _ => {
                let len = rng.below(64).min(b.len() - at);
                b.drain(at..at + len);
            }
        }
    }
    b
}

fn files_under(dir: &Path, out: &mut Vec<Vec<u8>>, keep: &dyn Fn(&Path) -> bool) {
    for e in std::fs::read_dir(dir).expect("read dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            files_under(&p, out, keep);
        } else if keep(&p) {
            out.push(std::fs::read(&p).expect("read seed"));
        }
    }
}

/// Runs `f` on every input; fails naming the input when it panics or allocates too much.
fn fuzz(name: &str, seeds: &[Vec<u8>], f: &dyn Fn(&[u8])) -> usize {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let mut rng = Rng(SEED ^ name.len() as u64);
    let mut inputs = seeds.to_vec();
    for _ in 0..ITERATIONS {
        let s = &seeds[rng.below(seeds.len())];
        inputs.push(mutate(&mut rng, s));
    }
    for (i, input) in inputs.iter().enumerate() {
        let (r, grew) = peak_of(|| catch_unwind(AssertUnwindSafe(|| f(input))));
        if r.is_err() {
            let keep = std::env::temp_dir().join(format!("fuzz-{name}-{i}.bin"));
            let _ = std::fs::write(&keep, input);
            panic!("{name}: input {i} panicked (saved to {})", keep.display());
        }
        // Readers copy at most the input (a file's head, a record) and small metadata.
        let bound = (64 << 20) + 4 * input.len();
        assert!(
            grew <= bound,
            "{name}: input {i} allocated {grew} bytes (> {bound})"
        );
    }
    inputs.len()
}

#[test]
fn readers_survive_mutated_inputs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut torch_files = Vec::new();
    files_under(&root.join("torch"), &mut torch_files, &|p| {
        p.extension().is_some_and(|e| e == "bin")
    });
    // The pickles inside the zip files, and every legacy file's head, as pickle seeds.
    let mut pickles: Vec<Vec<u8>> = Vec::new();
    for f in &torch_files {
        if let Ok(entries) = zip::entries(f.as_slice()) {
            for e in entries.iter().filter(|e| e.name.ends_with("data.pkl")) {
                pickles.extend(zip::read_entry(f.as_slice(), e, 1 << 20));
            }
        } else {
            pickles.push(f[..f.len().min(4096)].to_vec());
        }
    }
    let mut safetensors = Vec::new();
    for case in ["causal-lm", "fp16", "sharded"] {
        files_under(&root.join(case).join("model"), &mut safetensors, &|p| {
            p.extension().is_some_and(|e| e == "safetensors")
        });
    }
    let n_pickle = fuzz("pickle", &pickles, &|b| {
        if let Ok((p, _)) = pickle::load(b) {
            let _ = p.state_dict();
        }
    });
    let n_torch = fuzz("torch-container", &torch_files, &|b| {
        let _ = torch::parse_bytes(b);
    });
    let n_st = fuzz("safetensors-header", &safetensors, &|b| {
        let _ = parse_header(b);
    });
    eprintln!(
        "fuzz: {n_pickle} pickle inputs ({} seeds), {n_torch} torch-file inputs ({} seeds), {n_st} safetensors inputs ({} seeds)",
        pickles.len(),
        torch_files.len(),
        safetensors.len()
    );
}
