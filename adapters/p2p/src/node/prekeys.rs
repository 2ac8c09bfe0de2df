//! The prekey client: publications, counts and bundle fetches sent to the rendezvous over
//! `/parley/prekeys/1`, through the table of requests in flight ([`super::asking`]): without
//! an open connection to the rendezvous a request fails at once with
//! [`PrekeyError::Unavailable`]. This peer answers no prekey request.

use std::time::Duration;

use libp2p::request_response::{self, ProtocolSupport};
use parley_domain::agreement::PrekeyBundle;
use parley_usecases::ports::{PrekeyError, PrekeyUpload};

use super::behaviour;
use crate::{
    prekeys::{
        MAX_PREKEYS_REQUEST_BYTES, MAX_PREKEYS_RESPONSE_BYTES, PREKEYS_PROTOCOL, PrekeysRequest,
        PrekeysResponse, WireOneTimeKey, WireSignedKey,
    },
    protocol::Meta,
};

/// `/parley/prekeys/1` streams open at once on one connection.
pub const PREKEY_CLIENT_STREAMS_PER_CONNECTION: usize = 4;
/// How long a prekey request may take, the wait in the command queue included.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The prekey protocol, outbound only.
pub(super) type Behaviour = request_response::json::Behaviour<PrekeysRequest, PrekeysResponse>;

/// The requests in flight.
pub(super) type Client = super::asking::Asking<PrekeysResponse>;

pub(super) fn behaviour() -> Behaviour {
    request_response::json::Behaviour::with_codec(
        request_response::json::codec::Codec::default()
            .set_request_size_maximum(MAX_PREKEYS_REQUEST_BYTES)
            .set_response_size_maximum(MAX_PREKEYS_RESPONSE_BYTES),
        [(PREKEYS_PROTOCOL, ProtocolSupport::Outbound)],
        behaviour::request_response_config(PREKEY_CLIENT_STREAMS_PER_CONNECTION),
    )
}

/// The request that publishes `upload`.
pub(super) fn publish_request(upload: &PrekeyUpload, meta: Meta) -> PrekeysRequest {
    PrekeysRequest::Publish {
        signed_prekey: WireSignedKey::from_signed(&upload.signed_prekey),
        kem_prekey: WireSignedKey::from_kem(&upload.kem_prekey),
        one_time: upload
            .one_time
            .iter()
            .map(WireOneTimeKey::from_prekey)
            .collect(),
        meta,
    }
}

/// The one sentence for an answer that does not follow the protocol.
fn malformed() -> PrekeyError {
    PrekeyError::Unavailable("the rendezvous sent a malformed answer".into())
}

/// A refusal as the port names it; any other answer than the one expected is malformed.
fn refused(response: PrekeysResponse) -> PrekeyError {
    match response {
        PrekeysResponse::Refused { code, reason } => PrekeyError::Refused { code, reason },
        _ => malformed(),
    }
}

/// The answer to a publication: the one-time prekeys held now.
pub(super) fn published(response: PrekeysResponse) -> Result<u32, PrekeyError> {
    match response {
        PrekeysResponse::Published { one_time } => Ok(one_time),
        other => Err(refused(other)),
    }
}

/// The answer to a count.
pub(super) fn remaining(response: PrekeysResponse) -> Result<Option<u32>, PrekeyError> {
    match response {
        PrekeysResponse::Remaining { one_time } => Ok(one_time),
        other => Err(refused(other)),
    }
}

/// The answer to a fetch, decoded (not trusted: the caller checks the signatures).
pub(super) fn bundle(response: PrekeysResponse) -> Result<Option<PrekeyBundle>, PrekeyError> {
    match response {
        PrekeysResponse::Bundle { bundle } => bundle
            .map(|b| b.to_bundle().ok_or_else(malformed))
            .transpose(),
        other => Err(refused(other)),
    }
}
