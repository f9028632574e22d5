//! HTTP Basic credentials and API key authentication, shared by every function that faces
//! users (the API and git).
//!
//! GIGALIXIR's CLI percent-encodes both parts of the credentials it sends, so each part is
//! tried as sent and, if different, percent-decoded.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chrono::Utc;
use http::header::AUTHORIZATION;
use http::HeaderMap;

use crate::domain::{ApiKey, Email};
use crate::error::PortError;
use crate::model::User;
use crate::ports::Store;

/// The two halves of a Basic `Authorization` header, each with its decoded variant.
pub struct BasicAuth {
    user: Vec<String>,
    secret: Vec<String>,
}

impl BasicAuth {
    /// Reads the header; `None` when it is missing or not Basic.
    pub fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
        let (scheme, encoded) = value.split_once(' ')?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let raw = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
        let (user, secret) = raw.split_once(':')?;
        Some(Self {
            user: variants(user),
            secret: variants(secret),
        })
    }

    /// The email, if either variant of the user part is one.
    pub fn email(&self) -> Option<Email> {
        self.user.iter().find_map(|u| Email::parse(u).ok())
    }

    /// The secret part as sent, then percent-decoded.
    pub fn secrets(&self) -> &[String] {
        &self.secret
    }
}

fn variants(part: &str) -> Vec<String> {
    let mut out = vec![part.to_owned()];
    if let Ok(decoded) = percent_encoding::percent_decode_str(part).decode_utf8() {
        if decoded != part {
            out.push(decoded.into_owned());
        }
    }
    out
}

/// Why a request was not authenticated.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No usable credentials, or they do not match an unexpired key of that email.
    #[error("not authenticated")]
    Unauthorized,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] PortError),
}

/// The user whose `email:api_key` the request carries.
pub async fn user_from_api_key(store: &dyn Store, headers: &HeaderMap) -> Result<User, AuthError> {
    let basic = BasicAuth::from_headers(headers).ok_or(AuthError::Unauthorized)?;
    let email = basic.email().ok_or(AuthError::Unauthorized)?;
    let now = Utc::now();
    for key in basic.secrets() {
        match store
            .user_by_api_key(&ApiKey::new(key.as_str()).hash(), now)
            .await
        {
            Ok(user) if user.email == email => return Ok(user),
            Ok(_) | Err(PortError::NotFound) => continue,
            Err(err) => return Err(err.into()),
        }
    }
    Err(AuthError::Unauthorized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_add_the_percent_decoded_form() {
        assert_eq!(
            variants("ada%40example.com"),
            ["ada%40example.com", "ada@example.com"]
        );
        assert_eq!(variants("plain"), ["plain"]);
    }

    #[test]
    fn basic_header_parses() {
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            "Basic YWRhJTQwZXhhbXBsZS5jb206czNjcjN0"
                .parse()
                .expect("hv"),
        );
        let b = BasicAuth::from_headers(&h).expect("basic");
        assert_eq!(b.email().expect("email").as_str(), "ada@example.com");
        assert_eq!(b.secrets(), ["s3cr3t"]);
        h.insert(AUTHORIZATION, "Bearer x".parse().expect("hv"));
        assert!(BasicAuth::from_headers(&h).is_none());
    }
}
