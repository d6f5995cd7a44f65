//! TLS over TCP for `tcp://` addresses, with rustls and the ring provider.
//!
//! It trusts only the CA certificates it is given (there is no system root
//! store here) and offers ALPN `h2`, which grpc-go servers require. It never
//! weakens verification: no option skips checking the server's certificate.

use std::path::Path;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::TlsConnector;
use tracing::debug;

use super::{BoxStream, DialError, TlsFiles, connect_tcp, host_port};

/// Connect to `host:port` and complete a TLS handshake as `files` say.
pub(super) async fn connect(
    host: &str,
    port: u16,
    files: &TlsFiles,
) -> Result<BoxStream, DialError> {
    let addr = host_port(host, port);
    let config = client_config(files, &addr)?;
    let name = server_name(files.server_name.as_deref().unwrap_or(host))?;

    let tcp = connect_tcp(host, port).await?;
    let stream = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|source| DialError::TlsHandshake { addr, source })?;

    let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    debug!(host, port, alpn = ?alpn.as_deref().map(String::from_utf8_lossy), "TLS established");
    Ok(Box::new(stream))
}

/// The rustls client configuration for `files`; `addr` is only for errors.
fn client_config(files: &TlsFiles, addr: &str) -> Result<Arc<ClientConfig>, DialError> {
    let Some(ca_path) = &files.ca_cert else {
        return Err(DialError::TlsCaRequired {
            addr: addr.to_owned(),
        });
    };
    let roots = root_store(ca_path)?;

    let client_auth = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => Some((certificates(cert, "client certificate")?, key_of(key)?)),
        (Some(cert), None) => return Err(DialError::TlsCertWithoutKey { cert: cert.clone() }),
        (None, Some(key)) => return Err(DialError::TlsKeyWithoutCert { key: key.clone() }),
        (None, None) => None,
    };

    let config_error = |source| DialError::TlsConfig {
        addr: addr.to_owned(),
        source,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(config_error)?
        .with_root_certificates(roots);
    let mut config = match client_auth {
        Some((chain, key)) => builder
            .with_client_auth_cert(chain, key)
            .map_err(config_error)?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

fn root_store(path: &Path) -> Result<RootCertStore, DialError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(path, "CA certificates")? {
        roots.add(cert).map_err(|source| DialError::TlsCa {
            path: path.to_owned(),
            source,
        })?;
    }
    Ok(roots)
}

/// Every certificate in the PEM file at `path`; at least one.
fn certificates(
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, DialError> {
    let pem_error = |source| DialError::TlsPem {
        what,
        path: path.to_owned(),
        source,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(pem_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(pem_error)?;

    if certs.is_empty() {
        return Err(pem_error(rustls_pki_types::pem::Error::NoItemsFound));
    }
    Ok(certs)
}

/// The first private key in the PEM file at `path`, whatever its encoding.
fn key_of(path: &Path) -> Result<PrivateKeyDer<'static>, DialError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| DialError::TlsPem {
        what: "client key",
        path: path.to_owned(),
        source,
    })
}

/// A DNS name, or an IP address when `name` is one.
fn server_name(name: &str) -> Result<ServerName<'static>, DialError> {
    ServerName::try_from(name.to_owned()).map_err(|source| DialError::TlsServerName {
        name: name.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls::ServerConfig;
    use rustls::server::WebPkiClientVerifier;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;
    use tokio_rustls::TlsAcceptor;

    use super::*;
    use crate::dial::{DialOptions, DialSpec, dial};

    /// A CA, a server certificate for `localhost` and 127.0.0.1 and a client
    /// certificate, all as PEM files in a temporary folder.
    struct Pki {
        dir: tempfile::TempDir,
        server_config: Arc<ServerConfig>,
    }

    impl Pki {
        fn new() -> Pki {
            let dir = tempfile::tempdir().unwrap();

            let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

            let server_key = KeyPair::generate().unwrap();
            let server_names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
            let server_cert = CertificateParams::new(server_names)
                .unwrap()
                .signed_by(&server_key, &*ca)
                .unwrap();

            let client_key = KeyPair::generate().unwrap();
            let client_cert = CertificateParams::new(vec!["copa".to_owned()])
                .unwrap()
                .signed_by(&client_key, &*ca)
                .unwrap();

            std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
            std::fs::write(dir.path().join("cert.pem"), client_cert.pem()).unwrap();
            std::fs::write(dir.path().join("key.pem"), client_key.serialize_pem()).unwrap();

            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut roots = RootCertStore::empty();
            roots.add(ca.der().clone()).unwrap();
            let verifier =
                WebPkiClientVerifier::builder_with_provider(roots.into(), provider.clone())
                    .build()
                    .unwrap();
            let server_key = PrivateKeyDer::Pkcs8(server_key.serialize_der().into());
            let mut server_config = ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_client_cert_verifier(verifier)
                .with_single_cert(vec![server_cert.der().clone()], server_key)
                .unwrap();
            server_config.alpn_protocols = vec![b"h2".to_vec()];

            Pki {
                dir,
                server_config: Arc::new(server_config),
            }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn files(&self) -> TlsFiles {
            TlsFiles {
                ca_cert: Some(self.path("ca.pem")),
                cert: Some(self.path("cert.pem")),
                key: Some(self.path("key.pem")),
                server_name: None,
            }
        }

        /// Serve one TLS connection that echoes; reports the negotiated ALPN
        /// protocol and whether the client presented a certificate.
        async fn serve_once(&self) -> (u16, oneshot::Receiver<(Option<Vec<u8>>, bool)>) {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            let acceptor = TlsAcceptor::from(self.server_config.clone());
            let (report, seen) = oneshot::channel();
            tokio::spawn(async move {
                let (tcp, _) = listener.accept().await.unwrap();
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let session = tls.get_ref().1;
                let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
                let _ = report.send((alpn, session.peer_certificates().is_some()));
                let mut buf = [0u8; 64];
                let n = tls.read(&mut buf).await.unwrap();
                tls.write_all(&buf[..n]).await.unwrap();
                tls.shutdown().await.unwrap();
            });
            (port, seen)
        }
    }

    fn tcp(host: &str, port: u16) -> DialSpec {
        DialSpec::Tcp {
            host: host.to_owned(),
            port,
        }
    }

    fn with_tls(files: TlsFiles) -> DialOptions {
        DialOptions { tls: Some(files) }
    }

    #[tokio::test]
    async fn mutual_tls_to_an_ip_address_negotiates_h2_and_carries_bytes() {
        let pki = Pki::new();
        let (port, seen) = pki.serve_once().await;

        let mut connection = dial(&tcp("127.0.0.1", port), &with_tls(pki.files()))
            .await
            .unwrap();
        connection.stream.write_all(b"ping").await.unwrap();
        let mut back = [0u8; 4];
        connection.stream.read_exact(&mut back).await.unwrap();

        assert_eq!(&back, b"ping");
        let (alpn, client_cert) = seen.await.unwrap();
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
        assert!(client_cert);
    }

    #[tokio::test]
    async fn server_name_overrides_the_host_for_verification() {
        let pki = Pki::new();
        let (port, seen) = pki.serve_once().await;
        let files = TlsFiles {
            server_name: Some("localhost".to_owned()),
            ..pki.files()
        };

        let connection = dial(&tcp("127.0.0.1", port), &with_tls(files)).await;

        assert!(connection.is_ok(), "{connection:?}");
        assert!(seen.await.is_ok());
    }

    #[tokio::test]
    async fn certificate_for_another_name_fails_the_handshake() {
        let pki = Pki::new();
        let (port, _seen) = pki.serve_once().await;
        let files = TlsFiles {
            server_name: Some("buildkit.example".to_owned()),
            ..pki.files()
        };

        let err = dial(&tcp("127.0.0.1", port), &with_tls(files))
            .await
            .unwrap_err();

        assert!(matches!(err, DialError::TlsHandshake { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("failed to complete the TLS handshake with `127.0.0.1:{port}`")
        );
    }

    #[tokio::test]
    async fn tls_without_ca_certificate_is_refused() {
        let pki = Pki::new();
        let files = TlsFiles {
            ca_cert: None,
            ..pki.files()
        };

        let err = dial(&tcp("127.0.0.1", 1), &with_tls(files))
            .await
            .unwrap_err();

        assert_eq!(
            err.to_string(),
            "--cacert is required for TLS to `127.0.0.1:1`"
        );
    }

    #[tokio::test]
    async fn client_certificate_without_key_is_refused() {
        let pki = Pki::new();
        let files = TlsFiles {
            key: None,
            ..pki.files()
        };

        let err = dial(&tcp("127.0.0.1", 1), &with_tls(files))
            .await
            .unwrap_err();

        assert!(
            matches!(err, DialError::TlsCertWithoutKey { .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn client_key_without_certificate_is_refused() {
        let pki = Pki::new();
        let files = TlsFiles {
            cert: None,
            ..pki.files()
        };

        let err = dial(&tcp("127.0.0.1", 1), &with_tls(files))
            .await
            .unwrap_err();

        assert!(
            matches!(err, DialError::TlsKeyWithoutCert { .. }),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn unreadable_ca_file_error_names_the_file() {
        let pki = Pki::new();
        let missing = pki.path("missing.pem");
        let files = TlsFiles {
            ca_cert: Some(missing.clone()),
            ..pki.files()
        };

        let err = dial(&tcp("127.0.0.1", 1), &with_tls(files))
            .await
            .unwrap_err();

        let expected = format!("failed to read CA certificates `{}`", missing.display());
        assert_eq!(err.to_string(), expected);
    }

    #[tokio::test]
    async fn key_file_without_a_key_error_names_the_file() {
        let pki = Pki::new();
        let files = TlsFiles {
            key: Some(pki.path("cert.pem")),
            ..pki.files()
        };

        let err = dial(&tcp("127.0.0.1", 1), &with_tls(files))
            .await
            .unwrap_err();

        assert!(err.to_string().contains("cert.pem"), "{err}");
        assert!(
            matches!(
                err,
                DialError::TlsPem {
                    what: "client key",
                    ..
                }
            ),
            "{err:?}"
        );
    }
}
