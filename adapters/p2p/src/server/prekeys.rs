//! `/parley/prekeys/1`, server side: the rendezvous holds each device's public prekeys, so that
//! a first message can reach a device that is offline.
//!
//! The publishing device is the connection's verified certificate: its Ed25519 key (the peer
//! id) names the record and checks both signed prekeys, and its user is stored beside them. A
//! publication whose signatures do not hold for that key is refused `prekey_bad_signature`. A
//! fetch names a user and one of its devices (the Ed25519 key the fetcher pinned, or the CA
//! certified): that device's bundle comes back when it is the user's, with the X25519 key its
//! certificate named when it published as the identity and one of its one-time prekeys,
//! removed durably before the answer. A name nobody enrolled, a device that published nothing
//! and a device of another user answer alike, with no bundle (and hand nothing out).
//!
//! The store blocks, so every request runs on tokio's blocking pool, at most
//! [`MAX_PREKEY_JOBS`] at once (more are refused `prekeys_unavailable`), and its answer comes
//! back to the swarm task through a bounded channel. Every request costs one look-up of the
//! peer's directory budget, as the mailbox's key look-up does. No key is logged.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use libp2p::request_response::{self, ProtocolSupport, ResponseChannel};
use parley_domain::{
    CertifiedPeer, Role, Username,
    agreement::{KemPrekey, OneTimePrekey, SignedPrekey},
    prekeys::{self as rules, PrekeyRefusal},
};
use tokio::sync::mpsc;

use crate::{
    prekeys::{
        MAX_PREKEYS_REQUEST_BYTES, MAX_PREKEYS_RESPONSE_BYTES, PREKEYS_PROTOCOL, PrekeysRequest,
        PrekeysResponse, WireBundle, WireOneTimeKey,
    },
    protocol::meta_within_bounds,
};

/// `/parley/prekeys/1` streams open at once on one connection; more are dropped.
pub const PREKEY_STREAMS_PER_CONNECTION: usize = 4;
/// Prekey requests on the blocking pool at once; more are refused `prekeys_unavailable`. Also
/// the answer queue's cap.
pub const MAX_PREKEY_JOBS: usize = 16;

/// Why the prekey store did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrekeyStoreError {
    /// The domain's rules refuse it (too many one-time prekeys held); nothing changed.
    #[error(transparent)]
    Refused(PrekeyRefusal),
    /// The store could not be read or written; nothing changed.
    #[error("the prekey store is unavailable: {0}")]
    Unavailable(String),
}

/// What a fetch takes from a device's record: its signed prekeys and, when any is left, one
/// one-time prekey, which is no longer held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TakenPrekeys {
    /// The signed X25519 prekey.
    pub signed: SignedPrekey,
    /// The signed ML-KEM-768 prekey.
    pub kem: KemPrekey,
    /// The one-time prekey handed out, if any was left.
    pub one_time: Option<OneTimePrekey>,
    /// The device's X25519 identity key, as its certificate named it when it published.
    pub identity: [u8; 32],
}

/// The rendezvous's durable store of public prekeys, one record per device (by its Ed25519
/// key). Blocking; every change is synced before it returns.
pub trait PrekeyStore: Send + Sync {
    /// Applies a publication whose signatures were checked: replaces the device's signed
    /// prekeys, adds the one-time prekeys (by the domain's rules,
    /// [`parley_domain::prekeys::HeldPrekeys::publish`]), records `user` as the device's, and
    /// syncs. Returns the one-time prekeys held afterwards.
    ///
    /// # Errors
    /// Implementations MUST return [`PrekeyStoreError::Refused`] with the rules' refusal and
    /// change nothing when the rules refuse, and [`PrekeyStoreError::Unavailable`] when the
    /// store fails.
    fn publish(
        &self,
        device: &[u8; 32],
        user: &Username,
        identity: &[u8; 32],
        signed: SignedPrekey,
        kem: KemPrekey,
        one_time: &[OneTimePrekey],
    ) -> Result<u32, PrekeyStoreError>;

    /// The one-time prekeys held for `device`; `None` when it has published nothing.
    ///
    /// # Errors
    /// [`PrekeyStoreError::Unavailable`].
    fn remaining(&self, device: &[u8; 32]) -> Result<Option<u32>, PrekeyStoreError>;

    /// Takes `device`'s bundle parts when `device` is `user`'s: the one-time prekey handed
    /// out (the lowest id) is removed and synced before this returns. `None` (and nothing
    /// removed) when it has published nothing or is another user's.
    ///
    /// # Errors
    /// [`PrekeyStoreError::Unavailable`]; nothing was removed then.
    fn take(
        &self,
        device: &[u8; 32],
        user: &Username,
    ) -> Result<Option<TakenPrekeys>, PrekeyStoreError>;
}

/// The prekey service a rendezvous runs: where prekeys are kept and who is enrolled.
#[derive(Clone)]
pub struct PrekeyOptions {
    /// Where prekeys are kept.
    pub store: Arc<dyn PrekeyStore>,
}

impl std::fmt::Debug for PrekeyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrekeyOptions").finish_non_exhaustive()
    }
}

pub(super) type Behaviour = request_response::json::Behaviour<PrekeysRequest, PrekeysResponse>;

pub(super) fn behaviour() -> Behaviour {
    request_response::json::Behaviour::with_codec(
        request_response::json::codec::Codec::default()
            .set_request_size_maximum(MAX_PREKEYS_REQUEST_BYTES)
            .set_response_size_maximum(MAX_PREKEYS_RESPONSE_BYTES),
        [(PREKEYS_PROTOCOL, ProtocolSupport::Inbound)],
        request_response::Config::default()
            .with_max_concurrent_streams(PREKEY_STREAMS_PER_CONNECTION),
    )
}

/// An answer ready to be sent.
pub(super) type Answer = (ResponseChannel<PrekeysResponse>, PrekeysResponse);

/// The refusal as an answer.
fn refuse(refusal: PrekeyRefusal) -> PrekeysResponse {
    PrekeysResponse::Refused {
        code: refusal.code().to_owned(),
        reason: refusal.to_string(),
    }
}

/// The store's failure, logged (its detail stays in the log), as the refusal sent.
fn failed(e: &dyn std::fmt::Display) -> PrekeyRefusal {
    tracing::error!(error = %e, "the prekey store failed");
    PrekeyRefusal::Unavailable
}

fn unavailable(e: &dyn std::fmt::Display) -> PrekeysResponse {
    refuse(failed(e))
}

/// The prekey service's state, owned by the swarm task.
pub(super) struct Prekeys {
    options: Option<PrekeyOptions>,
    in_flight: Arc<AtomicUsize>,
    answers_tx: mpsc::Sender<Answer>,
    answers: mpsc::Receiver<Answer>,
}

/// A request, parsed and checked, ready for the blocking pool.
enum Job {
    Publish(Box<Publication>),
    Remaining {
        device: [u8; 32],
    },
    Fetch {
        /// `None` for a name that cannot be enrolled, or a device that is no key: answered
        /// like an unknown one.
        target: Option<(Username, [u8; 32])>,
    },
}

/// A publication, parsed: the connection's user and device, and what it publishes.
struct Publication {
    user: Username,
    device: [u8; 32],
    identity: [u8; 32],
    signed: SignedPrekey,
    kem: KemPrekey,
    one_time: Vec<OneTimePrekey>,
}

impl Prekeys {
    pub(super) fn new(options: Option<PrekeyOptions>) -> Self {
        let (answers_tx, answers) = mpsc::channel(MAX_PREKEY_JOBS);
        Self {
            options,
            in_flight: Arc::new(AtomicUsize::new(0)),
            answers_tx,
            answers,
        }
    }

    /// The next answer a job produced. Cancel-safe; pending for ever while none runs.
    pub(super) async fn next_answer(&mut self) -> Answer {
        // `self` holds a sender, so the channel never closes.
        match self.answers.recv().await {
            Some(answer) => answer,
            None => std::future::pending().await,
        }
    }

    /// Takes a request from `certified`; answers at once when it is refused, else runs it on
    /// the blocking pool and answers through [`Prekeys::next_answer`]. `take_lookup` takes one
    /// look-up from the peer's budget, or says it is spent.
    pub(super) fn on_request(
        &mut self,
        behaviour: &mut Behaviour,
        certified: Option<CertifiedPeer>,
        request: PrekeysRequest,
        channel: ResponseChannel<PrekeysResponse>,
        take_lookup: impl FnOnce() -> bool,
    ) {
        match self.start(certified, request, take_lookup) {
            Ok((options, job)) => {
                let in_flight = self.in_flight.clone();
                let answers = self.answers_tx.clone();
                tokio::task::spawn_blocking(move || {
                    let response = run(&options, job);
                    in_flight.fetch_sub(1, Ordering::AcqRel);
                    // At most MAX_PREKEY_JOBS answers wait, the channel's cap.
                    let _ = answers.blocking_send((channel, response));
                });
            }
            Err(refusal) => {
                tracing::debug!(code = refusal.code(), "refused a prekey request");
                let _ = behaviour.send_response(channel, refuse(refusal));
            }
        }
    }

    fn start(
        &mut self,
        certified: Option<CertifiedPeer>,
        request: PrekeysRequest,
        take_lookup: impl FnOnce() -> bool,
    ) -> Result<(PrekeyOptions, Job), PrekeyRefusal> {
        let Some(options) = self.options.clone() else {
            return Err(PrekeyRefusal::Disabled);
        };
        // The upgrade admits only enrolled users; the role check keeps that true here too.
        let Some(CertifiedPeer {
            role: Role::User(user),
            ed25519: device,
            x25519,
            ..
        }) = certified
        else {
            return Err(PrekeyRefusal::Malformed);
        };
        let job = match request {
            PrekeysRequest::Publish {
                signed_prekey,
                kem_prekey,
                one_time,
                meta,
            } => {
                if !meta_within_bounds(&meta) {
                    return Err(PrekeyRefusal::Malformed);
                }
                if one_time.len() > rules::MAX_ONE_TIME_PER_PUBLISH {
                    return Err(PrekeyRefusal::BatchTooLarge);
                }
                let (Some(signed), Some(kem)) = (signed_prekey.to_signed(), kem_prekey.to_kem())
                else {
                    return Err(PrekeyRefusal::Malformed);
                };
                let one_time = one_time
                    .iter()
                    .map(WireOneTimeKey::to_prekey)
                    .collect::<Option<Vec<_>>>()
                    .ok_or(PrekeyRefusal::Malformed)?;
                // A certificate without an X25519 key cannot be agreed with.
                let identity = x25519.ok_or(PrekeyRefusal::Malformed)?;
                Job::Publish(Box::new(Publication {
                    user,
                    device,
                    identity,
                    signed,
                    kem,
                    one_time,
                }))
            }
            PrekeysRequest::Remaining { meta } => {
                if !meta_within_bounds(&meta) {
                    return Err(PrekeyRefusal::Malformed);
                }
                Job::Remaining { device }
            }
            PrekeysRequest::Fetch {
                username,
                device,
                meta,
            } => {
                if !meta_within_bounds(&meta) {
                    return Err(PrekeyRefusal::Malformed);
                }
                Job::Fetch {
                    target: Username::parse(&username)
                        .ok()
                        .zip(crate::prekeys::device_key(&device)),
                }
            }
        };
        if !take_lookup() {
            return Err(PrekeyRefusal::RateLimited);
        }
        if self.in_flight.fetch_add(1, Ordering::AcqRel) >= MAX_PREKEY_JOBS {
            self.in_flight.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!("the prekey store is behind; a request is refused");
            return Err(PrekeyRefusal::Unavailable);
        }
        Ok((options, job))
    }
}

/// Runs one job against the store (blocking).
fn run(options: &PrekeyOptions, job: Job) -> PrekeysResponse {
    match job {
        Job::Publish(publication) => {
            let Publication {
                user,
                device,
                identity,
                signed,
                kem,
                one_time,
            } = *publication;
            let span = tracing::info_span!(
                "prekeys.publish",
                one_time = one_time.len(),
                outcome = tracing::field::Empty
            );
            let _entered = span.enter();
            if let Err(refusal) = rules::check_publication(&device, &signed, &kem, &one_time) {
                span.record("outcome", refusal.code());
                return refuse(refusal);
            }
            let response = match options
                .store
                .publish(&device, &user, &identity, signed, kem, &one_time)
            {
                Ok(held) => PrekeysResponse::Published { one_time: held },
                Err(PrekeyStoreError::Refused(refusal)) => refuse(refusal),
                Err(e) => unavailable(&e),
            };
            span.record("outcome", outcome(&response));
            response
        }
        Job::Remaining { device } => match options.store.remaining(&device) {
            Ok(held) => PrekeysResponse::Remaining { one_time: held },
            Err(e) => unavailable(&e),
        },
        Job::Fetch { target } => {
            let span = tracing::info_span!(
                "prekeys.fetch",
                found = tracing::field::Empty,
                one_time = tracing::field::Empty,
                outcome = tracing::field::Empty
            );
            let _entered = span.enter();
            let response =
                match target.map_or(Ok(None), |(user, device)| fetch(options, &user, &device)) {
                    Ok(bundle) => {
                        span.record("found", bundle.is_some());
                        if let Some(b) = &bundle {
                            span.record("one_time", b.one_time_prekey.is_some());
                        }
                        PrekeysResponse::Bundle { bundle }
                    }
                    Err(refusal) => refuse(refusal),
                };
            span.record("outcome", outcome(&response));
            response
        }
    }
}

/// The bundle of `user`'s device `device` (the sender names the device it pinned or the CA
/// certified to it), with the X25519 identity key its certificate named when it published.
fn fetch(
    options: &PrekeyOptions,
    user: &Username,
    device: &[u8; 32],
) -> Result<Option<WireBundle>, PrekeyRefusal> {
    let Some(taken) = options.store.take(device, user).map_err(|e| failed(&e))? else {
        return Ok(None);
    };
    Ok(WireBundle::from_bundle(
        &parley_domain::agreement::PrekeyBundle {
            identity: parley_domain::ratchet::PublicKey(taken.identity),
            signed_prekey: taken.signed,
            one_time_prekey: taken.one_time,
            kem_prekey: Some(taken.kem),
        },
    ))
}

/// What an answer says, for the span's `outcome`.
fn outcome(response: &PrekeysResponse) -> &str {
    match response {
        PrekeysResponse::Refused { code, .. } => code,
        _ => "ok",
    }
}
