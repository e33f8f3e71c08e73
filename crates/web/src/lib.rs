//! The web interface's static client: HTML, CSS and JavaScript modules, embedded in the
//! binary and served by the server itself, so a browser needs nothing but the server's URL.
//!
//! There is no build step: the files under `assets/` are what the browser runs (vanilla ES
//! modules that call the server's `/api/v1` routes; see `assets/js/main.js`). This crate only
//! knows how to serve them: each asset under `/assets/` with its content type and an `ETag`
//! (a hash of its content, so a browser revalidates cheaply and never runs a stale module),
//! and the application shell (`index.html`) for every other `GET`, so client-side routes such
//! as `/batch-changes/admin/hello` open on reload. Paths the API owns (`/api/`, `/.executors/`,
//! `/healthz`, `/metrics`) are never answered with the shell: a missing route there stays a
//! JSON 404, because a script that gets HTML back for an API call fails in confusing ways.

use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

/// One embedded file.
struct Asset {
    /// The URL path it is served at.
    path: &'static str,
    content_type: &'static str,
    content: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset { path: concat!("/assets/", $path), content_type: $type, content: include_bytes!(concat!("../assets/", $path)) }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file the client is made of. A new file under `assets/` must be listed here (the test
/// `every_asset_file_is_embedded` checks it).
static ASSETS: &[Asset] = &[
    asset!("app.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("js/main.js", JS),
    asset!("js/api.js", JS),
    asset!("js/dom.js", JS),
    asset!("js/format.js", JS),
    asset!("js/burndown.js", JS),
    asset!("js/pages/sign_in.js", JS),
    asset!("js/pages/batch_changes.js", JS),
    asset!("js/pages/batch_change.js", JS),
    asset!("js/pages/create.js", JS),
    asset!("js/pages/execution.js", JS),
    asset!("js/pages/preview.js", JS),
    asset!("js/pages/admin.js", JS),
];

/// The application shell every client-side route opens with.
const SHELL: &[u8] = include_bytes!("../assets/index.html");

/// Path prefixes that belong to the API: never answered with the shell.
const API_PREFIXES: &[&str] = &["/api/", "/.executors/"];
const API_PATHS: &[&str] = &["/api", "/.executors", "/healthz", "/metrics"];

/// What the browser may load: only this server (no external requests), inline SVG styles.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The router serving the client; merge it into the server's router (it only has a fallback,
/// so every route the server declares wins over it).
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new().fallback(serve)
}

/// Whether a path belongs to the API (and so must never get the shell).
pub fn is_api_path(path: &str) -> bool {
    API_PATHS.contains(&path) || API_PREFIXES.iter().any(|prefix| path.starts_with(prefix))
}

/// Answers every request no server route matched.
pub async fn serve(method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let path = uri.path();
    if is_api_path(path) {
        return json_error(StatusCode::NOT_FOUND, &format!("no API route {method} {path}; see docs/openapi.yaml for the routes this server has"));
    }
    if method != Method::GET && method != Method::HEAD {
        return json_error(StatusCode::METHOD_NOT_ALLOWED, &format!("{method} {path}: the web interface only answers GET; API routes are under /api/v1/"));
    }
    if path.starts_with("/assets/") {
        return match ASSETS.iter().find(|asset| asset.path == path) {
            Some(asset) => respond(asset.content_type, asset.content, &headers, method == Method::HEAD),
            None => json_error(StatusCode::NOT_FOUND, &format!("no asset {path}")),
        };
    }
    if path == "/favicon.ico" {
        return json_error(StatusCode::NOT_FOUND, "no favicon.ico; the icon is /assets/favicon.svg");
    }
    respond("text/html; charset=utf-8", SHELL, &headers, method == Method::HEAD)
}

/// A file with its ETag; `304 Not Modified` when the browser already has this version.
fn respond(content_type: &'static str, content: &'static [u8], request: &HeaderMap, head: bool) -> Response {
    let etag = etag(content);
    let fresh = request.get(header::IF_NONE_MATCH).and_then(|value| value.to_str().ok()).is_some_and(|value| value.split(',').any(|tag| tag.trim() == etag));
    let status = if fresh { StatusCode::NOT_MODIFIED } else { StatusCode::OK };
    let body = if fresh || head { Body::empty() } else { Body::from(content) };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Revalidate every time: the ETag makes that a tiny 304, and a new server version is
    // picked up at once (modules import each other by fixed paths).
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    response
}

/// `"<hash of the content>"`, computed once per file.
fn etag(content: &'static [u8]) -> String {
    static TAGS: OnceLock<Vec<(usize, String)>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS.iter().map(|asset| asset.content).chain(std::iter::once(SHELL)).map(|content| (content.as_ptr() as usize, hash_tag(content))).collect()
    });
    tags.iter().find(|(address, _)| *address == content.as_ptr() as usize).map_or_else(|| hash_tag(content), |(_, tag)| tag.clone())
}

fn hash_tag(content: &[u8]) -> String {
    // SipHash with fixed keys: stable across runs and builds of the same content.
    let mut hasher = std::hash::DefaultHasher::new();
    content.hash(&mut hasher);
    format!("\"{:016x}-{:x}\"", hasher.finish(), content.len())
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], serde_json::json!({ "error": message }).to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(path: &str, headers: HeaderMap) -> Response {
        serve(Method::GET, path.parse().expect("uri"), headers).await
    }

    fn content_type(response: &Response) -> &str {
        response.headers().get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or_default()
    }

    #[tokio::test]
    async fn the_shell_is_served_for_the_root_and_client_routes() {
        for path in ["/", "/batch-changes", "/batch-changes/admin/hello", "/batch-specs/abc/execution?state=failed", "/admin"] {
            let response = get(path, HeaderMap::new()).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(content_type(&response), "text/html; charset=utf-8", "{path}");
            assert!(response.headers().get(header::CONTENT_SECURITY_POLICY).is_some(), "{path}");
        }
    }

    #[tokio::test]
    async fn assets_have_their_content_types_and_etags() {
        let expected = [("/assets/app.css", "text/css; charset=utf-8"), ("/assets/js/main.js", JS), ("/assets/favicon.svg", "image/svg+xml")];
        for (path, wanted) in expected {
            let response = get(path, HeaderMap::new()).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(content_type(&response), wanted, "{path}");
            let etag = response.headers().get(header::ETAG).expect("etag").clone();
            let mut conditional = HeaderMap::new();
            conditional.insert(header::IF_NONE_MATCH, etag);
            assert_eq!(get(path, conditional).await.status(), StatusCode::NOT_MODIFIED, "{path}");
        }
        assert_eq!(get("/assets/missing.js", HeaderMap::new()).await.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn api_paths_never_get_the_shell() {
        for path in ["/api/v1/nothing-here", "/api", "/.executors/unknown", "/healthz", "/metrics"] {
            let response = get(path, HeaderMap::new()).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
            assert_eq!(content_type(&response), "application/json", "{path}");
        }
        let post = serve(Method::POST, "/batch-changes".parse().expect("uri"), HeaderMap::new()).await;
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
    }

    #[test]
    fn every_asset_file_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets");
        let mut files = Vec::new();
        let mut pending = vec![root.clone()];
        while let Some(directory) = pending.pop() {
            for entry in std::fs::read_dir(&directory).expect("read assets") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    pending.push(path);
                } else if path.file_name().is_some_and(|name| name != "index.html") {
                    files.push(format!("/assets/{}", path.strip_prefix(&root).expect("under assets").display()));
                }
            }
        }
        for file in files {
            assert!(ASSETS.iter().any(|asset| asset.path == file), "{file} is not listed in ASSETS");
        }
    }

    #[test]
    fn the_shell_loads_only_local_assets() {
        let shell = std::str::from_utf8(SHELL).expect("utf-8");
        assert!(!shell.contains("http://") && !shell.contains("https://"), "the shell must not reference external URLs");
        for module in ASSETS.iter().filter(|asset| asset.content_type == JS) {
            // The SVG namespace is a name, not a request.
            let text = std::str::from_utf8(module.content).expect("utf-8").replace("http://www.w3.org/2000/svg", "");
            assert!(!text.contains("https://") && !text.contains("http://"), "{} references an external URL", module.path);
        }
    }
}
