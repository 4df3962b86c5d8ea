//! What a stranger's request must pass before any handler runs.
//!
//! The gateway spends its owner's channel, and browsers will send requests
//! to it from any web page the user opens. So:
//! * **Host allow-list.** A page on `evil.example` that rebinds its name to
//!   127.0.0.1 (DNS rebinding) sends `Host: evil.example`; only loopback
//!   names, the listen address and configured names are served.
//! * **Origin.** Browsers name the page's origin on every cross-origin
//!   request. The gateway serves no pages, so a request with an `Origin`
//!   is refused unless that origin is in the configured CORS list (then it
//!   gets CORS headers, and its preflight is answered).
//! * **Content type.** A POST must say `application/json`: a page can send
//!   `text/plain` without a preflight, `application/json` it cannot.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::{ApiError, AppState};

/// The request guard's rules (from [`crate::GatewayConfig`]).
#[derive(Clone, Debug, Default)]
pub struct Guard {
    hosts: Vec<String>,
    origins: Vec<String>,
}

impl Guard {
    /// Loopback names and `listen` are always allowed hosts; `extra_hosts`
    /// add names (without port); `origins` are exact `scheme://host[:port]`.
    pub fn new(listen: SocketAddr, extra_hosts: &[String], origins: &[String]) -> Self {
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if !listen.ip().is_unspecified() {
            hosts.push(listen.ip().to_string());
        }
        hosts.extend(extra_hosts.iter().map(|h| h.to_ascii_lowercase()));
        Self {
            hosts,
            origins: origins.to_vec(),
        }
    }

    fn host_allowed(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h == &host_name(host))
    }

    fn origin_allowed(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o == origin)
    }
}

/// The name part of a `Host` value: without port, brackets or trailing dot.
fn host_name(host: &str) -> String {
    let h = host.trim().to_ascii_lowercase();
    let name = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or("").to_string()
    } else if h.matches(':').count() == 1 {
        h.split(':').next().unwrap_or("").to_string()
    } else {
        h
    };
    name.trim_end_matches('.').to_string()
}

fn request_host(req: &Request) -> Option<String> {
    req.uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
}

fn refuse(status: StatusCode, code: &'static str, message: String) -> Response {
    ApiError {
        status,
        kind: "invalid_request_error",
        code,
        param: None,
        message,
    }
    .into_response()
}

/// The middleware: host, then origin (with CORS), then content type.
pub(crate) async fn check(State(s): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let guard = &s.guard;
    let host = request_host(&req).unwrap_or_default();
    if !guard.host_allowed(&host) {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "host_not_allowed",
            format!(
                "this gateway does not answer for host `{}`; add it with --allow-host (or `allow_hosts` in the config)",
                host_name(&host)
            ),
        );
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(o) = &origin
        && !guard.origin_allowed(o)
    {
        return refuse(
            StatusCode::FORBIDDEN,
            "origin_not_allowed",
            format!(
                "requests from web pages at `{o}` are refused; allow the origin with --cors-origin (or `cors_origins` in the config)"
            ),
        );
    }
    if req.method() == Method::OPTIONS {
        let mut r = StatusCode::NO_CONTENT.into_response();
        cors_headers(r.headers_mut(), origin.as_deref(), true);
        return r;
    }
    if req.method() == Method::POST && !is_json(req.headers()) {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the request body as JSON with `Content-Type: application/json`".into(),
        );
    }
    let mut resp = next.run(req).await;
    cors_headers(resp.headers_mut(), origin.as_deref(), false);
    resp
}

fn is_json(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// CORS headers for an allowed origin (the guard refused any other).
fn cors_headers(h: &mut HeaderMap, origin: Option<&str>, preflight: bool) {
    let Some(o) = origin.and_then(|o| HeaderValue::from_str(o).ok()) else {
        return;
    };
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    if preflight {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, idempotency-key"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_lose_port_brackets_and_case() {
        assert_eq!(host_name("LocalHost:8080"), "localhost");
        assert_eq!(host_name("[::1]:8080"), "::1");
        assert_eq!(host_name("::1"), "::1");
        assert_eq!(host_name("127.0.0.1"), "127.0.0.1");
        assert_eq!(host_name("localhost."), "localhost");
    }

    #[test]
    fn loopback_and_the_listen_address_are_allowed_by_default() {
        let g = Guard::new("10.1.2.3:8080".parse().unwrap(), &[], &[]);
        for ok in [
            "localhost:8080",
            "127.0.0.1:8080",
            "[::1]:8080",
            "10.1.2.3:8080",
        ] {
            assert!(g.host_allowed(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "localhost.evil.example",
            "10.1.2.4",
            "",
        ] {
            assert!(!g.host_allowed(bad), "{bad}");
        }
        let any = Guard::new(
            "0.0.0.0:8080".parse().unwrap(),
            &["gw.internal".into()],
            &[],
        );
        assert!(!any.host_allowed("0.0.0.0:8080"));
        assert!(any.host_allowed("GW.internal:8080"));
    }

    #[test]
    fn json_content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        for (v, ok) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Application/JSON", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
            ("multipart/form-data; boundary=x", false),
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            assert_eq!(is_json(&h), ok, "{v}");
        }
    }
}
