//! The errors of the LLB builder: bad input caught while building or
//! marshalling a graph. None of them involves a daemon.

/// Why a graph could not be built or marshalled.
#[derive(Debug, thiserror::Error)]
pub enum LlbError {
    /// An image reference that `distribution/reference` would refuse.
    #[error("failed to parse image reference `{reference}`: {reason}")]
    InvalidReference { reference: String, reason: String },

    /// A platform that is not `os/arch[/variant]`.
    #[error("failed to parse platform `{platform}`: expected os/arch or os/arch/variant")]
    InvalidPlatform { platform: String },

    /// An image config that is not the JSON of an OCI image config.
    #[error("failed to parse image config")]
    ImageConfig(#[source] serde_json::Error),

    /// An exec was given no command to run.
    #[error("failed to marshal exec in `{cwd}`: it has no arguments")]
    ExecWithoutArgs { cwd: String },
}
