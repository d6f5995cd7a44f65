//! The errors of the BuildKit client.
//!
//! Every error names the step that failed (a call such as `Control.Info`, the
//! first connection, the session tunnel) and keeps the complete cause as its
//! source, down to the I/O error under tonic's "transport error". Print the
//! chain with `{:#}` (anyhow) to see it. This module never logs.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

/// What went wrong while talking to BuildKit.
#[derive(Debug, thiserror::Error)]
pub enum BuildkitError {
    /// The first connection to the daemon could not be made.
    #[error("failed to connect to buildkit")]
    Connect(#[source] TransportError),

    /// A gRPC call failed, on the daemon's side or on the way there.
    #[error("failed to call {method}")]
    Call {
        /// `Service.Method`, e.g. `Control.Info`.
        method: &'static str,
        #[source]
        source: RpcError,
    },

    /// A gRPC call got no answer in time.
    #[error("{method} did not answer within {after:?}")]
    Timeout {
        method: &'static str,
        after: Duration,
    },

    /// The gRPC server copa runs inside the session tunnel failed.
    #[error("failed to serve the session `{session_id}`")]
    Session {
        session_id: String,
        #[source]
        source: hyper::Error,
    },

    /// A value copa was about to send as gRPC metadata is not valid there.
    #[error("`{value}` is not a valid value for the gRPC metadata `{key}`")]
    InvalidMetadata { key: &'static str, value: String },

    /// The daemon ended a gateway build in a way the protocol does not allow.
    #[error("gateway build `{build_ref}`: {what}")]
    Protocol { build_ref: String, what: String },
}

impl BuildkitError {
    /// A failed call, from the status tonic returned.
    pub fn call(method: &'static str, status: tonic::Status) -> Self {
        BuildkitError::Call {
            method,
            source: RpcError::new(status),
        }
    }

    /// The gRPC status of a failed call, to match on its code or message.
    pub fn status(&self) -> Option<&tonic::Status> {
        match self {
            BuildkitError::Call { source, .. } => Some(&source.0),
            _ => None,
        }
    }
}

/// A gRPC status in an error chain: its code (unless `Unknown`, which
/// BuildKit uses for most failures), its message, then what caused it.
///
/// tonic repeats causes: a status's message is often its source's text, and
/// a dial failure shows up as "transport error", then the I/O error, then the
/// I/O error again. The chain here holds each text once and skips tonic's
/// bare "transport error"; the status itself stays available in `.0`.
#[derive(Debug, Clone)]
pub struct RpcError(pub tonic::Status, Option<Cause>);

impl RpcError {
    pub fn new(status: tonic::Status) -> RpcError {
        let first = Some(status.message().to_owned());
        let cause = Cause::from_texts(distinct_texts(first, status.source()));
        RpcError(status, cause)
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.0.code();
        match (&self.1, code) {
            (Some(cause), tonic::Code::Unknown) => f.write_str(&cause.text),
            (Some(cause), code) => write!(f, "{code:?}: {}", cause.text),
            (None, code) => write!(f, "{code:?}"),
        }
    }
}

impl StdError for RpcError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        let next = self.1.as_ref()?.next.as_deref()?;
        Some(next)
    }
}

/// A tonic transport error in an error chain, its causes each shown once (see
/// [`RpcError`]); the error itself stays available in `.0`.
#[derive(Debug)]
pub struct TransportError(pub tonic::transport::Error, Option<Cause>);

impl TransportError {
    pub fn new(err: tonic::transport::Error) -> TransportError {
        let cause = Cause::from_texts(distinct_texts(None, Some(&err)));
        TransportError(err, cause)
    }
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.1 {
            Some(cause) => f.write_str(&cause.text),
            None => fmt::Display::fmt(&self.0, f),
        }
    }
}

impl StdError for TransportError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        let next = self.1.as_ref()?.next.as_deref()?;
        Some(next)
    }
}

/// One link of a cause chain, as text.
#[derive(Debug, Clone)]
struct Cause {
    text: String,
    next: Option<Box<Cause>>,
}

impl Cause {
    fn from_texts(texts: Vec<String>) -> Option<Cause> {
        texts.into_iter().rev().fold(None, |next, text| {
            Some(Cause {
                text,
                next: next.map(Box::new),
            })
        })
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl StdError for Cause {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        let next = self.next.as_deref()?;
        Some(next)
    }
}

/// `first` and the texts of `err` and its sources, without empty texts,
/// tonic's bare "transport error", and texts already said.
fn distinct_texts(first: Option<String>, err: Option<&(dyn StdError + 'static)>) -> Vec<String> {
    let sources = std::iter::successors(err, |&err| err.source()).map(|err| err.to_string());
    let mut texts: Vec<String> = Vec::new();
    for text in first.into_iter().chain(sources) {
        let said = texts.iter().any(|earlier| earlier.contains(text.as_str()));
        if text.is_empty() || text == "transport error" || said {
            continue;
        }
        texts.push(text);
    }
    texts
}
