//! `/parley/account/1`'s registry side: the [`parley_p2p::AccountKeeper`] port on the
//! enrollment service, so that a code given over a device's connection counts toward the same
//! per-name lockout as one given to enrollment.
//!
//! Like renewal, it checks in the registry that the certificate's key is still bound to its
//! user: the handshake proved the key, the CA's signature the name once, and this that nothing
//! changed since.

use parley_domain::{PeerKeys, Username};
use parley_p2p::{AccountKeeper, AccountRefusal};

use crate::service::{Error, Service};

impl Service {
    fn check_bound(&self, user: &Username, keys: &PeerKeys) -> Result<(), AccountRefusal> {
        let owner = self.registry().key_owner(&keys.ed25519).map_err(|e| {
            tracing::error!(%user, error = %e, "account request failed");
            unavailable()
        })?;
        if owner.as_deref() == Some(user.as_str()) {
            Ok(())
        } else {
            Err(AccountRefusal::new(
                "key_not_bound",
                format!("this device's key is no longer bound to {user}; enroll again"),
            ))
        }
    }
}

fn unavailable() -> AccountRefusal {
    AccountRefusal::new(
        "unavailable",
        "the rendezvous cannot change the account now; try again later",
    )
}

fn refusal(user: &Username, error: Error) -> AccountRefusal {
    match error {
        Error::TotpAlreadyOn => AccountRefusal::new(
            "totp_on",
            format!(
                "{user} has a second factor on already; turn it off first with `parley totp disable`"
            ),
        ),
        Error::TotpOff => AccountRefusal::new(
            "totp_off",
            format!("{user} has no second factor on; turn it on with `parley totp enable`"),
        ),
        Error::InvalidTotp | Error::TotpRequired => AccountRefusal::new(
            "invalid_totp",
            "the code is wrong or was used already; give the authenticator app's next code",
        ),
        Error::LockedOut(wait) => {
            let seconds = crate::lockout::wait_seconds(wait);
            AccountRefusal::new(
                "locked_out",
                format!(
                    "too many wrong passwords or codes were given for {user}; try again in {seconds} seconds"
                ),
            )
        }
        Error::Busy => AccountRefusal::new(
            "busy",
            "the rendezvous is busy with this account; retry in a moment",
        ),
        other => {
            tracing::error!(%user, error = %other, "account request failed");
            unavailable()
        }
    }
}

impl AccountKeeper for Service {
    fn totp_enable(&self, user: &Username, keys: &PeerKeys) -> Result<String, AccountRefusal> {
        self.check_bound(user, keys)?;
        Service::totp_enable(self, user).map_err(|e| refusal(user, e))
    }

    fn totp_disable(
        &self,
        user: &Username,
        keys: &PeerKeys,
        code: &str,
    ) -> Result<(), AccountRefusal> {
        self.check_bound(user, keys)?;
        Service::totp_disable(self, user, code).map_err(|e| refusal(user, e))
    }
}
