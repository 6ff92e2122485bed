//! The heads an export can produce: each is the trunk plus a tail ([`super::heads`]) and
//! optionally one weight of its own.

use crate::base::values::Choice;

/// Heads an export can produce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Head {
    /// `ImageGPTModel`: last_hidden_state (and optionally every hidden state).
    Base,
    /// `ImageGPTForCausalImageModeling`: next-token logits over the 512 colour clusters.
    CausalLm,
    /// `ImageGPTForImageClassification`: mean-pooled features through `score`.
    Classifier,
    /// The causal LM with a KV cache: `past_key_values` in, `present` out, one graph for the
    /// prompt and every generation step.
    Decoder,
}

impl Head {
    /// All heads, in a stable order.
    pub const ALL: [Head; 4] = [Head::Base, Head::CausalLm, Head::Classifier, Head::Decoder];

    /// The name used for files, metadata and reports (`causal-lm`).
    pub fn name(self) -> &'static str {
        match self {
            Head::Base => "base",
            Head::CausalLm => "causal-lm",
            Head::Classifier => "classifier",
            Head::Decoder => "decoder",
        }
    }

    /// Parses a head name.
    pub fn parse(name: &str) -> Option<Head> {
        <Head as Choice>::parse(name)
    }

    /// The weight this head adds to the trunk, if any.
    pub fn weight_name(self) -> Option<&'static str> {
        match self {
            Head::Base => None,
            Head::CausalLm | Head::Decoder => Some("lm_head.weight"),
            Head::Classifier => Some("score.weight"),
        }
    }

    /// Whether its logits are next-token logits (the LM head, with or without a cache).
    pub fn is_lm(self) -> bool {
        matches!(self, Head::CausalLm | Head::Decoder)
    }

    /// Heads `ckpt` has weights for (`base` always).
    pub fn available(ckpt: &crate::checkpoint::Checkpoint) -> Vec<Head> {
        Head::ALL
            .into_iter()
            .filter(|h| {
                h.weight_name()
                    .is_none_or(|w| ckpt.weights.get(w).is_some())
            })
            .collect()
    }
}

impl Choice for Head {
    const WHAT: &'static str = "head";

    fn all() -> Vec<Self> {
        Head::ALL.to_vec()
    }

    fn name(self) -> &'static str {
        Head::name(self)
    }
}
