//! Turning a state's graph into a `pb::Definition`: ops encoded to bytes,
//! digested, de-duplicated and listed inputs first, then the terminal op
//! that points at the result, plus one `OpMetadata` per op.
//!
//! The bytes are those Go's builder (v0.17 and later, protobuf-go with
//! deterministic output) writes for the same graph: newer daemons re-encode
//! every op that way and report progress under the resulting digests, so
//! any difference would show up as vertices copa does not recognise. Two
//! rules carry that:
//!
//! - Field order. protobuf-go writes the fields of a `oneof` after all the
//!   other fields of a message. prost writes everything in tag order. The
//!   only message where the two differ is `Op` (its oneof, tags 2–8, sits
//!   between `inputs` = 1 and `platform` = 10), so [`encode_op`] writes it in
//!   two parts. Older Go clients (gogo, BuildKit ≤ v0.16) used tag order;
//!   daemons of that age use the client's digests as given, so matching the
//!   newer order is the one choice that agrees with every daemon.
//! - Maps. prost leaves out empty keys and values inside a map entry where
//!   protobuf-go writes them. The builder never puts an empty key or value
//!   into a hashed map (`SourceOp.attrs`).
//!
//! Go's builder also fills `Definition.source` with an empty location list
//! per op. copa sends no source maps: the field is not hashed and the daemon
//! reads it only to point errors at source lines.
//!
//! A digest is computed once, from the very bytes stored in `def`; nothing
//! is re-encoded afterwards. This module never sends anything.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use prost::Message;
use sha2::{Digest, Sha256};

use crate::buildkit::proto::pb;

use super::LlbError;
use super::caps;
use super::file::FileSpec;
use super::platform;
use super::state::{Output, State, Vertex, VertexOp};

/// `sha256:<hex>` of `bytes`, the digest LLB uses for an op.
pub fn digest_of(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// An op's bytes as protobuf-go writes them: every field in tag order,
/// except the `op` oneof, which comes last.
pub fn encode_op(mut op: pb::Op) -> Vec<u8> {
    let body = op.op.take();
    let mut bytes = op.encode_to_vec();
    if body.is_some() {
        let only_body = pb::Op {
            op: body,
            ..Default::default()
        };
        bytes.extend(only_body.encode_to_vec());
    }
    bytes
}

impl State {
    /// The graph behind this state as a Definition; ops that set no
    /// platform get the host's. A scratch state gives an empty Definition.
    pub fn marshal(&self) -> Result<pb::Definition, LlbError> {
        self.marshal_for(&platform::host())
    }

    /// The graph behind this state as a Definition; ops that set no
    /// platform get `default_platform`, as given.
    pub fn marshal_for(&self, default_platform: &pb::Platform) -> Result<pb::Definition, LlbError> {
        let Some(result) = &self.output else {
            return Ok(pb::Definition::default());
        };

        let mut marshaler = Marshaler {
            default_platform,
            digests: HashMap::new(),
            seen: HashSet::new(),
            def: Vec::new(),
            metadata: BTreeMap::new(),
        };
        marshaler.visit(&result.vertex)?;
        marshaler.add_terminal(result);

        Ok(pb::Definition {
            def: marshaler.def,
            metadata: marshaler.metadata,
        })
    }
}

struct Marshaler<'a> {
    default_platform: &'a pb::Platform,
    /// Digests of the vertices already encoded, by node.
    digests: HashMap<*const Vertex, String>,
    /// Digests already in `def`: two nodes can encode to the same op.
    seen: HashSet<String>,
    def: Vec<Vec<u8>>,
    metadata: BTreeMap<String, pb::OpMetadata>,
}

impl Marshaler<'_> {
    /// Adds `vertex` after everything it reads (depth first, inputs in Go's
    /// order) and returns its digest.
    fn visit(&mut self, vertex: &Arc<Vertex>) -> Result<String, LlbError> {
        if let Some(digest) = self.digests.get(&Arc::as_ptr(vertex)) {
            return Ok(digest.clone());
        }
        for input in traversal_order(vertex) {
            self.visit(&input.vertex)?;
        }

        let bytes = encode_op(self.op_of(vertex)?);
        let digest = digest_of(&bytes);
        self.digests.insert(Arc::as_ptr(vertex), digest.clone());

        let entry = self.metadata.entry(digest.clone()).or_default();
        merge_metadata(entry, metadata_of(vertex));
        if self.seen.insert(digest.clone()) {
            self.def.push(bytes);
        }
        Ok(digest)
    }

    /// The terminal op: one input, the result; no op body, no platform.
    fn add_terminal(&mut self, result: &Output) {
        let terminal = pb::Op {
            inputs: vec![self.input_of(result)],
            ..Default::default()
        };
        let bytes = encode_op(terminal);
        let digest = digest_of(&bytes);

        let ignores_cache = self.metadata.values().any(|m| m.ignore_cache);
        let described = self.metadata.values().any(|m| !m.description.is_empty());
        let mut caps = BTreeMap::from([
            (caps::CONSTRAINTS.to_string(), true),
            (caps::PLATFORM.to_string(), true),
        ]);
        if ignores_cache {
            caps.insert(caps::META_IGNORE_CACHE.to_string(), true);
        }
        if described {
            caps.insert(caps::META_DESCRIPTION.to_string(), true);
        }

        self.metadata.entry(digest).or_default().caps = caps;
        self.def.push(bytes);
    }

    /// A reference to an output whose vertex was already visited.
    fn input_of(&self, output: &Output) -> pb::Input {
        let digest = self
            .digests
            .get(&Arc::as_ptr(&output.vertex))
            .expect("inputs are visited before the ops that read them");
        pb::Input {
            digest: digest.clone(),
            index: output.index,
        }
    }

    fn op_of(&self, vertex: &Vertex) -> Result<pb::Op, LlbError> {
        use pb::op::Op as Body;

        let constraints = Some(pb::WorkerConstraints::default());
        let platform = |own: &Option<pb::Platform>| {
            Some(own.clone().unwrap_or_else(|| self.default_platform.clone()))
        };

        let op = match &vertex.op {
            VertexOp::Source(spec) => pb::Op {
                inputs: Vec::new(),
                op: Some(Body::Source(pb::SourceOp {
                    identifier: spec.identifier.clone(),
                    attrs: spec.attrs.clone(),
                })),
                platform: platform(&spec.platform),
                constraints,
            },

            VertexOp::Exec(spec) => {
                if spec.meta.args.is_empty() {
                    return Err(LlbError::ExecWithoutArgs {
                        cwd: spec.meta.cwd.clone(),
                    });
                }
                let mut inputs = Vec::new();
                let mut mounts = Vec::with_capacity(spec.mounts.len());
                for mount in &spec.mounts {
                    let mut encoded = mount.mount.clone();
                    encoded.input = match &mount.source {
                        Some(source) => add_input(&mut inputs, self.input_of(source)),
                        None => -1,
                    };
                    mounts.push(encoded);
                }
                pb::Op {
                    inputs,
                    op: Some(Body::Exec(pb::ExecOp {
                        meta: Some(spec.meta.clone()),
                        mounts,
                        network: spec.network as i32,
                        security: pb::SecurityMode::Sandbox as i32,
                    })),
                    platform: platform(&spec.platform),
                    constraints,
                }
            }

            VertexOp::File(spec) => {
                let (inputs, actions) = self.file_actions(spec);
                pb::Op {
                    inputs,
                    op: Some(Body::File(pb::FileOp { actions })),
                    platform: None,
                    constraints,
                }
            }

            VertexOp::Merge(outputs) => {
                let inputs: Vec<pb::Input> = outputs.iter().map(|o| self.input_of(o)).collect();
                let merge_inputs = (0..inputs.len() as i64)
                    .map(|input| pb::MergeInput { input })
                    .collect();
                pb::Op {
                    inputs,
                    op: Some(Body::Merge(pb::MergeOp {
                        inputs: merge_inputs,
                    })),
                    platform: None,
                    constraints,
                }
            }

            VertexOp::Diff { lower, upper } => {
                let mut inputs = vec![self.input_of(lower)];
                let upper_input = match upper {
                    Some(upper) => {
                        inputs.push(self.input_of(upper));
                        1
                    }
                    None => -1,
                };
                pb::Op {
                    inputs,
                    op: Some(Body::Diff(pb::DiffOp {
                        lower: Some(pb::LowerDiffInput { input: 0 }),
                        upper: Some(pb::UpperDiffInput { input: upper_input }),
                    })),
                    platform: None,
                    constraints,
                }
            }
        };
        Ok(op)
    }

    /// The inputs of a FileOp in first-use order and its actions, each
    /// reading either an input or the result of the action before it.
    fn file_actions(&self, spec: &FileSpec) -> (Vec<pb::Input>, Vec<pb::FileAction>) {
        let mut inputs = Vec::new();
        let mut reads = Vec::with_capacity(spec.actions.len());
        for action in &spec.actions {
            let base = match &spec.base {
                Some(base) => add_input(&mut inputs, self.input_of(base)),
                None => -1,
            };
            let secondary = match &action.copy_from {
                Some(from) => add_input(&mut inputs, self.input_of(from)),
                None => -1,
            };
            reads.push((base, secondary));
        }

        // Results of earlier actions are numbered after the real inputs.
        let first_result = inputs.len() as i64;
        let last = spec.actions.len() - 1;
        let actions = spec
            .actions
            .iter()
            .zip(reads)
            .enumerate()
            .map(|(k, (action, (base, secondary)))| pb::FileAction {
                input: if k == 0 {
                    base
                } else {
                    first_result + k as i64 - 1
                },
                secondary_input: secondary,
                output: if k == last { 0 } else { -1 },
                action: Some(action.action.clone()),
            })
            .collect();
        (inputs, actions)
    }
}

/// The index of `input` in `inputs`, adding it if it is new.
fn add_input(inputs: &mut Vec<pb::Input>, input: pb::Input) -> i64 {
    match inputs.iter().position(|i| *i == input) {
        Some(index) => index as i64,
        None => {
            inputs.push(input);
            inputs.len() as i64 - 1
        }
    }
}

/// The outputs a vertex reads, in the order Go's builder visits them (which
/// decides the order of `def`), each output object once.
fn traversal_order(vertex: &Vertex) -> Vec<&Output> {
    let candidates: Vec<&Output> = match &vertex.op {
        VertexOp::Source(_) => Vec::new(),
        VertexOp::Exec(spec) => spec
            .mounts
            .iter()
            .filter_map(|m| m.source.as_ref())
            .collect(),
        // The base first, then copy sources from the last action back.
        VertexOp::File(spec) => spec
            .base
            .iter()
            .chain(
                spec.actions
                    .iter()
                    .rev()
                    .filter_map(|a| a.copy_from.as_ref()),
            )
            .collect(),
        VertexOp::Merge(outputs) => outputs.iter().collect(),
        VertexOp::Diff { lower, upper } => std::iter::once(lower).chain(upper).collect(),
    };

    let mut order: Vec<&Output> = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        if !order.iter().any(|o| o.is(candidate)) {
            order.push(candidate);
        }
    }
    order
}

fn metadata_of(vertex: &Vertex) -> pb::OpMetadata {
    pb::OpMetadata {
        ignore_cache: vertex.options.ignore_cache,
        description: vertex.options.description.clone(),
        export_cache: None,
        caps: vertex.caps.iter().map(|c| (c.to_string(), true)).collect(),
        progress_group: vertex.options.progress_group.clone(),
    }
}

/// Two nodes that encode to the same op share one metadata entry: flags and
/// caps add up, later descriptions and progress groups win.
fn merge_metadata(into: &mut pb::OpMetadata, from: pb::OpMetadata) {
    into.ignore_cache |= from.ignore_cache;
    into.description.extend(from.description);
    into.caps.extend(from.caps);
    if from.progress_group.is_some() {
        into.progress_group = from.progress_group;
    }
}
