//! Sandbox: what a plugin is granted before a call, and whether what it
//! returned stays inside what it declared and what the policy allows.
//!
//! Nothing here runs a plugin. Grants are computed from the declaration alone;
//! a plugin never gets a variable, folder or program it did not name.

use std::path::PathBuf;

use super::policy::{Denied, Policy};
use crate::dial::DialSpec;

/// What a plugin declares it needs (mirrors `capabilities` in the WIT).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    pub env: Vec<String>,
    pub folders: Vec<String>,
    pub programs: Vec<String>,
    pub docker_engine: bool,
}

/// What one `resolve` call is given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Declared variables that are set in copa's environment.
    pub env: Vec<(String, String)>,
    /// Declared folders that exist, each mounted read-only at the same path.
    pub folders: Vec<PathBuf>,
}

/// Why a returned dial spec was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecRefused {
    #[error("plugin `{plugin}` asked to spawn `{program}`, which it did not declare")]
    UndeclaredProgram { plugin: String, program: String },
    #[error(
        "plugin `{plugin}` asked to spawn `{program}`; programs are bare names looked up in PATH"
    )]
    ProgramPath { plugin: String, program: String },
    #[error(
        "plugin `{plugin}` set the variable `{name}` for a spawned program, which it did not declare"
    )]
    UndeclaredEnv { plugin: String, name: String },
    #[error("plugin `{plugin}` returned a Docker Engine spec without declaring `docker-engine`")]
    UndeclaredDockerEngine { plugin: String },
    #[error("plugin `{plugin}` returned an invalid dial spec: {reason}")]
    Invalid { plugin: String, reason: String },
    #[error(transparent)]
    Policy(#[from] Denied),
}

impl Capabilities {
    /// Computes the grants for a call from the declaration and a view of the
    /// environment (`std::env::var` in production).
    pub fn grants(&self, env: impl Fn(&str) -> Option<String>) -> Grants {
        let vars: Vec<(String, String)> = self
            .env
            .iter()
            .filter_map(|name| env(name).map(|value| (name.clone(), value)))
            .collect();
        let lookup = |name: &str| -> Option<String> {
            vars.iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
                .filter(|v| !v.is_empty())
        };
        let home = env("HOME").filter(|h| !h.is_empty());

        let mut folders = Vec::new();
        for entry in &self.folders {
            for candidate in entry.split('|') {
                let Some(path) = expand_folder(candidate, &lookup, home.as_deref()) else {
                    continue;
                };
                if path.is_absolute() && path.is_dir() {
                    if !folders.contains(&path) {
                        folders.push(path);
                    }
                    break;
                }
            }
        }
        Grants { env: vars, folders }
    }

    /// Checks a spec the plugin returned against its declaration and the policy.
    pub fn check(&self, plugin: &str, spec: &DialSpec, policy: &Policy) -> Result<(), SpecRefused> {
        let invalid = |reason: &str| SpecRefused::Invalid {
            plugin: plugin.to_string(),
            reason: reason.to_string(),
        };
        match spec {
            DialSpec::Unix { path } => {
                if path.is_empty() {
                    return Err(invalid("the unix socket path is empty"));
                }
            }
            DialSpec::Tcp { host, .. } => {
                if host.is_empty() || host.chars().any(|c| c.is_control() || c == '/') {
                    return Err(invalid("the TCP host is empty or malformed"));
                }
            }
            DialSpec::Spawn { program, env, .. } => {
                if program.contains('/') || program.is_empty() {
                    return Err(SpecRefused::ProgramPath {
                        plugin: plugin.to_string(),
                        program: program.clone(),
                    });
                }
                if !self.programs.contains(program) {
                    return Err(SpecRefused::UndeclaredProgram {
                        plugin: plugin.to_string(),
                        program: program.clone(),
                    });
                }
                if let Some((name, _)) = env.iter().find(|(name, _)| !self.env.contains(name)) {
                    return Err(SpecRefused::UndeclaredEnv {
                        plugin: plugin.to_string(),
                        name: name.clone(),
                    });
                }
                policy.check_program(program)?;
            }
            DialSpec::DockerGrpc { endpoint } | DialSpec::DockerExec { endpoint, .. } => {
                if !self.docker_engine {
                    return Err(SpecRefused::UndeclaredDockerEngine {
                        plugin: plugin.to_string(),
                    });
                }
                if !(endpoint.starts_with("unix://") || endpoint.starts_with("tcp://")) {
                    return Err(invalid("the Docker endpoint is neither unix:// nor tcp://"));
                }
                if let DialSpec::DockerExec {
                    container, command, ..
                } = spec
                    && (container.is_empty() || container.starts_with('-') || command.is_empty())
                {
                    return Err(invalid("the Docker exec has no container or no command"));
                }
            }
        }
        Ok(())
    }
}

/// Expands `~/…` and `${NAME:-fallback}` in a declared folder. Returns `None`
/// when a variable is unset and has no fallback.
fn expand_folder(
    template: &str,
    lookup: &impl Fn(&str) -> Option<String>,
    home: Option<&str>,
) -> Option<PathBuf> {
    let template = template.trim();
    let expanded = if let Some(inner) = template.strip_prefix("${") {
        let (inner, rest) = inner.split_once('}')?;
        let value = match inner.split_once(":-") {
            Some((name, fallback)) => lookup(name).unwrap_or_else(|| fallback.to_string()),
            None => lookup(inner)?,
        };
        format!("{value}{rest}")
    } else {
        template.to_string()
    };
    if let Some(rest) = expanded.strip_prefix("~/") {
        return Some(PathBuf::from(home?).join(rest));
    }
    if expanded == "~" {
        return home.map(PathBuf::from);
    }
    Some(PathBuf::from(expanded))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn caps() -> Capabilities {
        Capabilities {
            env: vec!["DOCKER_CONFIG".into(), "HOME".into()],
            folders: vec!["${DOCKER_CONFIG:-~/.docker}".into()],
            programs: vec!["ssh".into()],
            docker_engine: false,
        }
    }

    #[test]
    fn only_declared_variables_are_granted() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().display().to_string();
        let grants = caps().grants(env_of(&[("HOME", &home), ("SECRET_TOKEN", "x")]));
        assert_eq!(grants.env, vec![("HOME".to_string(), home.to_string())]);
    }

    #[test]
    fn folder_falls_back_to_home_and_is_granted_only_when_it_exists() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().display().to_string();
        let env = env_of(&[("HOME", &home)]);
        assert!(caps().grants(&env).folders.is_empty());

        std::fs::create_dir(dir.path().join(".docker")).unwrap();
        assert_eq!(
            caps().grants(&env).folders,
            vec![dir.path().join(".docker")]
        );
    }

    #[test]
    fn folder_variable_wins_over_fallback() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().display().to_string();
        let env = env_of(&[("DOCKER_CONFIG", &cfg), ("HOME", "/nonexistent")]);
        assert_eq!(caps().grants(env).folders, vec![dir.path().to_path_buf()]);
    }

    #[test]
    fn relative_folders_are_never_granted() {
        let caps = Capabilities {
            folders: vec![".".into()],
            ..Capabilities::default()
        };
        assert!(caps.grants(|_| None).folders.is_empty());
    }

    #[test]
    fn spawn_of_an_undeclared_program_is_refused() {
        let spec = DialSpec::Spawn {
            program: "sh".into(),
            args: vec![],
            env: vec![],
        };
        let err = caps().check("evil", &spec, &Policy::default()).unwrap_err();
        assert!(
            matches!(err, SpecRefused::UndeclaredProgram { .. }),
            "{err}"
        );
    }

    #[test]
    fn spawn_by_path_is_refused_even_when_the_name_matches() {
        let spec = DialSpec::Spawn {
            program: "/tmp/ssh".into(),
            args: vec![],
            env: vec![],
        };
        let err = caps().check("evil", &spec, &Policy::default()).unwrap_err();
        assert!(matches!(err, SpecRefused::ProgramPath { .. }), "{err}");
    }

    #[test]
    fn spawn_with_an_undeclared_variable_is_refused() {
        let spec = DialSpec::Spawn {
            program: "ssh".into(),
            args: vec![],
            env: vec![("LD_PRELOAD".into(), "/tmp/x.so".into())],
        };
        let err = caps().check("evil", &spec, &Policy::default()).unwrap_err();
        assert!(matches!(err, SpecRefused::UndeclaredEnv { .. }), "{err}");
    }

    #[test]
    fn declared_program_denied_by_policy_names_the_rule() {
        let spec = DialSpec::Spawn {
            program: "ssh".into(),
            args: vec![],
            env: vec![],
        };
        let mut policy: Policy = toml::from_str("[programs]\ndeny = [\"ssh\"]").unwrap();
        policy.source = Some("/etc/copa/policy.toml".into());
        let err = caps().check("ssh", &spec, &policy).unwrap_err().to_string();
        assert!(err.contains("[programs] deny lists `ssh`"), "{err}");
    }

    #[test]
    fn docker_specs_need_the_docker_engine_capability() {
        let spec = DialSpec::DockerGrpc {
            endpoint: "unix:///var/run/docker.sock".into(),
        };
        let err = caps().check("p", &spec, &Policy::default()).unwrap_err();
        assert!(matches!(err, SpecRefused::UndeclaredDockerEngine { .. }));

        let allowed = Capabilities {
            docker_engine: true,
            ..caps()
        };
        assert!(allowed.check("p", &spec, &Policy::default()).is_ok());
    }
}
