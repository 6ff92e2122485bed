//! What either torch container yields: the state dict's tensors, where each storage's bytes
//! lie, and why a file could not be read.

use std::collections::HashMap;

use super::pickle::{PickleError, TensorRef};

/// Where a storage's bytes lie in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Storage {
    pub offset: u64,
    pub bytes: u64,
}

/// What a container holds: the state dict's tensors and its storages by key.
#[derive(Debug)]
pub struct Container {
    pub tensors: Vec<(String, TensorRef)>,
    pub storages: HashMap<String, Storage>,
}

/// Why a torch file was not read: refused content (what was refused), or a malformed file
/// (what is wrong with it, naming the record or tensor).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("refusing {0}")]
    Refused(String),
    #[error("{0}")]
    Corrupt(String),
}

impl From<Malformed> for Problem {
    fn from(m: Malformed) -> Self {
        Problem::Corrupt(m.0)
    }
}

/// What is malformed in a container's bytes (the zip directory, a view), in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Malformed(pub String);

impl From<String> for Malformed {
    fn from(s: String) -> Self {
        Malformed(s)
    }
}

impl From<&str> for Malformed {
    fn from(s: &str) -> Self {
        Malformed(s.to_string())
    }
}

/// A pickle refusal stays a refusal; anything else is a malformed `what`.
pub(crate) fn pickle_problem(what: &str, e: PickleError) -> Problem {
    match e {
        PickleError::Refused(refused) => Problem::Refused(refused),
        other => Problem::Corrupt(format!("{what}: {other}")),
    }
}
