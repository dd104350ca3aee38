//! The HTTP/1.1 codec: request and response head parsers (`request`, `response`) with
//! strict head analysis (`head`) on top of httparse, chunked framing, and head
//! serialisation. Sans-IO: nothing here reads or writes a socket, so the fuzz driver
//! (`tests/fuzz_h1.rs`) calls exactly what production runs.

pub mod chunked;
pub mod encode;
pub mod head;
pub mod request;
pub mod response;
pub mod slots;
