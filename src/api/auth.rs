//! Bearer-token authentication and the role rules of INTERFACE.md "Auth".
//!
//! | role | may |
//! |---|---|
//! | `admin` | everything |
//! | `cloud` | put events into any set (`default` included); test patterns; read metrics |
//! | `producer` | put events into custom sets; test patterns; read metrics |
//!
//! With no tokens configured every request is `admin` (the server then only listens on a
//! loopback address). Tokens are kept as SHA-256 digests, so a lookup compares digests, not
//! the secret text, and the tokens themselves are never logged or echoed.

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use sha2::{Digest, Sha256};

use super::AppState;
use super::error::{ApiError, codes};
use crate::config::{Role, TokenConfig};

/// Shortest token accepted in the configuration.
pub const MIN_TOKEN_CHARS: usize = 16;

/// The configured tokens.
#[derive(Clone, Default)]
pub struct Auth {
    /// SHA-256 of the token → (role, name for logs).
    tokens: HashMap<[u8; 32], (Role, String)>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("tokens", &self.tokens.len())
            .finish()
    }
}

impl Auth {
    /// Checks and indexes the configured tokens; the error names the entry at fault (never
    /// its token).
    pub fn new(tokens: &[TokenConfig]) -> crate::Result<Auth> {
        let mut map = HashMap::new();
        for (i, t) in tokens.iter().enumerate() {
            let field = format!("auth.tokens[{i}].token");
            if t.token.chars().count() < MIN_TOKEN_CHARS {
                return Err(crate::Error::invalid(
                    field,
                    format!("a token must have at least {MIN_TOKEN_CHARS} characters"),
                ));
            }
            if t.token.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(crate::Error::invalid(
                    field,
                    "a token cannot contain whitespace or control characters",
                ));
            }
            let name = t
                .name
                .clone()
                .unwrap_or_else(|| format!("{}#{i}", t.role.as_str()));
            if map.insert(digest(&t.token), (t.role, name)).is_some() {
                return Err(crate::Error::invalid(
                    field,
                    "the same token is listed twice",
                ));
            }
        }
        Ok(Auth { tokens: map })
    }

    /// True when no tokens are configured (everyone is admin; loopback only).
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The caller of a request with this `Authorization` header value.
    fn identify(&self, header: Option<&str>) -> Result<Caller, ApiError> {
        if self.is_open() {
            return Ok(Caller {
                role: Role::Admin,
                name: "anonymous".into(),
            });
        }
        let Some(value) = header else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                codes::TOKEN_MISSING,
                "this server requires `Authorization: Bearer <token>`",
            ));
        };
        // The scheme name is case-insensitive (RFC 9110 §11.1).
        let token = value
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    codes::TOKEN_INVALID,
                    "the Authorization header must be `Bearer <token>`",
                )
            })?;
        match self.tokens.get(&digest(token)) {
            Some((role, name)) => Ok(Caller {
                role: *role,
                name: name.clone(),
            }),
            None => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                codes::TOKEN_INVALID,
                "the bearer token is not valid",
            )),
        }
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Who sent a request (extracted from the `Authorization` header).
#[derive(Debug, Clone)]
pub struct Caller {
    /// The token's role.
    pub role: Role,
    /// The token's name, for logs.
    pub name: String,
}

impl Caller {
    /// Refuses anyone but an admin.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        if self.role == Role::Admin {
            Ok(())
        } else {
            Err(denied(
                self.role,
                "manage event sets, rules and targets or read events",
            ))
        }
    }

    /// Refuses callers that may not put events into `set` (only `cloud` and `admin` may
    /// write to `default`).
    pub fn require_put(&self, set: &str) -> Result<(), ApiError> {
        match self.role {
            Role::Admin | Role::Cloud => Ok(()),
            Role::Producer if set != crate::bus::DEFAULT_SET => Ok(()),
            Role::Producer => Err(denied(
                self.role,
                "put events into the cloud service event set `default` (only `cloud` tokens may)",
            )),
        }
    }

    /// Whether the bus should treat this caller as a cloud producer.
    pub fn producer(&self) -> crate::bus::Producer {
        match self.role {
            Role::Admin | Role::Cloud => crate::bus::Producer::Cloud,
            Role::Producer => crate::bus::Producer::Custom,
        }
    }
}

fn denied(role: Role, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        codes::UNAUTHORIZED,
        format!("a `{}` token may not {what}", role.as_str()),
    )
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = match parts.headers.get(AUTHORIZATION) {
            None => None,
            Some(v) => Some(v.to_str().map_err(|_| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    codes::TOKEN_INVALID,
                    "the Authorization header is not valid text",
                )
            })?),
        };
        state.inner.auth.identify(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(t: &str, role: Role) -> TokenConfig {
        TokenConfig {
            token: t.into(),
            role,
            name: None,
        }
    }

    #[test]
    fn auth_refuses_short_and_duplicate_tokens_naming_the_entry() {
        let e = Auth::new(&[token("short", Role::Admin)]).unwrap_err();
        assert!(e.to_string().contains("auth.tokens[0].token"), "{e}");
        assert!(!e.to_string().contains("short"), "the token leaked: {e}");
        let t = "0123456789abcdef";
        let e = Auth::new(&[token(t, Role::Admin), token(t, Role::Cloud)]).unwrap_err();
        assert!(e.to_string().contains("auth.tokens[1].token"), "{e}");
    }

    #[test]
    fn auth_identifies_roles_and_refuses_unknown_tokens() {
        let auth = Auth::new(&[
            token("admin-token-0123456", Role::Admin),
            token("producer-token-0123", Role::Producer),
        ])
        .unwrap();
        let c = auth.identify(Some("Bearer producer-token-0123")).unwrap();
        assert_eq!(c.role, Role::Producer);
        assert!(c.require_admin().is_err());
        assert!(c.require_put("orders").is_ok());
        assert_eq!(
            c.require_put("default").unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        let e = auth
            .identify(Some("Bearer nope-nope-nope-nope"))
            .unwrap_err();
        assert_eq!(
            (e.status, e.code.as_str()),
            (StatusCode::UNAUTHORIZED, codes::TOKEN_INVALID)
        );
        let e = auth.identify(None).unwrap_err();
        assert_eq!(e.code, codes::TOKEN_MISSING);
        assert_eq!(
            auth.identify(Some("BEARER producer-token-0123"))
                .unwrap()
                .role,
            Role::Producer
        );
        let e = auth.identify(Some("Basic abc")).unwrap_err();
        assert_eq!(e.code, codes::TOKEN_INVALID);
    }

    #[test]
    fn auth_without_tokens_makes_everyone_admin() {
        let auth = Auth::new(&[]).unwrap();
        assert!(auth.is_open());
        assert_eq!(auth.identify(None).unwrap().role, Role::Admin);
    }
}
