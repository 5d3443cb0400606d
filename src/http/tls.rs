/*!
HTTPS: the acceptor our tiny_http fork runs each connection's handshake with. Loaded once at
start, so a wrong file, a key that does not belong to the certificate or an unreadable PEM
stops the server with the file named, as the signing certificate does.

Mozilla's "intermediate" settings (TLS 1.2 and 1.3, forward-secret AEAD ciphers): what any
current client, the Qt installer's QNetworkAccessManager included, speaks.
*/

use openssl::pkey::PKey;
use openssl::ssl::{AlpnError, SslAcceptor, SslMethod, select_next_proto};
use std::path::Path;

/// ALPN: we speak HTTP/1.1 only (wire format: length, then the name).
const ALPN_HTTP_1_1: &[u8] = b"\x08http/1.1";

/// The acceptor for `certificate` (PEM, the server's certificate first, then its chain) and
/// `key` (PEM).
pub fn acceptor(certificate: &Path, key: &Path) -> Result<SslAcceptor, String> {
    let reason = |e: openssl::error::ErrorStack| {
        e.errors()
            .first()
            .and_then(|e| e.reason())
            .unwrap_or("unknown error")
            .to_string()
    };
    for path in [certificate, key] {
        std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
        .map_err(|e| format!("could not set up TLS: {}", reason(e)))?;
    builder
        .set_certificate_chain_file(certificate)
        .map_err(|e| {
            format!(
                "{}: not a PEM certificate ({})",
                certificate.display(),
                reason(e)
            )
        })?;
    let pem = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let private_key = PKey::private_key_from_pem(&pem)
        .map_err(|e| format!("{}: not a PEM private key ({})", key.display(), reason(e)))?;
    let mismatch = || {
        format!(
            "{}: this key does not belong to the certificate {}",
            key.display(),
            certificate.display()
        )
    };
    builder
        .set_private_key(&private_key)
        .map_err(|_| mismatch())?;
    builder.check_private_key().map_err(|_| mismatch())?;
    builder.set_alpn_select_callback(|_, offered| {
        select_next_proto(ALPN_HTTP_1_1, offered).ok_or(AlpnError::NOACK)
    });
    Ok(builder.build())
}
