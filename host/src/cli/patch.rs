//! `copa patch`: Copacetic's flags, accepted and checked. The patch itself
//! (gateway build, dpkg, export) is not written yet: the command says so and
//! exits non-zero rather than pretending.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use super::AddrArgs;

/// Copacetic's default `--timeout`.
pub const DEFAULT_TIMEOUT: &str = "5m";

/// Copacetic's default `--tag-suffix`.
pub const DEFAULT_TAG_SUFFIX: &str = "patched";

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

pub fn run(args: &PatchArgs) -> anyhow::Result<()> {
    if args.scanner != "trivy" {
        anyhow::bail!(
            "scanner `{}` is not supported yet; only `trivy` reports are read",
            args.scanner
        );
    }
    // FIXME(#3): the patch itself is issue #3; until then copa refuses rather
    // than doing half a job.
    anyhow::bail!(
        "patching `{}` is not implemented yet: this build of copa only resolves and connects (see `copa connect`)",
        args.image
    )
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
    fn documented_defaults_hold() {
        assert_eq!(
            parse_duration(DEFAULT_TIMEOUT),
            Ok(Duration::from_secs(300))
        );
        assert_eq!(DEFAULT_TAG_SUFFIX, "patched");
    }
}
