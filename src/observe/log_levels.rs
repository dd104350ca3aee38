//! Runtime log levels: the process's log filter, and Envoy's admin `/logging` over it.
//!
//! Off the request path: the filter is a `tracing` subscriber layer that can be
//! swapped (`tracing_subscriber::reload`); a change rebuilds the callsites' interest
//! once, so a disabled event still costs only its callsite's cached check. The loggers
//! are the crate's top-level modules (`http`, `upstream`, `tls`, ...), each a prefix of
//! the `outrigger::<module>` targets, like Envoy's named component loggers.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// The loggers `/logging` names: the crate's top-level modules.
pub const LOGGERS: &[&str] = &[
    "admin", "alarm", "config", "contain", "demo", "health", "http", "iptables", "listener",
    "observe", "outlier", "rbac", "runtime", "tcp", "tls", "tunnel", "upstream", "xds",
];

/// Envoy's level names (spdlog's), from the most to the least verbose.
const LEVELS: &[&str] = &[
    "trace", "debug", "info", "warning", "error", "critical", "off",
];

struct State {
    handle: reload::Handle<EnvFilter, Registry>,
    /// The filter every logger starts from: `OUTRIGGER_LOG`, or `info`.
    base: String,
    /// Per-logger levels set through `/logging` (Envoy's names).
    set: BTreeMap<&'static str, &'static str>,
}

static STATE: OnceLock<Mutex<State>> = OnceLock::new();

/// Installs the process's logger: stderr, filtered by `OUTRIGGER_LOG` (an `EnvFilter`
/// directive; `info` when unset or invalid), changeable at run time by [`change`].
pub fn init() {
    let base = std::env::var("OUTRIGGER_LOG")
        .ok()
        .filter(|s| EnvFilter::try_new(s).is_ok())
        .unwrap_or_else(|| "info".to_string());
    let (filter, handle) = reload::Layer::new(EnvFilter::new(&base));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .is_ok()
    {
        let _ = STATE.set(Mutex::new(State {
            handle,
            base,
            set: BTreeMap::new(),
        }));
    }
}

/// Envoy's level name for `s`, as the admin API takes it.
fn level(s: &str) -> Result<&'static str, String> {
    LEVELS
        .iter()
        .find(|l| **l == s)
        .copied()
        .ok_or_else(|| "unknown logger level".to_string())
}

/// `tracing`'s name for an Envoy level.
fn directive(level: &str) -> &'static str {
    match level {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warning" => "warn",
        "error" | "critical" => "error",
        _ => "off",
    }
}

/// Envoy's name for the level a plain `tracing` directive sets (`None`: not plain).
fn envoy_name(directive: &str) -> Option<&'static str> {
    Some(match directive.trim().to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warn" => "warning",
        "error" => "error",
        "off" => "off",
        _ => return None,
    })
}

/// Applies `/logging`'s query (already split into decoded pairs), as Envoy's
/// `LogsHandler::changeLogLevel` does: `level=L` sets every logger; `paths=a:L,b:L`
/// sets several; `name=L` sets one; empty `level`/`paths` are ignored; anything else is
/// refused, with nothing changed.
pub fn change(params: &[(String, String)]) -> Result<(), String> {
    let params: Vec<&(String, String)> = params
        .iter()
        .filter(|(k, v)| !((k == "level" || k == "paths") && v.is_empty()))
        .collect();
    let [(key, value)] = params.as_slice() else {
        return if params.is_empty() {
            Ok(())
        } else {
            Err("invalid number of parameters".to_string())
        };
    };
    let Some(state) = STATE.get() else {
        return Err("the process has no changeable logger".to_string());
    };
    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
    let mut changes: Vec<(&'static str, &'static str)> = Vec::new();
    if key == "level" {
        let l = level(value)?;
        s.base = directive(l).to_string();
        s.set.clear();
    } else if key == "paths" {
        for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, l) = pair.split_once(':').unwrap_or((pair, ""));
            let (name, l) = (name.trim(), l.trim());
            if name.is_empty() || l.is_empty() {
                return Err("empty logger name or empty logger level".to_string());
            }
            changes.push((logger(name)?, level(l)?));
        }
    } else {
        let l = level(value)?;
        changes.push((logger(key)?, l));
    }
    for (name, l) in changes {
        s.set.insert(name, l);
    }
    let mut text = s.base.clone();
    for (name, l) in &s.set {
        text.push_str(&format!(",outrigger::{name}={}", directive(l)));
    }
    let filter = EnvFilter::try_new(&text).map_err(|e| e.to_string())?;
    s.handle.reload(filter).map_err(|e| e.to_string())?;
    tracing::info!("log levels: {text}");
    Ok(())
}

fn logger(name: &str) -> Result<&'static str, String> {
    LOGGERS
        .iter()
        .find(|l| **l == name)
        .copied()
        .ok_or_else(|| "unknown logger name".to_string())
}

/// Envoy's listing: `active loggers:` and `  name: level` per logger. A logger that
/// follows an `OUTRIGGER_LOG` directive more complex than one level shows `custom`.
pub fn listing() -> String {
    let mut out = String::from("active loggers:\n");
    let s = STATE
        .get()
        .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()));
    for name in LOGGERS {
        let l = match &s {
            Some(s) => s
                .set
                .get(name)
                .copied()
                .or_else(|| envoy_name(&s.base))
                .unwrap_or("custom"),
            None => "info",
        };
        out.push_str(&format!("  {name}: {l}\n"));
    }
    out
}

/// The usage text Envoy prints after a refused change.
pub fn usage() -> String {
    let mut out = String::from(
        "usage: /logging?<name>=<level> (change single level)\n\
         usage: /logging?paths=name1:level1,name2:level2,... (change multiple levels)\n\
         usage: /logging?level=<level> (change all levels)\n\
         levels: ",
    );
    for l in LEVELS {
        out.push_str(l);
        out.push(' ');
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_map_to_tracing_and_back() {
        for l in LEVELS {
            let d = directive(l);
            assert!(EnvFilter::try_new(d).is_ok());
            if *l != "critical" {
                assert_eq!(envoy_name(d), Some(*l));
            }
        }
        assert!(level("warn").is_err());
        assert_eq!(envoy_name("outrigger::http=debug,info"), None);
    }

    #[test]
    fn malformed_changes_are_refused_before_any_state() {
        let p = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        assert_eq!(change(&p("level", "")), Ok(()));
        assert_eq!(change(&[]), Ok(()));
        let two = vec![
            ("http".to_string(), "debug".to_string()),
            ("tls".to_string(), "debug".to_string()),
        ];
        assert_eq!(change(&two).unwrap_err(), "invalid number of parameters");
    }

    #[test]
    fn every_logger_is_a_module_of_the_crate() {
        let lib = include_str!("../lib.rs");
        for l in LOGGERS {
            assert!(lib.contains(&format!("mod {l};")), "{l}");
        }
    }
}
