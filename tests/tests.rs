//! Integration tests: one test binary (as ripgrep does), one module per area.

mod util;

mod attacks;
mod browser;
mod chroot;
mod console;
mod deployment;
mod dropin;
mod files;
mod garage;
mod hostile;
mod http;
mod memory;
mod metrics;
mod origin;
mod packager;
mod page;
mod promises;
mod readme;
mod robustness;
mod s3;
mod server;
mod signing;
mod splice;
mod tags;
mod vectors;
