//! dpkg: the LLB graphs that update Debian and Ubuntu packages with apt, and
//! the check of what got installed against what the report asked for.
//!
//! Package names reach apt as separate argv entries, never inside a shell
//! script; names are validated by the report module before they get here.
//!
//! Known gap: distroless images (no apt; packages listed in
//! `/var/lib/dpkg/status.d`) are not handled. Copacetic installs into them
//! from a tooling image; here such an image fails at `apt-get update`, with
//! apt's error. It goes away when a tooling-image path is written.

use debversion::Version;
use thiserror::Error;

use crate::llb::{FileAction, Mount, State, diff, merge, scratch};

use super::report::{PackageUpdate, parse_version};

/// Where the manifest exec writes its output (a scratch mount).
pub const MANIFEST_DIR: &str = "/copa-out";
/// The manifest file inside [`MANIFEST_DIR`].
pub const MANIFEST_FILE: &str = "results.manifest";

const APT_RETRIES: &str = "Acquire::Retries=3";
/// Makes `apt-get update` fail when a source cannot be fetched (by default it
/// only warns, and the install then silently finds nothing new). Older apt
/// versions ignore the unknown option.
const APT_UPDATE_STRICT: &str = "APT::Update::Error-Mode=any";

/// The two results of an update graph.
pub struct UpdateGraph {
    /// The patched image: the original layers plus one layer of changes.
    pub patched: State,
    /// A scratch state holding [`MANIFEST_FILE`]: `name version` per line for
    /// every installed package after the update.
    pub manifest: State,
}

/// How the patch layer is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// apt runs on a copy of the image; the layer is the diff between the
    /// states before and after the install, merged onto the original (needs
    /// BuildKit's MergeOp and DiffOp).
    MergeDiff,
    /// One exec updates and installs with the apt lists and caches on tmpfs
    /// mounts, so they never reach the layer (for BuildKit without
    /// MergeOp/DiffOp, such as Docker Engine's on its classic image store).
    SingleExec,
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Strategy::MergeDiff => "merge/diff",
            Strategy::SingleExec => "single exec (no MergeOp/DiffOp)",
        })
    }
}

/// The install step of a graph: the reported packages, or (with no report)
/// every package that has an update. The script's `"$@"` are the names.
fn install_step(packages: Option<&[PackageUpdate]>) -> (&'static str, String, Vec<String>) {
    match packages {
        Some(packages) => {
            let names: Vec<String> = packages.iter().map(|p| p.name.clone()).collect();
            let script = "DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Retries=3 install \
                 --no-install-recommends -y -- \"$@\"";
            let name = format!("Installing {} security updates", names.len());
            (script, name, names)
        }
        None => {
            let script = "DEBIAN_FRONTEND=noninteractive apt-get -o Acquire::Retries=3 upgrade \
                 --no-install-recommends -y";
            (script, "Upgrading all packages".to_string(), Vec::new())
        }
    }
}

/// Builds the graph that updates `packages` in `image` (`None`: every
/// package with an update). `patched_before`, when given, is the same
/// image's earlier patch (the user's image), whose patch layer is replaced
/// rather than stacked (MergeDiff only).
pub fn update_graph(
    image: &State,
    packages: Option<&[PackageUpdate]>,
    strategy: Strategy,
    patched_before: Option<&State>,
) -> UpdateGraph {
    let (install, install_name, names) = install_step(packages);

    let patched = match strategy {
        Strategy::MergeDiff => {
            // Start from the earlier patch, if any, so its updates stay.
            let start = patched_before.unwrap_or(image);
            let updated = start
                .run([
                    "apt-get",
                    "-o",
                    APT_RETRIES,
                    "-o",
                    APT_UPDATE_STRICT,
                    "update",
                ])
                .ignore_cache()
                .custom_name("Updating package database")
                .root();
            // Install and clean in one exec, so the diff is one layer. The
            // names are positional parameters of the script, never spliced
            // into its text.
            let script = format!("{install} && apt-get clean -y");
            let mut args = vec!["sh", "-c", &script, "copa-patch"];
            args.extend(names.iter().map(String::as_str));
            let installed = updated.run(args).custom_name(&install_name).root();
            let changes = diff(&updated, &installed).state();
            match patched_before {
                None => merge([image.clone(), changes]).state(),
                Some(before) => {
                    // One layer holding the earlier patch and this one: the
                    // two diffs copied onto scratch. (A copy keeps no
                    // whiteouts, so a file an update deleted reappears from
                    // the base; Copacetic squashes the same way.)
                    let earlier = diff(image, before).state();
                    let both = merge([earlier, changes]).state();
                    let squashed = scratch()
                        .file(FileAction::copy(&both, "/", "/"))
                        .custom_name("Squashing the patch layers")
                        .state();
                    merge([image.clone(), squashed]).state()
                }
            }
        }
        Strategy::SingleExec => {
            // Names go in as positional parameters of the script, never
            // spliced into its text.
            let script =
                format!("apt-get -o {APT_RETRIES} -o {APT_UPDATE_STRICT} update && {install}");
            let mut args = vec!["sh", "-c", &script, "copa-patch"];
            args.extend(names.iter().map(String::as_str));
            image
                .run(args)
                .mount(Mount::tmpfs("/var/lib/apt/lists"))
                .mount(Mount::tmpfs("/var/cache/apt"))
                .ignore_cache()
                .custom_name(&install_name)
                .root()
        }
    };

    let manifest = manifest_of(&patched);
    UpdateGraph { patched, manifest }
}

/// A scratch state holding [`MANIFEST_FILE`] for the packages of `state`.
pub fn manifest_of(state: &State) -> State {
    let script =
        format!("dpkg-query -W -f '${{Package}} ${{Version}}\\n' > {MANIFEST_DIR}/{MANIFEST_FILE}");
    state
        .run(["sh", "-c", &script])
        .mount(Mount::scratch(MANIFEST_DIR))
        .custom_name("Generating package manifest")
        .finish()
        .mount(MANIFEST_DIR)
        .expect("the manifest exec has a scratch mount")
}

/// Parses a manifest into name → version (a `:arch` suffix dropped).
pub fn parse_manifest(
    manifest: &str,
) -> Result<std::collections::BTreeMap<String, String>, ManifestError> {
    let mut installed = std::collections::BTreeMap::new();
    for line in manifest.lines().filter(|l| !l.trim().is_empty()) {
        let (name, version) = line
            .split_once(' ')
            .ok_or_else(|| ManifestError(line.to_string()))?;
        let name = name.split(':').next().unwrap_or(name);
        installed.insert(name.to_string(), version.trim().to_string());
    }
    Ok(installed)
}

/// The packages whose version differs between two manifests: name, new version.
pub fn changed(
    before: &std::collections::BTreeMap<String, String>,
    after: &std::collections::BTreeMap<String, String>,
) -> Vec<(String, String)> {
    after
        .iter()
        .filter(|(name, version)| before.get(*name) != Some(*version))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

/// A package that did not reach its fixed version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NotFixed {
    pub name: String,
    /// The version installed after the update, if the package is installed.
    pub installed: Option<String>,
    pub wanted: String,
}

/// What the manifest says about the requested updates.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Outcome {
    /// Packages now at or above their fixed version: name, version.
    pub fixed: Vec<(String, String)>,
    pub not_fixed: Vec<NotFixed>,
}

#[derive(Debug, Error)]
#[error("the package manifest has a malformed line: `{0}`")]
pub struct ManifestError(String);

/// Compares the manifest (`name version` lines) with the requested updates.
pub fn check_manifest(
    manifest: &str,
    packages: &[PackageUpdate],
) -> Result<Outcome, ManifestError> {
    let mut installed = std::collections::BTreeMap::new();
    for line in manifest.lines().filter(|l| !l.trim().is_empty()) {
        let (name, version) = line
            .split_once(' ')
            .ok_or_else(|| ManifestError(line.to_string()))?;
        // Multi-arch names come as `name:arch` from some dpkg versions.
        let name = name.split(':').next().unwrap_or(name);
        installed.insert(name.to_string(), version.trim().to_string());
    }

    let mut outcome = Outcome {
        fixed: Vec::new(),
        not_fixed: Vec::new(),
    };
    for package in packages {
        let wanted: Option<Version> = parse_version(&package.fixed);
        let now = installed.get(&package.name);
        let good = match (now.and_then(|v| parse_version(v)), wanted) {
            (Some(now), Some(wanted)) => now >= wanted,
            _ => false,
        };
        if good {
            outcome
                .fixed
                .push((package.name.clone(), now.cloned().unwrap_or_default()));
        } else {
            outcome.not_fixed.push(NotFixed {
                name: package.name.clone(),
                installed: now.cloned(),
                wanted: package.fixed.clone(),
            });
        }
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llb::{Image, platform};

    fn update(name: &str, fixed: &str) -> PackageUpdate {
        PackageUpdate {
            name: name.into(),
            installed: "1.0-1".into(),
            fixed: fixed.into(),
            vulnerabilities: vec!["CVE-1".into()],
        }
    }

    #[test]
    fn manifest_at_or_above_the_fix_counts_as_fixed() {
        let manifest =
            "libssl3 3.0.15-1~deb12u1\ntar 1.34+dfsg-1.2\nzlib1g:amd64 1:1.2.13.dfsg-1\n";
        let packages = [
            update("libssl3", "3.0.13-1~deb12u1"),
            update("tar", "1.34+dfsg-1.2+deb12u1"),
            update("zlib1g", "1:1.2.13.dfsg-1"),
            update("missing", "1.0"),
        ];
        let outcome = check_manifest(manifest, &packages).unwrap();
        let fixed: Vec<&str> = outcome.fixed.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(fixed, ["libssl3", "zlib1g"]);
        assert_eq!(outcome.not_fixed.len(), 2);
        assert_eq!(
            outcome.not_fixed[0].installed.as_deref(),
            Some("1.34+dfsg-1.2")
        );
        assert_eq!(outcome.not_fixed[1].installed, None);
    }

    #[test]
    fn malformed_manifest_line_is_an_error() {
        assert!(check_manifest("garbage\n", &[]).is_err());
    }

    fn image() -> State {
        Image::new("debian:bookworm")
            .unwrap()
            .platform(platform::linux_amd64())
            .state()
    }

    #[test]
    fn package_names_reach_apt_as_separate_arguments_in_both_strategies() {
        let packages = [update("libssl3", "3.0.13"), update("tar", "1.35")];
        for strategy in [Strategy::MergeDiff, Strategy::SingleExec] {
            let graph = update_graph(&image(), Some(&packages), strategy, None);
            let def = graph.patched.marshal_for(&platform::linux_amd64()).unwrap();
            let has = |needle: &[u8]| {
                def.def
                    .iter()
                    .any(|op| op.windows(needle.len()).any(|w| w == needle))
            };
            // Each argv entry is its own length-prefixed protobuf string.
            assert!(has(b"\x07libssl3"), "{strategy:?}");
            assert!(has(b"\x03tar"), "{strategy:?}");
            assert!(!has(b"libssl3 tar"), "{strategy:?}: names joined");
        }
    }
}
