//! Checkpoints by hub id: resolution in a Hugging Face cache laid out as `huggingface_hub`
//! does (built here in a temp folder), the refusal that lists where it searched, and
//! `--download` against a local HTTP server answering `GET /{repo}/resolve/{rev}/{file}` with
//! the headers hf-hub reads (`ETag`, `X-Repo-Commit`, `Content-Range`). No test touches the
//! internet: the endpoint is always `HF_ENDPOINT=http://127.0.0.1:<port>`.

use crate::common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use common::fixture;
use igpt_onnx::onnx::proto::ModelProto;
use prost::Message;
use sha2::{Digest, Sha256};

const REPO: &str = "openai-test/imagegpt-fixture";
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// The files of the published layout: config + pytorch_model.bin (torch zip).
fn source_files() -> Vec<(&'static str, PathBuf)> {
    let dir = fixture("torch").join("causal-lm-zip");
    vec![
        ("config.json", dir.join("config.json")),
        ("pytorch_model.bin", dir.join("pytorch_model.bin")),
        (
            "generation_config.json",
            fixture("causal-lm").join("model/generation_config.json"),
        ),
    ]
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A cache holding REPO at COMMIT, with `refs/<each ref>` pointing at it, files linked into
/// blobs named by their sha256 as huggingface_hub does for LFS files.
fn make_cache(cache: &Path, refs: &[&str]) {
    let root = cache.join("models--openai-test--imagegpt-fixture");
    let snap = root.join("snapshots").join(COMMIT);
    std::fs::create_dir_all(&snap).expect("snapshot dir");
    std::fs::create_dir_all(root.join("blobs")).expect("blobs");
    std::fs::create_dir_all(root.join("refs")).expect("refs");
    for (name, path) in source_files() {
        let bytes = std::fs::read(path).expect("fixture");
        let etag = sha256_hex(&bytes);
        std::fs::write(root.join("blobs").join(&etag), bytes).expect("blob");
        std::os::unix::fs::symlink(format!("../../blobs/{etag}"), snap.join(name)).expect("link");
    }
    for r in refs {
        std::fs::write(root.join("refs").join(r), COMMIT).expect("ref");
    }
}

fn igpt(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_igpt-onnx"));
    cmd.args(args)
        .env_remove("HF_HUB_CACHE")
        .env_remove("HF_HOME")
        .env_remove("HF_TOKEN")
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_ENDPOINT", "http://127.0.0.1:9"); // nothing listens: offline by construction
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run igpt-onnx")
}

/// `export --weights REPO --head base` with only `env` pointing at a cache: must succeed.
fn export_base_offline(out: &Path, env: (&str, &Path)) {
    let o = out.to_str().expect("utf-8");
    let run = igpt(
        &["export", "--weights", REPO, "--head", "base", "--out", o],
        &[env],
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(0), "{stderr}");
    assert!(out.join("base.onnx").is_file());
}

fn metadata(path: &Path, key: &str) -> Option<String> {
    let m = ModelProto::decode(std::fs::read(path).expect("graph").as_slice()).expect("decode");
    m.metadata_props
        .into_iter()
        .find(|p| p.key == key)
        .map(|p| p.value)
}

#[test]
fn hub_ids_resolve_in_the_cache_by_branch_tag_or_commit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("hub");
    make_cache(&cache, &["main", "v1"]);
    for (rev, label) in [("main", "branch"), ("v1", "tag"), (COMMIT, "commit")] {
        let out = tmp.path().join(format!("out-{label}"));
        let o = out.to_str().expect("utf-8");
        let run = igpt(
            &[
                "export",
                "--weights",
                REPO,
                "--revision",
                rev,
                "--head",
                "causal-lm",
                "--out",
                o,
            ],
            &[("HF_HUB_CACHE", &cache)],
        );
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert_eq!(
            run.status.code(),
            Some(0),
            "{label}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let snap = cache
            .join("models--openai-test--imagegpt-fixture/snapshots")
            .join(COMMIT);
        assert_eq!(
            stdout.lines().next(),
            Some(format!("read pytorch zip weights from {}", snap.display()).as_str())
        );
        let graph = out.join("causal-lm.onnx");
        assert_eq!(
            metadata(&graph, "igpt_onnx.source_hub_id").as_deref(),
            Some(REPO)
        );
        assert_eq!(
            metadata(&graph, "igpt_onnx.source_hub_commit").as_deref(),
            Some(COMMIT)
        );
        assert_eq!(
            metadata(&graph, "igpt_onnx.source_format").as_deref(),
            Some("pytorch zip")
        );
    }
}

#[test]
fn hf_home_is_searched_when_hf_hub_cache_is_unset() {
    let tmp = tempfile::tempdir().expect("tempdir");
    make_cache(&tmp.path().join("home/hub"), &["main"]);
    let out = tmp.path().join("out");
    export_base_offline(&out, ("HF_HOME", &tmp.path().join("home")));
}

#[test]
fn variant_alone_not_in_cache_says_where_it_looked_and_suggests_download() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cache = tmp.path().join("empty");
    let out = tmp.path().join("out");
    let run = igpt(
        &[
            "export",
            "--variant",
            "medium",
            "--out",
            out.to_str().expect("utf-8"),
        ],
        &[("HF_HUB_CACHE", &cache)],
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2));
    assert_eq!(
        stderr,
        format!(
            "error: openai/imagegpt-medium@main is not in the Hugging Face cache (searched {} (from HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub)): pass --download to fetch it\n",
            cache.join("models--openai--imagegpt-medium").display()
        )
    );
    assert!(!out.exists());
}

/// What the server saw: request lines and Authorization headers.
type Log = Arc<Mutex<Vec<String>>>;

/// Serves `files` as REPO at COMMIT (any revision); `cut` names a file whose body stops
/// halfway with the connection closed.
fn serve(files: Vec<(&'static str, Vec<u8>)>, cut: Option<&'static str>) -> (u16, Log) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let log: Log = Arc::default();
    let seen = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let (mut range_start, mut probe) = (0usize, false);
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(r) = lower.strip_prefix("range: bytes=") {
                    probe = r.trim() == "0-0";
                    range_start = r
                        .split('-')
                        .next()
                        .and_then(|s| s.trim().parse().ok())
                        .unwrap_or(0);
                }
                if lower.starts_with("authorization:") {
                    seen.lock().expect("log").push(h.trim().to_string());
                }
            }
            seen.lock().expect("log").push(request.trim().to_string());
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let prefix = format!("/{REPO}/resolve/");
            let file = path
                .strip_prefix(&prefix)
                .and_then(|rest| rest.split_once('/'))
                .map(|(_, f)| f.to_string());
            let found = file.and_then(|f| files.iter().find(|(n, _)| *n == f));
            let response = match found {
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
                Some((name, body)) => {
                    // hf-hub probes with `Range: bytes=0-0`, then fetches `bytes=N-`.
                    let is_probe = probe;
                    let slice = if is_probe {
                        &body[..1]
                    } else {
                        &body[range_start..]
                    };
                    let sent = if cut == Some(*name) && !is_probe {
                        &slice[..slice.len() / 2]
                    } else {
                        slice
                    };
                    let mut r = format!(
                        "HTTP/1.1 206 Partial Content\r\nETag: \"{}\"\r\nX-Repo-Commit: {COMMIT}\r\nContent-Range: bytes {range_start}-{}/{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        sha256_hex(body),
                        if is_probe { 0 } else { body.len() - 1 },
                        body.len(),
                        slice.len()
                    )
                    .into_bytes();
                    r.extend_from_slice(sent);
                    r
                }
            };
            let _ = stream.write_all(&response);
        }
    });
    (port, log)
}

fn files_to_serve() -> Vec<(&'static str, Vec<u8>)> {
    source_files()
        .into_iter()
        .map(|(n, p)| (n, std::fs::read(p).expect("fixture")))
        .collect()
}

fn download_env(tmp: &Path, port: u16) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_igpt-onnx"));
    cmd.env_remove("HF_HOME")
        .env_remove("HF_HUB_OFFLINE")
        .env("HF_HUB_CACHE", tmp.join("cache"))
        .env("HF_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .env("HF_TOKEN", "hf_test_token");
    cmd
}

#[test]
fn download_fills_the_cache_layout_and_exports() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (port, log) = serve(files_to_serve(), None);
    let out = tmp.path().join("out");
    let run = download_env(tmp.path(), port)
        .args([
            "export",
            "--weights",
            REPO,
            "--download",
            "--head",
            "causal-lm",
            "--out",
        ])
        .arg(&out)
        .output()
        .expect("run");
    assert_eq!(
        run.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let root = tmp
        .path()
        .join("cache/models--openai-test--imagegpt-fixture");
    assert_eq!(
        std::fs::read_to_string(root.join("refs/main")).expect("ref"),
        COMMIT
    );
    let snap = root.join("snapshots").join(COMMIT);
    for (name, bytes) in files_to_serve() {
        let link = std::fs::read_link(snap.join(name)).expect("symlink");
        assert_eq!(
            link,
            Path::new("../../blobs").join(sha256_hex(&bytes)),
            "{name}"
        );
        assert_eq!(
            std::fs::read(snap.join(name)).expect("read"),
            bytes,
            "{name}"
        );
    }
    let blobs: Vec<String> = std::fs::read_dir(root.join("blobs"))
        .expect("blobs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(blobs.is_empty(), "{blobs:?}");
    let graph = out.join("causal-lm.onnx");
    assert_eq!(
        metadata(&graph, "igpt_onnx.source_hub_commit").as_deref(),
        Some(COMMIT)
    );
    let log = log.lock().expect("log").clone();
    assert!(
        log.iter()
            .any(|l| l == "authorization: Bearer hf_test_token"
                || l == "Authorization: Bearer hf_test_token"),
        "{log:?}"
    );
    // preprocessor_config.json is absent upstream (404) and optional.
    assert!(
        log.iter()
            .any(|l| l.contains("/resolve/main/preprocessor_config.json")),
        "{log:?}"
    );

    // A second run, offline, finds everything in the cache.
    export_base_offline(&out, ("HF_HUB_CACHE", &tmp.path().join("cache")));
}

#[test]
fn a_cut_download_leaves_no_file_where_the_cache_expects_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (port, _) = serve(files_to_serve(), Some("pytorch_model.bin"));
    let out = tmp.path().join("out");
    let run = download_env(tmp.path(), port)
        .args(["export", "--weights", REPO, "--download", "--out"])
        .arg(&out)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    let last = stderr.lines().last().unwrap_or("");
    assert!(
        last.starts_with(&format!("error: downloading pytorch_model.bin of {REPO}: ")),
        "{stderr}"
    );
    let snap = tmp
        .path()
        .join("cache/models--openai-test--imagegpt-fixture/snapshots")
        .join(COMMIT);
    assert!(!snap.join("pytorch_model.bin").exists());
    assert!(!out.exists());
}
