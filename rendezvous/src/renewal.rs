//! `/parley/renew/1`'s CA side: the [`parley_p2p::Renewer`] port on the CA and the registry.
//!
//! A renewal issues the same certificate an enrollment would (same name, same keys, the CA's
//! policy and validity), records it, and flushes before answering. It checks in the registry
//! that the user exists and that the key is still bound to them: the handshake proved the key
//! and the CA's signature proved the name once, and this proves nothing changed since.

use std::sync::Arc;

use parley_domain::{PeerKeys, Username};
use parley_p2p::{RenewError, Renewer};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    ca::{Ca, Subject},
    registry::{IssuedRecord, Registry},
};

/// The CA and the registry, renewing.
#[derive(Debug, Clone)]
pub struct CaRenewer {
    ca: Arc<Ca>,
    registry: Registry,
}

impl CaRenewer {
    /// Renews with `ca`, checking and recording in `registry`.
    #[must_use]
    pub fn new(ca: Arc<Ca>, registry: Registry) -> Self {
        Self { ca, registry }
    }
}

impl Renewer for CaRenewer {
    fn renew(&self, user: &Username, keys: &PeerKeys) -> Result<String, RenewError> {
        let unavailable = |e: &dyn std::fmt::Display| RenewError::Unavailable(e.to_string());
        if self
            .registry
            .user(user)
            .map_err(|e| unavailable(&e))?
            .is_none()
        {
            return Err(RenewError::UnknownUser(user.clone()));
        }
        let owner = self
            .registry
            .key_owner(&keys.ed25519)
            .map_err(|e| unavailable(&e))?;
        if owner.as_deref() != Some(user.as_str()) {
            return Err(RenewError::KeyNotBound(user.clone()));
        }
        let now = OffsetDateTime::now_utc();
        let subject = Subject::User {
            name: user.clone(),
            x25519: keys.x25519,
        };
        let issued = self
            .ca
            .issue(&subject, &keys.ed25519, now)
            .map_err(|e| unavailable(&e))?;
        self.registry
            .record_certificate(
                &issued.serial,
                &IssuedRecord {
                    username: user.to_string(),
                    certificate_pem: issued.pem.clone(),
                    issued_at: now
                        .format(&Rfc3339)
                        .unwrap_or_else(|_| now.unix_timestamp().to_string()),
                },
            )
            .map_err(|e| unavailable(&e))?;
        self.registry
            .flush_blocking()
            .map_err(|e| unavailable(&e))?;
        tracing::info!(%user, serial = %issued.serial, "issued a renewed certificate");
        Ok(issued.pem)
    }
}
