//! The wire format of `/parley/account/1`, between a device and its rendezvous (JSON, one
//! request and one response per stream): what a device asks about its own account.
//!
//! The account is the connection's certificate's user, never a field: unknown fields are
//! refused, so a request naming a user is malformed. It turns the second factor on and off,
//! and publishes and fetches the account's signed device list (base64 of
//! `parley_domain::devices::DeviceList::encode`); link codes belong here too.

use libp2p::StreamProtocol;
use serde::{Deserialize, Serialize};

use crate::protocol::Meta;

/// The account protocol between a device and the rendezvous.
pub const ACCOUNT_PROTOCOL: StreamProtocol = StreamProtocol::new("/parley/account/1");
/// The largest `/parley/account/1` request read, in bytes (a code and the metadata).
pub const MAX_ACCOUNT_REQUEST_BYTES: u64 = 16 * 1024;
/// The largest `/parley/account/1` response read, in bytes (a secret, a device list, or a
/// refusal: a list of the most devices with the longest names is under 1.2 KiB, 1.6 in base64).
pub const MAX_ACCOUNT_RESPONSE_BYTES: u64 = 4 * 1024;

/// A device's request about its own account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AccountRequest {
    /// Turn the second factor on: the rendezvous makes a secret and answers it once.
    TotpEnable {
        /// Protocol metadata.
        #[serde(default)]
        meta: Meta,
    },
    /// Turn the second factor off, with a current code.
    TotpDisable {
        /// The code, as typed.
        code: String,
        /// Protocol metadata.
        #[serde(default)]
        meta: Meta,
    },
    /// Publish a new version of the account's device list, signed by this device.
    PublishDevices {
        /// The list's bytes, standard base64.
        list: String,
        /// Protocol metadata.
        #[serde(default)]
        meta: Meta,
    },
    /// The account's device list as the rendezvous holds it.
    Devices {
        /// Protocol metadata.
        #[serde(default)]
        meta: Meta,
    },
}

/// The answer on `/parley/account/1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AccountResponse {
    /// The second factor is on; its secret, shown once.
    TotpEnabled {
        /// RFC 4648 base32, without padding.
        secret: String,
    },
    /// Done.
    Done,
    /// The account's device list, when one was published.
    Devices {
        /// The list's bytes, standard base64; absent when none was published yet.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        list: Option<String>,
    },
    /// Refused, with a code and one sentence.
    Refused {
        /// `totp_on`, `totp_off`, `invalid_totp`, `locked_out`, `busy`, `unavailable`,
        /// `malformed`, `accounts_disabled`, `key_not_bound`, `device_list_refused`,
        /// `device_not_enrolled`.
        code: String,
        /// One sentence for the user.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_cannot_name_a_user() {
        let forged = r#"{"kind":"totp_enable","user":"bob"}"#;
        assert!(serde_json::from_str::<AccountRequest>(forged).is_err());
        assert_eq!(
            serde_json::from_str::<AccountRequest>(r#"{"kind":"totp_disable","code":"123456"}"#)
                .expect("parses"),
            AccountRequest::TotpDisable {
                code: "123456".into(),
                meta: Meta::new(),
            }
        );
    }
}
