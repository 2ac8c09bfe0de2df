//! The first-run form: what it sends, checked at the edge, and enrolling with it.

use parley_domain::{CaFingerprint, Invite, Password, Username};
use parley_enroll::HttpsEnrollment;
use parley_peer::view;
use parley_store::Store;
use parley_usecases::{commands::Enroll, ports::EnrollRequest};

use crate::Error;

/// What the first-run screen sends.
pub struct Form {
    /// The rendezvous's HTTPS address.
    pub server: String,
    /// The CA fingerprint to insist on; empty trusts on first use.
    pub fingerprint: String,
    /// The username.
    pub username: String,
    /// The password.
    pub password: Password,
    /// A passphrase for a new store; empty keeps its key in a file.
    pub passphrase: String,
    /// The second-factor code, for a name that has it on; empty sends none.
    pub totp: String,
}

/// What the invite `text` fills in on the form.
///
/// # Errors
/// [`Error::InvalidInvite`], with the sentence saying what is wrong and what to do.
pub fn invite(text: &str) -> Result<view::Invite, Error> {
    let invite = Invite::parse(text).map_err(Error::InvalidInvite)?;
    Ok(view::Invite {
        server: invite.server().to_owned(),
        fingerprint: invite.ca().to_string(),
    })
}

/// A form whose values are checked.
pub struct Checked {
    /// The request to the rendezvous.
    pub request: EnrollRequest,
    /// The passphrase for a new store; empty keeps its key in a file.
    pub passphrase: String,
}

impl Form {
    /// Checks every field before anything is created.
    ///
    /// # Errors
    /// [`Error`]: a name that cannot be a username, a server that is not https://, a
    /// fingerprint that is not one.
    pub fn check(self) -> Result<Checked, Error> {
        let user = username(self.username.trim())?;
        let server = self.server.trim().to_owned();
        if !server.starts_with("https://") {
            return Err(Error::InvalidServer);
        }
        let fingerprint = self.fingerprint.trim();
        let ca_pin = if fingerprint.is_empty() {
            None
        } else {
            Some(CaFingerprint::parse(fingerprint).map_err(Error::InvalidFingerprint)?)
        };
        Ok(Checked {
            request: EnrollRequest {
                server,
                user,
                password: self.password,
                ca_pin,
                keys: None,
                totp: Some(self.totp.trim().to_owned()).filter(|code| !code.is_empty()),
            },
            passphrase: self.passphrase,
        })
    }
}

/// `raw` as a username, refused as the enrollment form refuses it.
///
/// # Errors
/// [`Error::Peer`] with `invalid_username`.
pub fn username(raw: &str) -> Result<Username, Error> {
    Ok(parley_peer::error::username(raw)?)
}

/// Enrolls `store` at the rendezvous of `request`.
///
/// # Errors
/// [`Error::Enroll`]: an unreachable server, a fingerprint mismatch, a taken name or a wrong
/// password.
pub async fn enroll(store: &Store, request: &EnrollRequest) -> Result<(), Error> {
    Enroll::new(&HttpsEnrollment::new(), store)
        .run(request)
        .await
        .map_err(Error::Enroll)
}
