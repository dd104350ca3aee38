//! The HTTP/1.1 codec: strict head analysis on top of httparse, chunked framing, and
//! head serialisation. Sans-IO: nothing here reads or writes a socket.

pub mod chunked;
pub mod encode;
pub mod head;
