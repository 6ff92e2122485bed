//! The graphs' I/O contract, in one place for the emitters that declare it and for every
//! reader (runtimes, generate, verify, packages): input and output names as Hugging Face /
//! optimum name them, the symbolic dims, and the decoder's cache — `past_key_values.{i}.key`
//! / `.value` in, `present.{i}.key` / `.value` out, BNSH `[batch, n_head, past, head_dim]` —
//! described by [`DecoderIo`], which builds those names and parses them back from a graph.

use crate::base::{DataType, DimSpec, IoSpec, Tensor};
use crate::onnx::Dim;

/// Names of the graph's symbolic dimensions.
pub const BATCH: &str = "batch";
pub const SEQUENCE: &str = "sequence";
/// The decoder's cache length before this step.
pub const PAST_SEQUENCE: &str = "past_sequence";
/// The decoder's mask and present length: written as the sum, so runtimes that reason about
/// symbols (tract) see it is the past plus this step, not a fresh unknown.
pub const TOTAL_SEQUENCE: &str = "past_sequence + sequence";

/// Token ids, int64 `[batch, sequence]`.
pub const INPUT_IDS: &str = "input_ids";
/// 1 for a token, 0 for padding, int64 `[batch, sequence]` (decoder: `[batch, past + sequence]`).
pub const ATTENTION_MASK: &str = "attention_mask";
/// The decoder's positions, int64 `[batch, sequence]`.
pub const POSITION_IDS: &str = "position_ids";
/// The language model's and the classifier's output.
pub const LOGITS: &str = "logits";
/// The base head's output.
pub const LAST_HIDDEN_STATE: &str = "last_hidden_state";

/// The base head's `hidden_states.{i}` output.
pub fn hidden_state(i: usize) -> String {
    format!("hidden_states.{i}")
}

const PAST: &str = "past_key_values.";
const PRESENT: &str = "present.";

/// How wide the language-model logits are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogitsWidth {
    /// The 512 colour clusters, as the reference's `lm_head`.
    #[default]
    Colours,
    /// The whole vocabulary (`vocab_size`, 513): the colour logits and a start-token column at
    /// float32 min, which softmax maps to 0 and argmax never picks. onnxruntime-genai needs it:
    /// it takes the logits' width as `vocab_size`, and its `eos_token_id` must lie inside.
    Vocabulary,
}

/// How a decoder's cache goes from one step to the next: part of the decoder contract, recorded
/// in the export card (`igpt_onnx.cache`) by the emitter that chose it, read by the runtimes and
/// the onnxruntime-genai packager.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// Each step's `present.*` is the past with this step's positions appended; the caller
    /// feeds it back as the next `past_key_values.*`. Every runtime steps this way.
    #[default]
    Concat,
    /// The attention also takes a past buffer longer than the past (the mask says how much is
    /// filled) and writes this step's positions into it: one buffer per layer and key/value,
    /// bound as both past and present, is written in place (onnxruntime-genai's
    /// `past_present_share_buffer`). Such a graph still steps by concatenation where a runtime
    /// cannot share the buffer.
    Shared,
}

impl CacheMode {
    /// Its name in the export card.
    pub fn name(self) -> &'static str {
        match self {
            CacheMode::Concat => "concat",
            CacheMode::Shared => "shared",
        }
    }

    /// The mode named `name`.
    pub fn parse(name: &str) -> Option<CacheMode> {
        [CacheMode::Concat, CacheMode::Shared]
            .into_iter()
            .find(|m| m.name() == name)
    }
}

/// One half of a layer's cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kv {
    Key,
    Value,
}

impl Kv {
    fn name(self) -> &'static str {
        match self {
            Kv::Key => "key",
            Kv::Value => "value",
        }
    }
}

/// `past_key_values.{layer}.key|value`.
pub fn past_name(layer: usize, kv: Kv) -> String {
    format!("{PAST}{layer}.{}", kv.name())
}

/// `present.{layer}.key|value`.
pub fn present_name(layer: usize, kv: Kv) -> String {
    format!("{PRESENT}{layer}.{}", kv.name())
}

/// The cache inputs' names with `%d` for the layer (onnxruntime-genai's name patterns).
pub fn past_name_pattern(kv: Kv) -> String {
    format!("{PAST}%d.{}", kv.name())
}

/// The cache outputs' names with `%d` for the layer.
pub fn present_name_pattern(kv: Kv) -> String {
    format!("{PRESENT}%d.{}", kv.name())
}

/// Whether `name` is a cache input.
pub fn is_past(name: &str) -> bool {
    name.starts_with(PAST)
}

/// Whether `name` is a cache output.
pub fn is_present(name: &str) -> bool {
    name.starts_with(PRESENT)
}

/// `(layer, key or value)` of a cache input's name.
fn parse_past(name: &str) -> Option<(usize, Kv)> {
    let (layer, kv) = name.strip_prefix(PAST)?.split_once('.')?;
    let kv = match kv {
        "key" => Kv::Key,
        "value" => Kv::Value,
        _ => return None,
    };
    Some((layer.parse().ok()?, kv))
}

/// A graph that breaks the decoder contract, naming the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecoderIoError {
    #[error("it has no past_key_values inputs: not a decoder (export one with --head decoder)")]
    NotADecoder,
    #[error("input `{0}` is not named past_key_values.{{layer}}.key|value")]
    BadName(String),
    #[error("layer {layer} has no `{name}` input")]
    MissingLayer { layer: usize, name: String },
    #[error("`{name}` is {found}, expected [batch, n_head, past_sequence, head_dim] with fixed heads and head size{like}")]
    BadDims {
        name: String,
        found: String,
        like: String,
    },
    #[error("`{name}` is {found}, but `{first}` is {expected}: every cache input has one type")]
    MixedTypes {
        name: String,
        found: DataType,
        first: String,
        expected: DataType,
    },
}

/// The decoder's cache as a graph declares it: `n_layer` key/value pairs of
/// `[batch, n_head, past_sequence, head_dim]` in one element type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecoderIo {
    pub n_layer: usize,
    pub n_head: usize,
    pub head_dim: usize,
    /// The caches' element type (float32, or float16 for a float16 graph).
    pub dtype: DataType,
    /// How the cache goes from step to step.
    pub cache: CacheMode,
}

impl DecoderIo {
    /// Cache input names in the graph's order: each layer's key, then its value.
    pub fn past_names(&self) -> Vec<String> {
        self.pairs(past_name)
    }

    /// Cache output names, in the same order.
    pub fn present_names(&self) -> Vec<String> {
        self.pairs(present_name)
    }

    fn pairs(&self, name: fn(usize, Kv) -> String) -> Vec<String> {
        (0..self.n_layer)
            .flat_map(|i| [name(i, Kv::Key), name(i, Kv::Value)])
            .collect()
    }

    /// The cache dims to declare: `[batch, n_head, length, head_dim]` (`length` is
    /// [`PAST_SEQUENCE`] for the inputs, [`TOTAL_SEQUENCE`] for the outputs).
    pub fn cache_dims(&self, length: &'static str) -> [Dim; 4] {
        [
            Dim::Symbol(BATCH),
            Dim::Fixed(self.n_head),
            Dim::Symbol(length),
            Dim::Fixed(self.head_dim),
        ]
    }

    /// An empty past (length 0) for `batch` rows: what the first pass is fed.
    pub fn empty_cache(&self, batch: usize) -> Vec<Tensor> {
        let shape = [batch, self.n_head, 0, self.head_dim];
        self.past_names()
            .iter()
            .map(|_| Tensor::zeros(self.dtype, &shape))
            .collect()
    }

    /// Reads the contract back from a graph's inputs: every `past_key_values.*` input, layers
    /// `0..n` each with a key and a value, of one type, with fixed heads and head size; `cache`
    /// is the export card's mode (the inputs look the same in both).
    pub fn from_inputs(inputs: &[IoSpec], cache: CacheMode) -> Result<DecoderIo, DecoderIoError> {
        let past: Vec<&IoSpec> = inputs.iter().filter(|i| is_past(&i.name)).collect();
        let Some(first) = past.first() else {
            return Err(DecoderIoError::NotADecoder);
        };
        let fixed = |spec: &IoSpec| match spec.dims.as_slice() {
            [_, DimSpec::Fixed(h), _, DimSpec::Fixed(d)] => Some((*h, *d)),
            _ => None,
        };
        let describe = |spec: &IoSpec| {
            let dims: Vec<String> = spec.dims.iter().map(ToString::to_string).collect();
            format!("[{}]", dims.join(", "))
        };
        let (n_head, head_dim) = fixed(first).ok_or_else(|| DecoderIoError::BadDims {
            name: first.name.clone(),
            found: describe(first),
            like: String::new(),
        })?;
        let mut layers = 0;
        for spec in &past {
            let (layer, _) =
                parse_past(&spec.name).ok_or_else(|| DecoderIoError::BadName(spec.name.clone()))?;
            if fixed(spec) != Some((n_head, head_dim)) {
                return Err(DecoderIoError::BadDims {
                    name: spec.name.clone(),
                    found: describe(spec),
                    like: format!(" like `{}`", first.name),
                });
            }
            if spec.dtype != first.dtype {
                return Err(DecoderIoError::MixedTypes {
                    name: spec.name.clone(),
                    found: spec.dtype,
                    first: first.name.clone(),
                    expected: first.dtype,
                });
            }
            layers = layers.max(layer + 1);
        }
        let io = DecoderIo {
            n_layer: layers,
            n_head,
            head_dim,
            dtype: first.dtype,
            cache,
        };
        for (i, name) in io.past_names().into_iter().enumerate() {
            if !past.iter().any(|p| p.name == name) {
                return Err(DecoderIoError::MissingLayer { layer: i / 2, name });
            }
        }
        Ok(io)
    }
}

/// The output a decoder step gives for the past input `past` (`past_key_values.3.key` →
/// `present.3.key`).
pub fn present_for(past: &str) -> Option<String> {
    parse_past(past).map(|(layer, kv)| present_name(layer, kv))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, dtype: DataType, heads: usize) -> IoSpec {
        IoSpec {
            name: name.into(),
            dtype,
            dims: vec![
                DimSpec::Symbol(BATCH.into()),
                DimSpec::Fixed(heads),
                DimSpec::Symbol(PAST_SEQUENCE.into()),
                DimSpec::Fixed(8),
            ],
        }
    }

    #[test]
    fn names_round_trip_through_a_graphs_inputs() {
        let io = DecoderIo {
            n_layer: 2,
            n_head: 4,
            head_dim: 8,
            dtype: DataType::Float16,
            cache: CacheMode::Shared,
        };
        let mut inputs = vec![spec(INPUT_IDS, DataType::Int64, 0)];
        inputs.extend(
            io.past_names()
                .iter()
                .map(|n| spec(n, DataType::Float16, 4)),
        );
        assert_eq!(
            DecoderIo::from_inputs(&inputs, CacheMode::Shared),
            Ok(io.clone())
        );
        assert_eq!(
            io.present_names(),
            [
                "present.0.key",
                "present.0.value",
                "present.1.key",
                "present.1.value"
            ]
        );
        assert_eq!(
            present_for("past_key_values.1.value").as_deref(),
            Some("present.1.value")
        );
        let cache = io.empty_cache(3);
        assert_eq!(cache.len(), 4);
        assert_eq!(cache[0].shape(), &[3, 4, 0, 8]);
        assert_eq!(cache[0].dtype(), DataType::Float16);
    }

    #[test]
    fn broken_contracts_name_the_input() {
        let ok = |n: &str| spec(n, DataType::Float32, 4);
        assert_eq!(
            DecoderIo::from_inputs(&[ok(INPUT_IDS)], CacheMode::Concat),
            Err(DecoderIoError::NotADecoder)
        );
        let missing = [ok("past_key_values.0.key"), ok("past_key_values.1.key")];
        assert_eq!(
            DecoderIo::from_inputs(&missing, CacheMode::Concat)
                .expect_err("no value")
                .to_string(),
            "layer 0 has no `past_key_values.0.value` input"
        );
        let heads = [
            ok("past_key_values.0.key"),
            spec("past_key_values.0.value", DataType::Float32, 3),
        ];
        assert_eq!(
            DecoderIo::from_inputs(&heads, CacheMode::Concat).expect_err("heads").to_string(),
            "`past_key_values.0.value` is [batch, 3, past_sequence, 8], expected [batch, n_head, past_sequence, head_dim] with fixed heads and head size like `past_key_values.0.key`"
        );
        let name = [ok("past_key_values.x.key")];
        assert_eq!(
            DecoderIo::from_inputs(&name, CacheMode::Concat)
                .expect_err("name")
                .to_string(),
            "input `past_key_values.x.key` is not named past_key_values.{layer}.key|value"
        );
    }
}
