//! What a web page on another site can make a visitor's browser send: refused before any
//! handler runs. Without API keys the server trusts whoever reaches it, which on a loopback
//! address means the local user, unless a page in their browser is the one calling:
//!
//! - **DNS rebinding**: a page on `evil.example.com` re-points its name at 127.0.0.1 and reads
//!   the API as "same origin". Its requests carry `Host: evil.example.com`, so a keyless server
//!   on a loopback address answers only loopback host names (`localhost`, `127.0.0.1`, `[::1]`).
//! - **Cross-site writes**: a form or `fetch` with a "simple" content type (`text/plain`,
//!   multipart) needs no CORS preflight, so the browser sends it. A write (any method but
//!   GET/HEAD/OPTIONS) is refused when `Sec-Fetch-Site` says it comes from another site, or its
//!   `Origin` names another host than the request's `Host`. Clients other than browsers send
//!   neither header and are unaffected; the page itself is same-origin. Origins named with
//!   `--cors-origin` (`Config::cors_origins`) are trusted: their writes pass.

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// The middleware: see the module's documentation.
pub async fn guard(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if state.config.loopback_hosts_only && !state.keys.enabled() {
        if let Some(host) = host.filter(|h| !is_loopback_host(h)) {
            let message = format!(
                "this server has no API keys and answers only loopback host names (localhost, 127.0.0.1, [::1]), not {host:?}"
            );
            return ApiError::new(StatusCode::FORBIDDEN, "host_not_allowed", message).into_response();
        }
    }
    let write = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let trusted = || {
        headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|o| state.config.cors_origins.iter().any(|a| a.eq_ignore_ascii_case(o)))
    };
    if write && cross_site(headers, host) && !trusted() {
        let message = "a write from a page on another site is refused (Origin / Sec-Fetch-Site)";
        return ApiError::new(StatusCode::FORBIDDEN, "cross_origin", message).into_response();
    }
    next.run(req).await
}

/// `host[:port]` names the loopback interface.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => {
            host.rsplit_once(':').map_or(host, |(name, port)| if port.parse::<u16>().is_ok() { name } else { host })
        }
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether the browser says the request comes from another site.
fn cross_site(headers: &HeaderMap, host: Option<&str>) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if matches!(fetch_site, Some("cross-site" | "same-site")) {
        return true;
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return false };
    // "scheme://host[:port]"; "null" (sandboxed frames, files) is never this server.
    let origin_host = origin.split_once("://").map(|(_, rest)| rest.trim_end_matches('/'));
    match (origin_host, host) {
        (Some(o), Some(h)) => !o.eq_ignore_ascii_case(h),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn loopback_names_with_and_without_ports() {
        for ok in
            ["localhost", "localhost:7373", "127.0.0.1:80", "127.9.9.9", "[::1]:7373", "[::1]", "app.localhost:3000"]
        {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in
            ["rebind.evil.example.com", "evil.example.com:7373", "10.0.0.1:7373", "localhost.evil.com", "[::2]:80"]
        {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn cross_site_by_origin_or_fetch_metadata() {
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            h
        };
        let host = Some("127.0.0.1:7373");
        assert!(!cross_site(&with(&[]), host), "no browser headers: a CLI or script");
        assert!(!cross_site(&with(&[("origin", "http://127.0.0.1:7373")]), host));
        assert!(cross_site(&with(&[("origin", "http://evil.example.com")]), host));
        assert!(cross_site(&with(&[("origin", "null")]), host));
        assert!(cross_site(&with(&[("sec-fetch-site", "cross-site")]), host));
        assert!(cross_site(&with(&[("sec-fetch-site", "same-site")]), host));
        assert!(!cross_site(&with(&[("sec-fetch-site", "same-origin"), ("origin", "http://127.0.0.1:7373")]), host));
    }
}
