//! Where and why runtimes disagree: bisection to the first diverging node ([`bisect`]),
//! reduction to a standalone repro ([`reduce`]), and the search for the parts of a model to
//! keep in float32.
//!
//! Bisection and reduction run one graph in two runtimes, the first the reference, on one
//! feed, and compare tensors inside the graph by marking them as extra graph outputs
//! ([`graph::Structure::marked`]) — in rounds of at most `max_marked`, so a graph too large to
//! run with every tensor marked still bisects. Each runtime loads a round's graph, runs it and
//! is dropped before the other loads, so at most one copy of the weights is resident.

pub mod bisect;
pub mod graph;
pub mod plot;
pub mod precision;
mod probe;
pub mod reduce;
pub mod saved;

pub use probe::{DebugError, DebugOptions, Diff, InputSource, DEFAULT_MAX_MARKED};
