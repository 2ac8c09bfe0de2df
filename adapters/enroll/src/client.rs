//! The HTTPS call: `POST /v1/enroll` over TLS 1.3 with the CA pinned (see [`crate::verifier`]).

use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use parley_domain::CaFingerprint;
use parley_usecases::ports::{EnrollError, EnrollRequest};
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::answer::Answer;
use crate::verifier::PinnedCa;

/// The largest answer read.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

#[derive(Serialize)]
struct EnrollBody<'a> {
    username: &'a str,
    password: &'a str,
    csr_pem: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    totp: Option<&'a str>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: String,
    code: String,
}

/// `https://host:port` split into host and port (443 when absent); a trailing `/` is allowed.
pub(crate) fn parse_server(server: &str) -> Result<(String, u16), EnrollError> {
    let bad = || {
        EnrollError::Failed(format!(
            "{server} is not a rendezvous address; write it as https://HOST:PORT"
        ))
    };
    let rest = server.strip_prefix("https://").ok_or_else(bad)?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
        return Err(bad());
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && !port.contains(']') => {
            (host, port.parse::<u16>().map_err(|_| bad())?)
        }
        _ => (authority, 443),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_owned(), port))
}

/// Sends the CSR; returns the answer and the CA fingerprint the handshake verified.
pub(crate) async fn post_enroll(
    request: &EnrollRequest,
    csr_pem: &str,
    connect_timeout: Duration,
) -> Result<(Answer, CaFingerprint), EnrollError> {
    let (host, port) = parse_server(&request.server)?;
    let unreachable = || EnrollError::Unreachable(request.server.clone());
    let tcp = tokio::time::timeout(connect_timeout, TcpStream::connect((host.as_str(), port)))
        .await
        .map_err(|_| unreachable())?
        .map_err(|e| {
            tracing::debug!(error = %e, "connecting to the rendezvous failed");
            unreachable()
        })?;

    let provider = parley_pki::provider();
    let verifier = Arc::new(PinnedCa::new(request.ca_pin, Arc::clone(&provider)));
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| EnrollError::Failed(format!("cannot configure TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::clone(&verifier) as _)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let name = ServerName::try_from(host.clone())
        .map_err(|_| EnrollError::Failed(format!("{host} is not a valid host name")))?;
    let handshake = TlsConnector::from(Arc::new(config)).connect(name, tcp);
    let tls = tokio::time::timeout(connect_timeout, handshake)
        .await
        .map_err(|_| unreachable())?;
    let tls = match tls {
        Ok(tls) => tls,
        Err(e) => {
            return Err(match (request.ca_pin, verifier.policy().seen()) {
                (Some(expected), Some(seen)) if seen.fingerprint != expected => {
                    EnrollError::FingerprintMismatch {
                        expected,
                        actual: seen.fingerprint,
                    }
                }
                _ => EnrollError::Failed(format!(
                    "the TLS handshake with the rendezvous failed: {e}"
                )),
            });
        }
    };
    let trusted = verifier
        .policy()
        .seen()
        .ok_or_else(|| EnrollError::Failed("the rendezvous's CA was not verified".into()))?
        .fingerprint;

    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| EnrollError::Failed(format!("the HTTP exchange failed: {e}")))?;
    let driver = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "enrollment connection ended with an error");
        }
    });
    let body = serde_json::to_vec(&EnrollBody {
        username: request.user.as_str(),
        password: request.password.expose(),
        csr_pem,
        totp: request.totp.as_deref(),
    })
    .map_err(|e| EnrollError::Failed(format!("cannot encode the request: {e}")))?;
    let http_request = Request::post("/v1/enroll")
        .header(HOST, format!("{host}:{port}"))
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| EnrollError::Failed(format!("cannot build the request: {e}")))?;
    let response = sender
        .send_request(http_request)
        .await
        .map_err(|e| EnrollError::Failed(format!("the rendezvous did not answer: {e}")))?;
    let status = response.status();
    let bytes = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| EnrollError::Failed(format!("the rendezvous's answer broke off: {e}")))?
        .to_bytes();
    driver.abort();
    interpret(status, &bytes).map(|answer| (answer, trusted))
}

/// Turns a status and body into an answer or the port's error.
pub(crate) fn interpret(status: StatusCode, body: &[u8]) -> Result<Answer, EnrollError> {
    if status == StatusCode::OK {
        return serde_json::from_slice(body).map_err(|_| {
            EnrollError::Failed("the rendezvous's answer is not the expected JSON".into())
        });
    }
    let explained = serde_json::from_slice::<ErrorBody>(body).ok();
    // A 401 is a wrong password unless it says it is about the second factor.
    if status == StatusCode::UNAUTHORIZED
        && !explained
            .as_ref()
            .is_some_and(|e| e.code == "totp_required" || e.code == "invalid_totp")
    {
        return Err(EnrollError::InvalidCredentials);
    }
    match explained {
        Some(ErrorBody { error, code }) if status.is_client_error() => Err(EnrollError::Refused {
            code,
            message: error,
        }),
        Some(ErrorBody { error, .. }) => Err(EnrollError::Failed(format!(
            "the rendezvous failed ({status}): {error}"
        ))),
        None => Err(EnrollError::Failed(format!(
            "the rendezvous answered {status} without an explanation"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses_must_be_https_host_port() {
        assert_eq!(
            parse_server("https://127.0.0.1:8443").ok(),
            Some(("127.0.0.1".into(), 8443))
        );
        assert_eq!(
            parse_server("https://example.org/").ok(),
            Some(("example.org".into(), 443))
        );
        assert_eq!(
            parse_server("https://[::1]:9").ok(),
            Some(("::1".into(), 9))
        );
        for bad in [
            "http://x:1",
            "x:1",
            "https://",
            "https://h:port",
            "https://h:1/path",
            "https://u@h",
        ] {
            assert!(parse_server(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn answers_map_to_the_port_errors() {
        assert_eq!(
            interpret(StatusCode::UNAUTHORIZED, b"{}").err(),
            Some(EnrollError::InvalidCredentials)
        );
        for code in ["totp_required", "invalid_totp"] {
            let body = format!(r#"{{"error":"About the code.","code":"{code}"}}"#);
            assert_eq!(
                interpret(StatusCode::UNAUTHORIZED, body.as_bytes()).err(),
                Some(EnrollError::Refused {
                    code: code.into(),
                    message: "About the code.".into()
                })
            );
        }
        assert_eq!(
            interpret(
                StatusCode::CONFLICT,
                br#"{"error":"Taken.","code":"username_taken"}"#
            )
            .err(),
            Some(EnrollError::Refused {
                code: "username_taken".into(),
                message: "Taken.".into()
            })
        );
        assert!(matches!(
            interpret(StatusCode::BAD_GATEWAY, b"<html>"),
            Err(EnrollError::Failed(_))
        ));
        assert!(matches!(
            interpret(StatusCode::OK, b"{}"),
            Err(EnrollError::Failed(_))
        ));
    }
}
