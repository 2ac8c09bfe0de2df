//! `/parley/renew/1`, client side: the device renews its own certificate at its rendezvous,
//! over the mutual-TLS connection it already holds, with the same keys.
//!
//! On connecting to the rendezvous and every [`CHECK_EVERY`] the swarm task asks
//! [`Validity::renewal_due`] (fewer than 10 days left, and an hour since the last attempt or
//! renewal); when due and connected to the
//! rendezvous, one request goes out. An answer is installed only when it chains to the CA the
//! device trusts, names this device's user and certifies exactly its keys, and lasts longer
//! than the certificate held: then the TLS [`Identity`] presents it from the next handshake
//! on, and [`super::Node::renewed`] hands it to whoever keeps the identity on disk.

use std::time::Duration;

use libp2p::{
    PeerId,
    request_response::{self, OutboundRequestId, ProtocolSupport},
};
use parley_domain::{CertifiedPeer, Timestamp, renewal::Validity};
use parley_pki::{CaRoot, ChainPolicy as _};
use rustls_pki_types::{CertificateDer, UnixTime, pem::PemObject as _};
use tokio::sync::watch;

use super::behaviour::{self, describe};
use crate::{
    pki,
    protocol::{
        MAX_RENEW_REQUEST_BYTES, MAX_RENEW_RESPONSE_BYTES, RENEW_PROTOCOL, RenewRequest,
        RenewResponse,
    },
    tls::Identity,
};

/// How often the swarm task checks whether renewal is due.
pub(super) const CHECK_EVERY: Duration = Duration::from_secs(60);

/// The renewal protocol: this peer only asks.
pub(super) type Behaviour = request_response::json::Behaviour<RenewRequest, RenewResponse>;

pub(super) fn behaviour() -> Behaviour {
    request_response::json::Behaviour::with_codec(
        request_response::json::codec::Codec::default()
            .set_request_size_maximum(MAX_RENEW_REQUEST_BYTES)
            .set_response_size_maximum(MAX_RENEW_RESPONSE_BYTES),
        [(RENEW_PROTOCOL, ProtocolSupport::Outbound)],
        behaviour::request_response_config(1),
    )
}

/// The milliseconds since the Unix epoch now.
fn now() -> Timestamp {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    Timestamp(i64::try_from(millis).unwrap_or(i64::MAX))
}

/// The certificate a node presents now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldCertificate {
    /// DER.
    pub der: Vec<u8>,
    /// When it is valid.
    pub validity: Validity,
}

/// The renewal's state, owned by the swarm task.
pub(super) struct Renewal {
    identity: Identity,
    ca: CaRoot,
    me: CertifiedPeer,
    validity: Validity,
    last_attempt: Option<Timestamp>,
    in_flight: Option<OutboundRequestId>,
    renewed: watch::Sender<HeldCertificate>,
    /// Whether this node renews at all (see [`super::NodeConfig::renew`]).
    enabled: bool,
}

impl Renewal {
    /// Renews what `identity` presents, trusting `ca`; the receiver follows the certificate
    /// held.
    pub(super) fn new(
        identity: Identity,
        ca: CaRoot,
        enabled: bool,
    ) -> Result<(Self, watch::Receiver<HeldCertificate>), crate::Error> {
        let der = identity.certificate();
        let me = pki::inspect(&der)?;
        let validity = parley_pki::validity(&der)?;
        let (renewed, held) = watch::channel(HeldCertificate {
            der: der.to_vec(),
            validity,
        });
        let renewal = Self {
            identity,
            ca,
            me,
            validity,
            last_attempt: None,
            in_flight: None,
            renewed,
            enabled,
        };
        Ok((renewal, held))
    }

    /// Asks `rendezvous` (when connected to it) for a new certificate, if renewal is due.
    pub(super) fn tick(&mut self, behaviour: &mut Behaviour, rendezvous: Option<PeerId>) {
        let now = now();
        let Some(rendezvous) = rendezvous.filter(|_| self.enabled) else {
            return;
        };
        if self.in_flight.is_some() || !self.validity.renewal_due(now, self.last_attempt) {
            return;
        }
        self.last_attempt = Some(now);
        self.in_flight = Some(behaviour.send_request(&rendezvous, RenewRequest::default()));
        tracing::debug!("asked the rendezvous to renew this device's certificate");
    }

    /// Takes the rendezvous's answer (from `from`, which must be the rendezvous).
    pub(super) fn on_event(
        &mut self,
        rendezvous: Option<PeerId>,
        event: request_response::Event<RenewRequest, RenewResponse>,
    ) {
        match event {
            request_response::Event::Message {
                peer,
                message:
                    request_response::Message::Response {
                        request_id,
                        response,
                    },
                ..
            } if self.in_flight == Some(request_id) && Some(peer) == rendezvous => {
                self.in_flight = None;
                self.on_response(response);
            }
            request_response::Event::OutboundFailure {
                request_id, error, ..
            } if self.in_flight == Some(request_id) => {
                self.in_flight = None;
                tracing::info!(
                    error = %describe(&error),
                    "certificate renewal failed; retrying in an hour"
                );
            }
            _ => {}
        }
    }

    fn on_response(&mut self, response: RenewResponse) {
        match response {
            RenewResponse::Renewed { certificate_pem } => match self.install(&certificate_pem) {
                Ok(validity) => {
                    tracing::info!(
                        expires_at_ms = validity.not_after.0,
                        "renewed this device's certificate (same keys)"
                    );
                }
                Err(why) => tracing::warn!(
                    reason = %why,
                    "the rendezvous answered the renewal with a certificate this device refuses"
                ),
            },
            RenewResponse::RateLimited { retry_after_ms } => {
                tracing::info!(
                    retry_after_ms,
                    "certificate renewal rate-limited; retrying in an hour"
                );
            }
            RenewResponse::Refused { reason } => {
                tracing::warn!(%reason, "the rendezvous refused to renew this device's certificate");
            }
        }
    }

    /// Checks and installs a renewed certificate.
    fn install(&mut self, pem: &str) -> Result<Validity, String> {
        let der = CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| format!("not a PEM certificate: {e}"))?;
        self.ca
            .check(
                &der,
                &[],
                UnixTime::now(),
                &crate::tls::provider().signature_verification_algorithms,
            )
            .map_err(|e| format!("it does not verify against the CA: {e}"))?;
        let certified = pki::inspect(&der).map_err(|e| e.to_string())?;
        if certified != self.me {
            return Err(format!(
                "it names {} with other keys than this device's",
                certified.role
            ));
        }
        let validity = parley_pki::validity(&der).map_err(|e| e.to_string())?;
        if validity.not_after <= self.validity.not_after {
            return Err("it expires no later than the certificate held".into());
        }
        let der = der.into_owned();
        self.identity
            .replace(der.clone())
            .map_err(|e| e.to_string())?;
        self.validity = validity;
        // A renewed certificate is not renewed again within the hour, even one shorter than
        // the renewal threshold.
        self.last_attempt = Some(now());
        self.renewed.send_replace(HeldCertificate {
            der: der.to_vec(),
            validity,
        });
        Ok(validity)
    }
}
