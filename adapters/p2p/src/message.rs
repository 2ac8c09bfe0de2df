//! `/parley/message/3`: the frames of the message protocol between peers, converted to and
//! from typed values here, at the edge.
//!
//! One long-lived stream per connected contact carries every message to it: the sender writes
//! numbered requests one after another without waiting, the recipient answers each by its
//! number once the message is stored (answers may come in any order). Each frame is
//!
//! ```text
//! len: u32 big-endian ‖ CBOR item of len bytes
//! request:  {"n": uint, "envelope": bytes, "meta": {text => text}}
//! response: {"n": uint, "receipt": {"digest": bytes(32), "sig": bytes(0 or 64)}}
//!         | {"n": uint, "refused": {"reason": text, "permanent": bool}}
//! ```
//!
//! The decoder is strict: definite-length maps, text keys, each key once, no key it does not
//! know (so a forged `from` is a malformed frame, not something silently ignored), nothing after
//! the item. A length over the cap is refused before a byte of the body is read, so a peer
//! cannot make the reader allocate more than [`MAX_REQUEST_FRAME_BYTES`]. No frame carries its
//! sender: the receiver takes it from the connection's verified certificate.

use libp2p::StreamProtocol;

use crate::protocol::{MAX_META_ENTRIES, MAX_REASON_BYTES, Meta};

/// The message protocol between peers (version 3: one stream per contact, CBOR frames).
pub const MESSAGE_PROTOCOL: StreamProtocol = StreamProtocol::new("/parley/message/3");
/// The largest envelope a request may carry, in bytes: the envelope format's own cap
/// (`parley_envelope::MAX_ENVELOPE_BYTES`; `parley-peer`, which wires both, asserts at compile
/// time that they are equal).
pub const MAX_ENVELOPE_BYTES: usize = 24 * 1024;
/// The largest metadata a request may carry, CBOR included: [`MAX_META_ENTRIES`] entries of a
/// 256-byte key and a 256-byte value, each with its 3-byte head, and the map's head.
const MAX_META_CBOR_BYTES: usize = MAX_META_ENTRIES * 2 * (256 + 3) + 9;
/// The largest request frame read, in bytes (the length prefix not counted): the envelope and
/// the metadata at their caps, the keys and heads. A longer frame is refused unread and its
/// stream dropped.
pub const MAX_REQUEST_FRAME_BYTES: usize = MAX_ENVELOPE_BYTES + MAX_META_CBOR_BYTES + 64;
/// Requests on one stream waiting for their answers, on either side: the sender writes no
/// more until one is answered, the receiver reads no more until one is answered.
pub const MAX_IN_FLIGHT: usize = 64;
/// The largest response frame read, in bytes: a receipt, or a refusal whose reason is cut to
/// [`MAX_REASON_BYTES`].
pub const MAX_RESPONSE_FRAME_BYTES: usize = MAX_REASON_BYTES + 128;

/// A sealed message on its way to a peer, numbered on its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The request's number on its stream; the answer names it.
    pub n: u64,
    /// The sealed envelope, as raw bytes.
    pub envelope: Vec<u8>,
    /// Protocol metadata (the W3C trace context).
    pub meta: Meta,
}

/// The recipient's answer to request `n`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The number of the request answered.
    pub n: u64,
    /// What became of it.
    pub answer: Answer,
}

/// What became of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Stored durably (now or before).
    Receipt {
        /// SHA-256 of the envelope stored: the sender checks it is the one it sent.
        digest: [u8; 32],
        /// The recipient's Ed25519 signature over the receipt; `None` (an empty byte string on
        /// the wire) until receipts are signed.
        sig: Option<[u8; 64]>,
    },
    /// Not stored.
    Refused {
        /// One sentence.
        reason: String,
        /// True when sending the same envelope again cannot succeed: the sender stops.
        permanent: bool,
    },
}

/// Why a frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The length prefix announces more than the cap.
    #[error("the frame announces {len} bytes, more than the {cap} accepted")]
    TooLarge {
        /// The announced length.
        len: u64,
        /// The cap.
        cap: usize,
    },
    /// The frame is not the CBOR item the protocol names.
    #[error("the frame is malformed: {0}")]
    Malformed(&'static str),
}

type Decoded<T> = Result<T, FrameError>;

fn malformed<E>(what: &'static str) -> impl FnOnce(E) -> FrameError {
    move |_| FrameError::Malformed(what)
}

/// A definite-length map's entry count, at most `max`.
fn map_len(d: &mut minicbor::Decoder<'_>, max: u64) -> Decoded<u64> {
    match d.map().map_err(malformed("expected a map"))? {
        Some(len) if len <= max => Ok(len),
        Some(_) => Err(FrameError::Malformed("a map has too many entries")),
        None => Err(FrameError::Malformed("an indefinite-length map")),
    }
}

/// Sets `slot` once; a second time is a duplicate key.
fn once<T>(slot: &mut Option<T>, value: T) -> Decoded<()> {
    if slot.replace(value).is_some() {
        return Err(FrameError::Malformed("a key appears twice"));
    }
    Ok(())
}

fn finish(d: &minicbor::Decoder<'_>) -> Decoded<()> {
    if d.position() == d.input().len() {
        Ok(())
    } else {
        Err(FrameError::Malformed("bytes after the frame's item"))
    }
}

impl Request {
    /// The frame's CBOR item (without the length prefix).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        encode_with(|e| {
            e.map(3)?
                .str("n")?
                .u64(self.n)?
                .str("envelope")?
                .bytes(&self.envelope)?
                .str("meta")?
                .map(u64::try_from(self.meta.len()).unwrap_or(u64::MAX))?;
            for (key, value) in &self.meta {
                e.str(key)?.str(value)?;
            }
            Ok(())
        })
    }

    /// Reads a request frame's item, by the rules in the module's documentation. `meta` may be
    /// left out (empty); the bounds of the envelope and of `meta` are the receiver's to check.
    ///
    /// # Errors
    /// [`FrameError::Malformed`] for anything else than the item the protocol names.
    pub fn decode(bytes: &[u8]) -> Decoded<Self> {
        let mut d = minicbor::Decoder::new(bytes);
        let (mut n, mut envelope, mut meta) = (None, None, None);
        for _ in 0..map_len(&mut d, 3)? {
            match d.str().map_err(malformed("expected a text key"))? {
                "n" => once(&mut n, d.u64().map_err(malformed("n is not a number"))?)?,
                "envelope" => once(
                    &mut envelope,
                    d.bytes().map_err(malformed("the envelope is not bytes"))?,
                )?,
                "meta" => {
                    let len = map_len(&mut d, MAX_META_ENTRIES as u64)?;
                    let mut entries = Meta::new();
                    for _ in 0..len {
                        let key = d.str().map_err(malformed("a metadata key is not text"))?;
                        let value = d.str().map_err(malformed("a metadata value is not text"))?;
                        if entries.insert(key.to_owned(), value.to_owned()).is_some() {
                            return Err(FrameError::Malformed("a metadata key appears twice"));
                        }
                    }
                    once(&mut meta, entries)?;
                }
                _ => return Err(FrameError::Malformed("an unknown field")),
            }
        }
        finish(&d)?;
        Ok(Self {
            n: n.ok_or(FrameError::Malformed("no request number"))?,
            envelope: envelope
                .ok_or(FrameError::Malformed("no envelope"))?
                .to_vec(),
            meta: meta.unwrap_or_default(),
        })
    }
}

impl Response {
    /// The frame's CBOR item (without the length prefix).
    #[must_use]
    pub fn encode(&self) -> Vec<u8> {
        encode_with(|e| {
            e.map(2)?.str("n")?.u64(self.n)?;
            match &self.answer {
                Answer::Receipt { digest, sig } => {
                    e.str("receipt")?
                        .map(2)?
                        .str("digest")?
                        .bytes(digest)?
                        .str("sig")?
                        .bytes(sig.as_ref().map_or(&[][..], |s| &s[..]))?;
                }
                Answer::Refused { reason, permanent } => {
                    e.str("refused")?
                        .map(2)?
                        .str("reason")?
                        .str(reason)?
                        .str("permanent")?
                        .bool(*permanent)?;
                }
            }
            Ok(())
        })
    }

    /// Reads a response frame's item, by the rules in the module's documentation.
    ///
    /// # Errors
    /// [`FrameError::Malformed`] for anything else than the item the protocol names.
    pub fn decode(bytes: &[u8]) -> Decoded<Self> {
        let mut d = minicbor::Decoder::new(bytes);
        let (mut n, mut answer) = (None, None);
        for _ in 0..map_len(&mut d, 2)? {
            match d.str().map_err(malformed("expected a text key"))? {
                "n" => once(&mut n, d.u64().map_err(malformed("n is not a number"))?)?,
                "receipt" => once(&mut answer, receipt(&mut d)?)?,
                "refused" => once(&mut answer, refused(&mut d)?)?,
                _ => return Err(FrameError::Malformed("an unknown field")),
            }
        }
        finish(&d)?;
        Ok(Self {
            n: n.ok_or(FrameError::Malformed("no request number"))?,
            answer: answer.ok_or(FrameError::Malformed("neither a receipt nor a refusal"))?,
        })
    }
}

fn receipt(d: &mut minicbor::Decoder<'_>) -> Decoded<Answer> {
    let (mut digest, mut sig) = (None, None);
    for _ in 0..map_len(d, 2)? {
        match d.str().map_err(malformed("expected a text key"))? {
            "digest" => {
                let bytes = d.bytes().map_err(malformed("the digest is not bytes"))?;
                let bytes: [u8; 32] = bytes
                    .try_into()
                    .map_err(malformed("the digest is not 32 bytes"))?;
                once(&mut digest, bytes)?;
            }
            "sig" => {
                let bytes = d.bytes().map_err(malformed("the signature is not bytes"))?;
                let value = match bytes.len() {
                    0 => None,
                    _ => Some(
                        <[u8; 64]>::try_from(bytes)
                            .map_err(malformed("the signature is neither empty nor 64 bytes"))?,
                    ),
                };
                once(&mut sig, value)?;
            }
            _ => return Err(FrameError::Malformed("an unknown field")),
        }
    }
    Ok(Answer::Receipt {
        digest: digest.ok_or(FrameError::Malformed("a receipt without its digest"))?,
        sig: sig.ok_or(FrameError::Malformed(
            "a receipt without its signature field",
        ))?,
    })
}

fn refused(d: &mut minicbor::Decoder<'_>) -> Decoded<Answer> {
    let (mut reason, mut permanent) = (None, None);
    for _ in 0..map_len(d, 2)? {
        match d.str().map_err(malformed("expected a text key"))? {
            "reason" => once(
                &mut reason,
                d.str().map_err(malformed("the reason is not text"))?,
            )?,
            "permanent" => once(
                &mut permanent,
                d.bool().map_err(malformed("permanent is not a boolean"))?,
            )?,
            _ => return Err(FrameError::Malformed("an unknown field")),
        }
    }
    Ok(Answer::Refused {
        reason: reason
            .ok_or(FrameError::Malformed("a refusal without its reason"))?
            .to_owned(),
        permanent: permanent.ok_or(FrameError::Malformed("a refusal without permanent"))?,
    })
}

/// Runs `write` on an encoder over a vector; writing to a vector cannot fail.
fn encode_with(
    write: impl FnOnce(
        &mut minicbor::Encoder<Vec<u8>>,
    ) -> Result<(), minicbor::encode::Error<std::convert::Infallible>>,
) -> Vec<u8> {
    let mut encoder = minicbor::Encoder::new(Vec::new());
    // The error type is `Infallible` for a vector: there is nothing to handle.
    let _ = write(&mut encoder);
    encoder.into_writer()
}

/// SHA-256 of an envelope, as receipts name it.
#[must_use]
pub fn digest(envelope: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(envelope).into()
}

/// `item` behind its length prefix, ready to write. Frames are capped far below 4 GiB.
#[must_use]
pub fn frame(item: &[u8]) -> Vec<u8> {
    let len = u32::try_from(item.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(4 + item.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(item);
    out
}

/// Reads one frame's item of at most `cap` bytes; `Ok(None)` when the stream ended cleanly
/// before a frame began. Cancelling it loses the frame being read.
///
/// # Errors
/// An I/O error, also for a stream that ends inside a frame; [`FrameError::TooLarge`] (as an
/// `InvalidData` error) for a length over `cap`, before anything more is read or allocated.
pub async fn read_frame(
    stream: &mut (impl futures::AsyncRead + Unpin),
    cap: usize,
) -> std::io::Result<Option<Vec<u8>>> {
    use futures::AsyncReadExt as _;

    let mut prefix = [0u8; 4];
    let mut got = 0;
    while got < prefix.len() {
        match stream.read(&mut prefix[got..]).await? {
            0 if got == 0 => return Ok(None),
            0 => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            n => got += n,
        }
    }
    let len = u32::from_be_bytes(prefix);
    let size = usize::try_from(len).unwrap_or(usize::MAX);
    if size > cap {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            FrameError::TooLarge {
                len: u64::from(len),
                cap,
            },
        ));
    }
    let mut item = vec![0u8; size];
    stream.read_exact(&mut item).await?;
    Ok(Some(item))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn request() -> Request {
        Request {
            n: 7,
            envelope: b"sealed".to_vec(),
            meta: Meta::from([("traceparent".to_owned(), "00-ab-cd-01".to_owned())]),
        }
    }

    /// A CBOR item written by hand, for frames no honest encoder makes.
    fn cbor(write: impl FnOnce(&mut minicbor::Encoder<Vec<u8>>)) -> Vec<u8> {
        let mut e = minicbor::Encoder::new(Vec::new());
        write(&mut e);
        e.into_writer()
    }

    #[test]
    fn requests_and_responses_round_trip() {
        let request = request();
        assert_eq!(Request::decode(&request.encode()), Ok(request));
        for answer in [
            Answer::Receipt {
                digest: [3; 32],
                sig: None,
            },
            Answer::Receipt {
                digest: [3; 32],
                sig: Some([9; 64]),
            },
            Answer::Refused {
                reason: "busy".into(),
                permanent: false,
            },
        ] {
            let response = Response {
                n: u64::MAX,
                answer,
            };
            assert_eq!(Response::decode(&response.encode()), Ok(response));
        }
    }

    #[test]
    fn a_forged_sender_field_is_refused_not_ignored() {
        let forged = cbor(|e| {
            e.map(3).unwrap();
            e.str("n").unwrap().u64(1).unwrap();
            e.str("envelope").unwrap().bytes(b"x").unwrap();
            e.str("from").unwrap().str("bob").unwrap();
        });
        assert_eq!(
            Request::decode(&forged),
            Err(FrameError::Malformed("an unknown field"))
        );
    }

    #[test]
    fn malformed_frames_are_refused() {
        let duplicate = cbor(|e| {
            e.map(2).unwrap();
            e.str("n").unwrap().u64(1).unwrap();
            e.str("n").unwrap().u64(2).unwrap();
        });
        let indefinite = cbor(|e| {
            e.begin_map().unwrap();
            e.str("n").unwrap().u64(1).unwrap();
            e.end().unwrap();
        });
        let text_envelope = cbor(|e| {
            e.map(2).unwrap();
            e.str("n").unwrap().u64(1).unwrap();
            e.str("envelope").unwrap().str("AQ==").unwrap();
        });
        let mut trailing = request().encode();
        trailing.push(0);
        let short_digest = cbor(|e| {
            e.map(2).unwrap();
            e.str("n").unwrap().u64(1).unwrap();
            e.str("receipt").unwrap().map(2).unwrap();
            e.str("digest").unwrap().bytes(&[0; 31]).unwrap();
            e.str("sig").unwrap().bytes(&[]).unwrap();
        });
        let odd_sig = cbor(|e| {
            e.map(2).unwrap();
            e.str("n").unwrap().u64(1).unwrap();
            e.str("receipt").unwrap().map(2).unwrap();
            e.str("digest").unwrap().bytes(&[0; 32]).unwrap();
            e.str("sig").unwrap().bytes(&[0; 63]).unwrap();
        });
        for bytes in [
            &duplicate[..],
            &indefinite,
            &text_envelope,
            &trailing,
            &[],
            &[0xff, 0x00, 0x13],
        ] {
            assert!(Request::decode(bytes).is_err(), "{bytes:?}");
        }
        for bytes in [&short_digest[..], &odd_sig, &request().encode()] {
            assert!(Response::decode(bytes).is_err(), "{bytes:?}");
        }
    }

    #[test]
    fn metadata_beyond_its_entry_count_is_refused_before_it_is_read() {
        let crowded = cbor(|e| {
            e.map(2).unwrap();
            e.str("n").unwrap().u64(1).unwrap();
            e.str("meta").unwrap().map(u64::MAX).unwrap();
        });
        assert!(Request::decode(&crowded).is_err());
    }

    #[test]
    fn the_largest_honest_request_fits_its_frame() {
        let largest = Request {
            n: u64::MAX,
            envelope: vec![0; MAX_ENVELOPE_BYTES],
            meta: (0..MAX_META_ENTRIES)
                .map(|i| (format!("{i:0>256}"), "v".repeat(256)))
                .collect(),
        };
        assert!(largest.encode().len() <= MAX_REQUEST_FRAME_BYTES);
        let refusal = Response {
            n: u64::MAX,
            answer: Answer::Refused {
                reason: "r".repeat(MAX_REASON_BYTES),
                permanent: true,
            },
        };
        assert!(refusal.encode().len() <= MAX_RESPONSE_FRAME_BYTES);
    }

    #[tokio::test]
    async fn an_oversized_length_is_refused_before_its_body_is_read() {
        let mut bytes = &u32::MAX.to_be_bytes()[..];
        let error = read_frame(&mut bytes, MAX_REQUEST_FRAME_BYTES)
            .await
            .expect_err("too large");
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
        let framed = frame(&request().encode());
        let mut stream = &framed[..];
        let item = read_frame(&mut stream, MAX_REQUEST_FRAME_BYTES)
            .await
            .expect("a frame")
            .expect("not the end");
        assert_eq!(Request::decode(&item), Ok(request()));
        assert!(
            read_frame(&mut stream, MAX_REQUEST_FRAME_BYTES)
                .await
                .expect("a clean end")
                .is_none()
        );
        let mut cut = &framed[..framed.len() - 1];
        assert!(read_frame(&mut cut, MAX_REQUEST_FRAME_BYTES).await.is_err());
    }
}
