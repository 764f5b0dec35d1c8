//! The console's static files, embedded in the binary (`include_bytes!`): its stylesheet and the
//! vendored libraries of `hub/assets/vendor/` (htmx, uPlot, and for the Mini App Telegram's
//! WebApp script) with their licence files, served under `/assets/`.
//!
//! Each file's strong `ETag` is a prefix of its SHA-256; pages link it as `/assets/<path>?v=<tag>`
//! ([`url`]), and such a request is cacheable for a year (`immutable`): a new binary with other
//! bytes links another URL. Without the matching `v` the answer may be cached for 5 minutes and
//! revalidated (`If-None-Match` → 304). The vendored files are byte-for-byte the node's copies
//! (a unit test compares them), so the workspace ships one version of each library.

use std::sync::OnceLock;

use axum::extract::{Path, RawQuery};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One embedded file.
#[derive(Debug)]
pub struct Asset {
    /// Path under `/assets/`.
    pub path: &'static str,
    /// `Content-Type` it is served with.
    pub content_type: &'static str,
    /// The bytes.
    pub bytes: &'static [u8],
}

/// Every file served under `/assets/`.
pub static ASSETS: &[Asset] = &[
    Asset {
        path: "console.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../assets/console.css"),
    },
    Asset {
        path: "console.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/console.js"),
    },
    Asset {
        path: "miniapp.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../assets/miniapp.css"),
    },
    Asset {
        path: "miniapp.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/miniapp.js"),
    },
    Asset {
        path: "vendor/htmx.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/vendor/htmx.min.js"),
    },
    Asset {
        path: "vendor/htmx.LICENSE",
        content_type: "text/plain; charset=utf-8",
        bytes: include_bytes!("../../assets/vendor/htmx.LICENSE"),
    },
    Asset {
        path: "vendor/uPlot.iife.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/vendor/uPlot.iife.min.js"),
    },
    Asset {
        path: "vendor/uPlot.min.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../assets/vendor/uPlot.min.css"),
    },
    Asset {
        path: "vendor/uPlot.LICENSE",
        content_type: "text/plain; charset=utf-8",
        bytes: include_bytes!("../../assets/vendor/uPlot.LICENSE"),
    },
    // Telegram's WebApp script, from the npm package `@twa-dev/sdk` 8.0.2 (MIT,
    // `src/telegram-web-apps.js`, unmodified): only the hub's Mini App serves it.
    Asset {
        path: "vendor/telegram-web-app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/vendor/telegram-web-app.js"),
    },
    Asset {
        path: "vendor/telegram-web-app.LICENSE",
        content_type: "text/plain; charset=utf-8",
        bytes: include_bytes!("../../assets/vendor/telegram-web-app.LICENSE"),
    },
];

/// The version tag of each asset, in [`ASSETS`] order: 16 hex digits of its SHA-256.
fn tags() -> &'static [String] {
    static TAGS: OnceLock<Vec<String>> = OnceLock::new();
    TAGS.get_or_init(|| {
        ASSETS.iter().map(|a| crate::ids::sha256_hex(a.bytes)[..16].into()).collect()
    })
}

fn find(path: &str) -> Option<(&'static Asset, &'static str)> {
    ASSETS.iter().zip(tags()).find(|(a, _)| a.path == path).map(|(a, t)| (a, t.as_str()))
}

/// The URL pages link for `path` (with its version tag), or the bare path for an unknown one
/// (which then answers 404: a typo shows in the tests, not as a silently missing style).
pub fn url(path: &str) -> String {
    match find(path) {
        Some((a, tag)) => format!("/assets/{}?v={tag}", a.path),
        None => format!("/assets/{path}"),
    }
}

/// `GET /assets/{*path}`.
pub async fn serve(
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some((asset, tag)) = find(&path) else {
        return super::layout::error_page(StatusCode::NOT_FOUND, "Not found", "No such file.");
    };
    let etag = format!("\"{tag}\"");
    let versioned =
        query.as_deref().is_some_and(|q| q.split('&').any(|kv| kv == format!("v={tag}")));
    let cache =
        if versioned { "public, max-age=31536000, immutable" } else { "public, max-age=300" };
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, asset.content_type)], asset.bytes).into_response()
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_vendored_library_ships_with_its_licence() {
        for lib in ["htmx", "uPlot", "telegram-web-app"] {
            let code = ASSETS
                .iter()
                .any(|a| a.path.starts_with(&format!("vendor/{lib}.")) && a.path.ends_with(".js"));
            let licence = find(&format!("vendor/{lib}.LICENSE")).map(|(a, _)| a.bytes);
            assert!(code, "{lib}");
            assert!(licence.is_some_and(|l| l.len() > 100), "{lib} has no licence file");
        }
    }

    #[test]
    fn vendored_files_are_the_nodes_copies() {
        // Read from the source tree, not through the node crate: the hub never depends on it.
        let node = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../node/assets");
        // Telegram's script is the hub's alone (the node has no Mini App).
        let shared = |a: &&Asset| a.path.starts_with("vendor/") && !a.path.contains("telegram");
        for a in ASSETS.iter().filter(shared) {
            let theirs = std::fs::read(node.join(a.path)).unwrap();
            assert!(theirs == a.bytes, "{} differs from the node's copy", a.path);
        }
    }

    #[test]
    fn urls_carry_the_version_tag() {
        let u = url("vendor/htmx.min.js");
        assert!(u.starts_with("/assets/vendor/htmx.min.js?v=") && u.len() == 29 + 16, "{u}");
        assert_eq!(url("nope.js"), "/assets/nope.js");
    }
}
