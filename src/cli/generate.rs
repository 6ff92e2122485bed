//! `igpt-onnx generate`: token generation with a decoder graph on any runtime, with a progress
//! line on a terminal and a summary line always.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use igpt_onnx::base::files::write_atomic;
use igpt_onnx::base::values::ChoiceParser;
use igpt_onnx::generate::{self, DecoderDims, DraftLength, Sampler, Strategy};
use igpt_onnx::graph::{ExportCard, Head};
use igpt_onnx::runtime::{self, RuntimeKind, RuntimeOptions};

use super::flags::{runtime_help, RuntimeFlags};

#[derive(clap::Args)]
pub struct Args {
    /// The decoder graph (`decoder.onnx`, from `export --head decoder` or `--head all`).
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value = "ort-cpu", value_parser = ChoiceParser::<RuntimeKind>::new(), help = runtime_help())]
    runtime: RuntimeKind,
    /// Sequences generated at once (each from the same prompt).
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Tokens to generate per sequence (default: to the end of the image, n_positions + 1
    /// tokens in all).
    #[arg(long)]
    max_new_tokens: Option<usize>,
    /// Always take the most likely token.
    #[arg(long, conflicts_with_all = ["temperature", "top_k", "top_p"])]
    greedy: bool,
    /// Sample with this temperature (default from generation_config.json, else 1.0).
    #[arg(long)]
    temperature: Option<f64>,
    /// Sample among the K most likely tokens (0 = all; default from generation_config.json,
    /// else 50).
    #[arg(long)]
    top_k: Option<usize>,
    /// Sample from the smallest set of tokens whose probability reaches P (default 1.0).
    #[arg(long)]
    top_p: Option<f64>,
    /// Seed of the sampling draws.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Comma-separated prompt token ids (default: the start-of-image token alone).
    #[arg(long, value_delimiter = ',', conflicts_with = "prompt")]
    prompt_ids: Vec<i64>,
    /// An image whose top --prompt-rows rows prime the generation (the rest is generated).
    #[arg(long, requires = "prompt_rows")]
    prompt: Option<PathBuf>,
    /// Pixel rows of --prompt kept (1..=the processor's height).
    #[arg(long, requires = "prompt")]
    prompt_rows: Option<usize>,
    /// The image processor (`preprocessor_config.json`, or a folder with one; default: the one
    /// export copied beside the model), for --prompt and --out.
    #[arg(long)]
    processor: Option<PathBuf>,
    /// Write the generated images as one grid PNG (needs whole images: the default length).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Write `{"tokens": [[...], ...]}`: per sequence, the prompt then the generated tokens.
    #[arg(long)]
    tokens_out: Option<PathBuf>,
    /// Write the run's figures as JSON (`-` for stdout): load, prompt and step times, tokens/s,
    /// the tokens; for benchmarks and scripts.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Speculative decoding: a smaller decoder graph (or an export folder with a decoder.onnx)
    /// of the same vocabulary and n_positions proposes tokens, which the model checks several at
    /// a time; the tokens are the model's own (greedy: identical; sampling: the same
    /// distribution). Runs on the same runtime.
    #[arg(long)]
    draft: Option<PathBuf>,
    /// Draft tokens per round (default: adaptive, growing while the model accepts them all and
    /// shrinking, down to none, while it rejects them).
    #[arg(long, requires = "draft")]
    draft_tokens: Option<usize>,
    #[command(flatten)]
    runtime_flags: RuntimeFlags,
}

pub fn run(a: Args) -> Result<ExitCode> {
    let started = Instant::now();
    let kind = a.runtime;
    if a.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let card = ExportCard::require(&a.model)?;
    if card.head != Head::Decoder {
        bail!(
            "{} is not a decoder graph: it has no past_key_values inputs (export one with --head decoder)",
            a.model.display()
        );
    }
    runtime::can_run(kind, card.profile, card.precision)
        .with_context(|| a.model.display().to_string())?;
    let dims = DecoderDims::of(&card);
    let draft_path = a.draft.as_deref().map(draft_graph);
    if let Some(path) = &draft_path {
        let draft = ExportCard::require(path)?;
        if draft.head != Head::Decoder {
            bail!("--draft {} is not a decoder graph", path.display());
        }
        generate::check_draft(&card, &draft)
            .with_context(|| format!("--draft {}", path.display()))?;
        runtime::can_run(kind, draft.profile, draft.precision)
            .with_context(|| path.display().to_string())?;
    }
    let strategy = strategy(&a, &a.model)?;
    let opts = a.runtime_flags.options(false);
    let rt = runtime::open(kind, &opts)?;
    let mut model = rt.load(&a.model)?;
    let mut draft = match &draft_path {
        Some(path) => {
            // Its pool, if any, sleeps when idle: spinning between its calls it took a core
            // from every target call (the worst pair: +4 ms on an 85 ms step).
            let opts = RuntimeOptions {
                intra_threads: draft_threads(path),
                pool_spin: Some(false),
                ..opts
            };
            Some(runtime::open(kind, &opts)?.load(path)?)
        }
        None => None,
    };
    let load_seconds = started.elapsed().as_secs_f64();
    let processor = match (&a.prompt, &a.out) {
        (None, None) => None,
        _ => Some(open_processor(&a)?),
    };
    if let Some(p) = &processor {
        if p.n_clusters() + 1 != dims.vocab_size {
            bail!(
                "{}: {} clusters, but the model's vocab_size is {} (clusters + the start token)",
                p.source(),
                p.n_clusters(),
                dims.vocab_size
            );
        }
    }
    let prompt = match (&a.prompt, a.prompt_rows, &processor) {
        (Some(image), Some(rows), Some(p)) => {
            let mut ids = vec![dims.sos()];
            ids.extend(igpt_onnx::image::prompt_tokens(p, image, rows)?);
            ids
        }
        _ if a.prompt_ids.is_empty() => vec![dims.sos()],
        _ => a.prompt_ids.clone(),
    };
    let new = a
        .max_new_tokens
        .unwrap_or_else(|| generate::max_new_tokens(&dims, prompt.len()));
    let prompts = vec![prompt; a.batch];
    generate::check_prompts(&dims, &prompts, new)?;
    if let (Some(p), Some(_)) = (&processor, &a.out) {
        let (h, w) = p.size();
        let total = prompts[0].len() - 1 + new;
        if prompts[0][0] != dims.sos() || total != h * w {
            bail!(
                "--out needs whole {h}x{w} images: the start token then {} tokens, but this run makes {total} after the first prompt token",
                h * w
            );
        }
    }
    let mut sampler = Sampler::new(strategy, a.seed);
    let mut bar = Progress::new(new * a.batch);
    let mut progress = |done, _| bar.update(done * a.batch);
    let (out, stats) = match draft.as_mut() {
        None => {
            let out = generate::generate(
                model.as_mut(),
                &dims,
                &prompts,
                new,
                &mut sampler,
                &mut progress,
            )?;
            (out, None)
        }
        Some(d) => {
            let length = match a.draft_tokens {
                Some(k) => DraftLength::Fixed(k),
                None => DraftLength::Adaptive,
            };
            let (out, stats) = generate::generate_speculative(
                model.as_mut(),
                d.as_mut(),
                &dims,
                &prompts,
                new,
                length,
                &mut sampler,
                &mut progress,
            )?;
            (out, Some(stats))
        }
    };
    bar.finish();
    if let (Some(p), Some(path)) = (&processor, &a.out) {
        let images = out
            .tokens
            .iter()
            .map(|row| p.decode_tokens(&row[1..]))
            .collect::<Result<Vec<_>, _>>()?;
        let cols = (images.len() as f64).sqrt().ceil() as usize;
        igpt_onnx::image::write_grid_png(path, &images, cols.max(1))?;
    }
    if let Some(path) = &a.tokens_out {
        let text = serde_json::to_string(&serde_json::json!({ "tokens": out.tokens }))? + "\n";
        write_atomic(path, text.as_bytes())?;
    }
    if let Some(path) = &a.json {
        let mut figures = serde_json::json!({
            "model": a.model.display().to_string(),
            "runtime": kind.name(),
            "provider": model.provider(),
            "pool_threads_spin": model.pool_threads_spin(),
            "profile": card.profile.name(),
            "precision": card.precision.name(),
            "batch": a.batch,
            "prompt_tokens": prompts[0].len(),
            "new_tokens": new,
            "steps": out.steps,
            "load_seconds": load_seconds,
            "prompt_seconds": out.prompt_seconds,
            "step_seconds": out.step_seconds,
            "ms_per_step": out.ms_per_step(),
            "tokens_per_second": out.tokens_per_second(),
            "total_seconds": started.elapsed().as_secs_f64(),
            "tokens": out.tokens,
        });
        if let (Some(s), Some(path)) = (&stats, &draft_path) {
            figures["draft"] = serde_json::json!({
                "model": path.display().to_string(),
                "draft_tokens": a.draft_tokens,
                "proposed": s.proposed,
                "accepted": s.accepted,
                "acceptance_rate": s.acceptance_rate(),
                "mean_accepted": s.mean_accepted(a.batch),
                "rounds_with_draft": s.draft_rounds,
                "target_calls": s.target_calls,
                "draft_calls": s.draft_calls,
                "target_seconds": s.target_seconds,
                "draft_seconds": s.draft_seconds,
            });
        }
        let text = serde_json::to_string(&figures)? + "\n";
        if path.as_os_str() == "-" {
            print!("{text}");
        } else {
            write_atomic(path, text.as_bytes())?;
        }
    }
    let summary = match &stats {
        None => format!(
            "generated {} x {} tokens on {} ({}): {} steps, prompt {:.1} ms, {:.2} ms/step, {:.1} tokens/s",
            a.batch,
            new,
            kind.name(),
            model.provider(),
            out.steps,
            out.prompt_seconds * 1e3,
            out.ms_per_step(),
            out.tokens_per_second()
        ),
        Some(s) => format!(
            "generated {} x {} tokens on {} ({}): {} target calls, {} draft calls, acceptance {:.3}, {:.1} tokens/s",
            a.batch,
            new,
            kind.name(),
            model.provider(),
            s.target_calls,
            s.draft_calls,
            s.acceptance_rate(),
            (new * a.batch) as f64 / (out.prompt_seconds + out.step_seconds).max(1e-9)
        ),
    };
    // With the JSON on stdout, the line for people goes to stderr.
    if a.json.as_deref().is_some_and(|p| p.as_os_str() == "-") {
        eprintln!("{summary}");
    } else {
        println!("{summary}");
    }
    Ok(ExitCode::SUCCESS)
}

/// A graph as given, or an export folder's `decoder.onnx`.
/// Graphs under this size (with their external data) draft on one thread.
const SMALL_DRAFT_BYTES: u64 = 64 << 20;

/// Intra-op threads for a draft graph: one for a small draft, whose kernels are too short to
/// share and whose pool's threads would compete with the target's for the same cores (the
/// trained pair's draft, 0.2 MB: 2.2x faster than the target alone at batch 1 on one thread,
/// 1.4x on two); every core for a large one, whose catch-up over the tokens of rounds without
/// it is real work (docs/generate.md).
fn draft_threads(path: &Path) -> Option<usize> {
    let size = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    let data = path.with_extension("onnx.data");
    (size(path) + size(&data) < SMALL_DRAFT_BYTES).then_some(1)
}

fn draft_graph(path: &Path) -> PathBuf {
    match path.is_dir() {
        true => path.join("decoder.onnx"),
        false => path.to_path_buf(),
    }
}

/// `--processor`, else the `preprocessor_config.json` export copied beside the model.
fn open_processor(a: &Args) -> Result<igpt_onnx::image::Processor> {
    let path = match &a.processor {
        Some(p) => p.clone(),
        None => {
            let beside = a
                .model
                .parent()
                .unwrap_or(Path::new("."))
                .join("preprocessor_config.json");
            if !beside.is_file() {
                bail!(
                    "--prompt and --out need the image processor: no preprocessor_config.json beside {} (pass --processor FILE)",
                    a.model.display()
                );
            }
            beside
        }
    };
    Ok(igpt_onnx::image::Processor::open(&path)?)
}

/// Greedy, or sampling with the flags over generation_config.json over HF's defaults.
fn strategy(a: &Args, model: &Path) -> Result<Strategy> {
    if a.greedy {
        return Ok(Strategy::Greedy);
    }
    let cfg = model
        .parent()
        .map(|d| d.join("generation_config.json"))
        .filter(|p| p.is_file());
    let cfg: serde_json::Value = match &cfg {
        Some(p) => serde_json::from_str(&std::fs::read_to_string(p)?)
            .with_context(|| format!("invalid JSON in {}", p.display()))?,
        None => serde_json::Value::Null,
    };
    let sampling_asked = a.temperature.is_some() || a.top_k.is_some() || a.top_p.is_some();
    let do_sample = cfg
        .get("do_sample")
        .and_then(|v| v.as_bool())
        .unwrap_or(false);
    if !sampling_asked && !do_sample {
        return Ok(Strategy::Greedy);
    }
    let temperature = a
        .temperature
        .or_else(|| cfg.get("temperature").and_then(|v| v.as_f64()))
        .unwrap_or(1.0);
    let top_k = a
        .top_k
        .or_else(|| {
            cfg.get("top_k")
                .and_then(|v| v.as_u64())
                .map(|k| k as usize)
        })
        .unwrap_or(50);
    let top_p = a
        .top_p
        .or_else(|| cfg.get("top_p").and_then(|v| v.as_f64()))
        .unwrap_or(1.0);
    if !(temperature > 0.0 && temperature.is_finite()) {
        bail!("--temperature must be a positive number, not {temperature}");
    }
    if !(top_p > 0.0 && top_p <= 1.0) {
        bail!("--top-p must be in (0, 1], not {top_p}");
    }
    Ok(Strategy::Sample {
        temperature,
        top_k,
        top_p,
    })
}

/// A one-line progress bar with tokens/s on stderr, drawn only on a terminal.
struct Progress {
    total: usize,
    start: Instant,
    shown: bool,
    tty: bool,
}

impl Progress {
    fn new(total: usize) -> Self {
        Self {
            total,
            start: Instant::now(),
            shown: false,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn update(&mut self, done: usize) {
        if !self.tty {
            return;
        }
        let width = 30;
        let filled = (done * width).checked_div(self.total).unwrap_or(width);
        let rate = done as f64 / self.start.elapsed().as_secs_f64().max(1e-9);
        eprint!(
            "\r[{}{}] {done}/{} tokens  {rate:.1} tokens/s ",
            "#".repeat(filled),
            " ".repeat(width - filled.min(width)),
            self.total
        );
        self.shown = true;
    }

    fn finish(&self) {
        if self.shown {
            eprintln!();
        }
    }
}
