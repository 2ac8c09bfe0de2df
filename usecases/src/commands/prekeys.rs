//! Keeping this device's prekeys at the rendezvous, so that anyone can open a conversation
//! with it while it is offline: [`Prekeys::replenish`] tops the one-time prekeys up when they
//! run low and publishes the signed prekeys again when they rotated.

use std::sync::{Mutex, PoisonError};

use crate::ports::{
    Clock, ONE_TIME_PREKEYS_BATCH, ONE_TIME_PREKEYS_LOW, PrekeyError, PrekeySecrets, PrekeyService,
    StoreError,
};

/// The prekey interactor: this device's prekey secrets and the rendezvous's prekey store.
pub struct Prekeys<P, K, C> {
    service: P,
    secrets: K,
    clock: C,
    /// The (signed, KEM) prekey ids the rendezvous acknowledged last, since this interactor
    /// was made: when the current ones differ, they are published again.
    published: Mutex<Option<(u32, u32)>>,
}

/// Why the prekeys could not be replenished. Nothing is lost: the next round tries again.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplenishError {
    /// The rendezvous could not be reached, or refused the publication.
    #[error(transparent)]
    Service(#[from] PrekeyError),
    /// The prekey secrets could not be made or kept.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ReplenishError {
    /// A stable snake_case name.
    #[must_use]
    pub fn code(&self) -> &str {
        match self {
            Self::Service(e) => e.code(),
            Self::Store(_) => "store_unavailable",
        }
    }
}

/// What a replenishment did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replenished {
    /// The rendezvous holds enough, and the signed prekeys it holds are the current ones.
    Enough {
        /// One-time prekeys it holds.
        held: u32,
    },
    /// A publication was made.
    Published {
        /// New one-time prekeys published (0 when only the signed prekeys changed).
        added: u32,
        /// One-time prekeys the rendezvous holds afterwards.
        held: u32,
    },
}

impl<P: PrekeyService, K: PrekeySecrets, C: Clock> Prekeys<P, K, C> {
    /// Wires the interactor.
    pub fn new(service: P, secrets: K, clock: C) -> Self {
        Self {
            service,
            secrets,
            clock,
            published: Mutex::new(None),
        }
    }

    /// Asks the rendezvous how many one-time prekeys it holds for this device; below
    /// [`ONE_TIME_PREKEYS_LOW`] (or none published yet) it makes enough new ones to hold
    /// [`ONE_TIME_PREKEYS_BATCH`] and publishes them with the current signed prekeys. Otherwise
    /// it publishes only when the signed or KEM prekey rotated since the last publication this
    /// interactor made (so once after each start: publishing the same prekeys again is
    /// harmless).
    ///
    /// Cancel safety: dropping it between the secrets being made and the publication leaves
    /// secrets nobody was given; the next round publishes new ones.
    ///
    /// # Errors
    /// [`ReplenishError`]; the rendezvous keeps what it held.
    #[tracing::instrument(
        name = "usecase.replenish_prekeys",
        skip_all,
        fields(remaining, added),
        // The background retries every minute while the rendezvous is away: its caller says
        // the first failure once.
        err(Display, level = "debug")
    )]
    pub async fn replenish(&self) -> Result<Replenished, ReplenishError> {
        let remaining = self.service.remaining().await?;
        let span = tracing::Span::current();
        if let Some(n) = remaining {
            span.record("remaining", n);
        }
        let needed = match remaining {
            Some(held) if held >= ONE_TIME_PREKEYS_LOW => 0,
            Some(held) => ONE_TIME_PREKEYS_BATCH.saturating_sub(held),
            None => ONE_TIME_PREKEYS_BATCH,
        };
        let upload = self.secrets.prepare_upload(needed, self.clock.now())?;
        let current = (upload.signed_prekey.id, upload.kem_prekey.id);
        let last = *self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if needed == 0
            && last == Some(current)
            && let Some(held) = remaining
        {
            return Ok(Replenished::Enough { held });
        }
        let held = self.service.publish(&upload).await?;
        *self
            .published
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(current);
        let added = u32::try_from(upload.one_time.len()).unwrap_or(u32::MAX);
        span.record("added", added);
        Ok(Replenished::Published { added, held })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use futures::executor::block_on;

    use super::*;
    use crate::fakes::{FakePrekeySecrets, FakePrekeyService, FixedClock, PrekeyHub};

    fn name(raw: &str) -> parley_domain::Username {
        parley_domain::Username::parse(raw).expect("valid literal")
    }

    type Interactor = Prekeys<Arc<FakePrekeyService>, Arc<FakePrekeySecrets>, FixedClock>;

    fn wired() -> (Interactor, Arc<FakePrekeyService>, Arc<FakePrekeySecrets>) {
        let service = Arc::new(FakePrekeyService::new(
            PrekeyHub::default(),
            name("alice"),
            [1; 32],
        ));
        let secrets = Arc::new(FakePrekeySecrets::default());
        let prekeys = Prekeys::new(service.clone(), secrets.clone(), FixedClock::at(1_000));
        (prekeys, service, secrets)
    }

    #[test]
    fn given_nothing_published_when_replenishing_then_a_full_batch_is_published() {
        let (prekeys, service, _) = wired();
        let done = block_on(prekeys.replenish()).expect("published");
        assert_eq!(
            done,
            Replenished::Published {
                added: ONE_TIME_PREKEYS_BATCH,
                held: ONE_TIME_PREKEYS_BATCH
            }
        );
        assert_eq!(service.uploads().len(), 1);
    }

    #[test]
    fn given_enough_held_and_the_same_signed_prekey_when_replenishing_then_nothing_is_published() {
        let (prekeys, service, _) = wired();
        block_on(prekeys.replenish()).expect("published");
        service.hand_out(ONE_TIME_PREKEYS_BATCH - ONE_TIME_PREKEYS_LOW);
        let done = block_on(prekeys.replenish()).expect("checked");
        assert_eq!(
            done,
            Replenished::Enough {
                held: ONE_TIME_PREKEYS_LOW
            }
        );
        assert_eq!(service.uploads().len(), 1);
    }

    #[test]
    fn given_few_left_when_replenishing_then_it_tops_up_to_the_batch() {
        let (prekeys, service, _) = wired();
        block_on(prekeys.replenish()).expect("published");
        service.hand_out(ONE_TIME_PREKEYS_BATCH - ONE_TIME_PREKEYS_LOW + 1);
        let done = block_on(prekeys.replenish()).expect("published");
        assert_eq!(
            done,
            Replenished::Published {
                added: ONE_TIME_PREKEYS_BATCH - ONE_TIME_PREKEYS_LOW + 1,
                held: ONE_TIME_PREKEYS_BATCH
            }
        );
        let ids: std::collections::BTreeSet<u32> = service
            .uploads()
            .iter()
            .flat_map(|u| u.one_time.iter().map(|k| k.id))
            .collect();
        let all = u32::try_from(ids.len()).expect("small");
        assert_eq!(
            all,
            2 * ONE_TIME_PREKEYS_BATCH - ONE_TIME_PREKEYS_LOW + 1,
            "every one-time prekey is new"
        );
    }

    #[test]
    fn given_a_rotated_signed_prekey_when_replenishing_then_it_is_published_without_one_time_keys()
    {
        let (prekeys, service, secrets) = wired();
        block_on(prekeys.replenish()).expect("published");
        secrets.rotate();
        let done = block_on(prekeys.replenish()).expect("published");
        assert_eq!(
            done,
            Replenished::Published {
                added: 0,
                held: ONE_TIME_PREKEYS_BATCH
            }
        );
        let uploads = service.uploads();
        assert_ne!(uploads[0].signed_prekey.id, uploads[1].signed_prekey.id);
    }

    #[test]
    fn given_a_fresh_start_with_enough_held_when_replenishing_then_the_signed_prekeys_go_once() {
        let hub = PrekeyHub::default();
        let service = Arc::new(FakePrekeyService::new(hub, name("alice"), [1; 32]));
        let secrets = Arc::new(FakePrekeySecrets::default());
        let before = Prekeys::new(service.clone(), secrets.clone(), FixedClock::at(1));
        block_on(before.replenish()).expect("published");
        let after = Prekeys::new(service.clone(), secrets, FixedClock::at(2));
        let first = block_on(after.replenish()).expect("published");
        assert!(matches!(first, Replenished::Published { added: 0, .. }));
        let second = block_on(after.replenish()).expect("checked");
        assert!(matches!(second, Replenished::Enough { .. }));
        assert_eq!(service.uploads().len(), 2);
    }

    #[test]
    fn given_the_rendezvous_unreachable_when_replenishing_then_no_secret_is_made() {
        let (prekeys, service, secrets) = wired();
        service.fail_at(1);
        let refused = block_on(prekeys.replenish()).expect_err("unreachable");
        assert_eq!(refused.code(), "rendezvous_unavailable");
        assert_eq!(secrets.prepared(), 0);
    }

    #[test]
    fn given_a_refused_publication_when_replenishing_again_then_it_publishes_once_it_is_accepted() {
        let (prekeys, service, _) = wired();
        service.fail_at(2);
        assert!(block_on(prekeys.replenish()).is_err(), "the publish fails");
        service.fail_at(u32::MAX);
        let done = block_on(prekeys.replenish()).expect("published");
        assert!(matches!(done, Replenished::Published { .. }));
    }

    #[test]
    fn given_the_store_failing_when_replenishing_then_nothing_is_published() {
        let (prekeys, service, secrets) = wired();
        secrets.fail_at(1);
        let refused = block_on(prekeys.replenish()).expect_err("the store fails");
        assert_eq!(refused.code(), "store_unavailable");
        assert!(service.uploads().is_empty());
    }
}
