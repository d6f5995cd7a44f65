//! Report: read a vulnerability report (Trivy JSON) into the list of OS
//! packages to update, each with the lowest version that fixes all of its
//! reported vulnerabilities.
//!
//! This module only reads the report. It never decides how packages are
//! installed, and it refuses names and versions that a package manager could
//! read as anything but a name or a version.

use std::collections::BTreeMap;
use std::path::Path;

use debversion::Version;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// The OS families whose packages copa can update. Alpine (apk) and RPM
/// distributions are refused by name until their package-manager modules
/// exist beside `dpkg`.
pub const SUPPORTED_FAMILIES: &[&str] = &["debian", "ubuntu"];

/// What a report asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpdatePlan {
    /// The OS the report was made for.
    pub os: OsInfo,
    /// Packages with a fix, sorted by name; one entry per package.
    pub updates: Vec<PackageUpdate>,
    /// Packages with vulnerabilities but no fixed version, sorted by name.
    pub unfixed: Vec<UnfixedPackage>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OsInfo {
    /// `debian` or `ubuntu`.
    pub family: String,
    /// e.g. `12.5`, `22.04`.
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageUpdate {
    pub name: String,
    pub installed: String,
    /// The highest of the fixed versions reported for this package.
    pub fixed: String,
    pub vulnerabilities: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnfixedPackage {
    pub name: String,
    pub installed: String,
    pub vulnerabilities: Vec<String>,
}

/// Why a report cannot be used.
#[derive(Debug, Error)]
pub enum ReportError {
    #[error("failed to read report `{path}`")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("report `{path}` is not valid Trivy JSON: {error}")]
    Json {
        path: String,
        error: serde_json::Error,
    },
    #[error("report `{path}` is empty")]
    Empty { path: String },
    #[error(
        "report `{path}` names no OS (Metadata.OS is missing); was it made for a container image?"
    )]
    NoOs { path: String },
    #[error("report `{path}` is for {family}; copa patches {} images", SUPPORTED_FAMILIES.join(" and "))]
    UnsupportedOs { path: String, family: String },
    #[error("report `{path}` has an invalid package name `{name}`")]
    BadName { path: String, name: String },
    #[error("report `{path}` has an invalid version `{version}` for package `{name}`")]
    BadVersion {
        path: String,
        name: String,
        version: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyReport {
    #[serde(default)]
    metadata: Option<TrivyMetadata>,
    #[serde(default)]
    results: Vec<TrivyResult>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyMetadata {
    #[serde(rename = "OS")]
    os: Option<TrivyOs>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyOs {
    family: String,
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyResult {
    #[serde(default)]
    class: String,
    #[serde(default)]
    vulnerabilities: Vec<TrivyVulnerability>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TrivyVulnerability {
    #[serde(rename = "VulnerabilityID", default)]
    id: String,
    pkg_name: String,
    #[serde(default)]
    installed_version: String,
    #[serde(default)]
    fixed_version: String,
}

/// Reads a Trivy JSON report from a file.
pub fn read_trivy(path: &Path) -> Result<UpdatePlan, ReportError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| ReportError::Read {
        path: shown.clone(),
        source,
    })?;
    parse_trivy(&bytes, &shown)
}

/// Parses a Trivy JSON report; `path` names it in errors.
pub fn parse_trivy(bytes: &[u8], path: &str) -> Result<UpdatePlan, ReportError> {
    let path = path.to_string();
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ReportError::Empty { path });
    }
    let report: TrivyReport = serde_json::from_slice(bytes).map_err(|error| ReportError::Json {
        path: path.clone(),
        error,
    })?;

    let Some(os) = report.metadata.and_then(|m| m.os) else {
        return Err(ReportError::NoOs { path });
    };
    let family = os.family.to_ascii_lowercase();
    if !SUPPORTED_FAMILIES.contains(&family.as_str()) {
        return Err(ReportError::UnsupportedOs {
            path,
            family: os.family,
        });
    }

    // name → (installed, highest fixed, ids)
    let mut fixed: BTreeMap<String, (String, Option<Version>, Vec<String>)> = BTreeMap::new();
    let vulnerabilities = report
        .results
        .into_iter()
        .filter(|r| r.class == "os-pkgs" || r.class.is_empty())
        .flat_map(|r| r.vulnerabilities);
    for vuln in vulnerabilities {
        let name = vuln.pkg_name;
        if !valid_package_name(&name) {
            return Err(ReportError::BadName { path, name });
        }
        let bad_version = |version: &str| ReportError::BadVersion {
            path: path.clone(),
            name: name.clone(),
            version: version.to_string(),
        };
        // Trivy may list several fixed versions, comma-separated; the
        // lowest one that applies to this release comes first.
        let candidate = match vuln.fixed_version.split(',').next().map(str::trim) {
            None | Some("") => None,
            Some(text) => Some(parse_version(text).ok_or_else(|| bad_version(text))?),
        };
        if !vuln.installed_version.is_empty() && parse_version(&vuln.installed_version).is_none() {
            return Err(bad_version(&vuln.installed_version));
        }

        let entry = fixed
            .entry(name)
            .or_insert_with(|| (vuln.installed_version.clone(), None, Vec::new()));
        if let Some(candidate) = candidate
            && entry.1.as_ref().is_none_or(|current| candidate > *current)
        {
            entry.1 = Some(candidate);
        }
        if !vuln.id.is_empty() && !entry.2.contains(&vuln.id) {
            entry.2.push(vuln.id);
        }
    }

    let mut updates = Vec::new();
    let mut unfixed = Vec::new();
    for (name, (installed, version, mut ids)) in fixed {
        ids.sort();
        match version {
            Some(version) => updates.push(PackageUpdate {
                name,
                installed,
                fixed: version.to_string(),
                vulnerabilities: ids,
            }),
            None => unfixed.push(UnfixedPackage {
                name,
                installed,
                vulnerabilities: ids,
            }),
        }
    }

    Ok(UpdatePlan {
        os: OsInfo {
            family,
            version: os.name,
        },
        updates,
        unfixed,
    })
}

/// Debian policy §5.6.1: lower case letters, digits, `+`, `-`, `.`; at least
/// two characters, starting with a letter or digit.
pub fn valid_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))
}

/// A Debian version, or `None` when it has characters a version cannot have.
pub fn parse_version(text: &str) -> Option<Version> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | '-' | ':');
    if text.is_empty() || text.len() > 256 || !text.chars().all(allowed) {
        return None;
    }
    if !text.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(os: &str, vulns: &str) -> Vec<u8> {
        format!(
            r#"{{"SchemaVersion":2,"ArtifactName":"img","ArtifactType":"container_image",
            "Metadata":{{"OS":{os}}},
            "Results":[{{"Target":"img (debian 12.5)","Class":"os-pkgs","Type":"debian",
            "Vulnerabilities":[{vulns}]}},
            {{"Target":"app/package-lock.json","Class":"lang-pkgs","Type":"npm",
            "Vulnerabilities":[{{"VulnerabilityID":"CVE-9","PkgName":"lodash","InstalledVersion":"1.0.0","FixedVersion":"4.0.0"}}]}}]}}"#
        )
        .into_bytes()
    }

    const DEBIAN: &str = r#"{"Family":"debian","Name":"12.5"}"#;

    fn vuln(id: &str, pkg: &str, installed: &str, fixed: &str) -> String {
        format!(
            r#"{{"VulnerabilityID":"{id}","PkgName":"{pkg}","InstalledVersion":"{installed}","FixedVersion":"{fixed}"}}"#
        )
    }

    #[test]
    fn duplicates_collapse_to_the_highest_fixed_version() {
        let vulns = [
            vuln("CVE-1", "libssl3", "3.0.11-1~deb12u1", "3.0.11-1~deb12u2"),
            vuln("CVE-2", "libssl3", "3.0.11-1~deb12u1", "3.0.13-1~deb12u1"),
            vuln("CVE-3", "libssl3", "3.0.11-1~deb12u1", "3.0.11-1~deb12u3"),
        ]
        .join(",");
        let plan = parse_trivy(&report(DEBIAN, &vulns), "r.json").unwrap();
        assert_eq!(plan.updates.len(), 1);
        assert_eq!(plan.updates[0].fixed, "3.0.13-1~deb12u1");
        assert_eq!(plan.updates[0].vulnerabilities, ["CVE-1", "CVE-2", "CVE-3"]);
    }

    #[test]
    fn tilde_sorts_before_release_when_choosing_the_highest_fix() {
        let vulns = [
            vuln(
                "CVE-1",
                "zlib1g",
                "1:1.2.13.dfsg-1",
                "1:1.2.13.dfsg-1~deb12u1",
            ),
            vuln("CVE-2", "zlib1g", "1:1.2.13.dfsg-1", "1:1.2.13.dfsg-1"),
        ]
        .join(",");
        let plan = parse_trivy(&report(DEBIAN, &vulns), "r.json").unwrap();
        assert_eq!(plan.updates[0].fixed, "1:1.2.13.dfsg-1");
    }

    #[test]
    fn packages_without_a_fix_are_listed_apart_and_language_packages_ignored() {
        let vulns = [
            vuln("CVE-1", "bash", "5.2.15-2+b2", ""),
            vuln("CVE-2", "tar", "1.34+dfsg-1.2", "1.34+dfsg-1.2+deb12u1"),
        ]
        .join(",");
        let plan = parse_trivy(&report(DEBIAN, &vulns), "r.json").unwrap();
        assert_eq!(plan.updates.len(), 1);
        assert_eq!(plan.updates[0].name, "tar");
        assert_eq!(plan.unfixed.len(), 1);
        assert_eq!(plan.unfixed[0].name, "bash");
        assert_eq!(plan.os.family, "debian");
        assert_eq!(plan.os.version, "12.5");
    }

    #[test]
    fn report_for_another_os_is_refused_naming_it() {
        let os = r#"{"Family":"alpine","Name":"3.19.1"}"#;
        let err = parse_trivy(&report(os, ""), "r.json").unwrap_err();
        assert_eq!(
            err.to_string(),
            "report `r.json` is for alpine; copa patches debian and ubuntu images"
        );
    }

    #[test]
    fn empty_and_malformed_reports_are_refused() {
        let err = parse_trivy(b"  \n", "r.json").unwrap_err();
        assert_eq!(err.to_string(), "report `r.json` is empty");
        let err = parse_trivy(b"{\"Results\": [", "r.json").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("report `r.json` is not valid Trivy JSON")
        );
        let err = parse_trivy(b"{}", "r.json").unwrap_err();
        assert!(err.to_string().contains("names no OS"));
    }

    #[test]
    fn names_and_versions_that_could_become_options_are_refused() {
        let bad_name = vuln("CVE-1", "-oAPT::Get::AllowUnauthenticated=1", "1", "2");
        let err = parse_trivy(&report(DEBIAN, &bad_name), "r.json").unwrap_err();
        assert!(matches!(err, ReportError::BadName { .. }), "{err}");

        let bad_version = vuln("CVE-1", "tar", "1.0", "2.0 ; reboot");
        let err = parse_trivy(&report(DEBIAN, &bad_version), "r.json").unwrap_err();
        assert!(matches!(err, ReportError::BadVersion { .. }), "{err}");
    }

    #[test]
    fn package_names_follow_debian_policy() {
        for good in ["libc6", "g++", "libstdc++6", "python3.11", "0ad"] {
            assert!(valid_package_name(good), "{good}");
        }
        for bad in [
            "",
            "a",
            "Libc6",
            "-x",
            ".x",
            "a b",
            "a/b",
            "a;b",
            "pkg:amd64",
        ] {
            assert!(!valid_package_name(bad), "{bad}");
        }
    }
}
