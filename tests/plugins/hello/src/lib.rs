//! `hello`: a connector plugin for a scheme copa has never heard of.
//!
//! `hello://NAME` resolves to the socket `/run/hello/NAME.sock`. Built apart
//! from copa and dropped into a plugin folder, it shows that a new scheme needs
//! no rebuild of copa. It needs nothing from the host and must never be
//! bundled with copa.

wit_bindgen::generate!({
    path: "../../../wit",
    world: "plugin",
});

use copa::connector::types::{Address, Capabilities, DialSpec, PluginInfo, ResolveError};
use exports::copa::connector::connector::Guest;

struct Hello;

impl Guest for Hello {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "hello".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            schemes: vec!["hello".into()],
            summary: "Test plugin for a scheme copa does not build in".into(),
            capabilities: Capabilities {
                env: Vec::new(),
                folders: Vec::new(),
                programs: Vec::new(),
                docker_engine: false,
            },
        }
    }

    fn resolve(address: Address) -> Result<DialSpec, ResolveError> {
        if !address.query.is_empty() {
            let message = "`hello://` takes no query parameters".to_string();
            return Err(ResolveError::InvalidAddress(message));
        }
        let name = address.host.unwrap_or_default();
        if name.is_empty() || name.starts_with('-') || name.contains(['/', '.']) {
            let message =
                format!("`hello://` needs a plain name, as in `hello://demo`, not `{name}`");
            return Err(ResolveError::InvalidAddress(message));
        }

        Ok(DialSpec::Unix(format!("/run/hello/{name}.sock")))
    }
}

export!(Hello);
