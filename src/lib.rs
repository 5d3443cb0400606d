/*!
A drop-in replacement for Qt Application Manager's `appman-package-server`, and the package
library it and our `appman-packager` share.
*/

pub mod fsutil;
pub mod package;
pub mod yaml;
