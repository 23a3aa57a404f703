//! The simulator's TLS identity: a fresh self-signed certificate for `localhost`,
//! `127.0.0.1` and `::1` (like the one VB365's setup wizard generates), served with rustls
//! on the `ring` provider.

use std::io;
use std::sync::Arc;

use rustls::crypto::ring;
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A server config plus the certificate clients must trust.
pub(crate) struct Identity {
    pub(crate) server_config: Arc<rustls::ServerConfig>,
    pub(crate) cert_pem: String,
}

pub(crate) fn self_signed() -> io::Result<Identity> {
    let names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let certified = rcgen::generate_simple_self_signed(names).map_err(io::Error::other)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let mut server_config =
        rustls::ServerConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?
            .with_no_client_auth()
            .with_single_cert(vec![certified.cert.der().clone()], key)
            .map_err(io::Error::other)?;
    server_config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Identity {
        server_config: Arc::new(server_config),
        cert_pem: certified.cert.pem(),
    })
}
