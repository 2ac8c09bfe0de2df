//! The byte layout of the header and the plaintext body (see the crate docs), and the rules
//! that turn decoded fields into domain types.
//!
//! Decoding is split in two on purpose: [`RawHeader::decode`] and [`RawBody::decode`] only
//! check the *structure* (lengths, counts, no trailing bytes); the rules of the domain
//! (usernames, attachment names, `seq ≥ 1`, text length, one key per attachment) are applied
//! by `validate`, after the signature has been verified and the body decrypted.

use parley_domain::envelope::{MAX_ATTACHMENTS, check_attachment_name};
use parley_domain::{
    AttachmentKey, AttachmentRef, Body, Digest, Header, MessageId, MessageText, Secret32,
    Timestamp, Ttl, Username,
};

/// A cursor over untrusted bytes. Every read is bounds-checked and never panics.
pub(crate) struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { rest: bytes }
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.rest.len() {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub(crate) fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[b]| b)
    }

    pub(crate) fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }

    pub(crate) fn i64(&mut self) -> Option<i64> {
        self.array().map(i64::from_be_bytes)
    }

    /// A `u32` length followed by that many bytes.
    pub(crate) fn bytes_u32(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.u32()?).ok()?;
        self.take(len)
    }

    /// What is left, without consuming it.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.rest
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }
}

/// One attachment as the header carries it, before any rule is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawAttachment {
    pub(crate) name: Vec<u8>,
    pub(crate) size: u64,
    pub(crate) sha256: [u8; 32],
}

/// The header's fields as they travel, before any rule is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RawHeader {
    pub(crate) id: [u8; 16],
    pub(crate) from: Vec<u8>,
    pub(crate) to: Vec<u8>,
    pub(crate) sent_at: i64,
    pub(crate) ttl_ms: u64,
    pub(crate) seq: u64,
    pub(crate) prev: [u8; 32],
    pub(crate) attachments: Vec<RawAttachment>,
}

const TRUNCATED_HEADER: &str = "the header ends too early";
const TRUNCATED_BODY: &str = "the body ends too early";

fn len_u8(len: usize, what: &'static str) -> Result<u8, &'static str> {
    u8::try_from(len).map_err(|_| what)
}

impl RawHeader {
    /// The fields of a (typed, therefore mostly valid) header.
    pub(crate) fn from_header(header: &Header) -> Self {
        Self {
            id: *header.id.as_bytes(),
            from: header.from.as_str().as_bytes().to_vec(),
            to: header.to.as_str().as_bytes().to_vec(),
            sent_at: header.sent_at.0,
            ttl_ms: header.ttl.map_or(0, Ttl::millis),
            seq: header.seq,
            prev: header.prev.0,
            attachments: header
                .attachments
                .iter()
                .map(|a| RawAttachment {
                    name: a.name.as_bytes().to_vec(),
                    size: a.size,
                    sha256: a.sha256.0,
                })
                .collect(),
        }
    }

    /// The header bytes. Fails only when a length does not fit its field.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, &'static str> {
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(&self.id);
        for name in [&self.from, &self.to] {
            out.push(len_u8(name.len(), "a username is longer than 255 bytes")?);
            out.extend_from_slice(name);
        }
        out.extend_from_slice(&self.sent_at.to_be_bytes());
        out.extend_from_slice(&self.ttl_ms.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.prev);
        out.push(len_u8(
            self.attachments.len(),
            "there are more than 255 attachments",
        )?);
        for att in &self.attachments {
            let len = u16::try_from(att.name.len())
                .map_err(|_| "an attachment name is longer than 65535 bytes")?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&att.name);
            out.extend_from_slice(&att.size.to_be_bytes());
            out.extend_from_slice(&att.sha256);
        }
        Ok(out)
    }

    /// Reads exactly one header from `bytes`: structure only, no rules.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, &'static str> {
        let mut r = Reader::new(bytes);
        let header = Self::read(&mut r).ok_or(TRUNCATED_HEADER)?;
        if !r.is_empty() {
            return Err("trailing bytes after the header's last field");
        }
        Ok(header)
    }

    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let id = r.array()?;
        let from_len = r.u8()?;
        let from = r.take(usize::from(from_len))?.to_vec();
        let to_len = r.u8()?;
        let to = r.take(usize::from(to_len))?.to_vec();
        let sent_at = r.i64()?;
        let ttl_ms = r.u64()?;
        let seq = r.u64()?;
        let prev = r.array()?;
        let n_att = r.u8()?;
        let mut attachments = Vec::with_capacity(usize::from(n_att));
        for _ in 0..n_att {
            let name_len = r.u16()?;
            let name = r.take(usize::from(name_len))?.to_vec();
            let size = r.u64()?;
            let sha256 = r.array()?;
            attachments.push(RawAttachment { name, size, sha256 });
        }
        Some(Self {
            id,
            from,
            to,
            sent_at,
            ttl_ms,
            seq,
            prev,
            attachments,
        })
    }

    /// Applies the domain's rules and builds the typed header.
    pub(crate) fn validate(self) -> Result<Header, &'static str> {
        let from = username(&self.from).ok_or("the sender is not a valid username")?;
        let to = username(&self.to).ok_or("the recipient is not a valid username")?;
        if self.seq == 0 {
            return Err("the sequence number is 0 but chains start at 1");
        }
        if self.attachments.len() > MAX_ATTACHMENTS {
            return Err("there are more attachments than allowed");
        }
        let attachments = self
            .attachments
            .into_iter()
            .map(|a| {
                let name = String::from_utf8(a.name)
                    .ok()
                    .filter(|n| check_attachment_name(n).is_ok())
                    .ok_or("an attachment name is not a valid file name")?;
                Ok(AttachmentRef {
                    name,
                    size: a.size,
                    sha256: Digest(a.sha256),
                })
            })
            .collect::<Result<Vec<_>, &'static str>>()?;
        Ok(Header {
            id: MessageId::from_bytes(self.id),
            from,
            to,
            sent_at: Timestamp(self.sent_at),
            ttl: (self.ttl_ms != 0).then(|| Ttl::from_millis(self.ttl_ms)),
            seq: self.seq,
            prev: Digest(self.prev),
            attachments,
        })
    }
}

fn username(bytes: &[u8]) -> Option<Username> {
    Username::parse(std::str::from_utf8(bytes).ok()?).ok()
}

/// The plaintext body's fields, before any rule is checked. No `Debug`: it holds the text and
/// the attachment keys.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RawBody {
    pub(crate) text: Vec<u8>,
    pub(crate) keys: Vec<(Secret32, [u8; 32])>,
}

impl RawBody {
    pub(crate) fn from_body(body: &Body) -> Self {
        Self {
            text: body.text.as_str().as_bytes().to_vec(),
            keys: body
                .attachment_keys
                .iter()
                .map(|k| (k.key.clone(), k.plain_sha256.0))
                .collect(),
        }
    }

    /// The plaintext body bytes. Fails only when a length does not fit its field.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, &'static str> {
        let mut out = Vec::with_capacity(4 + self.text.len() + 1 + 64 * self.keys.len());
        let text_len =
            u32::try_from(self.text.len()).map_err(|_| "the text is longer than 4 GiB")?;
        out.extend_from_slice(&text_len.to_be_bytes());
        out.extend_from_slice(&self.text);
        out.push(len_u8(
            self.keys.len(),
            "there are more than 255 attachment keys",
        )?);
        for (key, plain_sha256) in &self.keys {
            out.extend_from_slice(key.expose());
            out.extend_from_slice(plain_sha256);
        }
        Ok(out)
    }

    /// Reads exactly one body from `bytes`: structure only, no rules.
    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, &'static str> {
        let mut r = Reader::new(bytes);
        let body = Self::read(&mut r).ok_or(TRUNCATED_BODY)?;
        if !r.is_empty() {
            return Err("trailing bytes after the body's last field");
        }
        Ok(body)
    }

    fn read(r: &mut Reader<'_>) -> Option<Self> {
        let text = r.bytes_u32()?.to_vec();
        let n_keys = r.u8()?;
        let mut keys = Vec::with_capacity(usize::from(n_keys));
        for _ in 0..n_keys {
            let key = Secret32::new(r.array()?);
            let plain_sha256 = r.array()?;
            keys.push((key, plain_sha256));
        }
        Some(Self { text, keys })
    }

    /// Applies the domain's rules, given how many attachments the header names.
    pub(crate) fn validate(self, n_attachments: usize) -> Result<Body, &'static str> {
        if self.keys.len() != n_attachments {
            return Err("the number of attachment keys differs from the number of attachments");
        }
        let text = String::from_utf8(self.text).map_err(|_| "the text is not UTF-8")?;
        let text = MessageText::parse(text).map_err(|_| "the text is empty or too long")?;
        Ok(Body {
            text,
            attachment_keys: self
                .keys
                .into_iter()
                .map(|(key, plain)| AttachmentKey {
                    key,
                    plain_sha256: Digest(plain),
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_header() -> RawHeader {
        RawHeader {
            id: [7; 16],
            from: b"alice".to_vec(),
            to: b"bob".to_vec(),
            sent_at: -5,
            ttl_ms: 60_000,
            seq: 3,
            prev: [9; 32],
            attachments: vec![RawAttachment {
                name: b"a.txt".to_vec(),
                size: 42,
                sha256: [1; 32],
            }],
        }
    }

    #[test]
    fn header_round_trips_and_has_the_documented_layout() {
        let raw = raw_header();
        let bytes = raw.encode().expect("encodes");
        // id 16, 1+5, 1+3, 8, 8, 8, 32, 1, 2+5+8+32
        assert_eq!(bytes.len(), 16 + 6 + 4 + 8 + 8 + 8 + 32 + 1 + 47);
        assert_eq!(&bytes[16..22], b"\x05alice");
        assert_eq!(&bytes[26..34], &(-5i64).to_be_bytes());
        assert_eq!(RawHeader::decode(&bytes), Ok(raw.clone()));
        let header = raw.validate().expect("valid");
        assert_eq!(header.ttl.map(Ttl::millis), Some(60_000));
        assert_eq!(RawHeader::from_header(&header).encode(), Ok(bytes));
    }

    #[test]
    fn header_decoding_refuses_every_truncation_and_trailing_bytes() {
        let bytes = raw_header().encode().expect("encodes");
        for len in 0..bytes.len() {
            assert!(RawHeader::decode(&bytes[..len]).is_err(), "{len}");
        }
        let mut longer = bytes;
        longer.push(0);
        assert!(RawHeader::decode(&longer).is_err());
    }

    #[test]
    fn body_decoding_refuses_truncation_trailing_bytes_and_a_huge_length() {
        let body = RawBody {
            text: b"hi".to_vec(),
            keys: vec![(Secret32::new([3; 32]), [4; 32])],
        };
        let bytes = body.encode().expect("encodes");
        assert!(RawBody::decode(&bytes) == Ok(body.clone()));
        for len in 0..bytes.len() {
            assert!(RawBody::decode(&bytes[..len]).is_err(), "{len}");
        }
        let mut longer = bytes;
        longer.push(0);
        assert!(RawBody::decode(&longer).is_err());
        assert!(RawBody::decode(&[0xff, 0xff, 0xff, 0xff, b'x']).is_err());
    }

    #[test]
    fn validation_applies_the_domain_rules() {
        let ok = raw_header();
        type Spoil = fn(&mut RawHeader);
        let cases: [(&str, Spoil); 6] = [
            ("sender", |h| h.from = b"Alice".to_vec()),
            ("recipient", |h| h.to = vec![0xff, 0xfe, 0x61]),
            ("seq", |h| h.seq = 0),
            ("name", |h| h.attachments[0].name = b"../x".to_vec()),
            ("utf8 name", |h| h.attachments[0].name = vec![0xc3]),
            ("count", |h| {
                let a = h.attachments[0].clone();
                h.attachments = vec![a; MAX_ATTACHMENTS + 1];
            }),
        ];
        for (what, spoil) in cases {
            let mut h = ok.clone();
            spoil(&mut h);
            assert!(h.validate().is_err(), "{what}");
        }
        let header = RawHeader {
            ttl_ms: 0,
            ..ok.clone()
        }
        .validate()
        .expect("valid");
        assert_eq!(header.ttl, None);
    }
}
