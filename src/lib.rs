/*!
A drop-in replacement for Qt Application Manager's `appman-package-server`, and the package
library it shares with our `appman-packager`.

Module map: `package` (format, digest, signatures, architecture), `store` (data directory,
index, store signing of downloads), `scanner` (`upload/` and `remove/`), `http` (routes and
worker pool), `config` (command line and config file), `console` (output), `server` (start-up
and shutdown), `yaml` and `fsutil` (shared helpers).
*/

pub mod config;
pub mod console;
pub mod fsutil;
pub mod http;
pub mod package;
pub mod scanner;
pub mod server;
pub mod store;
pub mod yaml;
