//! The account client: this user's requests about its own account (the second factor), sent
//! to the rendezvous over `/parley/account/1` through the table of requests in flight
//! ([`super::asking`]).

use std::time::Duration;

use libp2p::request_response::{self, ProtocolSupport};
use parley_usecases::ports::AccountError;

use super::behaviour;
use crate::account::{
    ACCOUNT_PROTOCOL, AccountRequest, AccountResponse, MAX_ACCOUNT_REQUEST_BYTES,
    MAX_ACCOUNT_RESPONSE_BYTES,
};

/// How long an account request may take, the wait in the command queue included.
pub(super) const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The account protocol, outbound only.
pub(super) type Behaviour = request_response::json::Behaviour<AccountRequest, AccountResponse>;

/// The requests in flight.
pub(super) type Client = super::asking::Asking<AccountResponse>;

pub(super) fn behaviour() -> Behaviour {
    request_response::json::Behaviour::with_codec(
        request_response::json::codec::Codec::default()
            .set_request_size_maximum(MAX_ACCOUNT_REQUEST_BYTES)
            .set_response_size_maximum(MAX_ACCOUNT_RESPONSE_BYTES),
        [(ACCOUNT_PROTOCOL, ProtocolSupport::Outbound)],
        behaviour::request_response_config(1),
    )
}

/// A refusal as the port names it; any other answer than the one expected is malformed.
pub(super) fn refused(response: AccountResponse) -> AccountError {
    match response {
        AccountResponse::Refused { code, reason } => AccountError::Refused { code, reason },
        _ => AccountError::Unavailable("the rendezvous sent a malformed answer".into()),
    }
}
