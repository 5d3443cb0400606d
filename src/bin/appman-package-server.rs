//! `appman-package-server`: see the library's `server` module.

fn main() -> std::process::ExitCode {
    amps::server::run(std::env::args_os().skip(1))
}
