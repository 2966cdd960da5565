//! Operators' tokens for the admin API: JWTs signed with menshen's signing
//! key (HS256), audience `menshen-admin`, with a role. Agent tokens (another
//! audience) and invite tokens (not JWTs) never pass here.

use serde::{Deserialize, Serialize};

use super::{ISSUER, SigningKey, TokenError};

/// Audience of admin tokens.
pub const ADMIN_AUDIENCE: &str = "menshen-admin";

/// What an operator may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read and change everything.
    Admin,
    /// Read only.
    Viewer,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Viewer => "viewer",
        }
    }
}

/// Claims of an admin token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdminClaims {
    pub iss: String,
    pub aud: String,
    /// Who the operator is; goes into the audit log.
    pub sub: String,
    pub role: Role,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
}

impl SigningKey {
    /// A token for operator `subject` with `role`, valid for `ttl_secs`,
    /// with a new random id.
    pub fn mint_admin_token(
        &self,
        subject: &str,
        role: Role,
        now_secs: i64,
        ttl_secs: i64,
    ) -> String {
        self.mint_admin_token_with_id(subject, role, &super::random_id(16), now_secs, ttl_secs)
    }

    /// A token for operator `subject` with `role` and id `jti` (by which it
    /// can be revoked), valid for `ttl_secs`.
    pub fn mint_admin_token_with_id(
        &self,
        subject: &str,
        role: Role,
        jti: &str,
        now_secs: i64,
        ttl_secs: i64,
    ) -> String {
        let claims = AdminClaims {
            iss: ISSUER.into(),
            aud: ADMIN_AUDIENCE.into(),
            sub: subject.into(),
            role,
            jti: jti.into(),
            iat: now_secs,
            exp: now_secs.saturating_add(ttl_secs),
        };
        jsonwebtoken::encode(&self.header(), &claims, self.encoding()).expect("HS256 signing")
    }

    /// Checks signature, algorithm, issuer, audience, expiry and role.
    pub fn verify_admin_token(&self, token: &str) -> Result<AdminClaims, TokenError> {
        let claims = self.decode::<AdminClaims>(token, &super::validation(ADMIN_AUDIENCE))?;
        if claims.sub.trim().is_empty() {
            return Err(TokenError::Invalid("empty subject".into()));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Algorithm, Header};

    fn key() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    #[test]
    fn admin_tokens_verify_and_agent_tokens_do_not() {
        let now = crate::store::now_millis() / 1000;
        let token = key().mint_admin_token("alice", Role::Viewer, now, 600);
        let claims = key().verify_admin_token(&token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.role), ("alice", Role::Viewer));
        // and the other way round
        assert!(key().verify_agent_token(&token).is_err());

        let agent = key().mint_agent_token("gw", "id", now, 600);
        assert!(key().verify_admin_token(&agent).is_err());
        let expired = key().mint_admin_token("alice", Role::Admin, now - 7200, 600);
        assert!(matches!(
            key().verify_admin_token(&expired),
            Err(TokenError::Expired)
        ));
        let forged =
            SigningKey::from_bytes(&[8u8; 32]).mint_admin_token("a", Role::Admin, now, 600);
        assert!(key().verify_admin_token(&forged).is_err());

        let bad_role = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"iss": "menshen", "aud": ADMIN_AUDIENCE, "sub": "a", "role": "root",
                "jti": "x", "iat": now, "exp": now + 600}),
            key().encoding(),
        )
        .unwrap();
        assert!(key().verify_admin_token(&bad_role).is_err());
    }
}
