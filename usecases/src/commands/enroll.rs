//! Enrolling this device with the rendezvous, and keeping the identity.

use parley_domain::{DeviceIdentity, Username};

use crate::ports::{EnrollError, EnrollRequest, Enrollment, IdentityStore, StoreError};

/// Enroll this device as `request.user`.
pub struct Enroll<'a, N, I> {
    enrollment: &'a N,
    identities: &'a I,
}

/// Why enrollment failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollCommandError {
    /// This home is already enrolled as someone else.
    #[error("this home is already enrolled as {0}; use another home folder for another user")]
    OtherUser(Username),
    /// The rendezvous or the key work failed.
    #[error(transparent)]
    Enrollment(#[from] EnrollError),
    /// The identity could not be kept.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<'a, N: Enrollment, I: IdentityStore> Enroll<'a, N, I> {
    /// Wires the command.
    pub fn new(enrollment: &'a N, identities: &'a I) -> Self {
        Self {
            enrollment,
            identities,
        }
    }

    /// Enrolls and keeps the identity. Enrolling again as the same user renews the
    /// certificate for the same keys, so contacts' pins stay valid; enrolling a home as a
    /// second user is refused.
    ///
    /// # Errors
    /// [`EnrollCommandError`]; nothing is kept on failure.
    #[tracing::instrument(name = "usecase.enroll", skip_all, fields(user = %request.user), err(Display, level = "info"))]
    pub async fn run(&self, request: &EnrollRequest) -> Result<(), EnrollCommandError> {
        let mut request = request.clone();
        if let Some(existing) = self.identities.identity()? {
            if existing.user != request.user {
                return Err(EnrollCommandError::OtherUser(existing.user));
            }
            request.keys = Some((existing.ed25519, existing.x25519));
        }
        let identity: DeviceIdentity = self.enrollment.enroll(&request).await?;
        self.identities.save_identity(&identity)?;
        Ok(())
    }
}
