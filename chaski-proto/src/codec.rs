//! Framing: a 4-byte big-endian body length, then a CBOR body, or, for the hot path, a compact
//! publish body (see [`PUBLISH_MARK`]).
//!
//! Encoding appends to a caller-owned buffer (one per connection) so that many frames leave in
//! one write. Decoding is incremental: any split of the byte stream yields the same frames, and a
//! length over the limit is refused as soon as its 4 bytes are seen, before anything of that size
//! is allocated.
//!
//! ```
//! use bytes::BytesMut;
//! use chaski_proto::codec::{decode_message, encode_frame, FrameDecoder};
//! use chaski_proto::Message;
//!
//! let mut out = BytesMut::new();
//! encode_frame(&Message::Topics(vec!["a".into()]), &mut out, 1 << 20).unwrap();
//! let mut dec = FrameDecoder::new(1 << 20);
//! dec.extend(&out);
//! let body = dec.next_frame().unwrap().unwrap();
//! assert_eq!(decode_message(&body).unwrap(), Message::Topics(vec!["a".into()]));
//! assert!(dec.next_frame().unwrap().is_none());
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::CodecError;
use crate::id::NodeId;
use crate::message::{Message, Publish, PublishRef};

/// Nesting depth allowed when decoding CBOR (our messages need fewer than 8 levels).
pub const RECURSION_LIMIT: usize = 16;

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// First byte of a compact publish body. `0xFF` is the CBOR "break" code, which never starts a
/// CBOR data item, so a compact body cannot be mistaken for a CBOR message.
///
/// Layout after the mark: origin (16 bytes), sequence (8), ttl (1), hops (1), topic length (2),
/// topic (UTF-8), then the payload to the end of the body. All integers big-endian. Publishing
/// is the hot path: this layout costs no CBOR walk, and the payload is a slice of the received
/// frame, never copied.
pub const PUBLISH_MARK: u8 = 0xFF;

/// Bytes of a compact publish body before the topic.
const PUBLISH_FIXED: usize = 1 + 16 + 8 + 1 + 1 + 2;

/// Appends one frame holding `msg` to `out`. On error `out` is left as it was.
pub fn encode_frame(
    msg: &Message,
    out: &mut BytesMut,
    max_frame_len: usize,
) -> Result<(), CodecError> {
    if let Message::Publish(p) = msg {
        return encode_publish(p, out, max_frame_len);
    }
    let start = out.len();
    out.put_u32(0);
    let res = ciborium::into_writer(msg, (&mut *out).writer());
    let body_len = out.len() - start - HEADER_LEN;
    match res {
        Ok(()) if body_len <= max_frame_len && body_len <= u32::MAX as usize => {
            out[start..start + HEADER_LEN].copy_from_slice(&(body_len as u32).to_be_bytes());
            Ok(())
        }
        Ok(()) => {
            out.truncate(start);
            Err(CodecError::FrameTooLong {
                len: body_len as u64,
                max: max_frame_len,
            })
        }
        Err(e) => {
            out.truncate(start);
            Err(CodecError::Encode(e.to_string()))
        }
    }
}

/// Appends one compact publish frame to `out`. On error `out` is left as it was.
pub fn encode_publish(
    p: &Publish,
    out: &mut BytesMut,
    max_frame_len: usize,
) -> Result<(), CodecError> {
    encode_publish_ref(&p.as_ref(), out, max_frame_len)
}

/// [`encode_publish`] from a borrowed publish.
pub fn encode_publish_ref(
    p: &PublishRef<'_>,
    out: &mut BytesMut,
    max_frame_len: usize,
) -> Result<(), CodecError> {
    let topic = p.topic.as_bytes();
    let body_len = PUBLISH_FIXED + topic.len() + p.payload.len();
    if topic.len() > u16::MAX as usize {
        return Err(CodecError::Encode(format!(
            "topic of {} bytes",
            topic.len()
        )));
    }
    if body_len > max_frame_len || body_len > u32::MAX as usize {
        return Err(CodecError::FrameTooLong {
            len: body_len as u64,
            max: max_frame_len,
        });
    }
    out.reserve(HEADER_LEN + body_len);
    out.put_u32(body_len as u32);
    out.put_u8(PUBLISH_MARK);
    out.put_u128(p.origin.0);
    out.put_u64(p.seq);
    out.put_u8(p.ttl);
    out.put_u8(p.hops);
    out.put_u16(topic.len() as u16);
    out.put_slice(topic);
    out.put_slice(p.payload);
    Ok(())
}

/// Decodes a compact publish body (see [`encode_publish`]), borrowing topic and payload.
pub fn decode_publish_ref(body: &[u8]) -> Result<PublishRef<'_>, CodecError> {
    let short = || CodecError::Decode(format!("publish body of {} bytes is too short", body.len()));
    if body.len() < PUBLISH_FIXED || body[0] != PUBLISH_MARK {
        return Err(short());
    }
    let mut b = &body[1..];
    let origin = NodeId(b.get_u128());
    let seq = b.get_u64();
    let ttl = b.get_u8();
    let hops = b.get_u8();
    let topic_len = b.get_u16() as usize;
    if b.len() < topic_len {
        return Err(short());
    }
    let topic = std::str::from_utf8(&b[..topic_len])
        .map_err(|_| CodecError::Decode("publish topic is not UTF-8".into()))?;
    Ok(PublishRef {
        origin,
        seq,
        topic,
        ttl,
        hops,
        payload: &b[topic_len..],
    })
}

/// Decodes a compact publish body (see [`encode_publish`]); the payload is a slice of `body`.
pub fn decode_publish(body: &Bytes) -> Result<Publish, CodecError> {
    let p = decode_publish_ref(body)?;
    Ok(Publish {
        origin: p.origin,
        seq: p.seq,
        topic: p.topic.to_string(),
        ttl: p.ttl,
        hops: p.hops,
        payload: body.slice(body.len() - p.payload.len()..),
    })
}

/// The first whole frame of `data`: its body and the bytes it takes (header included);
/// `Ok(None)` if `data` holds only part of it; an error if its length is over `max_frame_len`.
pub fn split_frame(
    data: &[u8],
    max_frame_len: usize,
) -> Result<Option<(&[u8], usize)>, CodecError> {
    if data.len() < HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_be_bytes([data[0], data[1], data[2], data[3]]) as usize;
    if len > max_frame_len {
        return Err(CodecError::FrameTooLong {
            len: len as u64,
            max: max_frame_len,
        });
    }
    match data.get(HEADER_LEN..HEADER_LEN + len) {
        Some(body) => Ok(Some((body, HEADER_LEN + len))),
        None => Ok(None),
    }
}

/// Decodes a frame body (compact publish or CBOR) without copying a publish payload.
pub fn decode_frame(body: &Bytes) -> Result<Message, CodecError> {
    if body.first() == Some(&PUBLISH_MARK) {
        return decode_publish(body).map(Message::Publish);
    }
    decode_value(body)
}

/// Encodes any serializable value as one CBOR item (used for datagrams).
pub fn encode_value<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    let mut v = Vec::new();
    ciborium::into_writer(value, &mut v).map_err(|e| CodecError::Encode(e.to_string()))?;
    Ok(v)
}

/// Decodes one CBOR item that must fill `body` exactly, with the nesting limit.
pub fn decode_value<T: DeserializeOwned>(body: &[u8]) -> Result<T, CodecError> {
    let mut reader = body;
    let v = ciborium::de::from_reader_with_recursion_limit(&mut reader, RECURSION_LIMIT)
        .map_err(|e| CodecError::Decode(e.to_string()))?;
    if !reader.is_empty() {
        return Err(CodecError::Decode(format!(
            "{} trailing bytes after the message",
            reader.len()
        )));
    }
    Ok(v)
}

/// Decodes a frame body into a [`Message`] (a publish payload is copied; [`decode_frame`]
/// avoids that).
pub fn decode_message(body: &[u8]) -> Result<Message, CodecError> {
    if body.first() == Some(&PUBLISH_MARK) {
        return decode_publish(&Bytes::copy_from_slice(body)).map(Message::Publish);
    }
    decode_value(body)
}

/// An incremental frame splitter with a bound on the frame length.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_frame_len: usize,
    failed: bool,
}

impl FrameDecoder {
    /// A decoder that refuses bodies longer than `max_frame_len`.
    pub fn new(max_frame_len: usize) -> Self {
        FrameDecoder {
            buf: BytesMut::new(),
            max_frame_len,
            failed: false,
        }
    }

    /// Appends received bytes. The buffer grows by doubling, but never past the frame its
    /// header announces (within the limit), so what it holds is what [`FrameDecoder::held`]
    /// says.
    pub fn extend(&mut self, data: &[u8]) {
        if self.failed {
            return;
        }
        let len = self.buf.len();
        if self.buf.capacity() - len < data.len() {
            let frame = if len >= HEADER_LEN {
                let n = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                HEADER_LEN + (n as usize).min(self.max_frame_len)
            } else {
                len + data.len()
            };
            let cap = (2 * self.buf.capacity()).min(frame).max(len + data.len());
            let mut grown = BytesMut::with_capacity(cap);
            grown.extend_from_slice(&self.buf);
            self.buf = grown;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes of memory the buffer holds (its capacity: what is buffered, and room for more).
    pub fn held(&self) -> usize {
        self.buf.capacity()
    }

    /// Changes the longest body accepted from now on (a connection's limit rises once its
    /// peer has said Hello).
    pub fn set_max_frame_len(&mut self, max: usize) {
        self.max_frame_len = max;
    }

    /// The longest body this decoder accepts.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Bytes still needed to finish the frame begun in the buffer (its header first): 0 if
    /// nothing is buffered or a whole frame is.
    pub fn needed(&self) -> usize {
        let have = self.buf.len();
        if have == 0 || self.failed {
            return 0;
        }
        if have < HEADER_LEN {
            return HEADER_LEN - have;
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        (HEADER_LEN + len.min(self.max_frame_len)).saturating_sub(have)
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame body, `Ok(None)` if more bytes are needed, or an error (after which
    /// the decoder stays failed and holds nothing).
    pub fn next_frame(&mut self) -> Result<Option<Bytes>, CodecError> {
        if self.failed {
            return Err(CodecError::Decode("stream already failed".into()));
        }
        if self.buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > self.max_frame_len {
            self.failed = true;
            self.buf = BytesMut::new();
            return Err(CodecError::FrameTooLong {
                len: len as u64,
                max: self.max_frame_len,
            });
        }
        if self.buf.len() < HEADER_LEN + len {
            return Ok(None);
        }
        self.buf.advance(HEADER_LEN);
        let body = self.buf.split_to(len).freeze();
        if self.buf.is_empty() {
            // The memory goes with the frame's body (the next frame gets its own).
            self.buf = BytesMut::new();
        }
        Ok(Some(body))
    }
}

/// The kind a frame body names, if it is well-formed CBOR naming a kind not in
/// [`MESSAGE_KINDS`](crate::message::MESSAGE_KINDS) (a newer peer's message: skipped, not an error). `None` for a known kind
/// (then the body is malformed) or anything else.
pub fn unknown_kind(body: &[u8]) -> Option<String> {
    let value: ciborium::Value = decode_value(body).ok()?;
    let name = match value {
        ciborium::Value::Map(m) if m.len() == 1 => match m.into_iter().next() {
            Some((ciborium::Value::Text(k), _)) => k,
            _ => return None,
        },
        ciborium::Value::Text(k) => k,
        _ => return None,
    };
    if crate::message::MESSAGE_KINDS.contains(&name.as_str()) {
        return None;
    }
    let mut kind = name;
    if kind.len() > 64 {
        let mut cut = 64;
        while !kind.is_char_boundary(cut) {
            cut -= 1;
        }
        kind.truncate(cut);
    }
    Some(kind)
}

/// A goodbye or a response that names a reason or an error this node does not know (a newer
/// peer's), read as the nearest one it knows: a goodbye with
/// [`DisconnectReason::ProtocolError`](crate::message::DisconnectReason::ProtocolError) naming it, a response failed with
/// [`RemoteError::Failed`](crate::message::RemoteError::Failed) naming it. `None` for anything else.
pub fn tolerant_decode(body: &[u8]) -> Option<Message> {
    use ciborium::Value;
    let value: Value = decode_value(body).ok()?;
    let Value::Map(mut outer) = value else {
        return None;
    };
    if outer.len() != 1 {
        return None;
    }
    let (key, inner) = outer.pop()?;
    /// The name of an enum value: its text, or the key of its one-entry map.
    fn named(v: &Value) -> Option<String> {
        match v {
            Value::Text(t) => Some(t.clone()),
            Value::Map(m) if m.len() == 1 => m[0].0.as_text().map(str::to_string),
            _ => None,
        }
    }
    match key.as_text()? {
        "Goodbye" => Some(Message::Goodbye(
            crate::message::DisconnectReason::ProtocolError(format!(
                "a reason this version does not know: {}",
                named(&inner)?
            )),
        )),
        "Response" => {
            let Value::Map(fields) = inner else {
                return None;
            };
            let field = |name: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k.as_text() == Some(name))
                    .map(|(_, v)| v)
            };
            let id = u64::try_from(field("id")?.as_integer()?).ok()?;
            let Value::Map(result) = field("result")? else {
                return None;
            };
            let (tag, error) = result.first()?;
            if tag.as_text()? != "Err" {
                return None;
            }
            Some(Message::Response {
                id,
                result: Err(crate::message::RemoteError::Failed(format!(
                    "an error this version does not know: {}",
                    named(error)?
                ))),
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Publish {
        Publish {
            origin: NodeId(0x0102_0304_0506_0708_090a_0b0c_0d0e_0f10),
            seq: 77,
            topic: "news/é".into(),
            ttl: 9,
            hops: 2,
            payload: Bytes::from_static(b"payload bytes"),
        }
    }

    #[test]
    fn compact_publish_round_trips_without_copying_the_payload() {
        let mut out = BytesMut::new();
        encode_frame(&Message::Publish(sample()), &mut out, 1 << 20).unwrap();
        assert_eq!(out[4], PUBLISH_MARK);
        let mut d = FrameDecoder::new(1 << 20);
        d.extend(&out);
        let body = d.next_frame().unwrap().unwrap();
        let Message::Publish(p) = decode_frame(&body).unwrap() else {
            panic!("not a publish")
        };
        assert_eq!(p, sample());
        // The payload points into the frame body.
        let inside = body.as_ptr() as usize..body.as_ptr() as usize + body.len();
        assert!(inside.contains(&(p.payload.as_ptr() as usize)));
        assert_eq!(decode_message(&body).unwrap(), Message::Publish(sample()));
    }

    #[test]
    fn compact_publish_rejects_short_or_bad_bodies() {
        let mut out = BytesMut::new();
        encode_publish(&sample(), &mut out, 1 << 20).unwrap();
        let body = out.split_off(4).freeze();
        // Every truncation that cuts the fixed part or the topic is an error, never a panic.
        for cut in 0..PUBLISH_FIXED + sample().topic.len() {
            assert!(decode_frame(&body.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut bad = body.to_vec();
        bad[PUBLISH_FIXED] = 0xff; // not UTF-8
        assert!(decode_frame(&Bytes::from(bad)).is_err());
        let too_big = encode_publish(&sample(), &mut BytesMut::new(), 10);
        assert!(matches!(too_big, Err(CodecError::FrameTooLong { .. })));
    }

    #[test]
    fn refuses_huge_prefix_without_allocating() {
        let mut d = FrameDecoder::new(1024);
        d.extend(&[0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
        assert!(matches!(
            d.next_frame(),
            Err(CodecError::FrameTooLong {
                len: 4294967295,
                max: 1024
            })
        ));
        assert_eq!(d.buffered(), 0);
        d.extend(&[0; 100]);
        assert_eq!(d.buffered(), 0);
        assert!(d.next_frame().is_err());
    }

    #[test]
    fn encoding_over_limit_leaves_buffer_untouched() {
        let mut out = BytesMut::from(&b"xy"[..]);
        let msg = Message::Topics(vec!["a".repeat(100)]);
        assert!(matches!(
            encode_frame(&msg, &mut out, 10),
            Err(CodecError::FrameTooLong { .. })
        ));
        assert_eq!(&out[..], b"xy");
    }

    #[test]
    fn trailing_bytes_are_an_error() {
        let mut out = BytesMut::new();
        encode_frame(&Message::Topics(vec![]), &mut out, 100).unwrap();
        let mut body = out[4..].to_vec();
        body.push(0);
        assert!(decode_message(&body).is_err());
    }

    #[test]
    fn deep_nesting_is_refused() {
        // 10_000 nested arrays: must error, not overflow the stack.
        let mut body = vec![0x81u8; 10_000];
        body.push(0x00);
        assert!(decode_message(&body).is_err());
    }

    #[test]
    fn nesting_counts_every_array_and_map_up_to_16() {
        // d arrays nested (the outermost counts), around a 0: 16 decode, 17 do not.
        let nested = |d: usize| {
            let mut body = vec![0x81u8; d];
            body.push(0x00);
            body
        };
        assert!(decode_value::<ciborium::Value>(&nested(RECURSION_LIMIT)).is_ok());
        assert!(decode_value::<ciborium::Value>(&nested(RECURSION_LIMIT + 1)).is_err());
        // Maps count the same way.
        let mut maps = [0xa1u8, 0x00].repeat(RECURSION_LIMIT);
        maps.push(0x00);
        assert!(decode_value::<ciborium::Value>(&maps).is_ok());
        let mut maps = [0xa1u8, 0x00].repeat(RECURSION_LIMIT + 1);
        maps.push(0x00);
        assert!(decode_value::<ciborium::Value>(&maps).is_err());
    }

    #[test]
    fn node_ids_are_integers_or_bignums_of_any_length_that_fit() {
        let id = |bytes: &[u8]| decode_value::<NodeId>(bytes);
        // Below 2^64: a plain integer; above, a tag-2 bignum of its big-endian bytes, leading
        // zeros dropped (9 to 16 bytes) when this node writes it.
        assert_eq!(encode_value(&NodeId(7)).unwrap(), [0x07]);
        let big = NodeId(1 << 64);
        let mut want = vec![0xc2, 0x49, 0x01];
        want.extend([0; 8]);
        assert_eq!(encode_value(&big).unwrap(), want);
        // Read: any length whose value fits, leading zeros included (RFC 8949 §3.4.3).
        assert_eq!(id(&want), Ok(big));
        let mut seventeen = vec![0xc2, 0x51, 0x00];
        seventeen.extend([0xff; 16]);
        assert_eq!(id(&seventeen), Ok(NodeId(u128::MAX)));
        let mut small = vec![0xc2, 0x49];
        small.extend([0; 8]);
        small.push(5);
        assert_eq!(id(&small), Ok(NodeId(5)));
        // More than 128 bits: refused.
        let mut over = vec![0xc2, 0x51, 0x01];
        over.extend([0; 16]);
        assert!(id(&over).is_err());
    }

    #[test]
    fn payload_is_a_byte_string() {
        let msg = Message::Ping {
            id: 1,
            padding: Bytes::from(vec![7u8; 300]),
        };
        let mut out = BytesMut::new();
        encode_frame(&msg, &mut out, 1 << 20).unwrap();
        // 300 bytes of padding cost 300 bytes plus a short header, not an array of integers.
        assert!(out.len() < 340, "frame is {} bytes", out.len());
    }
}
