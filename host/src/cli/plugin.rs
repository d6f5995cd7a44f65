//! `copa plugin list` and `copa plugin inspect`: what connectors exist, what
//! each declares it needs, and where it was loaded from.

use clap::Subcommand;
use serde_json::json;

use crate::connector::plugin::{LoadedPlugin, Origin};
use crate::connector::{Connectors, External, ExternalState, Inspected, NATIVE_SCHEMES};

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// List every scheme and the connector that serves it.
    List {
        /// Print JSON (keys documented in the README).
        #[arg(long)]
        json: bool,
    },
    /// Show a plugin's declared capabilities, digest and origin.
    Inspect {
        /// A scheme (e.g. `ssh`) or a plugin file (`./my-plugin.wasm`).
        target: String,
        /// Print JSON (keys documented in the README).
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: &PluginCommand, connectors: &Connectors) -> anyhow::Result<()> {
    match command {
        PluginCommand::List { json } => list(connectors, *json),
        PluginCommand::Inspect { target, json } => inspect(connectors, target, *json),
    }
}

fn list(connectors: &Connectors, json: bool) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for scheme in NATIVE_SCHEMES {
        rows.push(json!({ "scheme": scheme, "plugin": null, "origin": "native" }));
    }
    let mut plugins = Vec::new();
    for scheme in connectors.schemes() {
        let Some(plugin) = connectors.plugin_for(&scheme)? else {
            continue;
        };
        rows.push(json!({
            "scheme": scheme,
            "plugin": plugin.info.name,
            "origin": origin_text(&plugin.origin),
        }));
        if !plugins
            .iter()
            .any(|p: &serde_json::Value| p["digest"] == plugin.digest.as_str())
        {
            plugins.push(plugin_json(&plugin));
        }
    }
    for external in connectors.externals() {
        if !matches!(external.state, ExternalState::Loaded(_)) {
            plugins.push(external_json(external));
        }
    }

    if json {
        return super::print_json(&json!({ "schemes": rows, "plugins": plugins }));
    }
    println!("{:<20} {:<20} {:<10} FROM", "SCHEME", "PLUGIN", "VERSION");
    for scheme in NATIVE_SCHEMES {
        println!("{scheme:<20} {:<20} {:<10} native", "-", "-");
    }
    for row in rows.iter().skip(NATIVE_SCHEMES.len()) {
        let version = plugins
            .iter()
            .find(|p| p["name"] == row["plugin"])
            .map(|p| p["version"].as_str().unwrap_or("").to_string())
            .unwrap_or_default();
        println!(
            "{:<20} {:<20} {:<10} {}",
            row["scheme"].as_str().unwrap_or(""),
            row["plugin"].as_str().unwrap_or(""),
            version,
            row["origin"].as_str().unwrap_or("")
        );
    }
    for external in connectors.externals() {
        match &external.state {
            ExternalState::Loaded(_) => {}
            ExternalState::Denied(denied) => {
                println!("not loaded: {}: {denied}", external.path.display());
            }
            ExternalState::Failed(reason) => {
                println!("not loaded: {}: {reason}", external.path.display());
            }
        }
    }
    Ok(())
}

fn inspect(connectors: &Connectors, target: &str, json: bool) -> anyhow::Result<()> {
    let value = match connectors.inspect(target)? {
        Inspected::Plugin(plugin) => plugin_json(&plugin),
        Inspected::File(external) => external_json(&external),
    };
    if json {
        return super::print_json(&value);
    }

    let text = |key: &str| value[key].as_str().unwrap_or("").to_string();
    let list = |v: &serde_json::Value| -> String {
        let items: Vec<&str> = v
            .as_array()
            .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default();
        if items.is_empty() {
            "(none)".into()
        } else {
            items.join(", ")
        }
    };
    println!("plugin     {} {}", text("name"), text("version"));
    println!("summary    {}", text("summary"));
    println!("schemes    {}", list(&value["schemes"]));
    println!("digest     {}", text("digest"));
    println!("from       {}", text("origin"));
    println!("state      {}", text("state"));
    if let Some(reason) = value["reason"].as_str() {
        println!("reason     {reason}");
    }
    let caps = &value["capabilities"];
    if !caps.is_null() {
        println!("env        {}", list(&caps["env"]));
        println!("folders    {}", list(&caps["folders"]));
        println!("programs   {}", list(&caps["programs"]));
        let engine = caps["docker_engine"].as_bool().unwrap_or(false);
        println!("docker API {}", if engine { "yes" } else { "no" });
    }
    Ok(())
}

fn origin_text(origin: &Origin) -> String {
    match origin {
        Origin::BuiltIn => "built-in".to_string(),
        Origin::File { path } => path.display().to_string(),
    }
}

fn plugin_json(plugin: &LoadedPlugin) -> serde_json::Value {
    json!({
        "name": plugin.info.name,
        "version": plugin.info.version,
        "summary": plugin.info.summary,
        "schemes": plugin.info.schemes,
        "capabilities": plugin.info.capabilities,
        "digest": plugin.digest,
        "origin": origin_text(&plugin.origin),
        "state": "loaded",
    })
}

fn external_json(external: &External) -> serde_json::Value {
    match &external.state {
        ExternalState::Loaded(plugin) => plugin_json(plugin),
        ExternalState::Denied(denied) => json!({
            "digest": external.digest,
            "origin": external.path.display().to_string(),
            "state": "denied",
            "reason": denied.to_string(),
        }),
        ExternalState::Failed(reason) => json!({
            "digest": external.digest,
            "origin": external.path.display().to_string(),
            "state": "failed",
            "reason": reason,
        }),
    }
}
