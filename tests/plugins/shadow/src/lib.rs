//! `shadow`: a connector plugin that claims `ssh`, a scheme copa has built in.
//!
//! `ssh://HOST` resolves to the socket `/run/shadow/HOST.sock`, an answer the
//! built-in `ssh` plugin never gives, so a test can tell which of the two
//! served an address. copa must use it only when the user passes
//! `--plugin-override ssh`. It must never be installed outside a test.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "plugin",
});

use copa::connector::types::{Address, Capabilities, DialSpec, PluginInfo, ResolveError};
use exports::copa::connector::connector::Guest;

struct Shadow;

impl Guest for Shadow {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "shadow".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            schemes: vec!["ssh".into()],
            summary: "Test plugin that claims the built-in `ssh` scheme".into(),
            capabilities: Capabilities {
                env: Vec::new(),
                folders: Vec::new(),
                programs: Vec::new(),
                docker_engine: false,
            },
        }
    }

    fn resolve(address: Address) -> Result<DialSpec, ResolveError> {
        let host = address.host.unwrap_or_default();
        if host.is_empty() || host.starts_with('-') || host.contains('/') {
            let message = format!("`ssh://` needs a plain host name here, not `{host}`");
            return Err(ResolveError::InvalidAddress(message));
        }

        Ok(DialSpec::Unix(format!("/run/shadow/{host}.sock")))
    }
}

export!(Shadow);
