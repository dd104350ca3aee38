//! Configuration: the native YAML format and the domain model every source builds.

pub mod access_log_filter;
pub mod access_log_format;
pub mod access_log_json;
mod build;
pub mod circuit;
pub mod dns_model;
pub mod duration;
mod envoy;
mod health_model;
mod lb_model;
mod load;
mod locate;
mod match_model;
pub mod model;
pub mod oneline;
pub mod outlier;
mod raw;
mod raw_circuit;
pub(crate) mod raw_ext_authz;
pub(crate) mod raw_fault_cors;
mod raw_health;
mod raw_istio;
pub(crate) mod raw_match;
mod raw_outlier;
pub(crate) mod raw_rbac;
mod raw_retry;
mod raw_route;
mod raw_tracing;
pub mod retry_model;
mod route_model;

pub(crate) use build::is_tchar;
pub use build::{ConfigError, ConfigErrors};
pub use envoy::xds;
pub use health_model::*;
pub use lb_model::PeakEwma;
pub use load::{load_file, parse_str};
pub use model::*;

#[cfg(test)]
mod tests {
    /// Every example in config/ must load: the docs quote them.
    #[test]
    fn every_config_example_loads() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/config");
        let mut n = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            // tls.yaml needs certificates made for it: tests/tls.rs makes them and runs it.
            if path.extension().is_some_and(|e| e == "yaml") && !path.ends_with("tls.yaml") {
                let p = path.to_str().unwrap();
                if let Err(e) = super::load_file(p) {
                    panic!("{p}:\n{e}");
                }
                n += 1;
            }
        }
        assert!(n >= 3, "expected the examples in config/");
    }
}
