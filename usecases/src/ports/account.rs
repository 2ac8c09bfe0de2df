//! The account port: what a device asks the rendezvous about its own user's account (the
//! second factor), over its own certified connection.

use std::future::Future;

use auto_impl::auto_impl;

/// Why an account request did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AccountError {
    /// The rendezvous could not be reached or did not answer.
    #[error("the rendezvous could not be reached: {0}")]
    Unavailable(String),
    /// The rendezvous refused, with a stable code and one sentence.
    #[error("{reason}")]
    Refused {
        /// A stable snake_case code (`totp_on`, `totp_off`, `invalid_totp`, `locked_out`, …).
        code: String,
        /// One sentence.
        reason: String,
    },
}

impl AccountError {
    /// A stable snake_case name.
    #[must_use]
    pub fn code(&self) -> &str {
        match self {
            Self::Unavailable(_) => "rendezvous_unavailable",
            Self::Refused { code, .. } => code,
        }
    }
}

/// This user's account at the rendezvous.
#[auto_impl(&, Arc)]
pub trait AccountService: Send + Sync {
    /// Turns the second factor on; resolves with its secret (RFC 4648 base32), shown once.
    ///
    /// # Errors
    /// [`AccountError`]: refused `totp_on` when it is on already.
    fn totp_enable(&self) -> impl Future<Output = Result<String, AccountError>> + Send;

    /// Turns the second factor off with a current `code`.
    ///
    /// # Errors
    /// [`AccountError`]: refused `totp_off`, `invalid_totp`, `locked_out`.
    fn totp_disable(&self, code: &str) -> impl Future<Output = Result<(), AccountError>> + Send;
}
