/*!
HTTPS: the acceptor our tiny_http fork runs each connection's handshake with. Loaded once at
start, so a wrong file, a key that does not belong to the certificate or an unreadable PEM
stops the server with the file named, as the signing certificate does.

Mozilla's "intermediate" settings (TLS 1.2 and 1.3, forward-secret AEAD ciphers): what any
current client, the Qt installer's QNetworkAccessManager included, speaks.
*/

use openssl::pkey::PKey;
use openssl::ssl::{AlpnError, SslAcceptor, SslMethod, select_next_proto};
use openssl::x509::X509;
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
    let read = |path: &Path| {
        crate::fsutil::read_settings_file(path, crate::fsutil::MAX_SETTINGS_FILE)
            .map_err(|e| format!("{}: {e}", path.display()))
    };
    let (chain_pem, pem) = (read(certificate)?, read(key)?);
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
        .map_err(|e| format!("could not set up TLS: {}", reason(e)))?;
    let not_pem = |e| {
        format!(
            "{}: not a PEM certificate ({})",
            certificate.display(),
            reason(e)
        )
    };
    let mut chain = X509::stack_from_pem(&chain_pem)
        .map_err(not_pem)?
        .into_iter();
    let leaf = chain.next().ok_or_else(|| {
        format!(
            "{}: not a PEM certificate (no certificate)",
            certificate.display()
        )
    })?;
    builder.set_certificate(&leaf).map_err(not_pem)?;
    for intermediate in chain {
        builder
            .add_extra_chain_cert(intermediate)
            .map_err(not_pem)?;
    }
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
