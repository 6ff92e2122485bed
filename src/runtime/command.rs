//! Any runtime, through a program that speaks a small file protocol (`--runtimes cmd:PROGRAM`).
//!
//! Per loaded graph igpt-onnx starts `PROGRAM serve MODEL` once — PROGRAM run directly (no
//! shell), found as a shell finds it: a path when it holds a `/` (relative to the current
//! directory), else a name on `PATH` — with stdin and stdout as pipes and stderr captured
//! (its last lines go into error messages). Lines are UTF-8, `\n`-terminated:
//!
//! 1. The adapter loads MODEL (external data resolved beside it) and writes `ready <provider>`,
//!    the provider description the report shows.
//! 2. Per run igpt-onnx writes the feed — every graph input, by name, int64 / float32 / float16 —
//!    to a temporary safetensors file and sends `run INPUTS_PATH OUTPUTS_PATH` (paths without
//!    whitespace). The adapter runs the graph, writes every graph output by name to
//!    OUTPUTS_PATH as safetensors (float32 / float16 / int64; other types as float32) and answers
//!    `ok`, or `error <one line>` (the adapter stays usable). A decoder step is such a run with
//!    `past_key_values.*` in and `present.*` out ([`LoadedModel::step`]'s default).
//! 3. When the model is dropped igpt-onnx closes stdin; an adapter still running a moment
//!    later is killed.
//!
//! Each adapter runs in its own process group, which is killed whole whenever the adapter is
//! stopped: after a failure, when it outlives its grace period, and when igpt-onnx itself is
//! stopped by SIGINT, SIGTERM or SIGHUP (through [`crate::base::interrupt`]), so neither the
//! adapter nor a process it started outlives the command. (Being a group of its own, it does
//! not receive the terminal's Ctrl-C directly: the handler that
//! [`crate::base::files::remove_on_interrupt`] installs stops it; a program that uses the
//! library without that handler stops its adapters by dropping the models.)
//!
//! Outputs are checked against the graph's declared outputs (name, element type, rank, fixed
//! dims and dims named like an input's) before they are returned. A failing adapter — it cannot
//! start, exits or closes stdout, answers `error …` or anything but `ok`, writes a missing or
//! mistyped output, or gives no answer within the timeout ([`DEFAULT_TIMEOUT`], or
//! `RuntimeOptions::command_timeout`) — is one error naming the runtime (`cmd:PROGRAM`); after
//! a timeout or an exit the process is gone and later runs fail at once. Temporary files live
//! in one folder per loaded graph, made through [`crate::base::files`] (removed on drop and on
//! interrupt), and each run's files are removed after the run.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ndarray::{ArrayD, IxDyn};
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

use crate::base::dtype::safetensors_name;

use super::model::{check_input_names, graph_io, Failure, LoadedModel, NamedOutputs};
use super::model::{Runtime, RuntimeError, RuntimeKind, RuntimeOptions};
use crate::base::files::{temp_dir_beside, Temp};
use crate::base::interrupt::{on_interrupt, Registration};
use crate::base::{DataType, DimSpec, IoSpec, Tensor};

/// How long an adapter may take to load a graph or to answer one request.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a dropped adapter may take to exit after its stdin closes.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Lines of the adapter's stderr quoted in an error.
const STDERR_LINES: usize = 3;

/// What went wrong with an adapter (wrapped as the runtime's own error in a [`RuntimeError`]).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot find `{0}` (a path, or a program on PATH)")]
    NotFound(String),
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the adapter {how}{}", stderr_note(.stderr))]
    Exited { how: String, stderr: String },
    #[error("no answer within {} s (see --command-timeout); the adapter was stopped", .0.as_secs_f64())]
    Timeout(Duration),
    #[error("the adapter answered: {0}")]
    Answered(String),
    #[error("unexpected answer `{got}` (expected {expected})")]
    Protocol { got: String, expected: &'static str },
    #[error("the adapter was stopped after an earlier failure")]
    Stopped,
    #[error(
        "cannot pass {0} to the adapter: its path holds whitespace or is not UTF-8 (set TMPDIR)"
    )]
    Path(String),
    #[error(transparent)]
    File(#[from] crate::base::files::FileError),
    #[error("cannot write {path}: {source}")]
    WriteInputs {
        path: String,
        #[source]
        source: safetensors::SafeTensorError,
    },
    #[error("the adapter answered `ok` but wrote no {0}")]
    NoOutputs(String),
    #[error("cannot read the outputs {path}: {source}")]
    ReadOutputs {
        path: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("the adapter wrote no output `{0}`")]
    MissingOutput(String),
    #[error("output `{name}` is {found}; the graph declares {expected}")]
    OutputMismatch {
        name: String,
        expected: String,
        found: String,
    },
}

fn stderr_note(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(" (stderr: {stderr})")
    }
}

/// Opens `cmd:PROGRAM` (`text` is the whole name): unavailable when PROGRAM cannot be found.
pub fn open(
    kind: RuntimeKind,
    text: &str,
    opts: &RuntimeOptions,
) -> Result<Box<dyn Runtime>, RuntimeError> {
    let program = text.strip_prefix("cmd:").unwrap_or(text);
    let path = resolve(program).ok_or_else(|| RuntimeError::Unavailable {
        runtime: text.to_string(),
        source: Failure::native("", CommandError::NotFound(program.to_string())).into(),
    })?;
    Ok(adapter_runtime(kind, path, Vec::new(), opts))
}

/// A runtime that runs `PROGRAM ARGS… serve MODEL` per graph and speaks the protocol with it:
/// `cmd:PROGRAM` (no arguments), or a named runtime behind an adapter (`ort-python@VERSION`).
pub fn adapter_runtime(
    kind: RuntimeKind,
    program: PathBuf,
    args: Vec<OsString>,
    opts: &RuntimeOptions,
) -> Box<dyn Runtime> {
    Box::new(CommandRuntime {
        kind,
        program,
        args,
        timeout: opts.command_timeout.unwrap_or(DEFAULT_TIMEOUT),
    })
}

/// Where the shell would find `program`: a path when it holds a `/`, else the first executable
/// file of that name on `PATH`.
fn resolve(program: &str) -> Option<PathBuf> {
    if program.is_empty() {
        return None;
    }
    let executable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return executable(&p).then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
}

/// A `cmd:PROGRAM` runtime.
pub struct CommandRuntime {
    kind: RuntimeKind,
    program: PathBuf,
    /// Given before `serve MODEL`.
    args: Vec<OsString>,
    timeout: Duration,
}

impl CommandRuntime {
    fn name(&self) -> String {
        self.kind.name().to_string()
    }
}

impl Runtime for CommandRuntime {
    fn kind(&self) -> RuntimeKind {
        self.kind
    }

    fn load(&self, model: &Path) -> Result<Box<dyn LoadedModel>, RuntimeError> {
        let load_error = |source: Failure| RuntimeError::Load {
            runtime: self.name(),
            path: model.display().to_string(),
            source: source.into(),
        };
        let (inputs, outputs) = graph_io(model).map_err(|e| load_error(e.into()))?;
        let dir = temp_dir_beside(&std::env::temp_dir().join("igpt-onnx-cmd"))
            .map_err(|e| load_error(Failure::native("", CommandError::from(e))))?;
        for name in ["inputs.safetensors", "outputs.safetensors"] {
            protocol_path(&dir.path().join(name))
                .map_err(|e| load_error(Failure::native("", e)))?;
        }
        let mut adapter = Adapter::start(&self.program, &self.args, model, self.timeout)
            .map_err(|e| load_error(Failure::native("", e)))?;
        let provider = adapter
            .answer("`ready <provider>`")
            .and_then(|line| match line.strip_prefix("ready") {
                Some(rest) if rest.is_empty() || rest.starts_with(' ') => {
                    Ok(rest.trim().to_string())
                }
                _ => Err(unexpected(line, "`ready <provider>`")),
            })
            .map_err(|e| load_error(Failure::native("", e)))?;
        Ok(Box::new(CommandModel {
            runtime: self.name(),
            inputs,
            outputs,
            provider: if provider.is_empty() {
                self.name()
            } else {
                provider
            },
            adapter,
            dir,
        }))
    }
}

/// An `error …` answer as such, anything else as a protocol error.
fn unexpected(line: String, expected: &'static str) -> CommandError {
    match line.strip_prefix("error") {
        Some(msg) if msg.is_empty() || msg.starts_with(' ') => {
            CommandError::Answered(msg.trim().to_string())
        }
        _ => CommandError::Protocol {
            got: line,
            expected,
        },
    }
}

/// `path` as it goes on a request line: UTF-8 without whitespace.
fn protocol_path(path: &Path) -> Result<&str, CommandError> {
    path.to_str()
        .filter(|s| !s.chars().any(char::is_whitespace))
        .ok_or_else(|| CommandError::Path(path.display().to_string()))
}

/// A running adapter process.
struct Adapter {
    child: Child,
    /// Kills the adapter's process group if igpt-onnx is stopped by a signal; dropped (before
    /// the process is reaped, after which its id may name another process) when it ends.
    on_signal: Option<Registration>,
    stdin: Option<ChildStdin>,
    lines: Receiver<std::io::Result<String>>,
    stderr: Arc<Mutex<Vec<String>>>,
    /// Disconnected once the stderr reader has read everything.
    stderr_done: Receiver<()>,
    timeout: Duration,
    /// Stopped after a failure that leaves the conversation out of step.
    dead: bool,
}

impl Adapter {
    fn start(
        program: &Path,
        args: &[OsString],
        model: &Path,
        timeout: Duration,
    ) -> Result<Adapter, CommandError> {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(program)
            .args(args)
            .arg("serve")
            .arg(model.as_os_str())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own group (id = its pid), so that stopping it stops what it started too.
            .process_group(0)
            .spawn()
            .map_err(|source| CommandError::Spawn {
                program: program.display().to_string(),
                source,
            })?;
        let group = child.id();
        let on_signal = Some(on_interrupt(move || kill_group(group)));
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        // Readers on their own threads, so a silent adapter meets the timeout rather than
        // blocking us; they end when the pipes close (never joined: a grandchild holding a pipe
        // must not hold us).
        if let Some(out) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines() {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (done, stderr_done) = mpsc::channel::<()>();
        if let Some(err) = child.stderr.take() {
            let keep = Arc::clone(&stderr);
            std::thread::spawn(move || {
                tail_lines(err, &keep);
                drop(done);
            });
        }
        Ok(Adapter {
            child,
            on_signal,
            stdin,
            lines,
            stderr,
            stderr_done,
            timeout,
            dead: false,
        })
    }

    /// Sends one request line.
    fn send(&mut self, line: &str) -> Result<(), CommandError> {
        if self.dead {
            return Err(CommandError::Stopped);
        }
        let Some(stdin) = self.stdin.as_mut() else {
            return Err(CommandError::Stopped);
        };
        let sent = stdin
            .write_all(format!("{line}\n").as_bytes())
            .and_then(|()| stdin.flush());
        if sent.is_err() {
            // A closed pipe: the adapter is gone; say how it ended.
            return Err(self.exited());
        }
        Ok(())
    }

    /// The next answer line (its trailing `\r` dropped), within the timeout.
    fn answer(&mut self, expected: &'static str) -> Result<String, CommandError> {
        if self.dead {
            return Err(CommandError::Stopped);
        }
        match self.lines.recv_timeout(self.timeout) {
            Ok(Ok(line)) => Ok(line.trim_end_matches('\r').to_string()),
            Ok(Err(e)) => {
                self.stop();
                Err(CommandError::Protocol {
                    got: format!("unreadable output ({e})"),
                    expected,
                })
            }
            Err(RecvTimeoutError::Timeout) => {
                self.stop();
                Err(CommandError::Timeout(self.timeout))
            }
            Err(RecvTimeoutError::Disconnected) => Err(self.exited()),
        }
    }

    /// How the adapter ended (it closed stdout or stdin): its exit status and last stderr lines.
    fn exited(&mut self) -> CommandError {
        let deadline = Instant::now() + EXIT_GRACE;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => break None,
            }
        };
        let how = match status {
            Some(s) => format!("exited ({s})"),
            None => "closed its output".to_string(),
        };
        self.stop();
        // Let the stderr reader drain what the process wrote last (bounded: a grandchild may
        // hold the pipe open).
        let _ = self.stderr_done.recv_timeout(Duration::from_millis(500));
        CommandError::Exited {
            how,
            stderr: self.stderr_tail(),
        }
    }

    fn stderr_tail(&self) -> String {
        let lines = self.stderr.lock().unwrap_or_else(|e| e.into_inner());
        lines.join(" | ")
    }

    /// Kills the process and its group (if it still runs) and reaps it.
    fn stop(&mut self) {
        self.dead = true;
        self.stdin = None;
        if let Ok(None) = self.child.try_wait() {
            // Unreaped, the process keeps its id: the group is still the adapter's.
            kill_group(self.child.id());
            let _ = self.child.kill();
        }
        self.on_signal = None;
        let _ = self.child.wait();
    }
}

impl Drop for Adapter {
    fn drop(&mut self) {
        if self.dead {
            return;
        }
        // Closing stdin is the request to exit.
        self.stdin = None;
        let deadline = Instant::now() + EXIT_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) | Err(_) = self.child.try_wait() {
                self.on_signal = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.stop();
    }
}

/// Sends SIGKILL to every process in group `group` (an adapter and what it started). Safe to call
/// from the interrupt handler: one system call, no lock.
fn kill_group(group: u32) {
    // std has no killpg; kill(2) with a negative id is the same, and libc is linked anyway.
    unsafe extern "C" {
        fn kill(pid: i32, sig: i32) -> i32;
    }
    const SIGKILL: i32 = 9;
    // 0 and 1 would name our own group and every process: never an adapter's.
    if let Ok(id) = i32::try_from(group) {
        if id > 1 {
            // SAFETY: kill(2) takes plain integers and touches no memory of ours.
            unsafe {
                kill(-id, SIGKILL);
            }
        }
    }
}

/// Keeps the last [`STDERR_LINES`] non-empty lines of `from` in `keep`.
fn tail_lines(from: impl Read, keep: &Mutex<Vec<String>>) {
    for line in BufReader::new(from).lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut k = keep.lock().unwrap_or_else(|e| e.into_inner());
        if k.len() == STDERR_LINES {
            k.remove(0);
        }
        k.push(line.chars().take(300).collect());
    }
}

/// A graph loaded in an adapter.
struct CommandModel {
    runtime: String,
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
    provider: String,
    adapter: Adapter,
    /// This graph's folder of temporaries; declared after `adapter` so the adapter exits first.
    dir: Temp,
}

impl LoadedModel for CommandModel {
    fn inputs(&self) -> &[IoSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[IoSpec] {
        &self.outputs
    }

    fn provider(&self) -> String {
        self.provider.clone()
    }

    fn run(&mut self, inputs: &[(&str, &Tensor)]) -> Result<NamedOutputs, RuntimeError> {
        let run_error = |source: Failure| RuntimeError::Run {
            runtime: self.runtime.clone(),
            source: source.into(),
        };
        let ordered = check_input_names(&self.inputs, inputs).map_err(|e| run_error(e.into()))?;
        let in_path = self.dir.path().join("inputs.safetensors");
        let out_path = self.dir.path().join("outputs.safetensors");
        let result = self.exchange(&ordered, &in_path, &out_path);
        let _ = std::fs::remove_file(&in_path);
        let _ = std::fs::remove_file(&out_path);
        result.map_err(|e| RuntimeError::Run {
            runtime: self.runtime.clone(),
            source: Failure::native("", e).into(),
        })
    }
}

impl CommandModel {
    /// One request: the feed written, `run` sent, `ok` awaited, the outputs read and checked.
    fn exchange(
        &mut self,
        feed: &[&Tensor],
        in_path: &Path,
        out_path: &Path,
    ) -> Result<NamedOutputs, CommandError> {
        if self.adapter.dead {
            return Err(CommandError::Stopped);
        }
        write_feed(
            in_path,
            self.inputs
                .iter()
                .map(|s| s.name.as_str())
                .zip(feed.iter().copied()),
        )?;
        let _ = std::fs::remove_file(out_path);
        let line = format!(
            "run {} {}",
            protocol_path(in_path)?,
            protocol_path(out_path)?
        );
        self.adapter.send(&line)?;
        let answer = self.adapter.answer("`ok` or `error <message>`")?;
        if answer != "ok" {
            return Err(unexpected(answer, "`ok` or `error <message>`"));
        }
        let outputs = read_outputs(out_path, &self.outputs)?;
        check_outputs(&self.inputs, feed, &self.outputs, &outputs)?;
        Ok(outputs)
    }
}

/// Writes the feed as safetensors, each tensor in its own element type.
fn write_feed<'t>(
    path: &Path,
    feed: impl Iterator<Item = (&'t str, &'t Tensor)>,
) -> Result<(), CommandError> {
    let mut data: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in feed {
        let dtype = match t {
            Tensor::F32(_) => Dtype::F32,
            Tensor::F16(_) => Dtype::F16,
            Tensor::I64(_) => Dtype::I64,
        };
        data.push((name.to_string(), dtype, t.shape().to_vec(), t.le_bytes()));
    }
    let write_error = |source| CommandError::WriteInputs {
        path: path.display().to_string(),
        source,
    };
    let views = data
        .iter()
        .map(|(n, d, s, b)| Ok((n.as_str(), TensorView::new(*d, s.clone(), b)?)))
        .collect::<Result<Vec<_>, safetensors::SafeTensorError>>()
        .map_err(write_error)?;
    safetensors::serialize_to_file(views, None, path).map_err(write_error)
}

/// The graph's outputs from the adapter's file, in the graph's order.
fn read_outputs(path: &Path, specs: &[IoSpec]) -> Result<NamedOutputs, CommandError> {
    let read_error = |source: Box<dyn std::error::Error + Send + Sync>| CommandError::ReadOutputs {
        path: path.display().to_string(),
        source,
    };
    let bytes = std::fs::read(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CommandError::NoOutputs(path.display().to_string()),
        _ => read_error(e.into()),
    })?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| read_error(e.into()))?;
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        let view = st
            .tensor(&spec.name)
            .map_err(|_| CommandError::MissingOutput(spec.name.clone()))?;
        let shape = view.shape().to_vec();
        let mismatch = |found: String| CommandError::OutputMismatch {
            name: spec.name.clone(),
            expected: spec.describe(),
            found,
        };
        let data = view.data();
        let tensor = match view.dtype() {
            Dtype::F32 => ArrayD::from_shape_vec(IxDyn(&shape), chunks(data, f32::from_le_bytes))
                .map(Tensor::F32),
            Dtype::F16 => {
                ArrayD::from_shape_vec(IxDyn(&shape), chunks(data, half::f16::from_le_bytes))
                    .map(Tensor::F16)
            }
            Dtype::I64 => ArrayD::from_shape_vec(IxDyn(&shape), chunks(data, i64::from_le_bytes))
                .map(Tensor::I64),
            other => return Err(mismatch(format!("{} {shape:?}", safetensors_name(other)))),
        }
        .map_err(|e| read_error(format!("output `{}`: {e}", spec.name).into()))?;
        out.push((spec.name.clone(), tensor));
    }
    Ok(out)
}

/// Little-endian values of `N` bytes each.
fn chunks<T, const N: usize>(data: &[u8], f: impl Fn([u8; N]) -> T) -> Vec<T> {
    data.chunks_exact(N)
        .map(|c| {
            let mut b = [0u8; N];
            b.copy_from_slice(c);
            f(b)
        })
        .collect()
}

/// Each output of its declared element type (float32 for types igpt-onnx does not read) and
/// rank, its fixed dims as declared and its named dims equal to the same names' sizes in the
/// feed and in the other outputs.
fn check_outputs(
    input_specs: &[IoSpec],
    feed: &[&Tensor],
    specs: &[IoSpec],
    outputs: &NamedOutputs,
) -> Result<(), CommandError> {
    let mut sizes: HashMap<&str, usize> = HashMap::new();
    for (spec, t) in input_specs.iter().zip(feed) {
        for (d, &n) in spec.dims.iter().zip(t.shape()) {
            if let DimSpec::Symbol(s) = d {
                sizes.entry(s.as_str()).or_insert(n);
            }
        }
    }
    for (spec, (name, t)) in specs.iter().zip(outputs) {
        let dtype = match spec.dtype {
            DataType::Float32 | DataType::Float16 | DataType::Int64 => spec.dtype,
            _ => DataType::Float32,
        };
        let mismatch = || CommandError::OutputMismatch {
            name: name.clone(),
            expected: spec.describe(),
            found: t.describe(),
        };
        if t.dtype() != dtype || (!spec.dims.is_empty() && spec.dims.len() != t.shape().len()) {
            return Err(mismatch());
        }
        for (d, &n) in spec.dims.iter().zip(t.shape()) {
            let ok = match d {
                DimSpec::Fixed(f) => *f == n,
                DimSpec::Symbol(s) => *sizes.entry(s.as_str()).or_insert(n) == n,
                DimSpec::Unknown => true,
            };
            if !ok {
                return Err(mismatch());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::interrupt::is_registered;

    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    fn registration(a: &Adapter) -> u64 {
        a.on_signal
            .as_ref()
            .map(Registration::id)
            .expect("registered")
    }

    #[test]
    fn an_adapter_is_deregistered_when_it_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = Path::new("model.onnx");
        // Exits when its stdin closes, as the protocol asks.
        let polite = script(
            dir.path(),
            "polite",
            "echo ready\nwhile read l; do :; done\n",
        );
        let a = Adapter::start(&polite, &[], model, Duration::from_secs(10)).expect("starts");
        let id = registration(&a);
        assert!(is_registered(id));
        drop(a);
        assert!(!is_registered(id));
        // Never answers: stopped at the timeout.
        let silent = script(dir.path(), "silent", "echo ready\nexec sleep 60\n");
        let mut a =
            Adapter::start(&silent, &[], model, Duration::from_millis(300)).expect("starts");
        let id = registration(&a);
        assert_eq!(a.answer("ready").expect("ready"), "ready");
        assert!(matches!(a.answer("ok"), Err(CommandError::Timeout(_))));
        assert!(!is_registered(id));
        assert!(a.dead && matches!(a.child.try_wait(), Ok(Some(_))));
    }
}
