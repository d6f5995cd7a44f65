//! The command line: argument parsing and the user-facing output of each
//! command. Only this layer prints; library modules return errors and log at
//! debug level.

mod connect;
mod patch;
mod plugin;
mod resolve;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::connector::policy::Policy;
use crate::connector::{Connectors, Settings};
use crate::dial::{DialOptions, DialSpec, TlsFiles};

/// The address tried last when none is given and nothing else answers.
pub const DEFAULT_BUILDKIT_ADDR: &str = "unix:///run/buildkit/buildkitd.sock";

#[derive(Debug, Parser)]
#[command(
    name = "copa",
    version,
    about = "Patch the OS packages of container images through BuildKit"
)]
pub struct Cli {
    /// Administrator's plugin policy (TOML); default /etc/copa/policy.toml when it exists.
    #[arg(long, global = true, env = "COPA_PLUGIN_POLICY", value_name = "FILE")]
    plugin_policy: Option<PathBuf>,

    /// Let a plugin from a plugin folder replace the built-in connector of SCHEME.
    #[arg(
        long = "plugin-override",
        global = true,
        env = "COPA_PLUGIN_OVERRIDE",
        value_delimiter = ',',
        value_name = "SCHEME"
    )]
    plugin_overrides: Vec<String>,

    /// Log debug traces to stderr.
    #[arg(long, global = true)]
    debug: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show which connector serves an address and the exact dial spec; dials nothing.
    Resolve(resolve::ResolveArgs),
    /// Connect to BuildKit and report its version, workers and capabilities.
    Connect(connect::ConnectArgs),
    /// List or inspect connector plugins.
    #[command(subcommand)]
    Plugin(plugin::PluginCommand),
    /// Patch the OS packages of an image (Copacetic's `copa patch` flags).
    Patch(Box<patch::PatchArgs>),
}

/// How to reach BuildKit: the flags every BuildKit-facing command shares.
#[derive(Debug, Clone, Args)]
pub struct AddrArgs {
    /// BuildKit address (see `copa plugin list` for the schemes); when absent,
    /// BUILDKIT_HOST, then the Docker Engine, then the current buildx builder,
    /// then unix:///run/buildkit/buildkitd.sock are tried.
    #[arg(short = 'a', long = "addr", value_name = "ADDR")]
    pub addr: Option<String>,
    /// CA certificate for a tcp:// address with TLS.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Client certificate for a tcp:// address with TLS.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// Client key for a tcp:// address with TLS.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
}

impl AddrArgs {
    /// The addresses to try, in order, and whether the user named one.
    pub fn candidates(&self) -> (Vec<String>, bool) {
        if let Some(addr) = &self.addr {
            return (vec![addr.clone()], true);
        }
        let mut candidates = Vec::new();
        if let Ok(host) = std::env::var("BUILDKIT_HOST")
            && !host.is_empty()
        {
            candidates.push(host);
        }
        candidates.extend(["docker://", "buildx://", DEFAULT_BUILDKIT_ADDR].map(String::from));
        (candidates, false)
    }

    fn tls_requested(&self) -> bool {
        self.cacert.is_some() || self.cert.is_some() || self.key.is_some()
    }

    /// Dial options for a resolved spec. TLS flags apply to TCP only; with an
    /// explicit address of another kind they are an error, not silently dropped.
    pub fn dial_options(&self, spec: &DialSpec, explicit: bool) -> anyhow::Result<DialOptions> {
        if !self.tls_requested() {
            return Ok(DialOptions::default());
        }
        if !matches!(spec, DialSpec::Tcp { .. }) {
            if explicit {
                anyhow::bail!(
                    "--cacert, --cert and --key apply to tcp:// addresses only, not to {spec}"
                );
            }
            return Ok(DialOptions::default());
        }
        Ok(DialOptions {
            tls: Some(TlsFiles {
                ca_cert: self.cacert.clone(),
                cert: self.cert.clone(),
                key: self.key.clone(),
                server_name: None,
            }),
        })
    }
}

/// Runs the command line; returns the process exit code.
pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.debug);

    let connectors = || -> anyhow::Result<Connectors> {
        let policy = Policy::load(cli.plugin_policy.as_deref())?;
        let settings = Settings::from_env(policy, cli.plugin_overrides.clone());
        let connectors = Connectors::new(settings).context("failed to load connector plugins")?;
        for warning in &connectors.warnings {
            eprintln!("warning: {warning}");
        }
        Ok(connectors)
    };

    match &cli.command {
        Command::Resolve(args) => resolve::run(args, &connectors()?),
        Command::Connect(args) => runtime()?.block_on(connect::run(args, connectors()?)),
        Command::Plugin(command) => plugin::run(command, &connectors()?),
        Command::Patch(args) => runtime()?.block_on(patch::run(args, connectors()?)),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("failed to start the async runtime")
}

fn init_tracing(debug: bool) {
    let filter = if debug {
        tracing_subscriber::EnvFilter::new("copa=debug")
    } else {
        tracing_subscriber::EnvFilter::try_from_env("COPA_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"))
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// Prints a JSON value on stdout.
fn print_json(value: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
