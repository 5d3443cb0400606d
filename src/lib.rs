/*!
A drop-in replacement for Qt Application Manager's `appman-package-server`, and the package
library it shares with our `appman-packager`.

Module map: `package` (format, digest, signatures, architecture), `store` (data directory,
index, store signing of downloads), `scanner` (`upload/` and `remove/`), `http` (routes and
the glue to our tiny_http), `metrics` (`GET /metrics`), `config` (command line and config
file), `console` (output), `server` (start-up and shutdown), `yaml` and `fsutil` (shared
helpers).
*/

pub mod config;
pub mod console;
pub mod fsutil;
pub mod http;
pub mod metrics;
pub mod package;
pub mod s3;
pub mod scanner;
pub mod server;
pub mod store;
pub mod yaml;

/// The `--version` line of both binaries: our version, the Qt Application Manager behaviour
/// we follow, and how the binary was built (static or dynamic, and its OpenSSL).
pub fn version_line(program: &str) -> String {
    let linking = if cfg!(target_feature = "crt-static") {
        "static build"
    } else {
        "dynamic build"
    };
    let openssl = if cfg!(feature = "vendored-openssl") {
        "vendored"
    } else {
        "system"
    };
    format!(
        "{program} {} (follows Qt Application Manager 6.x: package format and package-server API of 6.4; {linking}, {openssl} {})",
        env!("CARGO_PKG_VERSION"),
        openssl::version::version()
    )
}
