//! The export card: what `export` records in a graph's `metadata_props` (ONNX
//! `ModelProto.metadata_props`) and what every other command reads back — head, profile,
//! precision, the checkpoint's config and labels, the logits' width and provenance. One type
//! writes it ([`ExportCard::to_metadata`]) and reads it ([`ExportCard::from_metadata`]), so the
//! two directions cannot drift, and a missing or wrong entry is the same one-line error in
//! every command, naming the entry.

use std::collections::BTreeMap;
use std::path::Path;

use super::calibration::CalibrationRecord;
use super::head::Head;
use super::io::{CacheMode, LogitsWidth};
use super::keep::KeepFloat32;
use super::profile::{Precision, Profile};
use crate::base::values::Choice;
use crate::config::{ConfigError, ImageGptConfig, RawConfig};

/// Every entry's key starts with this.
pub const PREFIX: &str = "igpt_onnx.";

/// Where the weights came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Provenance {
    /// igpt-onnx's version.
    pub version: String,
    /// `{"<file>": "<sha256>", …}` over the weight files.
    pub source_sha256: String,
    /// `safetensors` or `pytorch`.
    pub source_format: String,
    /// The hub repository and commit the weights were resolved from.
    pub hub: Option<(String, String)>,
    /// Checksums of the files carried beside the graphs (`generation_config.json`, …).
    pub carried_sha256: Option<String>,
}

/// What an exported graph is.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportCard {
    pub head: Head,
    pub profile: Profile,
    pub precision: Precision,
    /// The matrices kept float32 in a reduced precision (`--keep-float32`).
    pub keep_float32: KeepFloat32,
    /// The checkpoint's config, labels included.
    pub config: ImageGptConfig,
    /// Whether the base head exposes `hidden_states.*`.
    pub hidden_states: bool,
    /// The LM heads' logits width.
    pub logits: LogitsWidth,
    /// How the decoder passes its cache (concatenation for the other heads).
    pub cache: CacheMode,
    pub provenance: Provenance,
    /// Where a calibrated precision's activation ranges came from (static int8).
    pub calibration: Option<CalibrationRecord>,
}

/// An entry of the card that is missing or wrong.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("metadata {PREFIX}{key}: missing (not a complete igpt-onnx export card)")]
    Missing { key: &'static str },
    #[error("metadata {PREFIX}{key}: {problem}")]
    Invalid { key: &'static str, problem: String },
    #[error("metadata {PREFIX}config: {0}")]
    Config(#[source] ConfigError),
    /// The graph file could not be read at all.
    #[error(transparent)]
    Graph(#[from] crate::onnx::inspect::InspectError),
}

/// A card error with the graph it came from: `<path>: metadata igpt_onnx.head: …`.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct GraphCardError {
    pub path: String,
    #[source]
    pub source: CardError,
}

impl ExportCard {
    /// The entries, sorted by key. Entries with their default value are left out where older
    /// exports never wrote them (precision, logits width, carried files), so graphs stay
    /// byte-identical across versions of the card.
    pub fn to_metadata(&self) -> Vec<(String, String)> {
        let config = serde_json::to_string(&self.config).unwrap_or_default();
        let mut entries: Vec<(&str, String)> = vec![
            ("config", config),
            ("head", self.head.name().to_string()),
            (
                "hidden_states",
                (self.hidden_states && self.head == Head::Base).to_string(),
            ),
            ("profile", self.profile.name().to_string()),
            ("source_format", self.provenance.source_format.clone()),
            ("source_sha256", self.provenance.source_sha256.clone()),
            ("version", self.provenance.version.clone()),
        ];
        if let Some((repo, commit)) = &self.provenance.hub {
            entries.push(("source_hub_id", repo.clone()));
            entries.push(("source_hub_commit", commit.clone()));
        }
        if let Some(carried) = &self.provenance.carried_sha256 {
            entries.push(("carried_sha256", carried.clone()));
        }
        if self.precision != Precision::Float32 {
            entries.push(("precision", self.precision.name().to_string()));
        }
        // Written only when something is kept: graphs without a list stay byte-identical.
        if !self.keep_float32.is_empty() {
            entries.push(("keep_float32", self.keep_float32.to_list()));
        }
        if self.head == Head::Classifier {
            entries.push(("id2label", self.config.id2label_json()));
        }
        // Concatenation, the mode every earlier decoder had, goes unwritten.
        if self.cache != CacheMode::Concat && self.head == Head::Decoder {
            entries.push(("cache", self.cache.name().to_string()));
        }
        if self.logits == LogitsWidth::Vocabulary && self.head.is_lm() {
            entries.push(("logits_width", self.config.vocab_size.to_string()));
        }
        if let Some(c) = &self.calibration {
            entries.push(("calibration", serde_json::to_string(c).unwrap_or_default()));
        }
        let mut out: Vec<(String, String)> = entries
            .into_iter()
            .map(|(k, v)| (format!("{PREFIX}{k}"), v))
            .collect();
        out.sort();
        out
    }

    /// The card in `meta`; `None` when the graph carries no `igpt_onnx.*` entry at all (a
    /// graph another tool made), an error naming the entry when it carries a partial or wrong one.
    pub fn from_metadata(meta: &BTreeMap<String, String>) -> Result<Option<ExportCard>, CardError> {
        if !meta.keys().any(|k| k.starts_with(PREFIX)) {
            return Ok(None);
        }
        let get = |key: &'static str| meta.get(&format!("{PREFIX}{key}"));
        let need = |key: &'static str| get(key).ok_or(CardError::Missing { key });
        let invalid = |key: &'static str, problem: String| CardError::Invalid { key, problem };

        let mut raw: RawConfig = serde_json::from_str(need("config")?)
            .map_err(|e| invalid("config", format!("not a config JSON object ({e})")))?;
        if let Some(labels) = get("id2label") {
            let map = serde_json::from_str(labels)
                .map_err(|e| invalid("id2label", format!("not a JSON object ({e})")))?;
            raw.id2label = Some(map);
        }
        let config = ImageGptConfig::from_raw(&raw).map_err(CardError::Config)?;
        let head = need("head")?;
        let head = <Head as Choice>::parse(head)
            .ok_or_else(|| invalid("head", format!("`{head}` is none of {}", Head::expected())))?;
        let profile = need("profile")?;
        let profile = <Profile as Choice>::parse(profile).ok_or_else(|| {
            invalid(
                "profile",
                format!("`{profile}` is none of {}", Profile::expected()),
            )
        })?;
        let precision = match get("precision") {
            None => Precision::Float32,
            Some(p) => <Precision as Choice>::parse(p).ok_or_else(|| {
                invalid(
                    "precision",
                    format!("`{p}` is none of {}", Precision::expected()),
                )
            })?,
        };
        let keep_float32 = match get("keep_float32") {
            None => KeepFloat32::default(),
            Some(list) => {
                KeepFloat32::parse_list(list).map_err(|e| invalid("keep_float32", e.to_string()))?
            }
        };
        let hidden_states = match get("hidden_states").map(String::as_str) {
            None | Some("false") => false,
            Some("true") => true,
            Some(other) => {
                return Err(invalid(
                    "hidden_states",
                    format!("`{other}` is not true or false"),
                ))
            }
        };
        let logits = match get("logits_width") {
            None => LogitsWidth::Colours,
            Some(w) if w.parse::<usize>().ok() == Some(config.vocab_size) => {
                LogitsWidth::Vocabulary
            }
            Some(w) if w.parse::<usize>().ok() == Some(config.lm_vocab()) => LogitsWidth::Colours,
            Some(w) => {
                return Err(invalid(
                    "logits_width",
                    format!(
                        "`{w}` is neither the colours ({}) nor the vocabulary ({})",
                        config.lm_vocab(),
                        config.vocab_size
                    ),
                ))
            }
        };
        let cache = match get("cache") {
            None => CacheMode::Concat,
            Some(m) => CacheMode::parse(m)
                .ok_or_else(|| invalid("cache", format!("`{m}` is neither concat nor shared")))?,
        };
        let calibration = get("calibration")
            .map(|c| {
                serde_json::from_str(c)
                    .map_err(|e| invalid("calibration", format!("not a calibration record ({e})")))
            })
            .transpose()?;
        let text = |key: &'static str| get(key).cloned().unwrap_or_default();
        let provenance = Provenance {
            version: need("version")?.clone(),
            source_sha256: text("source_sha256"),
            source_format: text("source_format"),
            hub: get("source_hub_id")
                .cloned()
                .zip(get("source_hub_commit").cloned()),
            carried_sha256: get("carried_sha256").cloned(),
        };
        Ok(Some(ExportCard {
            head,
            profile,
            precision,
            keep_float32,
            config,
            hidden_states,
            logits,
            cache,
            provenance,
            calibration,
        }))
    }

    /// The card of the graph at `path` (`None` for a graph another tool made).
    pub fn read(path: &Path) -> Result<Option<ExportCard>, GraphCardError> {
        let wrap = |source| GraphCardError {
            path: path.display().to_string(),
            source,
        };
        let info = crate::onnx::inspect::inspect(path).map_err(|e| wrap(e.into()))?;
        ExportCard::from_metadata(&info.metadata).map_err(wrap)
    }

    /// The card of the graph at `path`, which must have one (commands that need the export's
    /// config: generate, packaging).
    pub fn require(path: &Path) -> Result<ExportCard, GraphCardError> {
        ExportCard::read(path)?.ok_or_else(|| GraphCardError {
            path: path.display().to_string(),
            source: CardError::Missing { key: "head" },
        })
    }

    /// Logits per position of the LM heads (512, or 513 for onnxruntime-genai).
    pub fn logits_width(&self) -> usize {
        match self.logits {
            LogitsWidth::Colours => self.config.lm_vocab(),
            LogitsWidth::Vocabulary => self.config.vocab_size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn card(head: Head) -> ExportCard {
        let config = ImageGptConfig::from_raw(&RawConfig {
            n_embd: Some(32),
            n_layer: Some(2),
            n_head: Some(4),
            num_labels: Some(3),
            ..Default::default()
        })
        .expect("config");
        ExportCard {
            head,
            profile: Profile::Ort,
            precision: Precision::Int8,
            keep_float32: KeepFloat32::parse_list("h.0,h.*.mlp.c_proj").expect("patterns"),
            config,
            hidden_states: false,
            logits: LogitsWidth::Vocabulary,
            cache: Default::default(),
            provenance: Provenance {
                version: "0.1.0".into(),
                source_sha256: "{}".into(),
                source_format: "safetensors".into(),
                hub: Some(("openai/imagegpt-small".into(), "abc".into())),
                carried_sha256: None,
            },
            calibration: Some(CalibrationRecord {
                sha256: "ab".repeat(32),
                method: "percentile".into(),
                percentile: Some(99.99),
                examples: 2,
                tokens: 64,
            }),
        }
    }

    #[test]
    fn what_is_written_reads_back() {
        for head in Head::ALL {
            let c = card(head);
            let meta: BTreeMap<String, String> = c.to_metadata().into_iter().collect();
            let mut back = ExportCard::from_metadata(&meta)
                .expect("valid")
                .expect("present");
            if !head.is_lm() {
                // Only the LM heads record their width.
                back.logits = LogitsWidth::Vocabulary;
            }
            assert_eq!(back, c, "{head:?}");
        }
        assert!(ExportCard::from_metadata(&BTreeMap::new())
            .expect("no card")
            .is_none());
    }

    #[test]
    fn a_wrong_entry_is_named() {
        let mut meta: BTreeMap<String, String> =
            card(Head::Decoder).to_metadata().into_iter().collect();
        meta.insert("igpt_onnx.keep_float32".into(), "h.0,,h.1".into());
        assert_eq!(
            ExportCard::from_metadata(&meta)
                .expect_err("bad keep-list")
                .to_string(),
            "metadata igpt_onnx.keep_float32: keep-float32 pattern ``: empty (dot-separated names such as h.0, h.*.mlp.c_proj, h.3.attn or head; `*` is one whole segment)"
        );
        meta.remove("igpt_onnx.keep_float32");
        meta.insert("igpt_onnx.head".into(), "lm".into());
        assert_eq!(
            ExportCard::from_metadata(&meta)
                .expect_err("bad head")
                .to_string(),
            "metadata igpt_onnx.head: `lm` is none of base, causal-lm, classifier or decoder"
        );
        meta.remove("igpt_onnx.head");
        assert_eq!(
            ExportCard::from_metadata(&meta)
                .expect_err("no head")
                .to_string(),
            "metadata igpt_onnx.head: missing (not a complete igpt-onnx export card)"
        );
        meta.insert("igpt_onnx.config".into(), r#"{"vocab_size": 1}"#.into());
        assert_eq!(
            ExportCard::from_metadata(&meta)
                .expect_err("bad config")
                .to_string(),
            "metadata igpt_onnx.config: config field `vocab_size`: 1 leaves no colour tokens"
        );
    }
}
