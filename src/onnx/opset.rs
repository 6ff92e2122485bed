//! The default-domain opsets igpt-onnx emits and the IR version each came with (a leaf: the
//! ops' forms per opset are in `forms.rs`).
//!
//! Spec: ONNX's release table (`docs/Versioning.md`, `onnx.helper.VERSION_TABLE`).

/// The opset a builder emits unless told otherwise: ONNX 1.12's, which every profile imports by
/// default (the committed graphs are this opset).
pub const DEFAULT_OPSET: i64 = 17;

/// The newest default-domain opset igpt-onnx emits: the graphs are checked at it in ONNX
/// Runtime and tract (tests/it/matrix.rs).
pub const NEWEST_OPSET: i64 = 21;

/// The IR version of the ONNX release that introduced each opset (ONNX `docs/Versioning.md`,
/// `onnx.helper.VERSION_TABLE`): `(first opset, IR version)`, in opset order. A model declares
/// the IR version its opset came with, so a runtime that knows the opset also reads the file.
const IR_VERSIONS: &[(i64, i64)] = &[
    (7, 3),   // ONNX 1.2
    (9, 4),   // ONNX 1.4
    (10, 5),  // ONNX 1.5
    (11, 6),  // ONNX 1.6
    (12, 7),  // ONNX 1.7 (opsets 12-14: ONNX 1.7-1.9)
    (15, 8),  // ONNX 1.10 (opsets 15-18: ONNX 1.10-1.13)
    (19, 9),  // ONNX 1.14 (opsets 19-20)
    (21, 10), // ONNX 1.16 (opsets 21-22)
    (23, 11), // ONNX 1.18
    (24, 12), // ONNX 1.19
    (25, 13), // ONNX 1.20 (opsets 25-27)
];

/// The IR version a model importing default-domain `opset` declares (`None` before opset 7,
/// which igpt-onnx never emits).
pub fn ir_version(opset: i64) -> Option<i64> {
    IR_VERSIONS
        .iter()
        .rev()
        .find(|(first, _)| *first <= opset)
        .map(|&(_, ir)| ir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ir_version_follows_the_opset() {
        let table = [
            (7, 3),
            (8, 3),
            (9, 4),
            (10, 5),
            (11, 6),
            (13, 7),
            (14, 7),
            (15, 8),
            (17, 8),
            (18, 8),
            (19, 9),
            (21, 10),
            (22, 10),
            (23, 11),
        ];
        for (opset, ir) in table {
            assert_eq!(ir_version(opset), Some(ir), "opset {opset}");
        }
        assert_eq!(ir_version(6), None);
        assert!(ir_version(NEWEST_OPSET).is_some());
    }
}
