//! What runs a worker's models. A worker's certificate declares it (the
//! claims in `kokon-attest`), so a registry can refuse workers that send
//! prompts out of their TEE, and clients can see where their jobs run.

use serde::{Deserialize, Serialize};

/// Longest upstream origin accepted, in bytes.
pub const MAX_ORIGIN: usize = 255;

/// The engine kinds a worker can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// Built-in llama.cpp: the weights are loaded and run inside the TEE.
    Llama,
    /// The deterministic echo engine (tests and benchmarks).
    Echo,
    /// Forwards every job to another server: prompts and answers leave the
    /// TEE for [`EngineDecl::upstream`].
    Upstream,
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EngineKind::Llama => "llama",
            EngineKind::Echo => "echo",
            EngineKind::Upstream => "upstream",
        })
    }
}

/// A worker's engine as its certificate declares it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineDecl {
    pub kind: EngineKind,
    /// For [`EngineKind::Upstream`] only: where jobs are forwarded, as an
    /// origin (`https://host[:port]`, see [`origin_of`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
}

impl EngineDecl {
    /// An engine that runs inside the TEE.
    pub fn local(kind: EngineKind) -> Self {
        Self {
            kind,
            upstream: None,
        }
    }

    /// An engine forwarding to `origin` (already in [`origin_of`] form).
    pub fn upstream(origin: String) -> Self {
        Self {
            kind: EngineKind::Upstream,
            upstream: Some(origin),
        }
    }

    /// Checks that an upstream engine names a canonical origin and no other
    /// kind names one.
    pub fn check(&self) -> Result<(), String> {
        match (self.kind, &self.upstream) {
            (EngineKind::Upstream, None) => Err("an upstream engine must name its origin".into()),
            (EngineKind::Upstream, Some(o)) => match origin_of(o) {
                Ok(canonical) if canonical == *o => Ok(()),
                Ok(canonical) => Err(format!("upstream `{o}` is not an origin (`{canonical}`)")),
                Err(e) => Err(e),
            },
            (kind, Some(_)) => Err(format!("a {kind} engine names no upstream")),
            (_, None) => Ok(()),
        }
    }
}

impl std::fmt::Display for EngineDecl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.upstream {
            Some(o) => write!(f, "{} → {o}", self.kind),
            None => write!(f, "{}", self.kind),
        }
    }
}

/// The origin of `url` (`scheme://host[:port]`, lowercase, the scheme's
/// default port left out): what a registry allows an upstream engine to
/// forward to. Only `http` and `https`, no user information.
pub fn origin_of(url: &str) -> Result<String, String> {
    let bad = |why: &str| Err(format!("upstream `{url}`: {why}"));
    if url.len() > MAX_ORIGIN * 4 {
        return bad("too long");
    }
    let Ok(uri) = url.parse::<http::Uri>() else {
        return bad("not a URL");
    };
    let scheme = match uri.scheme_str().map(str::to_ascii_lowercase).as_deref() {
        Some("https") => "https",
        Some("http") => "http",
        _ => return bad("the scheme must be http or https"),
    };
    let Some(authority) = uri.authority() else {
        return bad("no host");
    };
    if authority.as_str().contains('@') {
        return bad("user information is not allowed");
    }
    let host = authority.host().to_ascii_lowercase();
    if host.is_empty() {
        return bad("no host");
    }
    let default = if scheme == "https" { 443 } else { 80 };
    let origin = match authority.port_u16() {
        Some(p) if p != default => format!("{scheme}://{host}:{p}"),
        _ => format!("{scheme}://{host}"),
    };
    if origin.len() > MAX_ORIGIN {
        return bad("origin too long");
    }
    Ok(origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_canonical() {
        for (url, origin) in [
            ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000"),
            ("HTTPS://API.Example.com:443/v1/", "https://api.example.com"),
            (
                "https://api.example.com:8443",
                "https://api.example.com:8443",
            ),
            ("http://[::1]:80/v1", "http://[::1]"),
        ] {
            assert_eq!(origin_of(url).unwrap(), origin, "{url}");
        }
        for url in [
            "ftp://example.com",
            "example.com/v1",
            "https://user:pw@example.com",
            "",
            "https://",
        ] {
            assert!(origin_of(url).is_err(), "{url}");
        }
    }

    #[test]
    fn declarations_are_checked() {
        let up = EngineDecl::upstream("https://api.example.com".into());
        assert!(up.check().is_ok());
        assert!(EngineDecl::local(EngineKind::Llama).check().is_ok());
        let cases = [
            EngineDecl::local(EngineKind::Upstream),
            EngineDecl::upstream("https://api.example.com/v1".into()),
            EngineDecl::upstream("https://API.example.com".into()),
            EngineDecl {
                kind: EngineKind::Echo,
                upstream: Some("https://api.example.com".into()),
            },
        ];
        for d in cases {
            assert!(d.check().is_err(), "{d:?}");
        }
        let json = serde_json::to_string(&up).unwrap();
        assert_eq!(
            json,
            r#"{"kind":"upstream","upstream":"https://api.example.com"}"#
        );
        assert!(serde_json::from_str::<EngineDecl>(r#"{"kind":"gpu"}"#).is_err());
    }
}
