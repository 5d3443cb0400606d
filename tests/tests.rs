//! Integration tests: one test binary (as ripgrep does), one module per area.

mod util;

mod packager;
mod readme;
mod server;
mod vectors;
