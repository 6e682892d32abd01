//! Message decoding (CBOR and compact publish bodies) on arbitrary bytes: an error or a message,
//! never a panic; a decoded message encodes again and decodes to itself.

use bytes::{Bytes, BytesMut};
use chaski_proto::codec::{decode_frame, decode_message, encode_frame, FrameDecoder};

/// Runs one input.
pub fn run(data: &[u8]) {
    let body = Bytes::copy_from_slice(data);
    let a = decode_frame(&body);
    let b = decode_message(data);
    assert_eq!(a.is_ok(), b.is_ok());
    if let Ok(msg) = a {
        let mut out = BytesMut::new();
        if encode_frame(&msg, &mut out, 1 << 24).is_ok() {
            let mut d = FrameDecoder::new(1 << 24);
            d.extend(&out);
            let frame = d.next_frame().unwrap().unwrap();
            assert_eq!(decode_frame(&frame).unwrap(), msg);
        }
    }
}
