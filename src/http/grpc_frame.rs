//! gRPC's framing of a message on its HTTP/2 stream (the spec's
//! `Length-Prefixed-Message`): one byte for compression (0: none), then the message's
//! length in four bytes, big-endian. Every gRPC message the proxy writes or reads goes
//! through here: its own calls (`upstream::grpc_call`, `upstream::grpc_stream`), health
//! checks (`health::grpc`), the xDS client (`xds::grpc`), the control plane
//! (`mesh::ads`) and span exports (`observe::trace::export`). It depends on nothing of
//! the proxy's, so each of those may use it whatever their place in the module graph.

#![deny(clippy::indexing_slicing, clippy::string_slice)]

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;

/// The prefix's length.
pub const PREFIX: usize = 5;

/// Writes the prefix of an uncompressed message of `len` bytes (a length past
/// `u32::MAX`, which no message here comes near, is written as `u32::MAX`).
pub fn put_prefix(len: usize, out: &mut impl BufMut) {
    out.put_u8(0);
    out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
}

/// `m` as one length-prefixed, uncompressed gRPC message.
pub fn encode_frame<M: Message>(m: &M) -> Bytes {
    let len = m.encoded_len();
    let mut out = BytesMut::with_capacity(PREFIX + len);
    put_prefix(len, &mut out);
    // Encoding into a buffer sized for the message cannot fail.
    let _ = m.encode(&mut out);
    out.freeze()
}

/// The payload of a body that is exactly one uncompressed message.
pub fn one_message(body: &[u8]) -> Option<&[u8]> {
    let (head, rest) = body.split_at_checked(PREFIX)?;
    let [flag, a, b, c, d] = *head else {
        return None;
    };
    (flag == 0 && rest.len() == u32::from_be_bytes([a, b, c, d]) as usize).then_some(rest)
}

/// Takes one complete message off the front of `buf` (`None`: not all of it is here
/// yet). A compressed message (none is ever offered) or one over `max` bytes is an
/// error. Shared by the streaming calls (`upstream::grpc_stream`), the xDS client and
/// the control plane.
pub fn next_frame(buf: &mut BytesMut, max: usize) -> Result<Option<Bytes>, String> {
    let Some([flag, a, b, c, d]) = buf.get(..PREFIX).and_then(|h| <[u8; 5]>::try_from(h).ok())
    else {
        return Ok(None);
    };
    if flag != 0 {
        return Err("compressed message (none was offered)".into());
    }
    let len = u32::from_be_bytes([a, b, c, d]) as usize;
    if len > max {
        return Err(format!("message of {len} bytes (limit {max})"));
    }
    if buf.len() < PREFIX + len {
        return Ok(None);
    }
    bytes::Buf::advance(buf, PREFIX);
    Ok(Some(buf.split_to(len).freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_a_zero_then_the_length_big_endian() {
        let mut out = Vec::new();
        put_prefix(0x0102_0304, &mut out);
        assert_eq!(out, [0, 1, 2, 3, 4]);
        let mut out = BytesMut::new();
        put_prefix(7, &mut out);
        assert_eq!(&out[..], &[0, 0, 0, 0, 7]);
    }

    #[test]
    fn frames() {
        let m = envoy_types::pb::envoy::r#type::v3::HttpStatus { code: 1 };
        let f = encode_frame(&m);
        assert_eq!(&f[..], &[0, 0, 0, 0, 2, 0x08, 1]);
        assert_eq!(one_message(&f), Some(&[0x08, 1][..]));
        assert_eq!(one_message(&[1, 0, 0, 0, 0]), None);
        assert_eq!(one_message(&[0, 0, 0, 0, 2, 0x08]), None);
        assert_eq!(one_message(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]), None);
    }
}
