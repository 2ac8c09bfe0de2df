//! The one-paste invite to a rendezvous:
//! `parley://join?server=<percent-encoded https URL>&ca=sha256:<64 hex>`.
//!
//! An [`Invite`] holds the two things a device needs to enroll safely: where the rendezvous's
//! HTTPS API is, and the fingerprint of the CA to pin. It is parsed once at the edge
//! ([`Invite::parse`]); a value that exists is well formed. Whether the CA the server presents
//! is really the one named is for the enrollment to check, as for `--ca-fingerprint`.

use std::fmt;

use crate::pki::CaFingerprint;

/// The start of every invite.
pub const PREFIX: &str = "parley://join?";

/// The longest invite read: far more than any real one, so that a pasted novel is refused
/// before it is looked at.
pub const MAX_LEN: usize = 2048;

/// A rendezvous to join: its HTTPS address and its CA's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    server: String,
    ca: CaFingerprint,
}

/// Why a text is not an invite. Each message is one sentence saying what is wrong and what to
/// do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InviteError {
    /// Longer than [`MAX_LEN`].
    #[error(
        "the invite is longer than {MAX_LEN} characters; copy only the line that starts with parley://join?"
    )]
    TooLong,
    /// Not `parley://…`.
    #[error(
        "this is not a Parley invite: it must start with parley://join?; copy the whole invite line the rendezvous printed"
    )]
    NotParley,
    /// `parley://` but not `join` followed by `?`.
    #[error(
        "this Parley link is not an invite to join (it must start with parley://join?); copy the whole invite line the rendezvous printed"
    )]
    NotJoin,
    /// A `#` part, which no invite has.
    #[error(
        "the invite has a # part, which no invite has; copy the invite line exactly as printed"
    )]
    Fragment,
    /// A parameter that is not `name=value`.
    #[error("the invite has a malformed parameter {0:?}; copy the invite line exactly as printed")]
    Malformed(String),
    /// A parameter other than `server` and `ca`.
    #[error(
        "the invite has an unknown parameter {0:?} (only server and ca belong in it); copy the invite line exactly as printed"
    )]
    UnknownParameter(String),
    /// A parameter given twice.
    #[error(
        "the invite gives {0} twice, so it cannot be trusted; ask the rendezvous's operator for the invite again"
    )]
    DuplicateParameter(&'static str),
    /// `server` or `ca` is absent.
    #[error("the invite has no {0} parameter; copy the whole invite line the rendezvous printed")]
    MissingParameter(&'static str),
    /// A `%` not followed by two hex digits, or bytes that are not UTF-8.
    #[error(
        "the invite's {0} is not correctly percent-encoded; copy the invite line exactly as printed"
    )]
    Encoding(&'static str),
    /// `server` is not `https://HOST[:PORT][/PATH]`.
    #[error(
        "the invite's server {0:?} is not an https:// URL such as https://203.0.113.7:8443; ask the rendezvous's operator for the invite again"
    )]
    Server(String),
    /// `ca` is not `sha256:` and 64 hexadecimal digits.
    #[error(
        "the invite's ca is not sha256: followed by 64 hexadecimal digits; copy the invite line exactly as printed"
    )]
    Fingerprint,
}

impl Invite {
    /// The invite to `server` pinning `ca`.
    ///
    /// # Errors
    /// [`InviteError::Server`] when `server` is not `https://HOST[:PORT][/PATH]` (no user
    /// part, query or fragment; the host a name, an IPv4 address or a bracketed IPv6 one).
    pub fn new(server: &str, ca: CaFingerprint) -> Result<Self, InviteError> {
        check_server(server)?;
        Ok(Self {
            server: server.to_owned(),
            ca,
        })
    }

    /// Reads an invite (surrounding white space is ignored; the scheme and `join` in any
    /// case).
    ///
    /// # Errors
    /// [`InviteError`], one variant per way it is wrong.
    pub fn parse(raw: &str) -> Result<Self, InviteError> {
        let raw = raw.trim();
        if raw.len() > MAX_LEN {
            return Err(InviteError::TooLong);
        }
        let scheme_end = raw.find("://").ok_or(InviteError::NotParley)?;
        if !raw[..scheme_end].eq_ignore_ascii_case("parley") {
            return Err(InviteError::NotParley);
        }
        let rest = &raw[scheme_end + 3..];
        let query = match rest.get(..5) {
            Some(head) if head.eq_ignore_ascii_case("join?") => &rest[5..],
            _ => return Err(InviteError::NotJoin),
        };
        if query.contains('#') {
            return Err(InviteError::Fragment);
        }
        let (mut server, mut ca) = (None, None);
        for pair in query.split('&') {
            let (name, value) = pair
                .split_once('=')
                .filter(|(name, _)| !name.is_empty())
                .ok_or_else(|| InviteError::Malformed(shorten(pair)))?;
            let (slot, name) = match name {
                "server" => (&mut server, "server"),
                "ca" => (&mut ca, "ca"),
                other => return Err(InviteError::UnknownParameter(shorten(other))),
            };
            if slot.is_some() {
                return Err(InviteError::DuplicateParameter(name));
            }
            *slot = Some(percent_decode(value).ok_or(InviteError::Encoding(name))?);
        }
        let server = server.ok_or(InviteError::MissingParameter("server"))?;
        let ca = ca.ok_or(InviteError::MissingParameter("ca"))?;
        let ca = CaFingerprint::parse(&ca).map_err(|_| InviteError::Fingerprint)?;
        Self::new(&server, ca)
    }

    /// The rendezvous's HTTPS address, decoded (`https://HOST[:PORT][/PATH]`).
    #[must_use]
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The CA fingerprint to pin.
    #[must_use]
    pub fn ca(&self) -> CaFingerprint {
        self.ca
    }
}

impl fmt::Display for Invite {
    /// `parley://join?server=<percent-encoded>&ca=sha256:<64 lowercase hex>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}server={}&ca={}",
            percent_encode(&self.server),
            self.ca
        )
    }
}

/// At most 40 characters of what was found, for a message.
fn shorten(text: &str) -> String {
    text.chars().take(40).collect()
}

/// Every byte but RFC 3986's unreserved ones as `%XX`.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `%XX` escapes decoded; `None` for a broken escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(byte);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `https://HOST[:PORT][/PATH]`.
fn check_server(server: &str) -> Result<(), InviteError> {
    let bad = || InviteError::Server(shorten(server));
    let rest = server.strip_prefix("https://").ok_or_else(bad)?;
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    let (host, port) = if let Some(inner) = authority.strip_prefix('[') {
        let (literal, after) = inner.split_once(']').ok_or_else(bad)?;
        let ok = literal.contains(':')
            && literal
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !ok {
            return Err(bad());
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(bad)?),
        };
        (literal, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let name_ok = |h: &str| {
        h.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
    };
    if host.is_empty() || (!authority.starts_with('[') && !name_ok(host)) {
        return Err(bad());
    }
    if let Some(port) = port
        && (port.is_empty()
            || port.len() > 5
            || !port.bytes().all(|b| b.is_ascii_digit())
            || port.parse::<u32>().map_or(true, |p| p == 0 || p > 65_535))
    {
        return Err(bad());
    }
    // RFC 3986 path characters: unreserved, sub-delims, ':', '@', '/' and escapes.
    let path_ok = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/%".contains(&b));
    if !path_ok {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "3b1f0c9e2d7a4b5c6d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e";

    fn ca() -> CaFingerprint {
        CaFingerprint::parse(&format!("sha256:{HEX}")).expect("a valid literal")
    }

    fn check(raw: &str, expected: Result<(&str, CaFingerprint), InviteError>) {
        let got = Invite::parse(raw);
        match expected {
            Ok((server, fp)) => {
                let invite = got.unwrap_or_else(|e| panic!("{raw}: {e}"));
                assert_eq!(invite.server(), server, "{raw}");
                assert_eq!(invite.ca(), fp, "{raw}");
            }
            Err(e) => assert_eq!(got, Err(e), "{raw}"),
        }
    }

    #[test]
    fn the_printed_form_is_the_contract_line_and_round_trips() {
        let invite = Invite::new("https://127.0.0.1:8443", ca()).expect("valid");
        let text = invite.to_string();
        assert_eq!(
            text,
            format!("parley://join?server=https%3A%2F%2F127.0.0.1%3A8443&ca=sha256:{HEX}")
        );
        assert_eq!(Invite::parse(&text), Ok(invite));
    }

    #[test]
    fn unusual_urls_are_encoded_and_come_back_the_same() {
        for server in [
            "https://[::1]:8443",
            "https://[2001:db8::7]",
            "https://[::ffff:192.0.2.1]:443",
            "https://rendezvous.example.org",
            "https://rendezvous.example.org:65535/",
            "https://example.org/parley/api",
            "https://example.org/a%20b/c;d=e",
            "https://xn--bcher-kva.example",
        ] {
            let invite = Invite::new(server, ca()).unwrap_or_else(|e| panic!("{server}: {e}"));
            let text = invite.to_string();
            let encoded = text
                .strip_prefix(PREFIX)
                .and_then(|q| q.strip_prefix("server="))
                .and_then(|q| q.split_once("&ca="))
                .map(|(server, _)| server)
                .expect("the contract's shape");
            assert!(
                !encoded.contains(['/', ':', '[', ']', ' ', '?', '#', '&', ';', '=']),
                "the server is not fully encoded in {text}"
            );
            assert_eq!(Invite::parse(&text), Ok(invite), "{server}");
        }
        // A hand-written invite, not encoded, in other cases, reads the same.
        check(
            &format!(
                "  PARLEY://Join?ca=SHA256:{}&server=https://[::1]:9\n",
                HEX.to_uppercase()
            )
            .replace("SHA256", "sha256"),
            Ok(("https://[::1]:9", ca())),
        );
    }

    #[test]
    fn malformed_invites_are_refused_each_with_its_reason() {
        let ok_ca = format!("ca=sha256:{HEX}");
        let server = "server=https%3A%2F%2F127.0.0.1%3A8443";
        for (raw, error) in [
            ("", InviteError::NotParley),
            ("https://127.0.0.1:8443", InviteError::NotParley),
            (
                &format!("parly://join?{server}&{ok_ca}"),
                InviteError::NotParley,
            ),
            (
                &format!("parley:join?{server}&{ok_ca}"),
                InviteError::NotParley,
            ),
            (&format!("parley://user/bob?{server}"), InviteError::NotJoin),
            (
                &format!("parley://join/?{server}&{ok_ca}"),
                InviteError::NotJoin,
            ),
            ("parley://join", InviteError::NotJoin),
            (
                &format!("parley://join?{server}&{ok_ca}#x"),
                InviteError::Fragment,
            ),
            (
                &format!("parley://join?{server}&{ok_ca}&"),
                InviteError::Malformed(String::new()),
            ),
            (
                &format!("parley://join?{server}&&{ok_ca}"),
                InviteError::Malformed(String::new()),
            ),
            (
                &format!("parley://join?{server}&ca"),
                InviteError::Malformed("ca".into()),
            ),
            (
                &format!("parley://join?{server}&{ok_ca}&user=bob"),
                InviteError::UnknownParameter("user".into()),
            ),
            (
                &format!("parley://join?Server=x&{ok_ca}"),
                InviteError::UnknownParameter("Server".into()),
            ),
            (
                &format!("parley://join?{server}&{ok_ca}&{server}"),
                InviteError::DuplicateParameter("server"),
            ),
            (
                &format!("parley://join?{ok_ca}&{server}&{ok_ca}"),
                InviteError::DuplicateParameter("ca"),
            ),
            (
                &format!("parley://join?{ok_ca}"),
                InviteError::MissingParameter("server"),
            ),
            (
                &format!("parley://join?{server}"),
                InviteError::MissingParameter("ca"),
            ),
            (
                &format!("parley://join?server=https%3A%2F%2Fh%3&{ok_ca}"),
                InviteError::Encoding("server"),
            ),
            (
                &format!("parley://join?server=https%zz&{ok_ca}"),
                InviteError::Encoding("server"),
            ),
            (
                &format!("parley://join?server=https%3A%2F%2F%FF&{ok_ca}"),
                InviteError::Encoding("server"),
            ),
            (
                &format!("parley://join?{server}&ca=sha256%g3{HEX}"),
                InviteError::Encoding("ca"),
            ),
            (
                &format!("parley://join?{server}&ca=sha256:{}", &HEX[1..]),
                InviteError::Fingerprint,
            ),
            (
                &format!("parley://join?{server}&ca=sha256:{}g", &HEX[1..]),
                InviteError::Fingerprint,
            ),
            (
                &format!("parley://join?{server}&ca=md5:{HEX}"),
                InviteError::Fingerprint,
            ),
            (
                &format!("parley://join?{server}&ca="),
                InviteError::Fingerprint,
            ),
            (
                &format!("parley://join?{}", "x".repeat(MAX_LEN)),
                InviteError::TooLong,
            ),
        ] {
            check(raw, Err(error));
        }
    }

    #[test]
    fn the_server_must_be_an_https_url_without_user_query_or_fragment() {
        for server in [
            "http://127.0.0.1:8443",
            "https://",
            "https://:8443",
            "https://127.0.0.1:",
            "https://127.0.0.1:0",
            "https://127.0.0.1:65536",
            "https://127.0.0.1:port",
            "https://user@127.0.0.1",
            "https://h/?q=1",
            "https://h/#x",
            "https://[::1",
            "https://[not-ip]:1",
            "https://[::1]x",
            "https://exa mple.org",
            "https://-bad.example",
            "https://a..b",
            "https://h/a b",
            "https://h\n",
        ] {
            assert!(
                matches!(Invite::new(server, ca()), Err(InviteError::Server(_))),
                "{server:?} accepted"
            );
            let text = format!("{PREFIX}server={}&ca={}", percent_encode(server), ca());
            assert!(
                matches!(Invite::parse(&text), Err(InviteError::Server(_))),
                "{text:?} accepted"
            );
        }
    }

    #[test]
    fn a_tampered_fingerprint_still_parses_and_names_another_ca() {
        let text = Invite::new("https://127.0.0.1:8443", ca())
            .expect("valid")
            .to_string();
        let (head, last) = text.split_at(text.len() - 1);
        let tampered = format!("{head}{}", if last == "e" { 'f' } else { 'e' });
        let read = Invite::parse(&tampered).expect("still well formed");
        assert_ne!(read.ca(), ca(), "the enrollment's pin is what refuses it");
    }

    #[test]
    fn every_message_is_one_sentence_that_says_what_to_do() {
        for e in [
            InviteError::TooLong,
            InviteError::NotParley,
            InviteError::NotJoin,
            InviteError::Fragment,
            InviteError::Malformed("x".into()),
            InviteError::UnknownParameter("x".into()),
            InviteError::DuplicateParameter("ca"),
            InviteError::MissingParameter("ca"),
            InviteError::Encoding("server"),
            InviteError::Server("x".into()),
            InviteError::Fingerprint,
        ] {
            let text = e.to_string();
            assert!(!text.contains('\n') && !text.ends_with('.'), "{text}");
            assert!(
                ["copy", "ask"].iter().any(|verb| text.contains(verb)),
                "{text}"
            );
        }
    }
}
