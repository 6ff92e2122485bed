//! The budgets a run is judged by when its runtime computes in a reduced float type, whatever
//! the graph declares (OpenVINO's inference precision): data that both the options (which budget
//! applies) and the reports (how the precision is named) read.

use crate::base::DataType;
use crate::graph::profile::Budget;

/// A runtime that computes in a reduced float type whatever the graph declares (OpenVINO's
/// inference precision hint), and the budget its runs are judged by against the float32
/// goldens.
pub(crate) struct ComputeBudget {
    pub dtype: DataType,
    /// Its name in reports (OpenVINO's spelling).
    pub name: &'static str,
    pub budget: Budget,
}

/// Every reduced compute precision. Measured with `verify --runtimes openvino
/// --openvino-precision bf16|f16` on the golden fixtures (tiny random models, the worst case:
/// near-tied logits), OpenVINO 2026.4.1's CPU plugin on a Xeon with AVX-512 BF16 and FP16:
/// bf16 max abs 0.077, cosine ≥ 0.99992, argmax agreement ≥ 94.4 %, KL ≤ 9.0e-5; f16 max abs
/// 0.010, cosine ≥ 0.999999, argmax agreement ≥ 94.4 %, KL ≤ 1.1e-6. Each budget leaves about
/// twice that room (argmax: the int8 graphs' 90 %). On the trained digits case's labelled set
/// (19,200 positions, 300 images): bf16 NLL +0.011 %, largest reference gap at a flip 0.018
/// nats, accuracy unchanged; f16 NLL −0.0002 %, largest gap 0.004, accuracy unchanged. The NLL
/// and accuracy bounds are int8's (bf16) and float16's (f16).
pub(crate) const COMPUTE_BUDGETS: &[ComputeBudget] = &[
    ComputeBudget {
        dtype: DataType::BFloat16,
        name: "bf16",
        budget: Budget {
            atol: 0.2,
            rtol: 0.1,
            min_cosine: 0.9995,
            min_argmax_agreement: 0.9,
            max_kl: 1e-3,
            tie_gap: 0.2,
            max_nll_increase: 1e-3,
            max_accuracy_drop: 0.5,
        },
    },
    ComputeBudget {
        dtype: DataType::Float16,
        name: "f16",
        budget: Budget {
            atol: 0.03,
            rtol: 0.01,
            min_cosine: 0.99999,
            min_argmax_agreement: 0.9,
            max_kl: 1e-4,
            tie_gap: 0.05,
            max_nll_increase: 5e-4,
            max_accuracy_drop: 0.0,
        },
    },
];

/// The budget of a run computed in `dtype` (`None`: float32, or a type with no row).
pub(crate) fn compute_budget(dtype: DataType) -> Option<&'static ComputeBudget> {
    COMPUTE_BUDGETS.iter().find(|c| c.dtype == dtype)
}

/// How a report names a run's compute precision (`None`: float32): the table's name.
pub(crate) fn compute_name(dtype: Option<DataType>) -> Option<String> {
    dtype.map(|d| compute_budget(d).map_or(d.name(), |c| c.name).to_string())
}
