//! TLS (`--tls-cert`, `--tls-key`) and mutual TLS (`--tls-client-ca`:
//! only clients with a certificate from that CA may connect), on tonic's
//! rustls.

use std::path::Path;

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::config::Config;

/// The TLS setup `config` asks for; `None` for plaintext. The files are
/// read once, at start.
pub fn server_config(config: &Config) -> Result<Option<ServerTlsConfig>, String> {
    let (cert, key) = match (&config.tls_cert, &config.tls_key) {
        (None, None) if config.tls_client_ca.is_some() => {
            return Err("--tls-client-ca needs --tls-cert and --tls-key".to_owned());
        }
        (None, None) => return Ok(None),
        (Some(cert), Some(key)) => (cert, key),
        _ => return Err("--tls-cert and --tls-key go together".to_owned()),
    };
    let identity = Identity::from_pem(read(cert, "--tls-cert")?, read(key, "--tls-key")?);
    let mut tls = ServerTlsConfig::new()
        .identity(identity)
        // The TLS handshake shares the connection's handshake deadline.
        .timeout(config.handshake_timeout);
    if let Some(ca) = &config.tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca, "--tls-client-ca")?));
    }
    Ok(Some(tls))
}

fn read(path: &Path, flag: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{flag} {}: {e}", path.display()))
}
