//! Hostile addresses, through the real `copa resolve` and the built-in
//! plugins: each is refused with a one-line error naming the bad part, or
//! resolved to an argv in which the hostile text is one token that cannot
//! become a flag. Nothing here dials, and no shell is ever involved.

mod common;

use common::{copa, run};

enum Expect {
    /// Refused; the error line contains this text.
    Refused(&'static str),
    /// Resolved; the spawned argv (program first) passes this check.
    Argv(fn(&[String]) -> bool),
}

use Expect::*;

/// Every argument after a `--` is an operand; before it, none starts with `-`
/// unless it is one of the flags copa itself writes.
fn no_smuggled_flags(argv: &[String]) -> bool {
    const OURS: &[&str] = &["-i", "-T", "-l", "-p", "-c", "--", "--addr"];
    let end = argv.iter().position(|a| a == "--").unwrap_or(argv.len());
    argv[1..end].iter().all(|a| {
        !a.starts_with('-')
            || OURS.contains(&a.as_str())
            || a.starts_with("--context=")
            || a.starts_with("--namespace=")
            || a.starts_with("--container=")
    })
}

const CASES: &[(&str, Expect)] = &[
    // Names that would become flags.
    (
        "ssh://-oProxyCommand=touch%20/tmp/pwned",
        Refused("-oProxyCommand"),
    ),
    ("ssh://%2DoProxyCommand=x", Refused("-oProxyCommand")),
    ("ssh://-oProxyCommand=x@host", Refused("-oProxyCommand")),
    ("docker-container://-privileged", Refused("-privileged")),
    (
        "docker-container://%2D%2Dprivileged",
        Refused("--privileged"),
    ),
    ("podman-container://--help", Refused("--help")),
    ("nerdctl-container://-x", Refused("-x")),
    ("kubepod://-n", Refused("-n")),
    (
        "kube-pod://pod?context=--kubeconfig=/tmp/evil",
        Refused("--kubeconfig"),
    ),
    ("kubepod://pod?namespace=-A", Refused("-A")),
    ("buildx://-builder", Refused("-builder")),
    // Flags smuggled through query parameters.
    ("ssh://host?ProxyCommand=x", Refused("ProxyCommand")),
    (
        "docker-container://bk?privileged=true",
        Refused("privileged"),
    ),
    (
        "nerdctl-container://bk?namespace=default&address=/tmp/x",
        Refused("address"),
    ),
    ("kubepod://pod?kubeconfig=/tmp/evil", Refused("kubeconfig")),
    // Shell metacharacters (never reach a shell; still refused where a name rule forbids them).
    ("ssh://host/run/bk.sock;reboot", Refused("bk.sock;reboot")),
    ("ssh://host/run/$(reboot).sock", Refused("$(reboot)")),
    ("ssh://host/run/`id`.sock", Refused("`id`")),
    ("docker-container://bk;reboot", Refused("bk;reboot")),
    ("podman-container://bk|cat", Refused("bk|cat")),
    ("kubepod://pod&reboot", Refused("pod&reboot")),
    (
        "ssh://host%20-oProxyCommand=x",
        Refused("host -oProxyCommand=x"),
    ),
    (
        "ssh://host/run/bk%0Asock",
        Refused("control character or whitespace"),
    ),
    // Path traversal.
    ("ssh://host/run/../../etc/shadow", Refused("..")),
    ("ssh://host/run/%2E%2E/x.sock", Refused("..")),
    ("docker-container://..%2F..%2Fetc", Refused("..")),
    ("buildx://..%2F..%2Fetc%2Fpasswd", Refused("..")),
    // Absurd lengths.
    (
        "docker-container://aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        Refused("long"),
    ),
    // Hostile but harmless once quoted or placed after `--`: resolved.
    (
        "ssh://build-host.example/run/buildkit/buildkitd.sock",
        Argv(no_smuggled_flags),
    ),
    ("ssh://[::1]:2222", Argv(no_smuggled_flags)),
    ("podman-container://bk-0", Argv(no_smuggled_flags)),
    (
        "kube-pod://buildkitd-0?context=prod&namespace=ci",
        Argv(no_smuggled_flags),
    ),
];

#[test]
fn hostile_addresses_are_refused_or_kept_as_single_operands() {
    let mut failures = Vec::new();
    for (addr, expect) in CASES {
        let (output, stdout, stderr) = run(copa().args(["resolve", "--json", "--addr", addr]));
        match expect {
            Refused(part) => {
                let line = stderr.trim();
                let ok = !output.status.success()
                    && line.lines().count() == 1
                    && line.starts_with("error: ")
                    && line.contains(part);
                if !ok {
                    failures.push(format!("{addr}: expected a one-line refusal naming `{part}`, got status {:?}, stderr {stderr:?}, stdout {stdout:?}", output.status.code()));
                }
            }
            Argv(check) => {
                if !output.status.success() {
                    failures.push(format!("{addr}: expected it to resolve, got {stderr}"));
                    continue;
                }
                let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
                let dial = &json["dial"];
                assert_eq!(dial["kind"], "spawn", "{addr}: {json}");
                let mut argv = vec![dial["program"].as_str().unwrap().to_string()];
                argv.extend(
                    dial["args"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|a| a.as_str().unwrap().to_string()),
                );
                if !check(&argv) {
                    failures.push(format!("{addr}: argv {argv:?} lets a flag through"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn ssh_socket_path_is_single_quoted_for_the_remote_shell() {
    let (output, stdout, stderr) = run(copa().args([
        "resolve",
        "--json",
        "--addr",
        "ssh://me@host/run/buildkit/buildkitd.sock",
    ]));
    assert!(output.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let args: Vec<&str> = json["dial"]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(
        args.contains(&"'unix:///run/buildkit/buildkitd.sock'"),
        "{args:?}"
    );
}

#[test]
fn unknown_scheme_error_lists_the_installed_schemes() {
    let (output, _, stderr) = run(copa().args(["resolve", "--addr", "gopher://x"]));
    assert!(!output.status.success());
    assert!(stderr.contains("unknown scheme `gopher`"), "{stderr}");
    assert!(
        stderr.contains("docker-container") && stderr.contains("kube-pod"),
        "{stderr}"
    );
}
