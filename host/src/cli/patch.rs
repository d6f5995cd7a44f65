//! `copa patch`: Copacetic's command line, from flags to a patched image
//! delivered where the user asked, with one summary line.

use std::path::PathBuf;
use std::time::Duration;

use std::time::Instant;

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::AddrArgs;
use crate::buildkit::error::BuildkitError;
use crate::buildkit::filesend::{Tarball, TarballExporter, TarballFormat};
use crate::connector::Connectors;
use crate::dial::DialSpec;
use crate::llb::platform;
use crate::patch::progress::{self, Mode};
use crate::patch::{build, deliver, report, vex};

/// Copacetic's default `--timeout`.
pub const DEFAULT_TIMEOUT: &str = "5m";

/// Copacetic's default `--tag-suffix`.
pub const DEFAULT_TAG_SUFFIX: &str = "patched";

/// How long a lost transport waits for the SIGINT that may have killed it.
const INTERRUPT_GRACE: Duration = Duration::from_millis(200);

#[derive(Debug, Args)]
pub struct PatchArgs {
    /// Image to patch, e.g. docker.io/library/nginx:1.21.6.
    #[arg(short = 'i', long = "image", value_name = "IMAGE")]
    pub image: String,
    /// Vulnerability report (Trivy JSON); without it, every package with an update is updated.
    #[arg(short = 'r', long = "report", value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Tag for the patched image (default: the image's tag with --tag-suffix).
    #[arg(short = 't', long = "tag", value_name = "TAG")]
    pub tag: Option<String>,
    /// Suffix for the patched image's tag when --tag is not given.
    #[arg(long = "tag-suffix", default_value = DEFAULT_TAG_SUFFIX)]
    pub tag_suffix: String,
    #[command(flatten)]
    pub addr: AddrArgs,
    /// Give up after this long (e.g. 30s, 5m, 1h).
    #[arg(long, default_value = DEFAULT_TIMEOUT, value_parser = parse_duration)]
    pub timeout: Duration,
    /// Scanner that produced the report.
    #[arg(long, default_value = "trivy")]
    pub scanner: String,
    /// Keep going past packages that cannot be updated.
    #[arg(long = "ignore-errors")]
    pub ignore_errors: bool,
    /// Output format of the document written with -o.
    #[arg(short = 'f', long = "format", default_value = "openvex")]
    pub format: String,
    /// Write a document (see -f) of what was patched to this file.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Push the patched image instead of loading it.
    #[arg(short = 'p', long = "push")]
    pub push: bool,
    /// Platforms to patch (os/arch[/variant]).
    #[arg(long = "platform", value_delimiter = ',')]
    pub platform: Vec<String>,
    /// Where to load the patched image: docker or podman.
    #[arg(short = 'l', long = "loader")]
    pub loader: Option<String>,
    /// Progress output.
    #[arg(long, value_enum, default_value_t = Progress::Auto)]
    pub progress: Progress,
    /// Working folder for temporary files.
    #[arg(short = 'w', long = "working-folder", value_name = "DIR")]
    pub working_folder: Option<PathBuf>,
    /// Write the patched image as an OCI layout in this folder.
    #[arg(long = "oci-dir", value_name = "DIR")]
    pub oci_dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Progress {
    Auto,
    Tty,
    Plain,
    Quiet,
    Rawjson,
}

impl From<Progress> for Mode {
    fn from(progress: Progress) -> Mode {
        match progress {
            Progress::Auto => Mode::Auto,
            Progress::Tty => Mode::Tty,
            Progress::Plain => Mode::Plain,
            Progress::Quiet => Mode::Quiet,
            Progress::Rawjson => Mode::RawJson,
        }
    }
}

/// Parses `90s`, `5m`, `1h`, `1h30m` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Ok(seconds) = text.parse::<u64>() {
        return Ok(Duration::from_secs(seconds));
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(format!("unknown unit `{c}` in duration `{text}`")),
        };
        let value: u64 = number
            .parse()
            .map_err(|_| format!("missing number before `{c}` in duration `{text}`"))?;
        total += value * unit;
        number.clear();
    }
    if !number.is_empty() || total == 0 {
        return Err(format!(
            "invalid duration `{text}`; use a form like 30s, 5m or 1h"
        ));
    }
    Ok(Duration::from_secs(total))
}

pub async fn run(args: &PatchArgs, connectors: Connectors) -> anyhow::Result<()> {
    let started = Instant::now();
    if args.scanner != "trivy" {
        anyhow::bail!(
            "scanner `{}` is not supported yet; only `trivy` reports are read",
            args.scanner
        );
    }
    if args.format != "openvex" {
        anyhow::bail!(
            "output format `{}` is not supported; use `openvex`",
            args.format
        );
    }
    // Without a report, every package that has an update is updated.
    let plan = match &args.report {
        Some(path) => Some(report::read_trivy(path)?),
        None if args.output.is_some() => {
            anyhow::bail!("-o needs a report (-r): the VEX document names its vulnerabilities")
        }
        None => None,
    };
    let target = target_reference(&args.image, args.tag.as_deref(), &args.tag_suffix)?;
    let target_platform = match args.platform.as_slice() {
        [] => platform::linux_amd64(),
        [one] => platform::parse(one).with_context(|| format!("invalid --platform `{one}`"))?,
        // Known gap: Copacetic patches each platform of an index and
        // assembles a new index; copa patches one platform per run.
        _ => anyhow::bail!("patching several platforms at once is not supported yet"),
    };
    if let (Some(plan), Some(path)) = (&plan, &args.report)
        && plan.updates.is_empty()
    {
        eprintln!(
            "no packages with a fix in `{}`; `{}` is left as it is",
            path.display(),
            args.image
        );
        return Ok(());
    }
    if let Some(dir) = &args.oci_dir
        && dir.exists()
        && std::fs::read_dir(dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(true)
    {
        anyhow::bail!("--oci-dir `{}` exists and is not empty", dir.display());
    }

    let (candidates, explicit) = args.addr.candidates();
    let mut opened = None;
    let mut failures = Vec::new();
    for candidate in &candidates {
        match super::connect::open(&args.addr, &connectors, candidate, explicit, false).await {
            Ok(o) => {
                opened = Some(o);
                break;
            }
            Err(error) if explicit => return Err(error),
            Err(error) => failures.push(format!("{candidate}: {error:#}")),
        }
    }
    let Some(opened) = opened else {
        anyhow::bail!("no BuildKit found; tried {}", failures.join("; "));
    };
    let address = opened.resolution.address.raw.clone();

    let (output, destination) = output_for(args, &opened.resolution.spec, &target);
    let request = build::Request {
        image: &args.image,
        plan: plan.as_ref(),
        platform: target_platform,
        ignore_errors: args.ignore_errors,
        output,
    };
    let delivery = destination.clone();
    let progress = progress::Progress::stderr(args.progress.into());
    let work = build::run(&opened.client, request, progress, move |tarball| {
        deliver(delivery, tarball)
    });
    let interrupt = tokio::signal::ctrl_c();
    tokio::pin!(interrupt);
    let interrupted =
        || anyhow::anyhow!("interrupted; the build was cancelled and nothing was tagged");
    let summary = tokio::select! {
        biased;
        Ok(()) = &mut interrupt => Err(interrupted()),
        result = work => match result {
            // A terminal's Ctrl-C also reaches a transport process (same
            // process group); its death can be seen before the signal.
            Err(error) if opened.stderr.is_some() && connection_lost(&error) => {
                match tokio::time::timeout(INTERRUPT_GRACE, &mut interrupt).await {
                    Ok(Ok(())) => Err(interrupted()),
                    _ => Err(error),
                }
            }
            other => other,
        },
        _ = tokio::time::sleep(args.timeout) => {
            Err(anyhow::anyhow!("gave up after {} s (--timeout); nothing was tagged", args.timeout.as_secs()))
        }
    };
    let summary = match summary {
        Ok(summary) => summary,
        Err(error) if error.is::<build::NothingToPatch>() => {
            eprintln!("{error}");
            return Ok(());
        }
        Err(error) => {
            let error = super::connect::transport_said(error, &opened.stderr);
            return Err(if connection_lost(&error) {
                error.context(format!("lost the connection to BuildKit at `{address}`"))
            } else {
                error
            });
        }
    };

    if let Some(path) = &args.output {
        let plan = plan.as_ref().expect("-o without -r is refused above");
        vex::write(path, &args.image, &target, plan, &summary)?;
    }

    for not_fixed in &summary.not_fixed {
        eprintln!(
            "warning: `{}` was not updated to {} (--ignore-errors)",
            not_fixed.name, not_fixed.wanted
        );
    }
    println!(
        "patched {} -> {}: {} packages updated, one new layer ({}), {} via {address}, {:.1} s",
        args.image,
        target,
        summary.fixed.len(),
        summary.strategy,
        destination.describe(&target),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Whether the connection to the daemon broke (it died, or the transport
/// process did), as opposed to the daemon answering with an error: a status
/// made on this side from a transport failure keeps that failure as source.
fn connection_lost(error: &anyhow::Error) -> bool {
    error
        .chain()
        .any(|cause| match cause.downcast_ref::<BuildkitError>() {
            Some(BuildkitError::Session { .. }) => true,
            Some(call) => call
                .status()
                .is_some_and(|s| std::error::Error::source(s).is_some()),
            None => false,
        })
}

/// Where the patched image goes.
#[derive(Clone)]
enum Destination {
    Docker { endpoint: String },
    DockerStore,
    Podman,
    Registry,
    OciLayout(PathBuf),
}

impl Destination {
    fn describe(&self, target: &str) -> String {
        match self {
            Destination::Docker { endpoint } => format!("loaded into Docker at {endpoint}"),
            Destination::DockerStore => "written into the Docker Engine's image store".into(),
            Destination::Podman => "loaded into Podman".into(),
            Destination::Registry => format!("pushed to {target}"),
            Destination::OciLayout(dir) => format!("written to {}", dir.display()),
        }
    }
}

fn output_for(args: &PatchArgs, spec: &DialSpec, target: &str) -> (build::Output, Destination) {
    let daemon = |exporter: &str, attrs: &[(&str, &str)]| build::Output::Daemon {
        exporter: exporter.into(),
        attrs: attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    if args.push {
        return (
            daemon("image", &[("name", target), ("push", "true")]),
            Destination::Registry,
        );
    }
    if let Some(dir) = &args.oci_dir {
        let exporter = TarballExporter::new(TarballFormat::Oci).name(target);
        return (
            build::Output::Tarball(exporter),
            Destination::OciLayout(dir.clone()),
        );
    }
    let podman = match args.loader.as_deref() {
        Some(loader) => loader == "podman",
        None => matches!(spec, DialSpec::Spawn { program, .. } if program == "podman"),
    };
    let tarball = build::Output::Tarball(TarballExporter::new(TarballFormat::Docker).name(target));
    if podman {
        return (tarball, Destination::Podman);
    }
    if let DialSpec::DockerGrpc { .. } = spec {
        // The engine's own exporter writes straight into its image store.
        return (
            daemon("moby", &[("name", target)]),
            Destination::DockerStore,
        );
    }
    let endpoint = std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".into());
    (tarball, Destination::Docker { endpoint })
}

async fn deliver(destination: Destination, tarball: Tarball) -> anyhow::Result<()> {
    match destination {
        Destination::Docker { endpoint } => {
            deliver::load_into_docker(&endpoint, tarball).await?;
        }
        Destination::Podman => {
            deliver::load_into_podman(tarball).await?;
        }
        Destination::OciLayout(dir) => deliver::write_oci_layout(&dir, tarball).await?,
        Destination::DockerStore | Destination::Registry => build::discard(tarball).await?,
    }
    Ok(())
}

/// The patched image's reference, with Copacetic's rules: `-t TAG` replaces
/// the tag (a `-t` holding a repository is used as it is); without `-t`, the
/// image's tag gets `-SUFFIX`.
fn target_reference(image: &str, tag: Option<&str>, suffix: &str) -> anyhow::Result<String> {
    let (repo, current) = split_reference(image);
    match tag {
        Some(tag) if tag.contains('/') || tag.contains(':') => Ok(tag.to_string()),
        Some(tag) if valid_tag(tag) => Ok(format!("{repo}:{tag}")),
        Some(tag) => anyhow::bail!("invalid tag `{tag}`"),
        None => {
            let Some(current) = current else {
                anyhow::bail!("image `{image}` has no tag to add `-{suffix}` to; pass -t");
            };
            let tag = format!("{current}-{suffix}");
            anyhow::ensure!(valid_tag(&tag), "invalid tag `{tag}` (from --tag-suffix)");
            Ok(format!("{repo}:{tag}"))
        }
    }
}

/// Splits `repo[:tag][@digest]` into the repository and the tag.
fn split_reference(image: &str) -> (&str, Option<&str>) {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_slash = without_digest.rfind('/').map_or(0, |i| i + 1);
    match without_digest[last_slash..].rfind(':') {
        Some(i) => (
            &without_digest[..last_slash + i],
            Some(&without_digest[last_slash + i + 1..]),
        ),
        None => (without_digest, None),
    }
}

/// Docker's tag rule: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 128
        && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_copacetic_timeouts() {
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("m").is_err());
    }

    #[test]
    fn target_reference_follows_copacetic_naming() {
        let t = |image, tag, suffix| target_reference(image, tag, suffix).unwrap();
        assert_eq!(
            t("nginx:1.21.6", Some("1.21.6-patched"), "patched"),
            "nginx:1.21.6-patched"
        );
        assert_eq!(
            t("docker.io/library/nginx:1.21.6", None, "patched"),
            "docker.io/library/nginx:1.21.6-patched"
        );
        assert_eq!(
            t("127.0.0.1:5000/a/b:1", None, "fixed"),
            "127.0.0.1:5000/a/b:1-fixed"
        );
        assert_eq!(
            t("127.0.0.1:5000/a/b:1", Some("2"), "patched"),
            "127.0.0.1:5000/a/b:2"
        );
        assert_eq!(
            t("a/b:1", Some("reg:5000/c/d:9"), "patched"),
            "reg:5000/c/d:9"
        );
        assert!(target_reference("127.0.0.1:5000/a/b", None, "patched").is_err());
        assert!(target_reference("a:1", Some("bad tag"), "patched").is_err());
    }

    #[test]
    fn documented_defaults_hold() {
        assert_eq!(
            parse_duration(DEFAULT_TIMEOUT),
            Ok(Duration::from_secs(300))
        );
        assert_eq!(DEFAULT_TAG_SUFFIX, "patched");
    }
}
