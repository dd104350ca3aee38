//! Configuration: the native YAML format and the domain model every source builds.

pub mod access_log_format;
mod build;
pub mod duration;
mod locate;
pub mod model;
pub mod oneline;
mod raw;

pub(crate) use build::is_tchar;
pub use build::{load_file, parse_str, ConfigError, ConfigErrors};
pub use model::*;
