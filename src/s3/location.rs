/*!
Where the S3 store is: `s3://<bucket>/<prefix>` with the endpoint, region, addressing style and
credentials set the way S3 tools set them. Options win over the standard environment variables
(`AWS_ENDPOINT_URL`, `AWS_REGION` or `AWS_DEFAULT_REGION`, `AWS_ACCESS_KEY_ID`,
`AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`); the secret is never taken from the command line
(a file or the environment), and `Display` shows no credential.
*/

use std::fmt;

/// A parsed `--store s3://...` with its settings.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Empty, or ending in `/`.
    pub prefix: String,
    pub endpoint: String,
    pub region: String,
    pub path_style: bool,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: Option<String>,
    /// Unsigned downloads answered with a redirect to a presigned URL.
    pub redirect_downloads: bool,
}

/// The parts of `s3://<bucket>/<prefix>`.
pub fn parse_store(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("s3://")
        .ok_or("a store is s3://<bucket>/<prefix> (or the data directory by default)")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let valid_bucket = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !valid_bucket {
        return Err(format!(
            "'{bucket}' is not a bucket name (3 to 63 lowercase letters, digits, '-' and '.')"
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix.len() > 512 || prefix.contains("//") || prefix.chars().any(char::is_control) {
        return Err(format!("'{prefix}' is not a usable prefix"));
    }
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    Ok((bucket.to_string(), prefix))
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "s3://{}/{} at {} (region {}, {} addressing)",
            self.bucket,
            self.prefix,
            self.endpoint,
            self.region,
            if self.path_style {
                "path-style"
            } else {
                "virtual-host"
            }
        )
    }
}

impl fmt::Debug for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S3Location({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bucket_and_prefix() {
        assert_eq!(
            parse_store("s3://store/team/a/").unwrap(),
            ("store".into(), "team/a/".into())
        );
        assert_eq!(
            parse_store("s3://store").unwrap(),
            ("store".into(), String::new())
        );
        assert!(parse_store("s3://Store/x").is_err());
        assert!(parse_store("http://store/x").is_err());
        assert!(parse_store("s3://st/x").is_err());
    }
}
