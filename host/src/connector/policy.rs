//! Policy: an administrator's rules for which schemes, plugins and programs
//! copa may use, read from a TOML file.
//!
//! The policy only answers questions; it never loads or runs a plugin. Every
//! refusal names the file and the rule that refused.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use thiserror::Error;

/// Where the policy is read from when neither `--plugin-policy` nor
/// `COPA_PLUGIN_POLICY` names a file. A missing default file means "no policy".
pub const DEFAULT_POLICY_PATH: &str = "/etc/copa/policy.toml";

/// The memory a plugin instance may grow to, unless the policy lowers it.
pub const DEFAULT_MEMORY_LIMIT_MIB: u64 = 64;

/// How long one plugin call may run, unless the policy lowers it.
pub const DEFAULT_CALL_DEADLINE: Duration = Duration::from_secs(2);

/// The policy file's contents. Every section is optional; an empty file allows
/// everything a plugin declared.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub schemes: AllowDeny,
    #[serde(default)]
    pub plugins: PluginRules,
    #[serde(default)]
    pub programs: AllowDeny,
    #[serde(default)]
    pub limits: Limits,
    /// The file this policy came from (not part of the file itself).
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

/// An optional allow list (when present, only what it names passes) and a deny
/// list (always wins).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AllowDeny {
    pub allow: Option<Vec<String>>,
    #[serde(default)]
    pub deny: Vec<String>,
}

/// Rules for plugins loaded from plugin folders (the built-in ones are part of
/// copa and only subject to the scheme and program rules).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PluginRules {
    /// Whether plugins from plugin folders load at all.
    #[serde(default = "yes")]
    pub external: bool,
    /// When present, only external plugins whose digest (`sha256:…`) is listed load.
    pub allow: Option<Vec<String>>,
    /// Digests of plugins that never load.
    #[serde(default)]
    pub deny: Vec<String>,
}

impl Default for PluginRules {
    fn default() -> Self {
        PluginRules {
            external: true,
            allow: None,
            deny: Vec::new(),
        }
    }
}

fn yes() -> bool {
    true
}

/// Resource limits for every plugin call; the policy can only lower the
/// defaults, never raise them past what copa allows.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub memory_mib: Option<u64>,
    pub deadline_ms: Option<u64>,
}

/// A refusal, naming the policy file and rule.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("refused by policy `{file}`: {rule}")]
pub struct Denied {
    pub file: String,
    pub rule: String,
}

/// Why a policy file could not be used. A policy that cannot be read is an
/// error, never "no policy": failing open would defeat the administrator.
#[derive(Debug, Error)]
pub enum PolicyError {
    #[error("failed to read plugin policy `{path}`")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to parse plugin policy `{path}`")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
}

impl Policy {
    /// Loads the policy named by the user, or the default file when it exists,
    /// or no policy at all.
    pub fn load(explicit: Option<&Path>) -> Result<Policy, PolicyError> {
        let path = match explicit {
            Some(path) => path.to_path_buf(),
            None if Path::new(DEFAULT_POLICY_PATH).exists() => PathBuf::from(DEFAULT_POLICY_PATH),
            None => return Ok(Policy::default()),
        };
        let text = std::fs::read_to_string(&path).map_err(|source| PolicyError::Read {
            path: path.clone(),
            source,
        })?;
        let mut policy: Policy = toml::from_str(&text).map_err(|source| PolicyError::Parse {
            path: path.clone(),
            source,
        })?;
        policy.source = Some(path);
        Ok(policy)
    }

    fn deny(&self, rule: String) -> Denied {
        let file = match &self.source {
            Some(path) => path.display().to_string(),
            None => "(none)".to_string(),
        };
        Denied { file, rule }
    }

    /// May an address of this scheme be used?
    pub fn check_scheme(&self, scheme: &str) -> Result<(), Denied> {
        check_list(&self.schemes, "schemes", scheme).map_err(|rule| self.deny(rule))
    }

    /// May this program be spawned?
    pub fn check_program(&self, program: &str) -> Result<(), Denied> {
        check_list(&self.programs, "programs", program).map_err(|rule| self.deny(rule))
    }

    /// May this external plugin (from a plugin folder) be loaded?
    pub fn check_external_plugin(&self, digest: &str) -> Result<(), Denied> {
        if !self.plugins.external {
            let rule = "[plugins] external = false".to_string();
            return Err(self.deny(rule));
        }
        if self.plugins.deny.iter().any(|d| d == digest) {
            return Err(self.deny(format!("[plugins] deny lists `{digest}`")));
        }
        if let Some(allow) = &self.plugins.allow
            && !allow.iter().any(|d| d == digest)
        {
            return Err(self.deny(format!("[plugins] allow does not list `{digest}`")));
        }
        Ok(())
    }

    /// The memory limit for one plugin instance, in bytes.
    pub fn memory_limit(&self) -> usize {
        let mib = self
            .limits
            .memory_mib
            .map_or(DEFAULT_MEMORY_LIMIT_MIB, |m| {
                m.min(DEFAULT_MEMORY_LIMIT_MIB)
            });
        (mib as usize) << 20
    }

    /// The deadline for one plugin call.
    pub fn call_deadline(&self) -> Duration {
        match self.limits.deadline_ms {
            Some(ms) => Duration::from_millis(ms).min(DEFAULT_CALL_DEADLINE),
            None => DEFAULT_CALL_DEADLINE,
        }
    }
}

fn check_list(list: &AllowDeny, section: &str, item: &str) -> Result<(), String> {
    if list.deny.iter().any(|d| d == item) {
        return Err(format!("[{section}] deny lists `{item}`"));
    }
    if let Some(allow) = &list.allow
        && !allow.iter().any(|a| a == item)
    {
        return Err(format!("[{section}] allow does not list `{item}`"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Policy {
        let mut policy: Policy = toml::from_str(text).unwrap();
        policy.source = Some(PathBuf::from("/etc/copa/policy.toml"));
        policy
    }

    #[test]
    fn empty_policy_allows_everything_with_the_default_limits() {
        let policy = parse("");
        assert!(policy.check_scheme("ssh").is_ok());
        assert!(policy.check_program("ssh").is_ok());
        assert!(policy.check_external_plugin("sha256:00").is_ok());
        assert_eq!(policy.memory_limit(), 64 << 20);
        assert_eq!(policy.call_deadline(), Duration::from_secs(2));
    }

    #[test]
    fn denied_program_names_the_file_and_rule() {
        let policy = parse("[programs]\ndeny = [\"ssh\"]\n");
        let err = policy.check_program("ssh").unwrap_err().to_string();
        assert_eq!(
            err,
            "refused by policy `/etc/copa/policy.toml`: [programs] deny lists `ssh`"
        );
        assert!(policy.check_program("kubectl").is_ok());
    }

    #[test]
    fn scheme_allow_list_refuses_what_it_does_not_name() {
        let policy = parse("[schemes]\nallow = [\"unix\"]\n");
        assert!(policy.check_scheme("unix").is_ok());
        let err = policy.check_scheme("tcp").unwrap_err().to_string();
        assert!(err.contains("[schemes] allow does not list `tcp`"), "{err}");
    }

    #[test]
    fn deny_wins_over_allow() {
        let policy = parse("[schemes]\nallow = [\"ssh\"]\ndeny = [\"ssh\"]\n");
        assert!(policy.check_scheme("ssh").is_err());
    }

    #[test]
    fn external_plugins_can_be_pinned_by_digest_or_switched_off() {
        let policy = parse("[plugins]\nallow = [\"sha256:aa\"]\n");
        assert!(policy.check_external_plugin("sha256:aa").is_ok());
        assert!(policy.check_external_plugin("sha256:bb").is_err());

        let policy = parse("[plugins]\nexternal = false\n");
        let err = policy.check_external_plugin("sha256:aa").unwrap_err();
        assert!(err.rule.contains("external = false"));
    }

    #[test]
    fn limits_can_be_lowered_but_not_raised() {
        let policy = parse("[limits]\nmemory_mib = 16\ndeadline_ms = 100\n");
        assert_eq!(policy.memory_limit(), 16 << 20);
        assert_eq!(policy.call_deadline(), Duration::from_millis(100));

        let policy = parse("[limits]\nmemory_mib = 4096\ndeadline_ms = 600000\n");
        assert_eq!(policy.memory_limit(), 64 << 20);
        assert_eq!(policy.call_deadline(), DEFAULT_CALL_DEADLINE);
    }

    #[test]
    fn unknown_keys_are_an_error_not_ignored() {
        assert!(toml::from_str::<Policy>("[programs]\nalow = [\"ssh\"]\n").is_err());
    }

    #[test]
    fn unreadable_policy_file_is_an_error() {
        let err = Policy::load(Some(Path::new("/nonexistent/policy.toml"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/policy.toml"));
    }
}
