//! `copa connect`: resolve, dial, and ask BuildKit who it is, what workers it
//! has and which LLB capabilities it offers, timing each step.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use serde_json::json;

use super::AddrArgs;
use crate::buildkit::{Capabilities, Client, DaemonInfo, Worker};
use crate::connector::{Connectors, Resolution};
use crate::dial::{self, BoxStream, DialOptions, DialSpec, StderrTail};

/// How long one connection attempt may take, unless `--timeout` says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    addr: AddrArgs,
    /// Give up on an address after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_CONNECT_TIMEOUT.as_secs())]
    timeout: u64,
    /// Print JSON (keys documented in the README).
    #[arg(long)]
    json: bool,
}

/// What a successful connection found.
struct Report {
    resolution: Resolution,
    info: DaemonInfo,
    workers: Vec<Worker>,
    caps: Capabilities,
    timings: Vec<(&'static str, Duration)>,
}

pub async fn run(args: &ConnectArgs, connectors: Connectors) -> anyhow::Result<()> {
    let (candidates, explicit) = args.addr.candidates();
    let timeout = Duration::from_secs(args.timeout);
    let mut attempts = Vec::new();

    for candidate in &candidates {
        let attempt =
            tokio::time::timeout(timeout, connect(args, &connectors, candidate, explicit));
        let result = match attempt.await {
            Ok(result) => result,
            Err(_) => Err(anyhow::anyhow!(
                "gave up on `{candidate}` after {} s",
                timeout.as_secs()
            )),
        };
        match result {
            Ok(report) => return print(args, &report, &attempts),
            Err(error) if explicit => return Err(error),
            Err(error) => {
                if !args.json {
                    eprintln!("tried {candidate}: {error:#}");
                }
                attempts.push((candidate.clone(), format!("{error:#}")));
            }
        }
    }
    anyhow::bail!(
        "no BuildKit found; tried {} (pass --addr to choose one)",
        candidates.join(", ")
    )
}

/// A live connection to BuildKit.
pub struct Opened {
    pub resolution: Resolution,
    pub client: Client,
    /// The transport process's stderr, when there is one.
    pub stderr: Option<StderrTail>,
    pub resolve_time: Duration,
    pub dial_time: Duration,
}

/// Resolves and dials one address. `quiet` leaves out the plain-TCP warning
/// (for JSON output).
pub async fn open(
    addr: &AddrArgs,
    connectors: &Connectors,
    candidate: &str,
    explicit: bool,
    quiet: bool,
) -> anyhow::Result<Opened> {
    let started = Instant::now();

    // Plugins run synchronously (WASI's sync bindings drive their own
    // futures), so they must not run on an async worker thread as it is.
    let resolution = tokio::task::block_in_place(|| connectors.resolve(candidate))?;
    let opts = addr.dial_options(&resolution.spec, explicit)?;
    let resolve_time = started.elapsed();

    if let DialSpec::Tcp { .. } = resolution.spec
        && opts.tls.is_none()
        && !quiet
    {
        eprintln!(
            "warning: connecting to `{candidate}` without TLS; pass --cacert, --cert and --key to encrypt and authenticate"
        );
    }

    let step = Instant::now();
    let connection = dial::dial(&resolution.spec, &opts)
        .await
        .with_context(|| format!("failed to connect to buildkit at `{candidate}`"))?;
    let stderr = connection.stderr.clone();
    let client = Client::connect(redialer(resolution.spec.clone(), opts, connection.stream))
        .await
        .with_context(|| format!("failed to connect to buildkit at `{candidate}`"))?;

    Ok(Opened {
        resolution,
        client,
        stderr,
        resolve_time,
        dial_time: step.elapsed(),
    })
}

async fn connect(
    args: &ConnectArgs,
    connectors: &Connectors,
    candidate: &str,
    explicit: bool,
) -> anyhow::Result<Report> {
    let started = Instant::now();
    let Opened {
        resolution,
        client,
        stderr,
        resolve_time,
        dial_time,
    } = open(&args.addr, connectors, candidate, explicit, args.json).await?;
    let mut timings = vec![("resolve", resolve_time), ("dial", dial_time)];

    let step = Instant::now();
    let info = match client.info().await {
        // Older daemons (Docker 20.10's embedded BuildKit) have no Info call.
        Err(error) if error.status().map(|s| s.code()) == Some(tonic::Code::Unimplemented) => {
            DaemonInfo {
                version: "unknown (the daemon has no Control.Info)".into(),
                revision: String::new(),
                package: String::new(),
            }
        }
        other => with_stderr(other, &stderr, candidate)?,
    };
    timings.push(("info", step.elapsed()));

    let step = Instant::now();
    let workers = with_stderr(client.workers().await, &stderr, candidate)?;
    timings.push(("workers", step.elapsed()));

    let step = Instant::now();
    let caps = with_stderr(client.probe().await, &stderr, candidate)?;
    timings.push(("probe", step.elapsed()));
    timings.push(("total", started.elapsed()));

    Ok(Report {
        resolution,
        info,
        workers,
        caps,
        timings,
    })
}

/// Hands the already dialed stream to the client once, and dials anew for any
/// reconnect.
fn redialer(
    spec: DialSpec,
    opts: DialOptions,
    first: BoxStream,
) -> impl Fn() -> std::pin::Pin<Box<dyn Future<Output = std::io::Result<BoxStream>> + Send>>
+ Send
+ Sync
+ 'static {
    let first = Arc::new(Mutex::new(Some(first)));
    move || {
        let first = first.lock().unwrap().take();
        let spec = spec.clone();
        let opts = opts.clone();
        Box::pin(async move {
            if let Some(stream) = first {
                return Ok(stream);
            }
            let connection = dial::dial(&spec, &opts)
                .await
                .map_err(std::io::Error::other)?;
            Ok(connection.stream)
        })
    }
}

/// Adds what the transport process printed on stderr to a failed call, since
/// that usually says why (no such container, ssh refused, buildctl missing).
pub fn with_stderr<T, E>(
    result: Result<T, E>,
    stderr: &Option<StderrTail>,
    candidate: &str,
) -> anyhow::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    result.map_err(|error| {
        let error = anyhow::Error::new(error)
            .context(format!("failed to talk to buildkit at `{candidate}`"));
        transport_said(error, stderr)
    })
}

/// Wraps an error with the transport process's stderr, when it printed any.
pub fn transport_said(error: anyhow::Error, stderr: &Option<StderrTail>) -> anyhow::Error {
    match stderr.as_ref().map(|s| s.text()) {
        Some(text) if !text.trim().is_empty() => {
            let text = text.trim().replace('\n', " | ");
            error.context(format!("the transport said: {text}"))
        }
        _ => error,
    }
}

fn print(args: &ConnectArgs, report: &Report, attempts: &[(String, String)]) -> anyhow::Result<()> {
    let ms = |d: &Duration| (d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
    if args.json {
        let timings: serde_json::Map<String, serde_json::Value> = report
            .timings
            .iter()
            .map(|(k, d)| (k.to_string(), json!(ms(d))))
            .collect();
        let attempts: Vec<_> = attempts
            .iter()
            .map(|(address, error)| json!({ "address": address, "error": error }))
            .collect();
        return super::print_json(&json!({
            "address": report.resolution.address.raw,
            "served_by": report.resolution.served_by,
            "dial": report.resolution.spec,
            "buildkit": report.info,
            "workers": report.workers,
            "capabilities": {
                "merge_op": report.caps.merge_op(),
                "diff_op": report.caps.diff_op(),
                "llb": report.caps.llb,
                "frontend": report.caps.frontend,
            },
            "timings_ms": timings,
            "attempts": attempts,
        }));
    }

    let yes_no = |b: bool| if b { "yes" } else { "no" };
    println!("address    {}", report.resolution.address);
    println!(
        "served by  {}",
        super::resolve::served_by_text(&report.resolution.served_by)
    );
    println!("dial       {}", report.resolution.spec);
    if report.info.package.is_empty() {
        println!("buildkit   {}", report.info.version);
    } else {
        println!("buildkit   {}", report.info);
    }
    for worker in &report.workers {
        println!("worker     {} ({})", worker.id, worker.platforms.join(", "));
    }
    println!(
        "mergeop    {}    diffop {}",
        yes_no(report.caps.merge_op()),
        yes_no(report.caps.diff_op())
    );
    let timings: Vec<String> = report
        .timings
        .iter()
        .map(|(k, d)| format!("{k} {} ms", ms(d)))
        .collect();
    println!("timings    {}", timings.join(", "));
    Ok(())
}
