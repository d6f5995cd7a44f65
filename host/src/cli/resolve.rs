//! `copa resolve`: which connector serves an address, and the exact dial spec.

use clap::Args;
use serde_json::json;

use crate::connector::plugin::Origin;
use crate::connector::{Connectors, Resolution, ServedBy};

#[derive(Debug, Args)]
pub struct ResolveArgs {
    /// The address to resolve; without it, every address `copa connect` would try.
    #[arg(short = 'a', long = "addr", value_name = "ADDR")]
    addr: Option<String>,
    /// Print JSON (keys documented in the README).
    #[arg(long)]
    json: bool,
}

pub fn run(args: &ResolveArgs, connectors: &Connectors) -> anyhow::Result<()> {
    let addr_args = super::AddrArgs {
        addr: args.addr.clone(),
        cacert: None,
        cert: None,
        key: None,
    };
    let (candidates, explicit) = addr_args.candidates();

    if explicit {
        let resolution = connectors.resolve(&candidates[0])?;
        if args.json {
            return super::print_json(&resolution_json(&resolution));
        }
        print_resolution(&resolution);
        return Ok(());
    }

    let mut results = Vec::new();
    for candidate in &candidates {
        let result = connectors.resolve(candidate);
        if !args.json {
            match &result {
                Ok(resolution) => print_resolution(resolution),
                Err(error) => println!("{candidate:<10} error: {error:#}"),
            }
            println!();
        }
        results.push(match result {
            Ok(resolution) => resolution_json(&resolution),
            Err(error) => json!({ "address": candidate, "error": format!("{error:#}") }),
        });
    }
    if args.json {
        return super::print_json(&json!({ "candidates": results }));
    }
    Ok(())
}

/// One line naming who served an address.
pub fn served_by_text(served_by: &ServedBy) -> String {
    match served_by {
        ServedBy::Native => "copa (native)".to_string(),
        ServedBy::Plugin {
            name,
            version,
            digest,
            origin,
        } => {
            let from = match origin {
                Origin::BuiltIn => "built-in".to_string(),
                Origin::File { path } => path.display().to_string(),
            };
            let short = digest.get(..19).unwrap_or(digest);
            format!("plugin {name} {version} ({from}, {short}…)")
        }
    }
}

fn print_resolution(resolution: &Resolution) {
    println!("address    {}", resolution.address);
    println!("served by  {}", served_by_text(&resolution.served_by));
    println!("dial       {}", resolution.spec);
}

pub fn resolution_json(resolution: &Resolution) -> serde_json::Value {
    json!({
        "address": resolution.address.raw,
        "scheme": resolution.address.scheme,
        "served_by": resolution.served_by,
        "dial": resolution.spec,
    })
}
