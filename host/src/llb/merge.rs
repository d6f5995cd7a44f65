//! MergeOp: stacking states, later ones on top, without copying their
//! files: the result's layers are the inputs' layers.
//!
//! Scratch inputs are dropped and a merge of one input is that input, as in
//! Go's builder, so no op is emitted for them. Needs a daemon with the
//! `mergeop` cap; this module never checks that, the daemon does.

use std::collections::BTreeSet;

use super::caps;
use super::state::{OpOptions, Output, State, Vertex, VertexOp, op_options_methods, scratch};

/// A merge being set up.
#[derive(Clone, Debug)]
pub struct Merge {
    inputs: Vec<State>,
    options: OpOptions,
}

/// Merges `inputs`, the first at the bottom.
pub fn merge(inputs: impl IntoIterator<Item = State>) -> Merge {
    Merge {
        inputs: inputs.into_iter().collect(),
        options: OpOptions::default(),
    }
}

impl Merge {
    op_options_methods!();

    /// Creates the op; the result keeps the settings of the first non-scratch
    /// input. With no such input it is scratch, with one it is that input
    /// (and the metadata set here is dropped).
    pub fn state(self) -> State {
        let mut inputs: Vec<State> = self
            .inputs
            .into_iter()
            .filter(|s| !s.is_scratch())
            .collect();
        match inputs.len() {
            0 => return scratch(),
            1 => return inputs.remove(0),
            _ => {}
        }

        let outputs: Vec<Output> = inputs.iter().filter_map(|s| s.output.clone()).collect();
        let vertex = Vertex {
            op: VertexOp::Merge(outputs),
            options: self.options,
            caps: BTreeSet::from([caps::MERGE_OP]),
        };
        inputs[0].with_output(Output::new(vertex, 0))
    }
}
