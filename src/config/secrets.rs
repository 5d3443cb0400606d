/*!
The settings that are files of secrets or keys: the TLS certificate and key (both or neither,
loaded and checked to belong together) and the upload token (given, or read from a file of at
most 64 KiB, and checked: at least 16 characters of RFC 6750's alphabet).
*/

use super::ConfigError;
use super::args::{HttpArgs, check_token};
use std::path::{Path, PathBuf};

/// The TLS certificate and key (both or neither), loaded.
pub(super) fn load_tls(
    args: &HttpArgs,
    file: &HttpArgs,
    in_data_dir: &dyn Fn(&PathBuf) -> PathBuf,
) -> Result<Option<(PathBuf, openssl::ssl::SslAcceptor)>, ConfigError> {
    let certificate = args
        .tls_certificate
        .clone()
        .or(file.tls_certificate.as_ref().map(in_data_dir));
    let key = args
        .tls_key
        .clone()
        .or(file.tls_key.as_ref().map(in_data_dir));
    match (certificate, key) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::Usage(
            "--tls-cert: a TLS certificate without its key (--tls-key)".into(),
        )),
        (None, Some(_)) => Err(ConfigError::Usage(
            "--tls-key: a TLS key without its certificate (--tls-cert)".into(),
        )),
        (Some(certificate), Some(key)) => crate::http::tls::acceptor(&certificate, &key)
            .map(|acceptor| Some((certificate, acceptor)))
            .map_err(|e| ConfigError::Startup(format!("could not load the TLS certificate: {e}"))),
    }
}

/// The upload token: given, or read from its file (one line; surrounding white space is
/// not part of it).
pub(super) fn load_upload_token(
    args: &HttpArgs,
    file: &HttpArgs,
    in_data_dir: &dyn Fn(&PathBuf) -> PathBuf,
) -> Result<Option<String>, ConfigError> {
    let token = match (&args.upload_token, &args.upload_token_file) {
        (Some(_), Some(_)) => {
            return Err(ConfigError::Usage(
                "--upload-token and --upload-token-file: give only one".into(),
            ));
        }
        (Some(token), None) => Some(("--upload-token", token.clone())),
        (None, Some(path)) => Some(("--upload-token-file", read_token_file(path)?)),
        (None, None) => match (&file.upload_token, &file.upload_token_file) {
            (Some(token), _) => Some(("uploadToken", token.clone())),
            (None, Some(path)) => Some(("uploadTokenFile", read_token_file(&in_data_dir(path))?)),
            (None, None) => None,
        },
    };
    let Some((source, token)) = token else {
        return Ok(None);
    };
    check_token(&token)
        .map(|()| Some(token))
        .map_err(|why| ConfigError::Startup(format!("{source}: {why}")))
}

fn read_token_file(path: &Path) -> Result<String, ConfigError> {
    let bytes = crate::fsutil::read_settings_file(path, 64 * 1024).map_err(|e| {
        ConfigError::Startup(format!(
            "could not read the upload token file {}: {e}",
            path.display()
        ))
    })?;
    Ok(String::from_utf8_lossy(&bytes).trim().to_string())
}
