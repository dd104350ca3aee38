//! What a filter's hook answers (`Status` for head hooks, `DataStatus` for body hooks)
//! and the local reply it may ask for. Its own module so that each filter's file can
//! name these without depending on the chain (`filter/mod.rs`) that runs it.

use std::borrow::Cow;

use crate::http::flags::ResponseFlag;

/// A filter's answer to a hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Continue,
    /// Stop the chain and answer with this local reply.
    Respond(LocalReply),
}

/// A filter's answer to a body hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataStatus {
    /// Pass the chunk on.
    Continue,
    /// Hold the chunk (Envoy's `StopIterationAndBuffer`).
    StopAndBuffer,
    /// Stop and answer with this local reply.
    Respond(LocalReply),
}

/// A locally generated response a filter asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReply {
    pub status: u16,
    /// Configured text, or computed per request (a wasm filter's local response).
    pub body: Cow<'static, str>,
    pub flag: ResponseFlag,
}

impl LocalReply {
    /// The body as `Bytes` (no copy for a configured body).
    pub fn body_bytes(&self) -> bytes::Bytes {
        match &self.body {
            Cow::Borrowed(s) => bytes::Bytes::from_static(s.as_bytes()),
            Cow::Owned(s) => bytes::Bytes::from(s.clone()),
        }
    }
}
