//! VEX: an OpenVEX document saying which vulnerabilities the patch fixed.
//!
//! It states only what the package manifest proved: a vulnerability is
//! `fixed` when its package reached the fixed version. It never writes a
//! half document: the file appears whole or not at all.

use std::path::Path;

use anyhow::Context;
use serde_json::json;

use super::build::Summary;
use super::report::UpdatePlan;

/// The OpenVEX version of the documents copa writes.
pub const OPENVEX_CONTEXT: &str = "https://openvex.dev/ns/v0.2.0";

/// Writes the document for a patch of `image` into `target` to `path`.
pub fn write(
    path: &Path,
    image: &str,
    target: &str,
    plan: &UpdatePlan,
    summary: &Summary,
) -> anyhow::Result<()> {
    let document = document(image, target, plan, summary);
    let text = serde_json::to_string_pretty(&document)?;
    let tmp = path.with_extension("copa-tmp");
    std::fs::write(&tmp, text + "\n")
        .with_context(|| format!("failed to write `{}`", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("failed to write `{}`", path.display()))
}

fn document(image: &str, target: &str, plan: &UpdatePlan, summary: &Summary) -> serde_json::Value {
    let now = super::build::rfc3339_now();
    let product = format!("pkg:oci/{}", target.rsplit('/').next().unwrap_or(target));
    let family = &plan.os.family;

    let mut statements = Vec::new();
    for (name, version) in &summary.fixed {
        let Some(update) = plan.updates.iter().find(|u| &u.name == name) else {
            continue;
        };
        for id in &update.vulnerabilities {
            statements.push(json!({
                "vulnerability": { "name": id },
                "products": [{
                    "@id": product,
                    "subcomponents": [{ "@id": format!("pkg:deb/{family}/{name}@{version}") }],
                }],
                "status": "fixed",
            }));
        }
    }

    json!({
        "@context": OPENVEX_CONTEXT,
        "@id": format!("https://openvex.dev/docs/public/copa-{}", crate::llb::digest_of(format!("{image} {target} {now}").as_bytes()).trim_start_matches("sha256:")),
        "author": "copa",
        "timestamp": now,
        "version": 1,
        "tooling": format!("copa {}", env!("CARGO_PKG_VERSION")),
        "statements": statements,
    })
}
