//! Platforms as LLB carries them (`pb::Platform`): normalising the spellings
//! of architectures and variants the way containerd's `platforms` package
//! does, parsing `os/arch[/variant]`, and the host's own platform, which is
//! the default for ops that name none.
//!
//! Normalising matters for digests: `linux/aarch64` and `linux/arm64/v8` are
//! the same platform and must produce the same bytes. This module never asks
//! a daemon which platforms it supports.

use crate::buildkit::proto::pb;

use super::LlbError;

/// A platform from its parts, normalised.
pub fn new(os: &str, architecture: &str, variant: &str) -> pb::Platform {
    normalize(pb::Platform {
        os: os.to_string(),
        architecture: architecture.to_string(),
        variant: variant.to_string(),
        ..Default::default()
    })
}

/// `linux/amd64`, the platform of most test images.
pub fn linux_amd64() -> pb::Platform {
    new("linux", "amd64", "")
}

/// Canonical spellings: lower case, `x86_64` as `amd64`, `aarch64` as
/// `arm64` without the implied `v8`, `arm` with its implied `v7`, sorted and
/// de-duplicated OS features.
pub fn normalize(mut platform: pb::Platform) -> pb::Platform {
    platform.os = match platform.os.to_lowercase().as_str() {
        "macos" => "darwin".to_string(),
        os => os.to_string(),
    };

    let architecture = platform.architecture.to_lowercase();
    let variant = platform.variant.to_lowercase();
    let (architecture, variant) = match architecture.as_str() {
        "i386" => ("386", String::new()),
        "x86_64" | "x86-64" | "amd64" if variant == "v1" => ("amd64", String::new()),
        "x86_64" | "x86-64" | "amd64" => ("amd64", variant),
        "aarch64" | "arm64" => match variant.as_str() {
            "8" | "v8" | "v8.0" => ("arm64", String::new()),
            "9" | "9.0" | "v9.0" => ("arm64", "v9".to_string()),
            _ => ("arm64", variant),
        },
        "armhf" => ("arm", "v7".to_string()),
        "armel" => ("arm", "v6".to_string()),
        "arm" => match variant.as_str() {
            "" | "7" => ("arm", "v7".to_string()),
            "5" | "6" | "8" => ("arm", format!("v{variant}")),
            _ => ("arm", variant),
        },
        other => (other, variant),
    };
    platform.architecture = architecture.to_string();
    platform.variant = variant;

    platform.os_features.sort();
    platform.os_features.dedup();
    platform
}

/// Parses `os/arch` or `os/arch/variant` (e.g. `linux/arm64/v8`) and
/// normalises it.
pub fn parse(text: &str) -> Result<pb::Platform, LlbError> {
    let parts: Vec<&str> = text.split('/').collect();
    let invalid = || LlbError::InvalidPlatform {
        platform: text.to_string(),
    };
    match parts.as_slice() {
        [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(new(os, arch, "")),
        [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
            Ok(new(os, arch, variant))
        }
        _ => Err(invalid()),
    }
}

/// The platform copa runs on, normalised: what Go's builder uses for ops
/// whose platform was never set.
pub fn host() -> pb::Platform {
    let os = match std::env::consts::OS {
        "macos" => "darwin",
        os => os,
    };
    let (architecture, variant) = match std::env::consts::ARCH {
        "x86_64" => ("amd64", ""),
        "x86" => ("386", ""),
        "aarch64" => ("arm64", ""),
        "arm" => ("arm", "v7"),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", ""),
        "loongarch64" => ("loong64", ""),
        arch => (arch, ""),
    };
    new(os, architecture, variant)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architecture_aliases_normalise_to_one_spelling() {
        for (arch, variant, want_arch, want_variant) in [
            ("x86_64", "", "amd64", ""),
            ("AMD64", "v1", "amd64", ""),
            ("amd64", "v3", "amd64", "v3"),
            ("aarch64", "", "arm64", ""),
            ("arm64", "v8", "arm64", ""),
            ("arm64", "9.0", "arm64", "v9"),
            ("armhf", "", "arm", "v7"),
            ("armel", "", "arm", "v6"),
            ("arm", "", "arm", "v7"),
            ("arm", "6", "arm", "v6"),
            ("i386", "x", "386", ""),
            ("riscv64", "", "riscv64", ""),
        ] {
            let p = new("Linux", arch, variant);
            assert_eq!(
                (p.os.as_str(), p.architecture.as_str(), p.variant.as_str()),
                ("linux", want_arch, want_variant),
                "{arch}/{variant}"
            );
        }
    }

    #[test]
    fn os_features_are_sorted_and_deduplicated() {
        let p = normalize(pb::Platform {
            os: "windows".into(),
            architecture: "amd64".into(),
            os_features: vec!["win32k".into(), "a".into(), "win32k".into()],
            ..Default::default()
        });
        assert_eq!(p.os_features, ["a", "win32k"]);
    }

    #[test]
    fn parse_accepts_two_or_three_parts() {
        assert_eq!(parse("linux/arm64/v8").unwrap(), new("linux", "arm64", ""));
        assert_eq!(parse("linux/arm/v6").unwrap().variant, "v6");
        assert_eq!(parse("linux/amd64").unwrap(), linux_amd64());
        for bad in ["linux", "linux/", "/amd64", "linux/arm/v7/x", ""] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(err.contains(&format!("`{bad}`")), "{err}");
        }
    }

    #[test]
    fn host_platform_is_normalised() {
        let host = host();
        assert_eq!(normalize(host.clone()), host);
        assert!(!host.os.is_empty() && !host.architecture.is_empty());
    }
}
