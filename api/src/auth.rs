//! Who is calling: bearer tokens (tenant API keys `fgk_...` and user session tokens
//! `fgs_...`), roles, password hashing, the authentication cache and the login limit.
//!
//! Tokens are 256 random bits; only their SHA-256 is stored, so a leaked table does not
//! leak tokens and a lookup is one indexed read. Passwords are argon2id. Authenticated
//! tokens are cached in memory for `api.cache_ttl_s`; revoking a key, logging out or
//! changing a user publishes an invalidation on `P.api.invalidate` that every API
//! process applies at once.

use fleetgate_contracts::TenantId;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::sync::Arc;

use crate::AppState;
use crate::cache::TtlCache;
use crate::error::ApiError;

/// What a caller may do. Ordered: each role may do everything the roles below it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything of its tenant except users and keys.
    Viewer,
    /// Also sends commands and manages drivers.
    Dispatcher,
    /// Also manages devices, groups, users and API keys.
    Admin,
}

impl Role {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Dispatcher => "dispatcher",
            Role::Admin => "admin",
        }
    }

    /// Reads a stored role name.
    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "viewer" => Some(Role::Viewer),
            "dispatcher" => Some(Role::Dispatcher),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// How the caller authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// An API key (its id).
    Key(i64),
    /// A user session (the user's id).
    Session(i64),
}

/// An authenticated caller.
#[derive(Debug, Clone, Copy)]
pub struct Principal {
    /// Every query is scoped to this tenant.
    pub tenant_id: TenantId,
    /// What it may do.
    pub role: Role,
    /// Key or session.
    pub credential: Credential,
    /// SHA-256 of the token, to log out or invalidate.
    pub token_hash: [u8; 32],
}

impl Principal {
    /// Fails with 403 unless the caller has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role { Ok(()) } else { Err(ApiError::Forbidden) }
    }
}

/// A new random token with its kind's prefix.
pub fn new_token(prefix: &str) -> Result<String, ApiError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| ApiError::Internal(format!("no randomness: {e}")))?;
    Ok(format!("{prefix}{}", fleetgate_codecs::hex::HexDisplay(&bytes)))
}

/// SHA-256 of a token.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// An argon2id hash (PHC string) of a password.
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| ApiError::Internal(format!("no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| ApiError::Internal(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| ApiError::Internal(format!("argon2: {e}")))
}

/// True when `password` matches the stored hash.
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| Argon2::default().verify_password(password.as_bytes(), &hash).is_ok())
}

/// Authenticated tokens, kept for a short time.
#[derive(Debug)]
pub struct AuthCache(TtlCache<[u8; 32], Principal>);

impl AuthCache {
    /// A cache whose entries live `ttl`.
    pub fn new(ttl: Duration) -> Self {
        AuthCache(TtlCache::new(ttl))
    }

    /// Forgets every token of a tenant (after any change to its keys or users).
    pub fn invalidate_tenant(&self, tenant_id: TenantId) {
        self.0.retain(|_, principal| principal.tenant_id != tenant_id);
    }
}

/// Finds who holds `token`: from the cache, else from Postgres.
pub async fn authenticate(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    let hash = token_hash(token);
    if let Some(principal) = state.auth_cache.0.get(&hash) {
        state.metrics.count_cache_hit();
        return Ok(principal);
    }
    state.metrics.count_db_read();
    let db = state.db().await?;
    let hash_bytes: &[u8] = &hash;
    let found = if token.starts_with("fgk_") {
        db.query_opt(
            "SELECT id, tenant_id, role, NULL::float8 FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
            &[&hash_bytes],
        )
        .await?
        .map(|row| (Credential::Key(row.get(0)), row.get::<_, TenantId>(1), row.get::<_, String>(2), None))
    } else if token.starts_with("fgs_") {
        db.query_opt(
            "SELECT u.id, s.tenant_id, u.role, extract(epoch FROM s.expires_at - now())::float8
             FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > now()",
            &[&hash_bytes],
        )
        .await?
        .map(|row| (Credential::Session(row.get(0)), row.get(1), row.get(2), row.get::<_, Option<f64>>(3)))
    } else {
        None
    };
    let Some((credential, tenant_id, role, remaining)) = found else {
        return Err(ApiError::Unauthorized);
    };
    let role = Role::parse(&role).ok_or_else(|| ApiError::Internal(format!("stored role {role:?}")))?;
    let principal = Principal { tenant_id, role, credential, token_hash: hash };
    let until = Instant::now() + remaining.map_or(Duration::MAX / 4, |s| Duration::from_secs_f64(s.max(0.0)));
    state.auth_cache.0.put_until(principal.token_hash, principal, until);
    Ok(principal)
}

impl FromRequestParts<Arc<AppState>> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or(ApiError::Unauthorized)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(ApiError::Unauthorized)?;
        authenticate(state, token).await
    }
}

/// Failed logins per account and per client address within a window.
#[derive(Debug)]
pub struct LoginLimiter {
    max_failures: u32,
    window: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginLimiter {
    /// Allows `max_failures` failures per key within `window`.
    pub fn new(max_failures: u32, window: Duration) -> Self {
        LoginLimiter { max_failures, window, failures: Mutex::new(HashMap::new()) }
    }

    fn keys(email: &str, client: Option<IpAddr>) -> [String; 2] {
        [format!("email:{email}"), client.map_or_else(String::new, |ip| format!("ip:{ip}"))]
    }

    /// Fails with 429 when the account or the client is locked out.
    pub fn check(&self, email: &str, client: Option<IpAddr>) -> Result<(), ApiError> {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for key in Self::keys(email, client) {
            if let Some((count, since)) = failures.get(&key) {
                let elapsed = since.elapsed();
                // A client gets more room than one account: an office shares an address.
                let limit = if key.starts_with("ip:") { self.max_failures * 4 } else { self.max_failures };
                if *count >= limit && elapsed < self.window {
                    return Err(ApiError::TooManyRequests((self.window - elapsed).as_secs().max(1)));
                }
            }
        }
        Ok(())
    }

    /// Counts a failure.
    pub fn failed(&self, email: &str, client: Option<IpAddr>) {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() > 100_000 {
            let window = self.window;
            failures.retain(|_, (_, since)| since.elapsed() < window);
        }
        for key in Self::keys(email, client).into_iter().filter(|k| !k.is_empty()) {
            let entry = failures.entry(key).or_insert((0, Instant::now()));
            if entry.1.elapsed() >= self.window {
                *entry = (0, Instant::now());
            }
            entry.0 += 1;
        }
    }

    /// Clears the account's failures after a success.
    pub fn succeeded(&self, email: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&format!("email:{email}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered() {
        assert!(Role::Admin > Role::Dispatcher && Role::Dispatcher > Role::Viewer);
        let viewer = Principal {
            tenant_id: TenantId(1),
            role: Role::Viewer,
            credential: Credential::Key(1),
            token_hash: [0; 32],
        };
        assert!(viewer.require(Role::Viewer).is_ok());
        assert!(matches!(viewer.require(Role::Dispatcher), Err(ApiError::Forbidden)));
    }

    #[test]
    fn passwords_verify_only_themselves() -> Result<(), ApiError> {
        let stored = hash_password("correct horse")?;
        assert!(stored.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &stored));
        assert!(!verify_password("correct horse ", &stored));
        assert!(!verify_password("x", "not a hash"));
        Ok(())
    }

    #[test]
    fn tokens_are_random_and_prefixed() -> Result<(), ApiError> {
        let (a, b) = (new_token("fgk_")?, new_token("fgk_")?);
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 64);
        assert_ne!(token_hash(&a), token_hash(&b));
        Ok(())
    }

    #[test]
    fn login_limit_locks_an_account_after_failures() {
        let limiter = LoginLimiter::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(limiter.check("a@x", None).is_ok());
            limiter.failed("a@x", None);
        }
        assert!(matches!(limiter.check("a@x", None), Err(ApiError::TooManyRequests(_))));
        assert!(limiter.check("b@x", None).is_ok(), "other accounts are not affected");
    }
}
