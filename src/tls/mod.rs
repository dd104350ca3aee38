//! TLS with rustls: where it sits on the request path.
//!
//! ```text
//! accept ─► tls_inspector (listener/tls_inspector.rs: SNI, ALPN, "tls"; peeks only)
//!        ─► filter chain selection (listener/select.rs)
//!        ─► the chain's transport socket: a TlsStream over the socket (stream.rs),
//!           handshake with the chain's ServerConfig (server.rs), counted (stats.rs)
//!        ─► the terminal filter over the TlsStream (ALPN h2 / http/1.1 picks the codec)
//! ```
//!
//! Configs are built on the control side (files are read there, never on a worker) and
//! shared by all workers through the snapshot; a TLS session lives on the worker that
//! accepted its connection, like every other connection state.

pub mod client;
pub mod config;
pub mod der;
pub mod files;
pub mod info;
pub mod params;
mod preference;
pub mod server;
pub mod stats;
pub mod stream;
#[cfg(test)]
mod stream_tests;
pub mod subject;
pub mod transport;
pub mod xfcc;

pub use info::TlsInfo;
pub use server::ServerTls;
pub use stream::TlsStream;
pub use transport::Transport;
