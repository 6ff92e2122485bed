//! tract (pure Rust). Placeholder: implemented by the runtime work.

use std::path::Path;

use super::{LoadedModel, Runtime, RuntimeError, RuntimeKind};

/// The tract runtime.
pub struct Tract;

impl Runtime for Tract {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Tract
    }
    fn load(&self, model: &Path) -> Result<Box<dyn LoadedModel>, RuntimeError> {
        Err(RuntimeError::Load {
            runtime: "tract".into(),
            path: model.display().to_string(),
            reason: "not implemented yet".into(),
        })
    }
}
