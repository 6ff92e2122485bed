//! Where and why runtimes disagree: bisection to the first diverging node, reduction to a
//! standalone repro, and the search for the parts of a model to keep in float32.

pub mod precision;
