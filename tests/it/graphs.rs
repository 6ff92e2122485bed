//! The committed graphs in `graphs/` are the regression baseline: a fresh export of every
//! fixture checkpoint must match them byte for byte, and their summaries must match too.
//! An intended change is accepted with `./ci/update-graphs.sh`.

use crate::common;

use std::path::Path;

use common::fixture;
use igpt_onnx::export::{export, ExportOptions};
use igpt_onnx::graph::GraphOptions;
use igpt_onnx::onnx::inspect::inspect;
use igpt_onnx::Checkpoint;

#[test]
fn fresh_exports_match_the_committed_graphs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cases = igpt_onnx::verify::fixture::discover(&root.join("fixtures")).expect("cases");
    let tmp = tempfile::tempdir().expect("tempdir");
    let opts = ExportOptions {
        graph: GraphOptions {
            hidden_states: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let hint = "if the change is intended, run ./ci/update-graphs.sh, review `git diff graphs/` and commit";
    let mut compared = 0;
    for case in cases {
        let name = case
            .file_name()
            .and_then(|n| n.to_str())
            .expect("case name");
        let ckpt = Checkpoint::open(&fixture(name).join("model"), None, None).expect("opens");
        let out = tmp.path().join(name);
        for e in export(&ckpt, &igpt_onnx::Head::available(&ckpt), &out, &opts).expect("exports") {
            let file = e
                .path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("file name");
            let committed = root.join("graphs").join(name).join(file);
            let want = std::fs::read(&committed)
                .unwrap_or_else(|_| panic!("{} is missing: {hint}", committed.display()));
            let got = std::fs::read(&e.path).expect("fresh export");
            let summary = inspect(&e.path).expect("inspect").summary();
            let committed_summary =
                std::fs::read_to_string(committed.with_extension("txt")).unwrap_or_default();
            assert_eq!(
                summary, committed_summary,
                "{name}/{file} summary differs: {hint}"
            );
            assert!(
                got == want,
                "{name}/{file} differs from graphs/ ({} vs {} bytes): {hint}",
                got.len(),
                want.len()
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 36);
}
