//! The HTTPS API: routing, and JSON ⇄ domain conversion at the edge.
//!
//! `POST /v1/enroll` takes `{"username","password","csr_pem"}`; **unknown fields are refused**
//! (400 `invalid_json`), so a misspelt field is reported instead of silently dropped. Every
//! error is `{"error": "<one sentence>", "code": "<snake_case>"}` with a 4xx status; a real
//! internal failure is 500 `internal`, its detail in the log only. Passwords and keys are never
//! logged.
//!
//! A request whose head is over [`MAX_HEAD_BYTES`] is refused first, on every route, with 431
//! `headers_too_large`. `GET /metrics` is answered on the API's listener unless the operator
//! moved it to a listener of its own ([`Surface::Metrics`], which serves nothing else) or
//! turned it off.
//!
//! `POST /v1/enroll` is rate-limited per client ([`crate::limit`]) before its body is read: over
//! the limit it is 429 `rate_limited` with `Retry-After` in whole seconds. The other routes are
//! not: they answer from memory at the cost of a hash-map look-up, far below the TLS handshake
//! that precedes them (which a 429 would not save), and a health check or a scraper that got a
//! 429 would report a healthy rendezvous as down. Their abuse is bounded by the listener's
//! per-source connection share.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::{Body, Bytes};
use hyper::header::{ALLOW, CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use parley_domain::{Password, Username};
use serde::{Deserialize, Serialize};

use crate::csr;
use crate::limit::{Buckets, Clients, Decision, Source};
use crate::metrics::Metrics;
use crate::service::{self, MAX_PASSWORD_BYTES, Service};

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The largest request head accepted: the request line and the headers, each counted as it
/// is sent without optional spaces (`NAME: VALUE` and CRLF), and the blank line.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Routes requests to the enrollment service.
#[derive(Debug)]
pub struct Api {
    service: Service,
    metrics: Arc<Metrics>,
    body_timeout: Duration,
    clients: Clients,
    enrollments: Buckets,
    metrics_route: bool,
}

/// What a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// The enrollment API (and `GET /metrics` when [`Guard::metrics_route`] says so).
    Api,
    /// `GET /metrics` only, on a listener of its own.
    Metrics,
}

/// How the API protects itself: body deadline, who the client is, the enrollment rate.
#[derive(Debug)]
pub struct Guard {
    /// How long a request body may take to arrive, in all.
    pub body_timeout: Duration,
    /// Whose `X-Forwarded-For` is believed.
    pub clients: Clients,
    /// Enrollment token buckets per client.
    pub enrollments: Buckets,
    /// Whether the API's listener answers `GET /metrics` (not when the operator moved the
    /// metrics to a listener of their own, or turned them off).
    pub metrics_route: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollBody {
    username: String,
    password: String,
    csr_pem: String,
    /// The second-factor code, when the name has it on.
    #[serde(default)]
    totp: Option<String>,
}

#[derive(Serialize)]
struct EnrolledBody<'a> {
    certificate_pem: &'a str,
    ca_pem: &'a str,
    p2p_addrs: &'a [String],
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    code: &'a str,
}

/// An answer that is not a success: status, code and sentence.
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// For 405: the method the resource accepts.
    allow: Option<&'static str>,
    /// For 429: whole seconds until a retry can succeed.
    retry_after: Option<u64>,
    /// The request's body was not read to its end: the connection cannot carry another
    /// request, and the answer says so (`Connection: close`).
    close: bool,
}

impl Refusal {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            allow: None,
            retry_after: None,
            close: false,
        }
    }

    /// Marks an answer given before the body was read to its end.
    fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "The rendezvous failed to handle the request; try again later.",
        )
    }

    fn into_response(self) -> Response<Full<Bytes>> {
        let body = serde_json::to_vec(&ErrorBody {
            error: &self.message,
            code: self.code,
        })
        .unwrap_or_default();
        let mut response = json_response(self.status, body);
        if let Some(allow) = self.allow {
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static(allow));
        }
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.close {
            response
                .headers_mut()
                .insert(CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

impl Api {
    /// Serves `service` within the bounds of `guard`.
    #[must_use]
    pub fn new(service: Service, metrics: Arc<Metrics>, guard: Guard) -> Self {
        Self {
            service,
            metrics,
            body_timeout: guard.body_timeout,
            clients: guard.clients,
            enrollments: guard.enrollments,
            metrics_route: guard.metrics_route,
        }
    }

    /// Who the client of a connection is.
    #[must_use]
    pub fn clients(&self) -> &Clients {
        &self.clients
    }

    /// The counters.
    #[must_use]
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Answers one request that came over a connection from `peer` to a listener of
    /// `surface`. Never fails: every problem becomes a JSON error response.
    pub async fn handle<B>(
        self: Arc<Self>,
        surface: Surface,
        peer: SocketAddr,
        request: Request<B>,
    ) -> Response<Full<Bytes>>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if head_bytes(&request) > MAX_HEAD_BYTES {
            self.metrics.https_refusal("headers_too_large");
            return Refusal::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                "The request's line and headers are larger than 64 KiB; send a smaller request.",
            )
            .closing()
            .into_response();
        }
        let method = request.method().clone();
        if surface == Surface::Metrics {
            let answer = match request.uri().path() {
                "/metrics" if method == Method::GET => Ok(text_response(self.metrics.render())),
                "/metrics" => Err(wrong_method(&method, "GET")),
                _ => Err(Refusal::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "There is no such resource; this port serves GET /metrics only.",
                )),
            };
            return answer.unwrap_or_else(Refusal::into_response);
        }
        let answer = match request.uri().path() {
            "/v1/enroll" if method == Method::POST => {
                let client = self.clients.client(peer.ip(), request.headers());
                let decision = self.enrollments.check(Source::of(client), Instant::now());
                self.metrics.tracked_sources(self.enrollments.tracked());
                let answer = match decision {
                    Decision::Allow => self.enroll(request).await,
                    Decision::Refuse { retry_after } => {
                        self.metrics.https_refusal("rate_limited");
                        Err(rate_limited(retry_after))
                    }
                };
                let outcome = answer
                    .as_ref()
                    .map_or_else(|refusal| refusal.code, |_| "issued");
                self.metrics.enrollment(outcome);
                answer
            }
            "/v1/enroll" => Err(wrong_method(&method, "POST")),
            "/v1/ca" if method == Method::GET => Ok(self.ca()),
            "/v1/ca" => Err(wrong_method(&method, "GET")),
            "/healthz" if method == Method::GET => Ok(text_response("ok\n")),
            "/metrics" if self.metrics_route && method == Method::GET => {
                Ok(text_response(self.metrics.render()))
            }
            "/metrics" if self.metrics_route => Err(wrong_method(&method, "GET")),
            "/healthz" => Err(wrong_method(&method, "GET")),
            _ if self.metrics_route => Err(Refusal::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "There is no such resource; the API serves POST /v1/enroll, GET /v1/ca, GET /healthz and GET /metrics.",
            )),
            _ => Err(Refusal::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "There is no such resource; the API serves POST /v1/enroll, GET /v1/ca and GET /healthz.",
            )),
        };
        answer.unwrap_or_else(Refusal::into_response)
    }

    fn ca(&self) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(self.service.ca_pem().to_owned())));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-pem-file"),
        );
        response
    }

    async fn enroll<B>(&self, request: Request<B>) -> Result<Response<Full<Bytes>>, Refusal>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let bytes = self.read_body(request).await?;
        let body: EnrollBody = serde_json::from_slice(&bytes).map_err(|e| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "invalid_json",
                format!(
                    "The request body is not the expected JSON ({}); send an object with the strings username, password and csr_pem.",
                    json_problem(&e)
                ),
            )
        })?;
        let request = from_wire(body)?;
        let user = request.user.clone();
        match self.service.enroll(request).await {
            Ok(enrolled) => {
                let body = serde_json::to_vec(&EnrolledBody {
                    certificate_pem: &enrolled.certificate_pem,
                    ca_pem: &enrolled.ca_pem,
                    p2p_addrs: &enrolled.p2p_addrs,
                })
                .map_err(|_| Refusal::internal())?;
                Ok(json_response(StatusCode::OK, body))
            }
            Err(e) => Err(refusal_of(&user, e)),
        }
    }

    async fn read_body<B>(&self, request: Request<B>) -> Result<Bytes, Refusal>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let declared = request
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
            return Err(too_large());
        }
        let limited = Limited::new(request.into_body(), MAX_BODY_BYTES);
        match tokio::time::timeout(self.body_timeout, limited.collect()).await {
            Err(_) => Err(Refusal::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "The request body did not arrive within {} seconds; send it again.",
                    self.body_timeout.as_secs()
                ),
            )
            .closing()),
            Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "request body broke off");
                Err(Refusal::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "The request body could not be read; send it again.",
                )
                .closing())
            }
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
        }
    }
}

/// The size of a request's head as [`MAX_HEAD_BYTES`] counts it.
fn head_bytes<B>(request: &Request<B>) -> usize {
    // "METHOD TARGET HTTP/1.1\r\n", each "NAME: VALUE\r\n", and the blank line.
    let line = request.method().as_str().len() + 1 + request.uri().to_string().len() + 11;
    let headers: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum();
    line + headers + 2
}

/// Converts the wire body into a checked service request.
fn from_wire(body: EnrollBody) -> Result<service::Request, Refusal> {
    let user = Username::parse(&body.username).map_err(|e| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_username",
            format!("The username is invalid: {e}; choose 3 to 32 of a-z, 0-9, '-' and '_'."),
        )
    })?;
    if body.password.is_empty() {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_password",
            "The password is empty; choose a password.",
        ));
    }
    if body.password.len() > MAX_PASSWORD_BYTES {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_password",
            format!(
                "The password is longer than {MAX_PASSWORD_BYTES} bytes; choose a shorter one."
            ),
        ));
    }
    let keys = csr::parse(&body.csr_pem, &user).map_err(|e| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "invalid_csr",
            format!(
                "The certificate request was refused because {e}; send one PEM CSR signed by an Ed25519 key that asks for nothing beyond the X25519 key extension and the user's own name."
            ),
        )
    })?;
    Ok(service::Request {
        user,
        password: Password::new(body.password),
        keys,
        totp: body.totp,
    })
}

/// Decodes a `POST /v1/enroll` body as [`Api`] does (JSON, then the checks at the edge) into
/// the service request, or the code of the 400 refusal (`invalid_json`, `invalid_username`,
/// `invalid_password`, `invalid_csr`). For the fuzz targets; the server path is `enroll`.
#[doc(hidden)]
pub fn decode_enroll_body(bytes: &[u8]) -> Result<service::Request, &'static str> {
    let body: EnrollBody = serde_json::from_slice(bytes).map_err(|_| "invalid_json")?;
    from_wire(body).map_err(|refusal| refusal.code)
}

fn refusal_of(user: &Username, error: service::Error) -> Refusal {
    match error {
        service::Error::InvalidCredentials => Refusal::new(
            StatusCode::UNAUTHORIZED,
            "invalid_credentials",
            "The password is wrong for this username; give the password it was first enrolled with.",
        ),
        service::Error::UsernameTaken => Refusal::new(
            StatusCode::CONFLICT,
            "username_taken",
            "This username was just registered by another enrollment; choose another name or retry with its password.",
        ),
        service::Error::KeyInUse => Refusal::new(
            StatusCode::CONFLICT,
            "key_in_use",
            "This device key is already enrolled under another username; make new device keys to enroll this name.",
        ),
        service::Error::Busy => {
            let mut refusal = Refusal::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "The server is busy checking passwords; try again in a few seconds.",
            );
            refusal.retry_after = Some(2);
            refusal
        }
        service::Error::LockedOut(wait) => {
            let seconds = crate::lockout::wait_seconds(wait);
            let mut refusal = Refusal::new(
                StatusCode::TOO_MANY_REQUESTS,
                "locked_out",
                format!(
                    "Too many wrong passwords or second-factor codes were given for this username; try again in {seconds} seconds (each further wrong one doubles the wait, up to 15 minutes)."
                ),
            );
            refusal.retry_after = Some(seconds);
            refusal
        }
        service::Error::TotpRequired => Refusal::new(
            StatusCode::UNAUTHORIZED,
            "totp_required",
            "This username has a second factor on; give the current code from its authenticator app.",
        ),
        service::Error::InvalidTotp => Refusal::new(
            StatusCode::UNAUTHORIZED,
            "invalid_totp",
            "The second-factor code is wrong or was used already; wait for the authenticator app's next code and give that.",
        ),
        service::Error::TotpAlreadyOn | service::Error::TotpOff => {
            tracing::error!(user = %user, error = %error, "not an enrollment's outcome");
            Refusal::internal()
        }
        service::Error::Internal(detail) => {
            tracing::error!(user = %user, error = %detail, "enrollment failed");
            Refusal::internal()
        }
    }
}

/// What is wrong with a JSON body, without echoing any of its values.
fn json_problem(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof | Category::Io => "it does not parse".to_owned(),
        Category::Data => {
            let text = e.to_string();
            // serde names the field for unknown and missing fields; other data errors could
            // quote the value (a password), so they get a generic sentence.
            if text.starts_with("unknown field") || text.starts_with("missing field") {
                text.split(" at line").next().unwrap_or("").to_owned()
            } else {
                "a field has the wrong type".to_owned()
            }
        }
    }
}

fn rate_limited(retry_after: Duration) -> Refusal {
    // Whole seconds, rounded up, so that a client that waits that long finds a token.
    let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let mut refusal = Refusal::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!(
            "Too many enrollment requests came from your address; try again in {seconds} seconds."
        ),
    );
    refusal.retry_after = Some(seconds);
    // Refused before its body was read.
    refusal.closing()
}

fn too_large() -> Refusal {
    Refusal::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "The request body is larger than 64 KiB; send a smaller request.",
    )
    .closing()
}

fn wrong_method(method: &Method, allowed: &'static str) -> Refusal {
    let mut refusal = Refusal::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("This resource does not accept {method}; use {allowed}."),
    );
    refusal.allow = Some(allowed);
    refusal
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn text_response(text: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(text.into()));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
