use super::*;

fn connectors_with(policy: Policy) -> Connectors {
    let cache = std::env::temp_dir().join(format!("copa-test-cache-{}", std::process::id()));
    Connectors::new(Settings {
        policy,
        plugin_dirs: Vec::new(),
        overrides: Vec::new(),
        cache_dir: Some(cache),
    })
    .unwrap()
}

fn connectors() -> Connectors {
    connectors_with(Policy::default())
}

#[test]
fn every_built_in_plugin_describes_the_schemes_copa_lists_for_it() {
    let connectors = connectors();
    for built_in in BUILT_INS {
        let plugin = connectors.built_in(built_in.name).unwrap();
        assert_eq!(plugin.info.name, built_in.name);
        assert_eq!(plugin.info.schemes, built_in.schemes, "{}", built_in.name);
        assert_eq!(plugin.origin, Origin::BuiltIn);
        assert!(plugin.digest.starts_with("sha256:"));
    }
}

#[test]
fn unix_address_resolves_natively_to_its_path() {
    let r = connectors()
        .resolve("unix:///run/buildkit/buildkitd.sock")
        .unwrap();
    assert!(matches!(r.served_by, ServedBy::Native));
    assert_eq!(
        r.spec,
        DialSpec::Unix {
            path: "/run/buildkit/buildkitd.sock".into()
        }
    );
}

#[test]
fn relative_unix_path_is_kept_as_buildctl_does() {
    let r = connectors().resolve("unix://buildkitd.sock").unwrap();
    assert_eq!(
        r.spec,
        DialSpec::Unix {
            path: "buildkitd.sock".into()
        }
    );
}

#[test]
fn tcp_address_needs_a_host_and_a_port() {
    let r = connectors().resolve("tcp://127.0.0.1:1234").unwrap();
    assert_eq!(
        r.spec,
        DialSpec::Tcp {
            host: "127.0.0.1".into(),
            port: 1234
        }
    );
    let err = connectors().resolve("tcp://127.0.0.1").unwrap_err();
    assert!(err.to_string().contains("port is missing"), "{err}");
    let err = connectors().resolve("tcp://h:1/x").unwrap_err();
    assert!(err.to_string().contains("takes no path"), "{err}");
    let err = connectors().resolve("tcp://h:1?x=y").unwrap_err();
    assert!(err.to_string().contains("no query parameters"), "{err}");
}

#[test]
fn unknown_scheme_lists_the_installed_ones() {
    let err = connectors().resolve("carrier-pigeon://x").unwrap_err();
    let text = err.to_string();
    assert!(text.contains("unknown scheme `carrier-pigeon`"), "{text}");
    for scheme in [
        "unix",
        "tcp",
        "ssh",
        "kubepod",
        "kube-pod",
        "buildx",
        "docker-container",
    ] {
        assert!(text.contains(scheme), "{scheme} missing from: {text}");
    }
}

#[test]
fn scheme_denied_by_policy_names_the_rule() {
    let mut policy: Policy = toml::from_str("[schemes]\ndeny = [\"ssh\"]").unwrap();
    policy.source = Some("/etc/copa/policy.toml".into());
    let err = connectors_with(policy).resolve("ssh://host").unwrap_err();
    let text = format!("{:#}", anyhow::Error::from(err));
    assert!(text.contains("[schemes] deny lists `ssh`"), "{text}");
}

#[test]
fn ssh_plugin_returns_an_argv_that_keeps_the_host_a_single_operand() {
    let r = connectors()
        .resolve("ssh://me@build.example:2222/run/buildkit/buildkitd.sock")
        .unwrap();
    let DialSpec::Spawn { program, args, .. } = r.spec else {
        panic!("expected a spawn spec, got {:?}", r.spec);
    };
    assert_eq!(program, "ssh");
    let dashdash = args
        .iter()
        .position(|a| a == "--")
        .expect("`--` before the host");
    assert_eq!(args[dashdash + 1], "build.example");
}

#[test]
fn program_denied_by_policy_refuses_the_plugin_spec() {
    let mut policy: Policy = toml::from_str("[programs]\ndeny = [\"kubectl\"]").unwrap();
    policy.source = Some("/etc/copa/policy.toml".into());
    let err = connectors_with(policy)
        .resolve("kubepod://buildkitd-0")
        .unwrap_err();
    let text = format!("{:#}", anyhow::Error::from(err));
    assert!(text.contains("[programs] deny lists `kubectl`"), "{text}");
}
