//! The invite a rendezvous hands its users (`parley://join?server=…&ca=…`): the server URL it
//! names, remembered in the data folder at each start so that `parley-rendezvous invite` prints
//! the same line, and the invite drawn as a QR code for a terminal.

use std::path::Path;

use parley_domain::{CaFingerprint, Invite};
use qrcodegen::{QrCode, QrCodeEcc};
use rustls_pki_types::{CertificateDer, pem::PemObject};

use crate::{ca, files};

/// The file in the data folder holding the server URL of the invite.
pub const SERVER_FILE: &str = "public-url";

/// Why no invite could be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL is not one an invite can carry.
    #[error("{0}")]
    Invite(#[from] parley_domain::InviteError),
    /// A file of the data folder could not be read or written.
    #[error("{0}")]
    File(#[from] files::Error),
    /// The data folder has no CA certificate.
    #[error(
        "{} holds no CA certificate; start the rendezvous with this --data folder once first",
        .0.display()
    )]
    NoCa(std::path::PathBuf),
    /// The data folder does not say which URL to put in the invite.
    #[error(
        "{} does not say which server URL to invite to; start the rendezvous once, or pass --server https://HOST:PORT",
        .0.display()
    )]
    NoServer(std::path::PathBuf),
    /// The invite is too long for a QR code.
    #[error("the invite is too long for a QR code")]
    TooLong,
}

/// The invite to `server` pinning `ca`, remembering `server` in `data` for
/// [`from_data`].
///
/// # Errors
/// [`Error::Invite`] when `server` is not an https URL; [`Error::File`] when it cannot be kept.
pub fn remember(data: &Path, server: &str, ca: CaFingerprint) -> Result<Invite, Error> {
    let invite = Invite::new(server, ca)?;
    files::write_public(&data.join(SERVER_FILE), format!("{server}\n").as_bytes())?;
    Ok(invite)
}

/// The invite of the rendezvous whose data folder is `data`: its CA's fingerprint, and
/// `server`, else the URL the last start remembered.
///
/// # Errors
/// [`Error`]: no CA certificate, no server known, or a server that is not an https URL.
pub fn from_data(data: &Path, server: Option<&str>) -> Result<Invite, Error> {
    let cert_path = data.join(ca::CERT_FILE);
    let fingerprint = files::read_optional(&cert_path)?
        .and_then(|pem| CertificateDer::from_pem_slice(&pem).ok())
        .and_then(|der| ca::fingerprint(&der))
        .ok_or(Error::NoCa(cert_path))?;
    let server = match server {
        Some(server) => server.to_owned(),
        None => {
            let path = data.join(SERVER_FILE);
            let stored = files::read_optional(&path)?
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .map(|text| text.trim().to_owned())
                .filter(|text| !text.is_empty());
            stored.ok_or(Error::NoServer(path))?
        }
    };
    Ok(Invite::new(&server, fingerprint)?)
}

/// `text` as a QR code (error correction level M, a quiet zone of 4 modules) in Unicode half
/// blocks, two rows of modules per line. Light modules are drawn (the terminal's foreground),
/// dark ones left blank: right on a terminal with light text on a dark background; on a light
/// one it shows inverted, which most phone scanners read too.
///
/// # Errors
/// [`Error::TooLong`] when `text` does not fit a QR code.
pub fn qr_lines(text: &str) -> Result<String, Error> {
    const QUIET: i32 = 4;
    let code = QrCode::encode_text(text, QrCodeEcc::Medium).map_err(|_| Error::TooLong)?;
    let light = |x: i32, y: i32| !code.get_module(x, y);
    let (start, end) = (-QUIET, code.size() + QUIET);
    let mut out = String::new();
    let mut y = start;
    while y < end {
        for x in start..end {
            let top = light(x, y);
            let bottom = y + 1 >= end || light(x, y + 1);
            out.push(match (top, bottom) {
                (true, true) => '█',
                (true, false) => '▀',
                (false, true) => '▄',
                (false, false) => ' ',
            });
        }
        out.push('\n');
        y += 2;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_qr_code_is_square_and_framed_by_its_quiet_zone() {
        let text = "parley://join?server=https%3A%2F%2F127.0.0.1%3A8443&ca=sha256:00";
        let drawn = qr_lines(text).expect("fits");
        let lines: Vec<&str> = drawn.lines().collect();
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width));
        assert_eq!(lines.len(), width.div_ceil(2));
        assert!(lines[0].chars().all(|c| c == '█'), "{}", lines[0]);
        assert!(lines.iter().all(|l| l.starts_with("████")));
    }

    #[test]
    fn the_server_is_remembered_and_a_flag_overrides_it() {
        let dir = tempfile::tempdir().expect("dir");
        let fp = CaFingerprint::from_digest([7; 32]);
        std::fs::write(dir.path().join(ca::CERT_FILE), "not a certificate").expect("write");
        assert!(matches!(from_data(dir.path(), None), Err(Error::NoCa(_))));
        assert!(matches!(
            remember(dir.path(), "http://h", fp),
            Err(Error::Invite(_))
        ));
        remember(dir.path(), "https://h:1", fp).expect("kept");
        assert_eq!(
            std::fs::read_to_string(dir.path().join(SERVER_FILE)).expect("read"),
            "https://h:1\n"
        );
    }
}
