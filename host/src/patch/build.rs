//! The patch build: one gateway build that resolves the image, updates its
//! packages with the graph of the package-manager module, checks what got
//! installed, and returns the patched image with its config to the exporter.
//!
//! This module drives BuildKit and nothing else: it never dials (it gets a
//! connected client) and never prints (it reports through [`Summary`] and
//! its errors).

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use futures_util::StreamExt;
use serde_json::{Value, json};

use super::dpkg::{self, NotFixed, Strategy};
use super::progress::Progress;
use super::report::UpdatePlan;
use crate::buildkit::filesend::{Tarball, TarballExporter};
use crate::buildkit::gateway::GatewayBuild;
use crate::buildkit::proto::moby::buildkit::v1 as control;
use crate::buildkit::proto::moby::buildkit::v1::frontend;
use crate::buildkit::proto::pb;
use crate::buildkit::session::SessionServices;
use crate::buildkit::{Capabilities, Client};
use crate::llb::{Image, platform};

/// The label naming the image a patched image was made from.
pub const BASE_IMAGE_LABEL: &str = "sh.copa.image.base";
/// The label carrying the time of the patch.
pub const PATCHED_LABEL: &str = "sh.copa.image.patched";

/// What to patch and how the result leaves BuildKit.
pub struct Request<'a> {
    pub image: &'a str,
    /// The report's plan; `None` updates every package that has an update.
    pub plan: Option<&'a UpdatePlan>,
    pub platform: pb::Platform,
    pub ignore_errors: bool,
    pub output: Output,
}

/// Where BuildKit sends the patched image.
pub enum Output {
    /// A tarball streamed back through the session (docker or OCI archive).
    Tarball(TarballExporter),
    /// An exporter that needs nothing from copa: `image` with push, or
    /// `moby` (Docker Engine's own store).
    Daemon {
        exporter: String,
        attrs: BTreeMap<String, String>,
    },
}

/// The image has no package with an update: nothing was built or tagged.
#[derive(Debug, thiserror::Error)]
#[error("no package in `{0}` has an update; the image is left as it is")]
pub struct NothingToPatch(pub String);

/// What the build did.
#[derive(Debug, serde::Serialize)]
pub struct Summary {
    pub strategy: Strategy,
    pub fixed: Vec<(String, String)>,
    pub not_fixed: Vec<NotFixed>,
    pub exporter_response: BTreeMap<String, String>,
}

/// Runs the patch build, showing its progress as `progress` says. With a
/// tarball output, `on_tarball` gets the stream as soon as the build starts
/// and must consume it while the build runs.
pub async fn run<F, Fut>(
    client: &Client,
    request: Request<'_>,
    progress: Progress,
    on_tarball: F,
) -> anyhow::Result<Summary>
where
    F: FnOnce(Tarball) -> Fut,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let services = SessionServices::default();
    let (build, delivery) = match &request.output {
        Output::Tarball(exporter) => {
            let (build, tarball) = GatewayBuild::start_export(client, services, exporter);
            (build, Some(tokio::spawn(on_tarball(tarball))))
        }
        Output::Daemon { exporter, attrs } => {
            let solve = control::SolveRequest {
                exporter_deprecated: exporter.clone(),
                exporter_attrs_deprecated: attrs.clone(),
                exporters: vec![control::Exporter {
                    r#type: exporter.clone(),
                    attrs: attrs.clone(),
                }],
                ..Default::default()
            };
            (GatewayBuild::start_with(client, services, solve), None)
        }
    };

    // The output is complete before `run` returns, whatever the outcome; a
    // cancelled `run` completes it when the follower is dropped.
    let follower = progress.follow(build.progress());
    let outcome = complete(build, &request, delivery).await;
    follower.finish().await;
    outcome
}

/// Drives the started build to its end: the patch, then the export and the
/// delivery, or the build ended with the error.
async fn complete(
    build: GatewayBuild,
    request: &Request<'_>,
    delivery: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
) -> anyhow::Result<Summary> {
    let result = drive(&build, request).await;
    let (summary, config) = match result {
        Ok(done) => done,
        Err(error) => {
            let _ = build_failed(build, &error).await;
            return Err(error);
        }
    };
    let mut build = build;
    let (patched_ref, config) = config;
    let metadata = BTreeMap::from([("containerimage.config".to_string(), config)]);
    build
        .ret(frontend::Result {
            result: Some(frontend::result::Result::Ref(frontend::Ref {
                id: patched_ref,
                def: None,
            })),
            metadata,
        })
        .await
        .context("failed to hand the patched image to the exporter")?;
    let response = build
        .finish()
        .await
        .context("failed to export the patched image")?;

    if let Some(delivery) = delivery {
        delivery
            .await
            .context("the delivery task failed")?
            .context("failed to deliver the patched image")?;
    }

    Ok(Summary {
        exporter_response: response.exporter_response,
        ..summary
    })
}

async fn build_failed(mut build: GatewayBuild, error: &anyhow::Error) -> anyhow::Result<()> {
    let message = format!("{error:#}");
    build.ret_error(tonic::Code::Aborted, &message).await?;
    let _ = build.finish().await;
    Ok(())
}

type Done = (Summary, (String, Vec<u8>));

async fn drive(build: &GatewayBuild, request: &Request<'_>) -> anyhow::Result<Done> {
    let caps = build
        .ping()
        .await
        .context("failed to start the patch build")?;
    let strategy = choose_strategy(&caps);

    let config = resolve_config(build, request.image, &request.platform).await?;
    let image = Image::new(request.image)
        .with_context(|| format!("invalid image reference `{}`", request.image))?
        .platform(request.platform.clone())
        .state()
        .with_image_config(&config)
        .context("failed to read the image config")?;

    // An image patched before is patched again from its base, so its patch
    // layer is replaced rather than stacked (MergeOp/DiffOp only).
    let config_json: Value = serde_json::from_slice(&config).context("image config is not JSON")?;
    let base = config_json["config"]["Labels"][BASE_IMAGE_LABEL].as_str();
    let (image_state, before) = match (base, strategy) {
        (Some(base), Strategy::MergeDiff) => {
            let base_config = resolve_config(build, base, &request.platform).await?;
            let base_state = Image::new(base)
                .with_context(|| format!("invalid base image label `{base}`"))?
                .platform(request.platform.clone())
                .state()
                .with_image_config(&base_config)
                .context("failed to read the base image config")?;
            (base_state, Some(image))
        }
        _ => (image, None),
    };

    let packages = request.plan.map(|p| p.updates.as_slice());
    let graph = dpkg::update_graph(&image_state, packages, strategy, before.as_ref());

    let after = read_manifest(build, &graph.manifest, &request.platform).await?;
    let outcome = match request.plan {
        Some(plan) => dpkg::check_manifest(&after, &plan.updates)?,
        None => {
            let original = dpkg::manifest_of(before.as_ref().unwrap_or(&image_state));
            let original = read_manifest(build, &original, &request.platform).await?;
            let fixed = dpkg::changed(
                &dpkg::parse_manifest(&original)?,
                &dpkg::parse_manifest(&after)?,
            );
            if fixed.is_empty() {
                return Err(NothingToPatch(request.image.to_string()).into());
            }
            dpkg::Outcome {
                fixed,
                not_fixed: Vec::new(),
            }
        }
    };
    if !outcome.not_fixed.is_empty() && !request.ignore_errors {
        let names: Vec<String> = outcome
            .not_fixed
            .iter()
            .map(|n| match &n.installed {
                Some(v) => format!("{} (installed {v}, needs {})", n.name, n.wanted),
                None => format!("{} (not installed, needs {})", n.name, n.wanted),
            })
            .collect();
        bail!(
            "packages not updated to their fixed versions: {} (pass --ignore-errors to patch the rest)",
            names.join(", ")
        );
    }

    let patched_ref = solve(build, &graph.patched, &request.platform).await?;
    let base_ref = base.unwrap_or(request.image).to_string();
    let new_config = patched_config(&config_json, &base_ref, &outcome.fixed, &request.platform)?;

    let summary = Summary {
        strategy,
        fixed: outcome.fixed,
        not_fixed: outcome.not_fixed,
        exporter_response: BTreeMap::new(),
    };
    Ok((summary, (patched_ref, new_config)))
}

/// MergeOp and DiffOp make the clean patch layer; without them, one exec.
pub fn choose_strategy(caps: &Capabilities) -> Strategy {
    if caps.merge_op() && caps.diff_op() {
        Strategy::MergeDiff
    } else {
        Strategy::SingleExec
    }
}

async fn resolve_config(
    build: &GatewayBuild,
    image: &str,
    platform: &pb::Platform,
) -> anyhow::Result<Vec<u8>> {
    let reference = crate::llb::normalize_reference(image)
        .with_context(|| format!("invalid image reference `{image}`"))?;
    let response = build
        .resolve_image_config(frontend::ResolveImageConfigRequest {
            image_ref: reference,
            platform: Some(platform.clone()),
            resolve_mode: "default".into(),
            log_name: format!("resolve image config for {image}"),
            ..Default::default()
        })
        .await
        .with_context(|| format!("failed to resolve image `{image}`"))?;
    Ok(response.config)
}

/// Solves a manifest state and reads its file.
async fn read_manifest(
    build: &GatewayBuild,
    state: &crate::llb::State,
    platform: &pb::Platform,
) -> anyhow::Result<String> {
    let manifest_ref = solve(build, state, platform).await?;
    let manifest = build
        .read_file(frontend::ReadFileRequest {
            ref_id: manifest_ref,
            file_path: dpkg::MANIFEST_FILE.to_string(),
            range: None,
        })
        .await
        .context("failed to read the package manifest")?;
    Ok(String::from_utf8_lossy(&manifest).into_owned())
}

async fn solve(
    build: &GatewayBuild,
    state: &crate::llb::State,
    platform: &pb::Platform,
) -> anyhow::Result<String> {
    let definition = state
        .marshal_for(platform)
        .context("failed to encode the LLB graph")?;
    let response = build
        .solve(frontend::SolveRequest {
            definition: Some(definition),
            evaluate: true,
            // Without this the daemon answers in deprecated fields.
            allow_result_array_ref: true,
            ..Default::default()
        })
        .await?;
    match response.result.and_then(|r| r.result) {
        Some(frontend::result::Result::Ref(r)) => Ok(r.id),
        _ => bail!("BuildKit returned no result for the solve"),
    }
}

/// The original config with copa's labels and a history entry for the patch
/// layer, for the target platform.
fn patched_config(
    config: &Value,
    base: &str,
    fixed: &[(String, String)],
    target: &pb::Platform,
) -> anyhow::Result<Vec<u8>> {
    let mut config = config.clone();
    let now = rfc3339_now();
    let labels = &mut config["config"]["Labels"];
    if !labels.is_object() {
        *labels = json!({});
    }
    labels[BASE_IMAGE_LABEL] = json!(base);
    labels[PATCHED_LABEL] = json!(now);

    let updated: Vec<String> = fixed.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let entry = json!({
        "created": now,
        "created_by": format!("copa patch: {}", updated.join(" ")),
        "comment": "copa",
    });
    match config["history"].as_array_mut() {
        Some(history) => history.push(entry),
        None => config["history"] = json!([entry]),
    }

    let platform = platform::normalize(target.clone());
    config["os"] = json!(platform.os);
    config["architecture"] = json!(platform.architecture);
    if platform.variant.is_empty() {
        if let Some(object) = config.as_object_mut() {
            object.remove("variant");
        }
    } else {
        config["variant"] = json!(platform.variant);
    }
    Ok(serde_json::to_vec(&config)?)
}

pub(crate) fn rfc3339_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let days = secs / 86_400;
    let rest = secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to a (year, month, day) date (Howard Hinnant's
/// civil-from-days algorithm).
pub(crate) fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Drains a tarball, for outputs that only need the build to finish.
pub async fn discard(mut tarball: Tarball) -> anyhow::Result<()> {
    while let Some(chunk) = tarball.next().await {
        chunk?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_computed_in_the_civil_calendar() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_790), (2026, 12, 3));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn patched_config_records_the_base_the_fixes_and_the_platform() {
        let config = json!({"architecture": "amd64", "os": "linux", "config": {"Env": ["A=1"]}, "history": [{"created_by": "x"}]});
        let fixed = [("tar".to_string(), "1.35".to_string())];
        let out =
            patched_config(&config, "debian:bookworm", &fixed, &platform::linux_amd64()).unwrap();
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out["config"]["Labels"][BASE_IMAGE_LABEL], "debian:bookworm");
        assert_eq!(out["config"]["Env"][0], "A=1");
        assert_eq!(out["history"].as_array().unwrap().len(), 2);
        assert_eq!(out["history"][1]["created_by"], "copa patch: tar=1.35");
        assert!(out.get("variant").is_none());
    }
}
