//! The streaming writer on its own: byte counts checked against the framing, sizes that
//! overflow, unpredictable temporary names, and heads committed all or none.

use crate::common;

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use common::listing;
use igpt_onnx::base::{SourceError, TensorSource};
use igpt_onnx::onnx::proto::{GraphProto, ModelProto, OperatorSetIdProto};
use igpt_onnx::onnx::writer::{commit_all, write_model, Staged, WriteError};
use igpt_onnx::onnx::{DataType, GraphBuilder};

/// A source that writes `n` bytes whatever its tensor's shape says.
#[derive(Debug)]
struct Short(usize);

impl TensorSource for Short {
    fn write_to(&self, out: &mut BufWriter<File>) -> Result<u64, SourceError> {
        out.write_all(&vec![0u8; self.0])
            .map_err(SourceError::Output)?;
        Ok(self.0 as u64)
    }
}

fn header() -> ModelProto {
    ModelProto {
        ir_version: 8,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: 17,
        }],
        ..Default::default()
    }
}

/// A one-initializer graph written to `path`.
fn write_one(
    path: &Path,
    dims: &[usize],
    source: Box<dyn TensorSource>,
) -> Result<Staged, WriteError> {
    let mut g = GraphBuilder::default();
    g.initializer("w", DataType::Float32, dims, source);
    let graph = GraphProto {
        name: "g".into(),
        ..Default::default()
    };
    write_model(path, &header(), &graph, &g.initializers, false, &mut || {
        Ok(vec![])
    })
}

#[test]
fn a_source_writing_the_wrong_byte_count_is_an_error_naming_the_tensor() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("m.onnx");
    let err = write_one(&path, &[2, 3], Box::new(Short(20))).expect_err("24 bytes declared");
    assert_eq!(
        err.to_string(),
        "initializer `w`: its source wrote 20 bytes, its type and shape call for 24"
    );
    assert!(listing(tmp.path()).is_empty(), "{:?}", listing(tmp.path()));
}

#[test]
fn an_initializer_whose_size_overflows_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("m.onnx");
    let err = write_one(&path, &[1 << 40, 1 << 40], Box::new(Short(0))).expect_err("overflow");
    assert_eq!(
        err.to_string(),
        "initializer `w` has dims [1099511627776, 1099511627776]: its size overflows"
    );
    assert!(listing(tmp.path()).is_empty());
}

#[cfg(unix)]
#[test]
fn temporary_names_are_unpredictable_and_exclusive() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let victim = tmp.path().join("victim");
    std::fs::write(&victim, b"precious").expect("write");
    let out = tmp.path().join("out");
    std::fs::create_dir(&out).expect("mkdir");
    // The name the old writer used for this process.
    let planted = out.join(format!(".m.onnx.tmp-{}", std::process::id()));
    std::os::unix::fs::symlink(&victim, &planted).expect("symlink");
    let staged = write_one(&out.join("m.onnx"), &[2], Box::new(vec![0u8; 8])).expect("writes");
    staged.commit().expect("commits");
    assert_eq!(std::fs::read(&victim).expect("victim"), b"precious");
    assert_eq!(
        listing(&out),
        vec![
            planted
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned(),
            "m.onnx".to_string()
        ]
    );
}

#[test]
fn heads_are_committed_all_or_none() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sub = tmp.path().join("sub");
    std::fs::create_dir(&sub).expect("mkdir");
    let (a, b) = (tmp.path().join("a.onnx"), sub.join("b.onnx"));
    std::fs::write(&a, b"old a").expect("write");
    let first = write_one(&a, &[2], Box::new(vec![1u8; 8])).expect("a");
    let second = write_one(&b, &[2], Box::new(vec![2u8; 8])).expect("b");
    // b's folder goes away after staging: a is placed first, then b's rename fails.
    std::fs::rename(&sub, tmp.path().join("moved")).expect("move");
    let err = commit_all(vec![first, second]).expect_err("b cannot be placed");
    assert!(
        err.to_string()
            .starts_with(&format!("cannot write {}: ", b.display())),
        "{err}"
    );
    // a is back as it was, and no temporary is left beside it.
    assert_eq!(std::fs::read(&a).expect("a"), b"old a");
    assert_eq!(listing(tmp.path()), vec!["a.onnx", "moved"]);
}

#[test]
fn a_destination_that_became_a_folder_is_refused_before_anything_moves() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b) = (tmp.path().join("a.onnx"), tmp.path().join("b.onnx"));
    std::fs::write(&a, b"old a").expect("write");
    let first = write_one(&a, &[2], Box::new(vec![1u8; 8])).expect("a");
    let second = write_one(&b, &[2], Box::new(vec![2u8; 8])).expect("b");
    std::fs::create_dir(&b).expect("mkdir");
    let err = commit_all(vec![first, second]).expect_err("b is a folder");
    assert_eq!(
        err.to_string(),
        format!(
            "refusing to replace {}: it is not a regular file",
            b.display()
        )
    );
    assert_eq!(std::fs::read(&a).expect("a"), b"old a");
    assert_eq!(listing(tmp.path()), vec!["a.onnx", "b.onnx"]);
}
