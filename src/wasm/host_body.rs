//! The HTTP body buffers of the body callbacks (`proxy_on_request_body`,
//! `proxy_on_response_body`): `proxy_get_buffer_bytes` and `proxy_get_buffer_status`
//! read them (`abi.rs`, through `Host::body`), `proxy_set_buffer_bytes` edits them here, with
//! Envoy's meaning of its `start` and `size` (its `Buffer::copyFrom`): `start` 0
//! drops the first `size` bytes (all of them when `size` is the body's length or
//! more) and puts the data in front, so `(0, 0)` prepends and `(0, len)` replaces;
//! `start` at or past the end appends; any other `start` is `BadArgument`, as is an
//! edit of a buffer that is not writable (a chunk already on its way).

use wasmtime::{Caller, Linker};

use super::abi::{read, BAD_ARGUMENT, INVALID_MEMORY_ACCESS, NOT_FOUND, OK};
pub use super::abi::{HTTP_REQUEST_BODY, HTTP_RESPONSE_BODY};
use super::host::{BodyBuf, Host};

/// `proxy_set_buffer_bytes` on `b` (see the module doc).
pub fn set(b: &mut BodyBuf, start: usize, size: usize, data: &[u8]) -> i32 {
    if !b.writable {
        return BAD_ARGUMENT;
    }
    if start == 0 {
        let drop = size.min(b.bytes.len());
        b.bytes.splice(..drop, data.iter().copied());
    } else if start >= b.bytes.len() {
        b.bytes.extend_from_slice(data);
    } else {
        return BAD_ARGUMENT;
    }
    b.edited = true;
    OK
}

/// Defines `proxy_set_buffer_bytes` in `l`.
pub fn define(l: &mut Linker<Host>) {
    let _ = l.func_wrap(
        "env",
        "proxy_set_buffer_bytes",
        |mut c: Caller<'_, Host>, t: i32, start: i32, size: i32, p: i32, n: i32| -> i32 {
            if !matches!(t, HTTP_REQUEST_BODY | HTTP_RESPONSE_BODY) {
                return NOT_FOUND;
            }
            let Some(data) = read(&mut c, p, n) else {
                return INVALID_MEMORY_ACCESS;
            };
            match c.data_mut().body(t) {
                None => NOT_FOUND,
                Some(b) => set(b, start as u32 as usize, size as u32 as usize, &data),
            }
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buf(s: &str) -> BodyBuf {
        BodyBuf {
            kind: HTTP_REQUEST_BODY,
            bytes: s.as_bytes().to_vec(),
            writable: true,
            edited: false,
        }
    }

    #[test]
    fn start_and_size_mean_what_envoy_makes_of_them() {
        let edit = |s: &str, start, size, data: &str| {
            let mut b = buf(s);
            let r = set(&mut b, start, size, data.as_bytes());
            (r, String::from_utf8(b.bytes).unwrap(), b.edited)
        };
        assert_eq!(edit("hello", 0, 5, "new"), (OK, "new".into(), true));
        assert_eq!(edit("hello", 0, 99, "new"), (OK, "new".into(), true));
        assert_eq!(edit("hello", 0, 0, "<<"), (OK, "<<hello".into(), true));
        assert_eq!(edit("hello", 0, 2, "J"), (OK, "Jllo".into(), true));
        assert_eq!(edit("hello", 5, 0, ">>"), (OK, "hello>>".into(), true));
        assert_eq!(edit("hello", 9, 3, ">>"), (OK, "hello>>".into(), true));
        assert_eq!(
            edit("hello", 2, 1, "x"),
            (BAD_ARGUMENT, "hello".into(), false)
        );
        let mut b = buf("hello");
        b.writable = false;
        assert_eq!(set(&mut b, 0, 5, b"x"), BAD_ARGUMENT);
        assert_eq!(b.bytes, b"hello");
    }
}
