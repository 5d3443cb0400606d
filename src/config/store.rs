/*!
The effective store: the data directory (the default), or S3-compatible object storage with
its endpoint, region, addressing and credentials from the options, the config file and the
standard `AWS_*` variables, in that order. The secret comes from a file or the environment,
never the command line.
*/

use super::ConfigError;
use super::args::StoreArgs;
use crate::s3::{S3Location, parse_store};
use std::path::PathBuf;

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The S3 location the settings name, or `None` for the data directory.
pub fn s3_location(
    args: &StoreArgs,
    file: &StoreArgs,
    in_data_dir: &dyn Fn(&PathBuf) -> PathBuf,
) -> Result<Option<S3Location>, ConfigError> {
    let Some(store) = args.store.clone().or(file.store.clone()) else {
        return Ok(None);
    };
    let (bucket, prefix) = parse_store(&store).map_err(ConfigError::Usage)?;
    let endpoint = args
        .endpoint
        .clone()
        .or(file.endpoint.clone())
        .or_else(|| env("AWS_ENDPOINT_URL_S3"))
        .or_else(|| env("AWS_ENDPOINT_URL"));
    let path_style = args
        .path_style
        .or(file.path_style)
        .unwrap_or(endpoint.is_some());
    let region = args
        .region
        .clone()
        .or(file.region.clone())
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|| "us-east-1".to_string());
    let endpoint = endpoint.unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
    let access_key_id = args
        .access_key_id
        .clone()
        .or(file.access_key_id.clone())
        .or_else(|| env("AWS_ACCESS_KEY_ID"))
        .ok_or_else(|| {
            ConfigError::Startup(
                "--store: no access key: set AWS_ACCESS_KEY_ID or --s3-access-key-id".into(),
            )
        })?;
    let secret_file = args
        .secret_access_key_file
        .clone()
        .or(file.secret_access_key_file.as_ref().map(in_data_dir));
    let secret_access_key = match secret_file {
        Some(path) => {
            let bytes = crate::fsutil::read_settings_file(&path, 4096).map_err(|e| {
                ConfigError::Startup(format!(
                    "could not read the S3 secret access key file {}: {e}",
                    path.display()
                ))
            })?;
            String::from_utf8(bytes)
                .map(|s| s.trim().to_string())
                .map_err(|_| {
                    ConfigError::Startup(format!("{} is not text", path.display()))
                })?
        }
        None => env("AWS_SECRET_ACCESS_KEY").ok_or_else(|| {
            ConfigError::Startup(
                "--store: no secret access key: set AWS_SECRET_ACCESS_KEY or --s3-secret-access-key-file"
                    .into(),
            )
        })?,
    };
    Ok(Some(S3Location {
        bucket,
        prefix,
        endpoint,
        region,
        path_style,
        access_key_id,
        secret_access_key,
        session_token: env("AWS_SESSION_TOKEN"),
        redirect_downloads: args
            .redirect_downloads
            .or(file.redirect_downloads)
            .unwrap_or(false),
    }))
}
