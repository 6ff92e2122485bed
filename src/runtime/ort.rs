//! ONNX Runtime through `ort` (load-dynamic). Placeholder: implemented by the runtime work.

use super::{Runtime, RuntimeError, RuntimeKind, RuntimeOptions};

/// Opens ONNX Runtime with the provider `kind` names.
pub fn open(kind: RuntimeKind, _opts: &RuntimeOptions) -> Result<Box<dyn Runtime>, RuntimeError> {
    Err(RuntimeError::Unavailable {
        runtime: kind.name().into(),
        reason: "not implemented yet".into(),
    })
}
