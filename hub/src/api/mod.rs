//! The HTTP API: one router built from each area's handlers, its OpenAPI document generated from
//! the same code (utoipa), and a server-rendered docs page of that document (no JavaScript, no
//! download at build or run time).

pub mod approvals;
pub mod audit;
pub mod auth;
pub mod devices;
pub mod extract;
pub mod ops;
pub mod plans;
pub mod signals;
pub mod sync;
pub mod users;

use axum::Router;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tradecast hub API",
        description = "Accounts, devices, provider-signed signals and approvals. Every error is \
                       application/problem+json with a stable `type` (urn:tradecast:problem:<kind>).",
        license(name = "Apache-2.0")
    ),
    modifiers(&SecuritySchemes),
    components(schemas(crate::error::Problem))
)]
struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build(),
            ),
        );
        components.add_security_scheme(
            "hmac",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Tradecast-Key",
                "Provider API key id; with X-Tradecast-Timestamp, X-Tradecast-Nonce and \
                 X-Tradecast-Signature = hex HMAC-SHA256(secret, METHOD\\npath\\ntimestamp\\nnonce\\nhex(sha256(body)))",
            ))),
        );
    }
}

/// The API routes and their OpenAPI document.
pub fn router(state: &AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(ops::router())
        .merge(auth::router())
        .merge(users::router())
        .merge(audit::router())
        .merge(devices::router())
        .merge(plans::router())
        .merge(signals::router(state))
        .merge(approvals::router())
        .merge(sync::router())
        .merge(crate::billing::api::router())
        .merge(crate::affiliates::api::router())
        .merge(crate::telegram::api::router())
        .merge(crate::miniapp::api::router())
        .merge(crate::public::api::router())
        .merge(crate::share::router())
        .merge(crate::ui::revenue::api_router())
        .split_for_parts()
}

/// Builds the full application: API routes, OpenAPI document and docs page, the pages
/// (`crate::ui`, whose Host check needs the bound address `served`), edge layers.
pub fn app(state: AppState, served: std::net::SocketAddr) -> Router {
    let (api, openapi) = router(&state);
    let json = openapi.to_json().unwrap_or_else(|_| "{}".into());
    let docs = ops::docs_page(&openapi);
    let api = api
        .layer(axum::extract::DefaultBodyLimit::max(state.config.http.body_limit_bytes))
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let json = json.clone();
                async move { ([(axum::http::header::CONTENT_TYPE, "application/json")], json) }
            }),
        )
        .route(
            "/api/v1/docs",
            axum::routing::get(move || {
                let docs = docs.clone();
                async move { axum::response::Html(docs) }
            }),
        )
        .merge(crate::ui::router(&state, served))
        .merge(crate::miniapp::router(&state));
    crate::http::edge(api, state)
}
