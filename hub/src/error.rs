//! The HTTP edge's one error type: every failure a client can see is an [`ApiError`], rendered
//! as RFC 9457 `application/problem+json` with a stable `type` URI per kind.
//!
//! 4xx variants say what was wrong; 5xx stay generic and their cause is logged once, in the
//! request's span, where the error is turned into a response. Nothing here panics on input.

use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Prefix of every problem `type`: a URN, so it is stable and never depends on where a hub is
/// deployed. The last segment is [`ApiError::kind`].
pub const PROBLEM_TYPE_PREFIX: &str = "urn:tradecast:problem:";

/// The RFC 9457 body every error response carries.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct Problem {
    /// `urn:tradecast:problem:<kind>`, stable per error kind.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short, human-readable summary of the kind.
    pub title: String,
    /// The HTTP status code, repeated.
    pub status: u16,
    /// What was wrong with this request.
    pub detail: String,
    /// Seconds to wait before retrying (rate limits, throttled logins, locks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_s: Option<u64>,
    /// The plans that would grant what was refused (`plan-required`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plans: Option<Vec<String>>,
}

/// Every error the API answers with. Each variant maps to one status and one problem kind.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The body is not syntactically valid JSON.
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The body is JSON but does not have the expected shape or types.
    #[error("invalid body: {0}")]
    InvalidBody(String),
    /// A field has the right type but an unacceptable value.
    #[error("{0}")]
    Validation(String),
    /// The request needs `Content-Type: application/json`.
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// The body is larger than the route accepts.
    #[error("request body too large: {0}")]
    PayloadTooLarge(String),
    /// A path or query parameter could not be parsed.
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// No credentials were presented.
    #[error("{0}")]
    Unauthenticated(String),
    /// A required header is absent (the Mini App's `Authorization: tma <initData>`).
    #[error("missing header: {0}")]
    MissingHeader(&'static str),
    /// The Mini App's initData failed validation (hash, signature, freshness, shape).
    #[error("{0}")]
    InvalidInitData(String),
    /// The bearer token is malformed, wrongly signed or from an unknown key.
    #[error("invalid access token")]
    InvalidToken,
    /// The bearer token was valid but has expired.
    #[error("access token expired")]
    TokenExpired,
    /// Email or password wrong (never says which).
    #[error("invalid email or password")]
    InvalidCredentials,
    /// The refresh token is unknown, expired, revoked or was already used.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// Authenticated, but the role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// The account is disabled.
    #[error("account disabled")]
    AccountDisabled,
    /// The resource does not exist (or is not visible to the caller).
    #[error("{0}")]
    NotFound(String),
    /// No route has this path.
    #[error("no route for this path")]
    RouteNotFound,
    /// The route exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request conflicts with stored state (duplicate email, …).
    #[error("{0}")]
    Conflict(String),
    /// A signal with this id is stored with a different record.
    #[error("signal {0} already exists with a different record")]
    SignalConflict(String),
    /// An approval for this (signal, device) is stored with a different record.
    #[error("an approval for this signal and device already exists with a different record")]
    ApprovalConflict,
    /// Too many requests for this IP, account or key.
    #[error("rate limit exceeded")]
    RateLimited {
        /// Seconds until a token is available.
        retry_after_s: u64,
    },
    /// Too many failed logins recently: wait before trying again.
    #[error("too many failed logins; retry later")]
    LoginThrottled {
        /// Seconds until the next attempt is allowed.
        retry_after_s: u64,
    },
    /// Too many failed logins: the account is locked for a while.
    #[error("account temporarily locked after repeated failed logins")]
    AccountLocked {
        /// Seconds until the lock ends.
        retry_after_s: u64,
    },
    /// HMAC request authentication refused (the kind is the EA link's code: `missing-header`,
    /// `stale-timestamp`, `replayed-nonce`, `bad-signature`, `unknown-key`, …).
    #[error("request authentication failed: {0}")]
    LinkAuth(tradecast_protocol::link_auth::AuthError),
    /// The signed record does not decode, verify or match what the route expects.
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// The signal arrived too long after (or too far before) its `created_at_ms`.
    #[error("signal received {age_ms} ms from its created_at_ms; the limit is {limit_ms} ms")]
    StaleSignal {
        /// Difference between reception and creation.
        age_ms: i64,
        /// The accepted maximum.
        limit_ms: i64,
    },
    /// The provider has no active plan, so it may not publish.
    #[error("the provider has no active plan")]
    NoActivePlan,
    /// The device is revoked (or not enrolled to this account).
    #[error("{0}")]
    DeviceRefused(String),
    /// The enrolment code is unknown, used or expired.
    #[error("enrolment code unknown, used or expired")]
    InvalidEnrolmentCode,
    /// The handler did not finish in time.
    #[error("request timed out")]
    Timeout,
    /// Too many requests in flight: shed before any work is done.
    #[error("the hub is at its limit of requests in flight; retry shortly")]
    Overloaded,
    /// A dependency (database, Redis) is not available.
    #[error("service unavailable")]
    Unavailable,
    /// The account's plan does not include this feature; `plans` would.
    #[error("your plan does not include `{feature}`")]
    PlanRequired {
        /// The feature (`auto_copy`, `telegram`, `mini_app`, `analytics`, `signals`).
        feature: String,
        /// Ids of the plans on offer that include it.
        plans: Vec<String>,
    },
    /// A webhook's signature is missing, malformed, wrong or stale.
    #[error("invalid signature: {0}")]
    InvalidSignature(String),
    /// An integration this needs is off on this hub (its secret is not set).
    #[error("{0} is not configured on this hub")]
    NotConfigured(&'static str),
    /// An outside service (Stripe, Telegram) failed or refused; the cause is logged.
    #[error("{0} did not answer as expected; retry later")]
    Upstream(&'static str),
    /// A bug or an infrastructure failure; the cause is logged, never sent.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// Wraps any error as an internal one (logged, answered generically).
    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Internal(Box::new(e))
    }

    /// The HTTP status of this kind.
    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            MalformedJson(_) | InvalidParameter(_) => StatusCode::BAD_REQUEST,
            InvalidBody(_) | Validation(_) | InvalidRecord(_) | StaleSignal { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            Unauthenticated(_) | MissingHeader(_) | InvalidInitData(_) | InvalidToken
            | TokenExpired | InvalidCredentials | InvalidRefreshToken | LinkAuth(_)
            | InvalidEnrolmentCode => StatusCode::UNAUTHORIZED,
            Forbidden(_) | AccountDisabled | NoActivePlan | DeviceRefused(_) => {
                StatusCode::FORBIDDEN
            }
            NotFound(_) | RouteNotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Conflict(_) | SignalConflict(_) | ApprovalConflict => StatusCode::CONFLICT,
            RateLimited { .. } | LoginThrottled { .. } => StatusCode::TOO_MANY_REQUESTS,
            AccountLocked { .. } => StatusCode::LOCKED,
            Timeout | Unavailable | Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            // The hub's own state (its configuration) refuses this, not a failure: a client
            // retrying gets the same answer until the owner turns the integration on.
            NotConfigured(_) => StatusCode::CONFLICT,
            PlanRequired { .. } => StatusCode::PAYMENT_REQUIRED,
            InvalidSignature(_) => StatusCode::BAD_REQUEST,
            Upstream(_) => StatusCode::BAD_GATEWAY,
            Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable kind: the last segment of the problem `type`.
    pub fn kind(&self) -> &'static str {
        use ApiError::*;
        match self {
            MalformedJson(_) => "malformed-json",
            InvalidBody(_) => "invalid-body",
            Validation(_) => "validation",
            UnsupportedMediaType => "unsupported-media-type",
            PayloadTooLarge(_) => "payload-too-large",
            InvalidParameter(_) => "invalid-parameter",
            Unauthenticated(_) => "unauthenticated",
            MissingHeader(_) => "missing-header",
            InvalidInitData(_) => "invalid-init-data",
            InvalidToken => "invalid-token",
            TokenExpired => "token-expired",
            InvalidCredentials => "invalid-credentials",
            InvalidRefreshToken => "invalid-refresh-token",
            Forbidden(_) => "forbidden",
            AccountDisabled => "account-disabled",
            NotFound(_) => "not-found",
            RouteNotFound => "route-not-found",
            MethodNotAllowed => "method-not-allowed",
            Conflict(_) => "conflict",
            SignalConflict(_) => "signal-conflict",
            ApprovalConflict => "approval-conflict",
            RateLimited { .. } => "rate-limited",
            LoginThrottled { .. } => "login-throttled",
            AccountLocked { .. } => "account-locked",
            LinkAuth(e) => e.code(),
            InvalidRecord(_) => "invalid-record",
            StaleSignal { .. } => "stale-signal",
            NoActivePlan => "no-active-plan",
            DeviceRefused(_) => "device-refused",
            InvalidEnrolmentCode => "invalid-enrolment-code",
            Timeout => "timeout",
            Unavailable => "unavailable",
            Overloaded => "overloaded",
            PlanRequired { .. } => "plan-required",
            InvalidSignature(_) => "invalid-signature",
            NotConfigured(_) => "not-configured",
            Upstream(_) => "upstream-error",
            Internal(_) => "internal",
        }
    }

    /// The full problem `type` URI.
    pub fn type_uri(&self) -> String {
        format!("{PROBLEM_TYPE_PREFIX}{}", self.kind())
    }

    fn retry_after_s(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_s }
            | ApiError::LoginThrottled { retry_after_s }
            | ApiError::AccountLocked { retry_after_s } => Some((*retry_after_s).max(1)),
            ApiError::Overloaded => Some(1),
            _ => None,
        }
    }

    /// The problem body of this error.
    pub fn problem(&self) -> Problem {
        let status = self.status();
        let detail = match self {
            ApiError::Internal(_) => {
                "internal error; the request id identifies it in the logs".into()
            }
            other => other.to_string(),
        };
        Problem {
            type_uri: self.type_uri(),
            title: status.canonical_reason().unwrap_or("error").to_string(),
            status: status.as_u16(),
            detail,
            retry_after_s: self.retry_after_s(),
            plans: match self {
                ApiError::PlanRequired { plans, .. } => Some(plans.clone()),
                _ => None,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(cause) = &self {
            tracing::error!(target: "tradecast_hub::error", error = %cause, "internal error");
        } else if self.status().is_server_error() {
            tracing::warn!(target: "tradecast_hub::error", kind = self.kind(), "request failed");
        }
        let problem = self.problem();
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (self.status(), body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(s) = problem.retry_after_s {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        response
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        match r {
            JsonRejection::JsonSyntaxError(e) => ApiError::MalformedJson(e.body_text()),
            JsonRejection::JsonDataError(e) => ApiError::InvalidBody(e.body_text()),
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            JsonRejection::BytesRejection(e) => bytes_rejection(e.status(), e.body_text()),
            other => ApiError::InvalidBody(other.body_text()),
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(r: BytesRejection) -> Self {
        bytes_rejection(r.status(), r.body_text())
    }
}

fn bytes_rejection(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::PayloadTooLarge(text)
    } else {
        ApiError::InvalidBody(text)
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        ApiError::InvalidParameter(r.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> Self {
        ApiError::InvalidParameter(r.body_text())
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        // Text PostgreSQL cannot store (22021: a NUL byte; 22P05: untranslatable) is the
        // client's input, refused as such: the extractors catch it first, this is the backstop.
        if let crate::db::DbError::Sqlx(sqlx::Error::Database(d)) = &e
            && matches!(d.code().as_deref(), Some("22021" | "22P05"))
        {
            return ApiError::Validation("text holds a character that cannot be stored".into());
        }
        ApiError::internal(e)
    }
}
