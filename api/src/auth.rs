//! Who is calling, and whether the conversation they name is theirs.
//!
//! - Platform users send `Authorization: Bearer <JWT>` signed by Lectio with HS256 and
//!   `CONCIERGE_JWT_SECRET` (`sub`, `name`, `email`, `role` = user|admin, `exp`).
//! - Anonymous visitors get a visitor token when they open their first conversation and send
//!   it the same way afterwards.
//! - SSE clients that cannot set headers (browsers' EventSource) use a short-lived stream
//!   token in the query string, valid for one conversation only.
//!
//! Visitor and stream tokens are signed with keys derived from the platform secret, one per
//! kind, so no kind of token can pass for another. The algorithm is pinned to HS256.
//!
//! Platform tokens must name `CONCIERGE_JWT_ISSUER` in `iss` and `CONCIERGE_JWT_AUDIENCE` in
//! `aud` when those are set; `nbf` is honoured when present. Clocks may differ by
//! [`CLOCK_LEEWAY_SECS`] for `exp` and `nbf` of platform tokens; Concierge's own tokens are
//! checked by the clock that issued them, with none.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::{extract::FromRequestParts, http::request::Parts};
use concierge_shared::{
    ConversationId, OwnerKey, Role,
    config::Secret,
    db::conversations::{self, Conversation},
};
use hmac::{Hmac, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use uuid::Uuid;

use crate::{AppState, error::ApiError};

/// How far the platform's clock and ours may disagree, in seconds, when `exp` and `nbf` are
/// checked: a constant, small enough that an expired token is refused within half a minute.
pub const CLOCK_LEEWAY_SECS: u64 = 30;

/// Which platform tokens are accepted besides a valid signature.
#[derive(Debug, Clone, Default)]
pub struct PlatformClaimsPolicy {
    /// The `iss` required, if any.
    pub issuer: Option<String>,
    /// The `aud` required, if any.
    pub audience: Option<String>,
}

/// Signing and verification keys.
pub struct Keys {
    platform: DecodingKey,
    /// Key of the salted hash that names erased and exported people in `admin_audit`.
    audit: Vec<u8>,
    platform_validation: Validation,
    visitor: (EncodingKey, DecodingKey),
    stream: (EncodingKey, DecodingKey),
    visitor_ttl: Duration,
    stream_ttl: Duration,
}

const VISITOR_AUDIENCE: &str = "concierge-visitor";
const STREAM_AUDIENCE: &str = "concierge-stream";
const ADMIN_STREAM_AUDIENCE: &str = "concierge-admin-stream";

impl Keys {
    pub fn new(secret: &str, policy: &PlatformClaimsPolicy, visitor_ttl: Duration, stream_ttl: Duration) -> Self {
        let derive = |label: &str| {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
            mac.update(label.as_bytes());
            let key = mac.finalize().into_bytes();
            (EncodingKey::from_secret(&key), DecodingKey::from_secret(&key))
        };
        let audit = {
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
            mac.update(b"concierge audit subject v1");
            mac.finalize().into_bytes().to_vec()
        };
        Self {
            platform: DecodingKey::from_secret(secret.as_bytes()),
            audit,
            platform_validation: platform_validation(policy),
            visitor: derive("concierge visitor token v1"),
            stream: derive("concierge stream token v1"),
            visitor_ttl,
            stream_ttl,
        }
    }

    /// A token for a new anonymous visitor, and the owner key it stands for.
    pub fn issue_visitor(&self) -> anyhow::Result<(String, OwnerKey)> {
        let id = Uuid::new_v4();
        let claims =
            OwnClaims { sub: id.to_string(), aud: VISITOR_AUDIENCE.into(), exp: expiry(self.visitor_ttl), cid: None };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.visitor.0)?;
        Ok((token, OwnerKey::visitor(id)))
    }

    /// A token that lets its bearer stream one conversation for a short while.
    pub fn issue_stream(&self, owner: &OwnerKey, conversation: ConversationId) -> anyhow::Result<StreamToken> {
        let exp = expiry(self.stream_ttl);
        let claims =
            OwnClaims { sub: owner.as_str().into(), aud: STREAM_AUDIENCE.into(), exp, cid: Some(conversation) };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.stream.0)?;
        Ok(StreamToken { token, expires_in: self.stream_ttl.as_secs() })
    }

    /// A token that lets an administrator follow the console's live feed for a short while, so
    /// that the long-lived admin credential never travels in a URL (`EventSource` cannot send
    /// headers).
    pub fn issue_admin_stream(&self, owner: &OwnerKey) -> anyhow::Result<StreamToken> {
        let exp = expiry(self.stream_ttl);
        let claims = OwnClaims { sub: owner.as_str().into(), aud: ADMIN_STREAM_AUDIENCE.into(), exp, cid: None };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.stream.0)?;
        Ok(StreamToken { token, expires_in: self.stream_ttl.as_secs() })
    }

    /// Whether `token` is a valid admin stream token; its expiry (Unix seconds) if so.
    pub fn verify_admin_stream(&self, token: &str) -> Result<u64, ApiError> {
        jsonwebtoken::decode::<OwnClaims>(token, &self.stream.1, &own_validation(ADMIN_STREAM_AUDIENCE))
            .map(|data| data.claims.exp)
            .map_err(|e| ApiError::Unauthorized(format!("invalid or expired stream token ({e})")))
    }

    /// The salted hash (HMAC-SHA256, hex) that names `owner` in the audit log: whoever holds
    /// the platform secret and a sub can find that person's entries; the log alone names nobody.
    pub fn subject_hash(&self, owner: &OwnerKey) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.audit).expect("HMAC takes any key length");
        mac.update(owner.as_str().as_bytes());
        mac.finalize().into_bytes().iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// When the last visitor token issued now would expire: how long a revocation must last.
    pub fn visitor_tokens_expire(&self) -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now() + self.visitor_ttl
    }

    /// The caller behind a bearer token: a platform user, or a visitor whose tokens were not
    /// revoked by an erasure (one primary-key lookup, for visitor tokens only).
    pub async fn verify_bearer(&self, pool: &sqlx::PgPool, token: &str) -> Result<Caller, ApiError> {
        let caller = self.verify_signature(token)?;
        if let Some(visitor) = caller.owner.as_str().strip_prefix("visitor:")
            && let Ok(id) = Uuid::parse_str(visitor)
            && concierge_shared::db::privacy::visitor_revoked(pool, id).await?
        {
            return Err(ApiError::Unauthorized("this visitor token was revoked".into()));
        }
        Ok(caller)
    }

    /// The caller a bearer token's signature and claims name.
    fn verify_signature(&self, token: &str) -> Result<Caller, ApiError> {
        use jsonwebtoken::errors::ErrorKind;
        match jsonwebtoken::decode::<PlatformClaims>(token, &self.platform, &self.platform_validation) {
            Ok(data) => {
                let claims = data.claims;
                if claims.sub.trim().is_empty() {
                    return Err(ApiError::Unauthorized("the token's `sub` is empty".into()));
                }
                let role = match claims.role.as_deref() {
                    None | Some("user") => Role::User,
                    Some("admin") => Role::Admin,
                    Some(other) => {
                        return Err(ApiError::Unauthorized(format!("unknown role {other:?} in the token")));
                    }
                };
                return Ok(Caller {
                    owner: OwnerKey::user(&claims.sub),
                    role,
                    name: claims.name,
                    email: claims.email,
                    expires_at: Some(claims.exp),
                });
            }
            // Signed with the platform's secret (the claims are checked after the signature) but
            // not acceptable: say why.
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::ExpiredSignature
                        | ErrorKind::ImmatureSignature
                        | ErrorKind::InvalidIssuer
                        | ErrorKind::InvalidAudience
                        | ErrorKind::InvalidSubject
                        | ErrorKind::MissingRequiredClaim(_)
                        | ErrorKind::InvalidClaimFormat(_)
                ) =>
            {
                return Err(ApiError::Unauthorized(format!("invalid platform token ({error})")));
            }
            // Another key signed it (perhaps ours, for a visitor), or it is no token at all.
            Err(_) => {}
        }
        let data = jsonwebtoken::decode::<OwnClaims>(token, &self.visitor.1, &own_validation(VISITOR_AUDIENCE))
            .map_err(|e| ApiError::Unauthorized(format!("invalid or expired token ({e})")))?;
        let id =
            Uuid::parse_str(&data.claims.sub).map_err(|_| ApiError::Unauthorized("invalid visitor token".into()))?;
        Ok(Caller {
            owner: OwnerKey::visitor(id),
            role: Role::Visitor,
            name: None,
            email: None,
            expires_at: Some(data.claims.exp),
        })
    }

    /// The owner a stream token was issued to, if it is valid for `conversation`, and when it
    /// expires (Unix seconds).
    pub fn verify_stream(
        &self,
        token: &str,
        conversation: ConversationId,
    ) -> Result<(OwnerKey, Option<u64>), ApiError> {
        let data = jsonwebtoken::decode::<OwnClaims>(token, &self.stream.1, &own_validation(STREAM_AUDIENCE))
            .map_err(|e| ApiError::Unauthorized(format!("invalid or expired stream token ({e})")))?;
        if data.claims.cid != Some(conversation) {
            // Same answer as for someone else's conversation.
            return Err(ApiError::NotFound);
        }
        let owner =
            OwnerKey::parse(&data.claims.sub).ok_or_else(|| ApiError::Unauthorized("invalid stream token".into()))?;
        Ok((owner, Some(data.claims.exp)))
    }
}

/// Sign claims as the host platform does (HS256 with its secret): for demo users, tests and
/// the benchmark.
pub fn sign_platform_token(secret: &str, claims: &impl Serialize) -> jsonwebtoken::errors::Result<String> {
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &EncodingKey::from_secret(secret.as_bytes()))
}

fn own_validation(audience: &str) -> Validation {
    let mut validation = Validation::new(Algorithm::HS256);
    // Concierge's own tokens are checked by the clock that issued them: no leeway, so a stream
    // token is refused from the moment its stream ends.
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "sub", "aud"]);
    validation.set_audience(&[audience]);
    validation
}

fn platform_validation(policy: &PlatformClaimsPolicy) -> Validation {
    let mut validation = Validation::new(Algorithm::HS256);
    let mut required = vec!["exp", "sub"];
    validation.leeway = CLOCK_LEEWAY_SECS;
    validation.validate_nbf = true;
    if let Some(issuer) = &policy.issuer {
        validation.set_issuer(&[issuer]);
        required.push("iss");
    }
    match &policy.audience {
        Some(audience) => {
            validation.set_audience(&[audience]);
            required.push("aud");
        }
        None => validation.validate_aud = false,
    }
    validation.set_required_spec_claims(&required);
    validation
}

fn expiry(ttl: Duration) -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() + ttl.as_secs()
}

#[derive(Debug, Deserialize)]
struct PlatformClaims {
    sub: String,
    exp: u64,
    name: Option<String>,
    email: Option<String>,
    role: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct OwnClaims {
    sub: String,
    aud: String,
    exp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    cid: Option<ConversationId>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct StreamToken {
    pub token: String,
    /// Seconds.
    pub expires_in: u64,
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub owner: OwnerKey,
    pub role: Role,
    pub name: Option<String>,
    pub email: Option<String>,
    /// When the token expires (Unix seconds); `None` for the console's admin token.
    pub expires_at: Option<u64>,
}

fn bearer(parts: &Parts) -> Result<Option<&str>, ApiError> {
    let Some(value) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let value = value.to_str().map_err(|_| ApiError::Unauthorized("malformed Authorization header".into()))?;
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() => {
            Ok(Some(token.trim()))
        }
        _ => Err(ApiError::Unauthorized("expected `Authorization: Bearer <token>`".into())),
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match bearer(parts)? {
            Some(token) => verify(state, token).await,
            None => Err(ApiError::Unauthorized("this route needs `Authorization: Bearer <token>`".into())),
        }
    }
}

/// A platform, visitor or admin-console token.
pub async fn verify(state: &AppState, token: &str) -> Result<Caller, ApiError> {
    if let Some(admin) = state.config.admin_token.as_ref().map(Secret::expose)
        && bool::from(subtle::ConstantTimeEq::ct_eq(token.as_bytes(), admin.as_bytes()))
    {
        return Ok(Caller {
            owner: OwnerKey::user("concierge-admin"),
            role: Role::Admin,
            name: Some("Администратор".into()),
            email: None,
            expires_at: None,
        });
    }
    state.keys.verify_bearer(&state.pool, token).await
}

/// A caller with the platform's admin role; anyone else authenticated gets 403.
pub struct Admin(pub Caller);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let caller = Caller::from_request_parts(parts, state).await?;
        if caller.role != Role::Admin {
            return Err(ApiError::Forbidden("this route is for administrators".into()));
        }
        Ok(Admin(caller))
    }
}

/// The conversation if `owner` owns it; otherwise the same 404 as for a missing id, so that
/// nobody learns which ids exist.
pub async fn owned(state: &AppState, id: ConversationId, owner: &OwnerKey) -> Result<Conversation, ApiError> {
    conversations::find_owned(&state.pool, id, owner).await?.ok_or(ApiError::NotFound)
}

/// A caller who may be anonymous (opening a first conversation).
pub struct MaybeCaller(pub Option<Caller>);

impl FromRequestParts<AppState> for MaybeCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match bearer(parts)? {
            Some(token) => verify(state, token).await.map(|c| MaybeCaller(Some(c))),
            None => Ok(MaybeCaller(None)),
        }
    }
}

/// The bearer token of a request, if any, for routes that accept other credentials too.
pub fn bearer_token(parts: &Parts) -> Result<Option<&str>, ApiError> {
    bearer(parts)
}
