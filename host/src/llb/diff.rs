//! DiffOp: the changes that turn one state into another, as a filesystem
//! of its own (in practice: the layers between them).
//!
//! A diff from scratch is the upper state itself, as in Go's builder, so no
//! op is emitted for it. Needs a daemon with the `diffop` cap; this module
//! never checks that, the daemon does.

use std::collections::BTreeSet;

use super::caps;
use super::state::{OpOptions, Output, State, Vertex, VertexOp, op_options_methods, scratch};

/// A diff being set up.
#[derive(Clone, Debug)]
pub struct Diff {
    lower: State,
    upper: State,
    options: OpOptions,
}

/// What changed from `lower` to `upper`.
pub fn diff(lower: &State, upper: &State) -> Diff {
    Diff {
        lower: lower.clone(),
        upper: upper.clone(),
        options: OpOptions::default(),
    }
}

impl Diff {
    op_options_methods!();

    /// Creates the op; the result keeps the lower state's settings. From
    /// scratch it is the upper state (and the metadata set here is dropped).
    pub fn state(self) -> State {
        let Some(lower) = self.lower.output.clone() else {
            return match self.upper.is_scratch() {
                true => scratch(),
                false => self.upper,
            };
        };

        let vertex = Vertex {
            op: VertexOp::Diff {
                lower,
                upper: self.upper.output.clone(),
            },
            options: self.options,
            caps: BTreeSet::from([caps::DIFF_OP]),
        };
        self.lower.with_output(Output::new(vertex, 0))
    }
}
