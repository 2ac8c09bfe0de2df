//! The desktop's own refusals (the first-run form, staged files, a peer not running yet),
//! each with its stable code; the peer's are [`parley_peer::PeerError`]. Both reach the window
//! as one [`Refusal`] (`{code, message}`).

use parley_peer::{PeerError, view::Refusal};
use parley_usecases::{commands::EnrollCommandError, ports::EnrollError};

/// Why a command was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer's own refusal.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// Nothing runs yet: the home is not enrolled or not unlocked.
    #[error("Parley is not enrolled or unlocked yet")]
    NotReady,
    /// The home cannot be used by this app now; the sentence says why.
    #[error("{0}")]
    Stopped(String),
    /// The server address is not an https:// URL.
    #[error("the server address must start with https:// (for example https://127.0.0.1:8443)")]
    InvalidServer,
    /// The CA fingerprint is not one.
    #[error(
        "the CA fingerprint is not valid ({0}); copy it as the rendezvous printed it, sha256: and 64 hex digits"
    )]
    InvalidFingerprint(parley_domain::pki::FingerprintError),
    /// The invite is not one; the sentence says what is wrong and what to do.
    #[error("{0}")]
    InvalidInvite(parley_domain::InviteError),
    /// Enrollment failed.
    #[error(transparent)]
    Enroll(EnrollCommandError),
    /// A picked file is over the attachment cap.
    #[error("{name} is larger than the {max_mib} MiB an attachment may have")]
    AttachmentTooLarge {
        /// Its name.
        name: String,
        /// The cap in MiB.
        max_mib: u64,
    },
    /// A picked file could not be kept for sending.
    #[error("{name} could not be prepared for sending ({source})")]
    StagingFailed {
        /// Its name.
        name: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// A staged file named in a send is gone (sent already, or never staged).
    #[error("an attached file is no longer there; attach it again")]
    StagedGone,
    /// The picked file's bytes did not come with the request.
    #[error("the file's bytes did not arrive; attach it again")]
    NoBytes,
    /// The operating system's random generator failed.
    #[error("the system's random generator failed; try again")]
    Random,
}

impl Error {
    /// The stable snake_case code.
    #[must_use]
    pub fn code(&self) -> &str {
        match self {
            Self::Peer(e) => e.code(),
            Self::NotReady => "not_ready",
            Self::Stopped(_) => "stopped",
            Self::InvalidServer => "invalid_server",
            Self::InvalidFingerprint(_) => "invalid_fingerprint",
            Self::InvalidInvite(_) => "invalid_invite",
            Self::Enroll(EnrollCommandError::Enrollment(e)) => match e {
                EnrollError::Unreachable(_) => "unreachable",
                EnrollError::FingerprintMismatch { .. } => "fingerprint_mismatch",
                EnrollError::InvalidCredentials => "invalid_credentials",
                EnrollError::Refused { code, .. } => code,
                _ => "enroll_failed",
            },
            Self::Enroll(_) => "enroll_failed",
            Self::AttachmentTooLarge { .. } => "attachment_too_large",
            Self::StagingFailed { .. } | Self::StagedGone => "attachment_unavailable",
            Self::NoBytes => "bad_request",
            Self::Random => "internal",
        }
    }

    /// The sentence for the window: the enrollment failures in the first-run screen's words.
    fn sentence(&self) -> String {
        let Self::Enroll(e) = self else {
            return self.to_string();
        };
        match e {
            EnrollCommandError::Enrollment(EnrollError::Unreachable(server)) => format!(
                "The rendezvous at {server} could not be reached: check the address and that the server is running."
            ),
            EnrollCommandError::Enrollment(EnrollError::FingerprintMismatch { expected, actual }) => format!(
                "The rendezvous presented the CA {actual}, not {expected}: this may not be your rendezvous. Check the fingerprint with its operator; nothing was sent."
            ),
            EnrollCommandError::Enrollment(EnrollError::InvalidCredentials) => "That username is already taken and the password does not match: pick another username, or type its password.".to_owned(),
            EnrollCommandError::Enrollment(EnrollError::Refused { message, .. }) => {
                format!("The rendezvous refused: {message}")
            }
            other => other.to_string(),
        }
    }
}

impl From<Error> for Refusal {
    fn from(e: Error) -> Self {
        Self {
            code: e.code().to_owned(),
            message: e.sentence(),
        }
    }
}
