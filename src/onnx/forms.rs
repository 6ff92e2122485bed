//! What changes with the default-domain opset a graph imports: the first opset of each op form
//! this project emits ([`Op::since`]), and the ops whose signature changed between opsets,
//! emitted by [`GraphBuilder`] in the target opset's form.
//!
//! Spec: the ONNX operator changelog (<https://onnx.ai/onnx/operators/>, each op's
//! `since_version`).

use super::builder::{attr_float, attr_int, attr_ints, GraphBuilder, Op};

impl Op {
    /// The lowest default-domain opset at which this project can emit the op in some form
    /// (the form a lower opset needs is [`GraphBuilder`]'s choice). Contrib ops live in their
    /// own domain and ask nothing of it; `SimplifiedLayerNormalization`, ONNX Runtime's own op
    /// in the default domain, is registered at version 1.
    pub fn since(self) -> i64 {
        match self {
            // Multidirectional broadcasting (before 7: a `broadcast` attribute).
            Op::Add | Op::Sub | Op::Mul | Op::Div => 7,
            // `to` as an integer (Cast-1 took a string), no `consumed_inputs`.
            Op::Cast | Op::Sigmoid | Op::Sqrt => 6,
            // `axis` required.
            Op::Concat => 4,
            // `shape` as an input.
            Op::Reshape => 5,
            Op::Expand => 8,
            Op::Where => 9,
            // Starts and ends as inputs: the sequence length is known at run time only.
            Op::Slice => 10,
            Op::MatMulInteger => 10,
            Op::DynamicQuantizeLinear => 11,
            // Per-tensor from 10; the weights' per-column scales (`axis`) from 13.
            Op::QuantizeLinear => 10,
            Op::DequantizeLinear => 13,
            Op::CumSum => 11,
            // int64 inputs.
            Op::Min | Op::Max => 12,
            // `pads` and the value as attributes before 11 (Pad-2).
            Op::Pad => 2,
            // `split` as an attribute before 13 (Split-2).
            Op::Split => 2,
            Op::Gather
            | Op::Identity
            | Op::MatMul
            | Op::ReduceMean
            | Op::Shape
            | Op::Softmax
            | Op::Transpose
            | Op::Unsqueeze => 1,
            Op::SimplifiedLayerNormalization
            | Op::SkipSimplifiedLayerNormalization
            | Op::QuickGelu
            | Op::MultiHeadAttention
            | Op::GroupQueryAttention
            | Op::MatMulNBits
            | Op::DynamicQuantizeMatMul => 1,
        }
    }
}

/// A constant operand: its initializer's name and values. From the opset where the operand
/// became an input it is that initializer; before, the values are the op's attribute.
pub type Operand<'a, T> = (&'a str, &'a [T]);

impl GraphBuilder<'_> {
    /// `Split` of `x` along `axis` into pieces of `sizes` (`outputs`, one per size): the sizes
    /// as an input from opset 13, as the `split` attribute before.
    pub fn split(
        &mut self,
        name: &str,
        x: &str,
        sizes: Operand<'_, i64>,
        axis: i64,
        outputs: &[String],
    ) {
        let axis = attr_int("axis", axis);
        if self.opset >= 13 {
            let sizes = self.const_i64(sizes.0, &[sizes.1.len()], sizes.1);
            self.op_multi(Op::Split, name, &[x, &sizes], outputs, vec![axis]);
        } else {
            let split = attr_ints("split", sizes.1);
            self.op_multi(Op::Split, name, &[x], outputs, vec![axis, split]);
        }
    }

    /// `Unsqueeze` of `x` at `axes` (non-negative): an input from opset 13, the attribute before.
    pub fn unsqueeze(
        &mut self,
        name: impl Into<String>,
        x: &str,
        axes: Operand<'_, i64>,
    ) -> String {
        if self.opset >= 13 {
            let axes = self.const_i64(axes.0, &[axes.1.len()], axes.1);
            self.op(Op::Unsqueeze, name, &[x, &axes], vec![])
        } else {
            self.op(Op::Unsqueeze, name, &[x], vec![attr_ints("axes", axes.1)])
        }
    }

    /// `ReduceMean` of a rank-`rank` `x` over `axes` (negative ones count from the end): the
    /// axes as an input from opset 18, the attribute before; a negative axis from opset 11,
    /// counted out before.
    pub fn reduce_mean(
        &mut self,
        name: impl Into<String>,
        x: &str,
        axes: Operand<'_, i64>,
        keepdims: bool,
        rank: usize,
    ) -> String {
        let keep = attr_int("keepdims", i64::from(keepdims));
        if self.opset >= 18 {
            let axes = self.const_i64(axes.0, &[axes.1.len()], axes.1);
            return self.op(Op::ReduceMean, name, &[x, &axes], vec![keep]);
        }
        let axes = self.counted(axes.1, rank);
        self.op(
            Op::ReduceMean,
            name,
            &[x],
            vec![attr_ints("axes", &axes), keep],
        )
    }

    /// `Softmax` over the last axis of a rank-`rank` `x`. Before opset 13 Softmax flattens the
    /// axes from `axis` on into one, which for the last axis is the same thing; `axis` -1 from
    /// opset 11, `rank - 1` before.
    pub fn softmax_last(&mut self, name: impl Into<String>, x: &str, rank: usize) -> String {
        let axis = self.counted(&[-1], rank)[0];
        self.op(Op::Softmax, name, &[x], vec![attr_int("axis", axis)])
    }

    /// `Pad` with a constant `value` by `pads` (begins for every axis, then ends): both as
    /// inputs from opset 11, the `pads` and `value` attributes before.
    pub fn pad_constant(
        &mut self,
        name: impl Into<String>,
        x: &str,
        pads: Operand<'_, i64>,
        value: (&str, f32),
    ) -> String {
        if self.opset >= 11 {
            let pads = self.const_i64(pads.0, &[pads.1.len()], pads.1);
            let fill = self.const_f32(value.0, &[], &[value.1]);
            return self.op(Op::Pad, name, &[x, &pads, &fill], vec![]);
        }
        let attrs = vec![attr_ints("pads", pads.1), attr_float("value", value.1)];
        self.op(Op::Pad, name, &[x], attrs)
    }

    /// `axes` as the target opset takes them: as given from opset 11 (negative ones count from
    /// the end), counted out against `rank` before.
    fn counted(&self, axes: &[i64], rank: usize) -> Vec<i64> {
        if self.opset >= 11 {
            return axes.to_vec();
        }
        let rank = rank as i64;
        axes.iter()
            .map(|&a| if a < 0 { a + rank } else { a })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::opset::DEFAULT_OPSET;

    #[test]
    fn changed_signatures_take_the_target_opsets_form() {
        let emit = |opset: i64| {
            let mut g = GraphBuilder::with_opset(opset);
            g.reduce_mean("mean", "x", ("const.axes_last", &[-1]), true, 3);
            g.softmax_last("probs", "x", 4);
            g.unsqueeze("u", "x", ("const.axes_1_2", &[1, 2]));
            g
        };
        let old = emit(10);
        let attr = |g: &GraphBuilder<'_>, node: usize, name: &str| {
            g.nodes[node]
                .attribute
                .iter()
                .find(|a| a.name == name)
                .map(|a| (a.ints.clone(), a.i))
        };
        assert_eq!(attr(&old, 0, "axes"), Some((vec![2], None)));
        assert_eq!(attr(&old, 1, "axis").and_then(|a| a.1), Some(3));
        assert_eq!(attr(&old, 2, "axes"), Some((vec![1, 2], None)));
        assert!(old.initializers.is_empty());
        let default = emit(DEFAULT_OPSET);
        assert_eq!(attr(&default, 0, "axes"), Some((vec![-1], None)));
        assert_eq!(attr(&default, 1, "axis").and_then(|a| a.1), Some(-1));
        assert_eq!(default.nodes[2].input, ["x", "const.axes_1_2"]);
        let new = emit(18);
        assert_eq!(new.nodes[0].input, ["x", "const.axes_last"]);
        assert_eq!(attr(&new, 0, "axes"), None);
    }
}
