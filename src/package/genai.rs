//! An onnxruntime-genai model folder: the decoder with logits over the whole vocabulary and its
//! `genai_config.json`, so `onnxruntime_genai.Model(DIR)` generates token ids from token ids
//! with no tokenizer.
//!
//! Schema: onnxruntime-genai `src/config.h` / `config.cpp` (0.18): `model.{type,
//! context_length, vocab_size, bos/eos/pad_token_id, decoder.{filename, head_size, hidden_size,
//! num_attention_heads, num_hidden_layers, num_key_value_heads, inputs, outputs}}` and
//! `search`. Why each value is what it is:
//! - `type` "decoder": genai's generic decoder-only model (separate key/value caches named by
//!   pattern, optional `position_ids` and `attention_mask`), no architecture-specific I/O.
//! - `vocab_size` 513 and logits widened to it ([`LogitsWidth::Vocabulary`]): genai reads the
//!   logits' width from `vocab_size` and requires `eos_token_id` in `[0, vocab_size)`.
//! - `eos_token_id` 512, the start token: its logit is float32 min, so it is never produced
//!   and generation runs to `max_length`, as ImageGPT's does.
//! - `pad_token_id` 513, outside the vocabulary: genai masks prompt and generated tokens equal
//!   to it when the batch is over 1 (trailing ones; `position_inputs.cpp`), and a prompt of the
//!   start token alone would be masked if it were 512. It only pads prompts of unequal length,
//!   which ImageGPT's reference does not support either; the graph then rejects the id.
//! - `past_present_share_buffer` true where the decoder's card records a shared cache (it steps
//!   with `GroupQueryAttention`: the ort profile, head sizes in multiples of 8: every published size), which writes each step's
//!   key and value into genai's one `max_length` buffer per layer instead of copying the past
//!   (the same tokens; a whole small image 1.24x faster a token in genai 0.18); false for a
//!   decoder whose attention concatenates the past.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::{checkpoint_folder, PackageError, StagedDir};
use crate::base::files::write_atomic;
use crate::checkpoint::Checkpoint;
use crate::config::ImageGptConfig;
use crate::export::{self, ExportOptions, Exported};
use crate::graph::io::{self, CacheMode, Kv, ATTENTION_MASK, INPUT_IDS, LOGITS, POSITION_IDS};
use crate::graph::{ExportCard, Head, LogitsWidth};

/// The config file onnxruntime-genai reads from the model folder.
pub const CONFIG_FILE: &str = "genai_config.json";
/// The decoder graph's file name in the folder.
pub const DECODER_FILE: &str = "decoder.onnx";

/// A written onnxruntime-genai folder.
#[derive(Debug, Clone)]
pub struct GenaiPackage {
    pub dir: PathBuf,
    /// The decoder as exported (paths inside the staging folder; same names under `dir`).
    pub decoder: Exported,
}

/// Writes `dir` (which must not exist, or be empty): `decoder.onnx` with logits over the whole
/// vocabulary, the carried `generation_config.json` / `preprocessor_config.json`, and
/// `genai_config.json` derived from the checkpoint's config and generation defaults.
pub fn write(
    ckpt: &Checkpoint,
    dir: &Path,
    opts: &ExportOptions,
) -> Result<GenaiPackage, PackageError> {
    // The same file the export carries beside the graph; read first, so a bad one costs no
    // export.
    let gen_path = checkpoint_folder(ckpt).join("generation_config.json");
    let generation = match std::fs::read(&gen_path) {
        Ok(bytes) => {
            Some(serde_json::from_slice::<Value>(&bytes).map_err(PackageError::json(&gen_path))?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(PackageError::io("read", &gen_path)(e)),
    };
    // Checked before the export too: a bad default costs no export.
    genai_config(&ckpt.config, generation.as_ref(), false)
        .map_err(PackageError::invalid_because(&gen_path))?;
    let stage = StagedDir::new(dir)?;
    let opts = ExportOptions {
        logits: LogitsWidth::Vocabulary,
        ..opts.clone()
    };
    let done = export::export(ckpt, &[Head::Decoder], stage.path(), &opts)?;
    let decoder = done
        .into_iter()
        .next()
        .ok_or_else(|| PackageError::invalid(dir, "the export wrote no decoder"))?;
    // The decoder's card says how it passes its cache; genai shares one buffer where it can.
    let card = ExportCard::require(&decoder.path)?;
    let share = card.cache == CacheMode::Shared;
    let config = genai_config(&ckpt.config, generation.as_ref(), share)
        .map_err(PackageError::invalid_because(&gen_path))?;
    let text = serde_json::to_string_pretty(&config).unwrap_or_default() + "\n";
    let cfg_path = stage.path().join(CONFIG_FILE);
    write_atomic(&cfg_path, text.as_bytes())?;
    let dir = stage.commit()?;
    Ok(GenaiPackage { dir, decoder })
}

/// A generation default genai cannot take, naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SearchError {
    #[error("not a JSON object")]
    NotAnObject,
    #[error("`{key}` is {value}, expected a number")]
    NotANumber { key: &'static str, value: String },
    #[error("`{key}` is {value}, expected a whole number from 0 to {max}")]
    NotACount {
        key: &'static str,
        value: f64,
        max: String,
    },
    #[error("`{key}` is {value}, expected true or false")]
    NotABool { key: &'static str, value: String },
}

/// `genai_config.json` for a checkpoint: the model section from `config`, the search defaults
/// from HF `generation_config.json` (`generation`); `share_buffer` when the decoder writes its
/// cache in place. An error names the field.
pub fn genai_config(
    config: &ImageGptConfig,
    generation: Option<&Value>,
    share_buffer: bool,
) -> Result<Value, SearchError> {
    let c = config;
    let start = c.lm_vocab();
    // SOS + n_positions tokens is a whole image, as HF's example generates it: the last token
    // is sampled, never fed, so positions stay below n_positions.
    let model = json!({
        "type": "decoder",
        "context_length": c.n_positions + 1,
        "vocab_size": c.vocab_size,
        "bos_token_id": start,
        "eos_token_id": start,
        "pad_token_id": c.vocab_size,
        "decoder": {
            "filename": DECODER_FILE,
            // 0: ONNX Runtime's own choice, one intra-op thread per physical core. Left out,
            // onnxruntime-genai 0.18 runs one thread (measured, 2 cores: 1.02 CPUs busy, a small
            // int8 step 12.2 ms; with 0, 1.75 CPUs and 8.3 ms).
            "session_options": {
                "log_id": "igpt-onnx",
                "intra_op_num_threads": 0,
                "provider_options": []
            },
            "head_size": c.head_dim(),
            "hidden_size": c.n_embd,
            "num_attention_heads": c.n_head,
            "num_key_value_heads": c.n_head,
            "num_hidden_layers": c.n_layer,
            "inputs": {
                "input_ids": INPUT_IDS,
                "attention_mask": ATTENTION_MASK,
                "position_ids": POSITION_IDS,
                "past_key_names": io::past_name_pattern(Kv::Key),
                "past_value_names": io::past_name_pattern(Kv::Value)
            },
            "outputs": {
                "logits": LOGITS,
                "present_key_names": io::present_name_pattern(Kv::Key),
                "present_value_names": io::present_name_pattern(Kv::Value)
            }
        }
    });
    let mut search = search(c, generation)?;
    search["past_present_share_buffer"] = json!(share_buffer);
    Ok(json!({ "model": model, "search": search }))
}

/// genai's `search` from HF generation defaults (HF's own defaults where a field is absent).
/// `max_length` is the context (SOS + a whole image), not HF's 20 tokens.
fn search(c: &ImageGptConfig, generation: Option<&Value>) -> Result<Value, SearchError> {
    let empty = Map::new();
    let g = match generation {
        None => &empty,
        Some(Value::Object(m)) => m,
        Some(_) => return Err(SearchError::NotAnObject),
    };
    let num = |key: &'static str, default: f64| -> Result<f64, SearchError> {
        match g.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => {
                v.as_f64()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| SearchError::NotANumber {
                        key,
                        value: v.to_string(),
                    })
            }
        }
    };
    // A whole number from 0 to `max` (a bound and its name).
    let count =
        |key: &'static str, default: usize, max: (usize, &str)| -> Result<usize, SearchError> {
            let x = num(key, default as f64)?;
            if x < 0.0 || x.fract() != 0.0 || x > max.0 as f64 {
                return Err(SearchError::NotACount {
                    key,
                    value: x,
                    max: max.1.to_string(),
                });
            }
            Ok(x as usize)
        };
    let context = (
        c.n_positions + 1,
        &*format!("n_positions + 1 ({})", c.n_positions + 1),
    );
    // HF's top_k 0 means no top-k filter; genai's top_k counts tokens, so all colours.
    let vocab = (u32::MAX as usize, "2^32 - 1");
    let do_sample = match g.get("do_sample") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(v) => {
            return Err(SearchError::NotABool {
                key: "do_sample",
                value: v.to_string(),
            })
        }
    };
    let max_length = match g.get("max_length") {
        None | Some(Value::Null) => c.n_positions + 1,
        Some(_) => count("max_length", c.n_positions + 1, context)?,
    };
    Ok(json!({
        "do_sample": do_sample,
        "top_k": match count("top_k", 50, vocab)? {
            0 => c.lm_vocab(),
            k => k.min(c.lm_vocab()),
        },
        "top_p": num("top_p", 1.0)?,
        "temperature": num("temperature", 1.0)?,
        "repetition_penalty": num("repetition_penalty", 1.0)?,
        "num_beams": count("num_beams", 1, (64, "64"))?.max(1),
        "num_return_sequences": 1,
        "min_length": 0,
        "max_length": max_length,
        "early_stopping": true
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Variant;

    fn small() -> ImageGptConfig {
        Variant::Small.config()
    }

    #[test]
    fn model_section_follows_the_config() {
        let v = genai_config(&small(), None, true).expect("config");
        let m = &v["model"];
        assert_eq!(m["vocab_size"], 513);
        assert_eq!(m["eos_token_id"], 512);
        assert_eq!(m["pad_token_id"], 513);
        assert_eq!(m["context_length"], 1025);
        assert_eq!(m["decoder"]["head_size"], 64);
        assert_eq!(m["decoder"]["num_hidden_layers"], 24);
        // ONNX Runtime's thread count per machine, not genai's single thread.
        assert_eq!(m["decoder"]["session_options"]["intra_op_num_threads"], 0);
        assert_eq!(v["search"]["max_length"], 1025);
        assert_eq!(v["search"]["do_sample"], false);
        assert_eq!(v["search"]["past_present_share_buffer"], true);
    }

    #[test]
    fn search_takes_generation_defaults_and_names_bad_fields() {
        let g = json!({"do_sample": true, "top_k": 40, "temperature": 0.7, "max_length": 100});
        let v = genai_config(&small(), Some(&g), false).expect("config");
        assert_eq!(v["search"]["do_sample"], true);
        assert_eq!(v["search"]["top_k"], 40);
        assert_eq!(v["search"]["temperature"], 0.7);
        assert_eq!(v["search"]["max_length"], 100);
        assert_eq!(v["search"]["past_present_share_buffer"], false);
        let bad = json!({"top_k": "forty"});
        assert_eq!(
            genai_config(&small(), Some(&bad), false)
                .expect_err("refused")
                .to_string(),
            "`top_k` is \"forty\", expected a number"
        );
        let long = json!({"max_length": 5000});
        assert_eq!(
            genai_config(&small(), Some(&long), false)
                .expect_err("refused")
                .to_string(),
            "`max_length` is 5000, expected a whole number from 0 to n_positions + 1 (1025)"
        );
    }
}
