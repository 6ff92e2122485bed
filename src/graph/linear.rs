//! The block matrices (attention and MLP Conv1D layers, HF `Conv1D`: `y = x @ W + b`, W
//! `[n_in, n_out]`) in the precision's form: a MatMul in the activations' type plus the bias, or
//! ONNX Runtime's `MatMulNBits` on quantised blocks; a matrix the keep-list names is a float32
//! MatMul in any precision (`Ctx::matrix_form`). A new matrix form adds its arm and its
//! weights' initializers here (their bytes come from a `TensorSource` in `quant.rs`).

use super::calibration::Range;
use super::ctx::{Ctx, MatrixInput};
use super::profile::MatMulForm;
use super::quant::{BlockPart, QuantBlocks, QuantColumns};
use crate::base::DataType;
use crate::onnx::builder::attr_int;
use crate::onnx::{Op, Scope};

/// HF Conv1D: `x @ W + b` with W stored `[in, out]`; in a block precision one `MatMulNBits`
/// over the weight quantised in blocks along `in` (stored `[out, blocks, block · bits / 8]`).
pub fn conv1d(cx: &mut Ctx<'_, '_>, s: &Scope, x: &str, n_in: usize, n_out: usize) -> String {
    let bias = |cx: &mut Ctx<'_, '_>| cx.weight(&s.name("bias"), &[n_out]);
    cx.matrices.push(MatrixInput {
        matrix: s.path().to_string(),
        input: x.to_string(),
        width: n_in,
    });
    let (form, dtype) = cx.matrix_form(s);
    match form {
        MatMulForm::Float => {
            // A matrix kept float32 in a float16 trunk is an island: its input is cast up and
            // its output back (both casts vanish where the types already agree).
            let act = cx.act();
            let x = cx.cast(&s.name("input.float32"), x, act, dtype);
            let weight = cx.weight_as(&s.name("weight"), &[n_in, n_out], dtype);
            let bias = cx.weight_as(&s.name("bias"), &[n_out], dtype);
            let mm =
                cx.g.op(Op::MatMul, s.name("matmul"), &[&x, &weight], vec![]);
            let sum = match dtype == act {
                true => s.path().to_string(),
                false => s.name("float32"),
            };
            let y = cx.g.op(Op::Add, sum, &[&mm, &bias], vec![]);
            cx.cast(s.path(), &y, dtype, act)
        }
        MatMulForm::Blocks {
            bits,
            block_size,
            accuracy_level,
        } => {
            let (q, scales) = block_weight(cx, &s.name("weight"), (n_in, n_out), bits, block_size);
            let bias = bias(cx);
            let attrs = vec![
                attr_int("K", n_in as i64),
                attr_int("N", n_out as i64),
                attr_int("bits", i64::from(bits)),
                attr_int("block_size", block_size as i64),
                attr_int("accuracy_level", accuracy_level),
            ];
            let inputs = [x, &q, &scales, "", "", &bias];
            cx.g.op(Op::MatMulNBits, s.path().to_string(), &inputs, attrs)
        }
        MatMulForm::Dynamic => {
            let (q, scales) = column_weight(cx, &s.name("weight"), (n_in, n_out));
            let bias = bias(cx);
            if cx.profile.contrib_opset.is_some() {
                // The bias as the op's fifth input: one kernel, no Add (96 fewer nodes in a
                // small decoder step, ~10 % of its time).
                let inputs = [x, &q, &scales, "", &bias];
                return cx.g.op(
                    Op::DynamicQuantizeMatMul,
                    s.path().to_string(),
                    &inputs,
                    vec![],
                );
            }
            // y = (x_q − x_zero) · w_q · x_scale · w_scale: ONNX Runtime fuses these four
            // into `DynamicQuantizeMatMul` (MatMulIntegerToFloat) itself.
            let xq = [s.name("x_q"), s.name("x_scale"), s.name("x_zero")];
            cx.g.op_multi(
                Op::DynamicQuantizeLinear,
                &s.name("quantize"),
                &[x],
                &xq,
                vec![],
            );
            let int = cx.g.op(
                Op::MatMulInteger,
                s.name("matmul_integer"),
                &[&xq[0], &q, &xq[2]],
                vec![],
            );
            let float = cx.cast(
                &s.name("matmul_float"),
                &int,
                DataType::Int32,
                DataType::Float32,
            );
            let scale =
                cx.g.op(Op::Mul, s.name("scale"), &[&xq[1], &scales], vec![]);
            let mm =
                cx.g.op(Op::Mul, s.name("matmul"), &[&float, &scale], vec![]);
            cx.g.op(Op::Add, s.path().to_string(), &[&mm, &bias], vec![])
        }
        MatMulForm::QuantDequant { activations } => {
            let x = quant_dequant(cx, s, x, activations);
            let (q, scales) = column_weight(cx, &s.name("weight"), (n_in, n_out));
            let zero = cx.g.const_8bit(
                &format!("{}.zero_point", s.name("weight")),
                DataType::Int8,
                &[n_out],
                &vec![0; n_out],
            );
            // Per output channel: axis 1 of the `[n_in, n_out]` weight.
            let w = cx.g.op(
                Op::DequantizeLinear,
                s.name("weight.dequantized"),
                &[&q, &scales, &zero],
                vec![attr_int("axis", 1)],
            );
            let bias = bias(cx);
            let mm = cx.g.op(Op::MatMul, s.name("matmul"), &[&x, &w], vec![]);
            cx.g.op(Op::Add, s.path().to_string(), &[&mm, &bias], vec![])
        }
    }
}

/// `x` through `QuantizeLinear` → `DequantizeLinear` with the scale and zero point of its
/// calibrated range in `dtype`. A matrix the calibration has no range for is noted in
/// `cx.uncalibrated` (the build then fails) and emitted with scale 1.
fn quant_dequant(cx: &mut Ctx<'_, '_>, s: &Scope, x: &str, dtype: DataType) -> String {
    let range = cx.calibration.and_then(|c| c.ranges.get(s.path()).copied());
    let range = range.unwrap_or_else(|| {
        cx.uncalibrated.push(s.path().to_string());
        Range { lo: 0.0, hi: 0.0 }
    });
    let p = range.quant_params(dtype);
    let scale = cx.g.const_f32(&s.name("input.scale"), &[], &[p.scale]);
    let zero =
        cx.g.const_8bit(&s.name("input.zero_point"), dtype, &[], &[p.zero_point]);
    let q = cx.g.op(
        Op::QuantizeLinear,
        s.name("input.quantized"),
        &[x, &scale, &zero],
        vec![],
    );
    cx.g.op(
        Op::DequantizeLinear,
        s.name("input.dequantized"),
        &[&q, &scale, &zero],
        vec![],
    )
}

/// A Conv1D weight `[n_in, n_out]` as `MatMulNBits` blocks of `bits`: the quantised matrix
/// `[n_out, blocks, block · bits / 8]` (uint8, default zero point) and its scales
/// `[n_out, blocks]`.
fn block_weight(
    cx: &mut Ctx<'_, '_>,
    name: &str,
    (n_in, n_out): (usize, usize),
    bits: u8,
    block: usize,
) -> (String, String) {
    let blocks = n_in.div_ceil(block);
    let part = |part| {
        Box::new(QuantBlocks {
            store: &cx.ckpt.weights,
            name: name.to_string(),
            n_in,
            n_out,
            bits,
            block,
            part,
        })
    };
    let (q, scales) = (part(BlockPart::Quantized), part(BlockPart::Scales));
    let q = cx.g.initializer(
        &format!("{name}.int{bits}"),
        DataType::UInt8,
        &[n_out, blocks, block * usize::from(bits) / 8],
        q,
    );
    let scales = cx.g.initializer(
        &format!("{name}.scales"),
        DataType::Float32,
        &[n_out, blocks],
        scales,
    );
    (q, scales)
}

/// A Conv1D weight `[n_in, n_out]` as signed 8-bit values per output column: the matrix
/// `[n_in, n_out]` (int8) and its scales `[n_out]`.
fn column_weight(
    cx: &mut Ctx<'_, '_>,
    name: &str,
    (n_in, n_out): (usize, usize),
) -> (String, String) {
    let part = |part| {
        Box::new(QuantColumns {
            store: &cx.ckpt.weights,
            name: name.to_string(),
            n_in,
            n_out,
            part,
        })
    };
    let (q, scales) = (part(BlockPart::Quantized), part(BlockPart::Scales));
    let q =
        cx.g.initializer(&format!("{name}.int8"), DataType::Int8, &[n_in, n_out], q);
    let scales = cx.g.initializer(
        &format!("{name}.scales"),
        DataType::Float32,
        &[n_out],
        scales,
    );
    (q, scales)
}
