//! gRPC's framing of a message on its HTTP/2 stream (the spec's
//! `Length-Prefixed-Message`): one byte for compression (0: none), then the message's
//! length in four bytes, big-endian. Every gRPC message the proxy writes goes behind
//! this prefix: its own calls (`upstream::grpc_call`, `upstream::grpc_stream`), health
//! checks (`health::grpc`), the control plane's answers (`mesh::ads`) and span exports
//! (`observe::trace::export`). It depends on nothing of the proxy's, so each of those
//! may use it whatever their place in the module graph.

use bytes::BufMut;

/// The prefix's length.
pub const PREFIX: usize = 5;

/// Writes the prefix of an uncompressed message of `len` bytes (a length past
/// `u32::MAX`, which no message here comes near, is written as `u32::MAX`).
pub fn put_prefix(len: usize, out: &mut impl BufMut) {
    out.put_u8(0);
    out.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_prefix_is_a_zero_then_the_length_big_endian() {
        let mut out = Vec::new();
        super::put_prefix(0x0102_0304, &mut out);
        assert_eq!(out, [0, 1, 2, 3, 4]);
        let mut out = bytes::BytesMut::new();
        super::put_prefix(7, &mut out);
        assert_eq!(&out[..], &[0, 0, 0, 0, 7]);
    }
}
