//! Validated values. A value of one of these types has passed its checks, so code that
//! receives one never validates again.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Why a value was refused. The message is written for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(pub String);

/// Names that would collide with the platform's own host names or routes, or with the
/// objects of an app's own Kubernetes namespace (its headless Service is named after it).
pub const RESERVED_APP_NAMES: &[&str] = &[
    "admin",
    "api",
    "app",
    "apps",
    "assets",
    "canary",
    "dashboard",
    "docs",
    "git",
    "gigalixir",
    "help",
    "localhost",
    "mail",
    "maintenance",
    "platform",
    "root",
    "ssh",
    "static",
    "status",
    "support",
    "web",
    "www",
];

/// An app's name: a DNS label (it becomes `NAME.localhost` or `NAME.<domain>`), 3–63
/// characters of lowercase letters, digits and hyphens, starting with a letter, not ending
/// with a hyphen, and not one of [`RESERVED_APP_NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AppName(String);

impl AppName {
    /// Checks `name` and returns it as an app name.
    pub fn parse(name: &str) -> Result<Self, Invalid> {
        let len = name.chars().count();
        if !(3..=63).contains(&len) {
            return Err(Invalid(format!(
                "app name `{name}` must be 3 to 63 characters long"
            )));
        }
        if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(Invalid(format!(
                "app name `{name}` must start with a lowercase letter"
            )));
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(Invalid(format!(
                "app name `{name}` may hold only lowercase letters, digits and hyphens, not `{bad}`"
            )));
        }
        if name.ends_with('-') {
            return Err(Invalid(format!(
                "app name `{name}` must not end with a hyphen"
            )));
        }
        if RESERVED_APP_NAMES.contains(&name) {
            return Err(Invalid(format!(
                "app name `{name}` is reserved by the platform"
            )));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A custom domain's name (`www.example.com`): lowercased, without a trailing dot; two or
/// more labels of letters, digits and hyphens (1–63 each, not starting or ending with a
/// hyphen), 253 characters at most, the last label not all digits (no IP addresses).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fqdn(String);

impl Fqdn {
    /// Checks `name` and returns it as a domain name.
    pub fn parse(name: &str) -> Result<Self, Invalid> {
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        let bad = |why: &str| Invalid(format!("`{name}` is not a domain name: {why}"));
        if name.is_empty() || name.len() > 253 {
            return Err(bad("it must be 1 to 253 characters long"));
        }
        let labels: Vec<&str> = name.split('.').collect();
        if labels.len() < 2 {
            return Err(bad("it needs at least two labels, like `www.example.com`"));
        }
        for label in &labels {
            if label.is_empty() || label.len() > 63 {
                return Err(bad("each label must be 1 to 63 characters long"));
            }
            if !label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            {
                return Err(bad("labels hold only letters, digits and hyphens"));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(bad("a label must not start or end with a hyphen"));
            }
        }
        if labels
            .last()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(bad("an IP address is not a domain"));
        }
        Ok(Self(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A comma-separated list of names (empty entries skipped), or why one is not a name.
    pub fn parse_list(names: &str) -> Result<Vec<Self>, String> {
        names
            .split(',')
            .filter(|n| !n.trim().is_empty())
            .map(|n| Self::parse(n).map_err(|e| e.0))
            .collect()
    }

    /// Whether this is `domain` or a name under it.
    pub fn is_within(&self, domain: &str) -> bool {
        self.0 == domain || self.0.ends_with(&format!(".{domain}"))
    }
}

/// An email address, trimmed and lowercased so that one person has one account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);

impl Email {
    /// Checks the general shape `local@domain.tld`; deliverability is not our concern here.
    pub fn parse(email: &str) -> Result<Self, Invalid> {
        let email = email.trim().to_lowercase();
        let bad = || Invalid(format!("`{email}` is not a valid email address"));
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (local, domain) = email.split_once('@').ok_or_else(bad)?;
        if local.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
        {
            return Err(bad());
        }
        Ok(Self(email))
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 8;

/// A password as typed by its owner. Never printed, never stored: only its argon2 hash is.
#[derive(Clone)]
pub struct Password(Secret);

impl Password {
    /// Accepts a password for a new account: at least [`MIN_PASSWORD_LEN`] characters.
    pub fn new_for_account(password: &str) -> Result<Self, Invalid> {
        if password.chars().count() < MIN_PASSWORD_LEN {
            return Err(Invalid(format!(
                "password must be at least {MIN_PASSWORD_LEN} characters long"
            )));
        }
        Ok(Self(Secret::new(password)))
    }

    /// Wraps a password given to prove identity (no strength rule: the hash decides).
    pub fn given(password: &str) -> Self {
        Self(Secret::new(password))
    }

    /// The password itself, for hashing.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// A string that must never reach a log: `Debug` and `Display` print `[redacted]`.
/// Serde writes the real value, because secrets are stored and sent on purpose.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself; call sites of this are where secrets leave the type.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// An API key as handed to its owner. The platform keeps only its [`KeyHash`].
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(Secret);

impl ApiKey {
    /// Wraps a key presented by a client.
    pub fn new(key: impl Into<String>) -> Self {
        Self(Secret::new(key))
    }

    /// The key itself, to return to its owner once.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The hash under which the key is stored and looked up. API keys are 256 random
    /// bits, so a fast hash is enough: nothing can be guessed from it.
    pub fn hash(&self) -> KeyHash {
        KeyHash(hex::encode(Sha256::digest(self.expose().as_bytes())))
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

/// The SHA-256 of an API key, hex: what the store keeps.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyHash(pub String);

/// A user's stable identifier (a UUID), independent of the email, which may change.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct UserId(pub String);

impl UserId {
    /// A new random id.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
}

/// A build's identifier; it keys every step of the pipeline for idempotency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BuildId(pub String);

impl BuildId {
    /// A new random id.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().to_string())
    }
}

/// A release number, `v1`, `v2`, … per app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReleaseVersion(pub u32);

impl fmt::Display for ReleaseVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// A full git commit id: 40 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GitSha(String);

impl GitSha {
    /// Checks a full commit id.
    pub fn parse(sha: &str) -> Result<Self, Invalid> {
        if sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()) {
            Ok(Self(sha.to_ascii_lowercase()))
        } else {
            Err(Invalid(format!("`{sha}` is not a full git commit id")))
        }
    }

    /// The commit id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first seven digits, as people write them.
    pub fn short(&self) -> &str {
        &self.0[..7]
    }
}

macro_rules! string_newtype_impls {
    ($($ty:ident),*) => {$(
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                $ty::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
        impl std::str::FromStr for $ty {
            type Err = Invalid;
            fn from_str(s: &str) -> Result<Self, Invalid> {
                $ty::parse(s)
            }
        }
    )*};
}
string_newtype_impls!(AppName, Email, GitSha, Fqdn);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for BuildId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names_are_dns_labels() {
        for ok in ["abc", "my-app", "a1b2", &"a".repeat(63)] {
            assert!(AppName::parse(ok).is_ok(), "{ok} should be accepted");
        }
        for (bad, why) in [
            ("ab", "3 to 63"),
            (&"a".repeat(64), "3 to 63"),
            ("1app", "start with a lowercase letter"),
            ("-app", "start with a lowercase letter"),
            ("My-App", "start with a lowercase letter"),
            ("my_app", "not `_`"),
            ("myApp", "not `A`"),
            ("my-app-", "end with a hyphen"),
            ("my.app", "not `.`"),
            ("api", "reserved"),
            ("git", "reserved"),
            ("www", "reserved"),
        ] {
            let err = AppName::parse(bad).expect_err(bad);
            assert!(err.0.contains(why), "{bad}: {err} should mention {why}");
        }
    }

    #[test]
    fn app_name_serde_validates() {
        assert!(serde_json::from_str::<AppName>("\"good-name\"").is_ok());
        assert!(serde_json::from_str::<AppName>("\"Bad\"").is_err());
    }

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Example.COM ").map(|e| e.0),
            Ok("ada@example.com".to_owned())
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "a@b@c.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn passwords_need_eight_characters() {
        assert!(Password::new_for_account("1234567").is_err());
        assert!(Password::new_for_account("12345678").is_ok());
    }

    #[test]
    fn secrets_do_not_print() {
        let key = ApiKey::new("very-secret-key");
        let pw = Password::given("hunter22");
        let s = Secret::new("cookie");
        let shown = format!("{key:?} {pw:?} {s:?} {s}");
        assert!(!shown.contains("very-secret-key"));
        assert!(!shown.contains("hunter22"));
        assert!(!shown.contains("cookie"));
    }

    #[test]
    fn key_hash_is_sha256_hex() {
        assert_eq!(
            ApiKey::new("abc").hash().0,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn git_sha_and_version_display() {
        let sha = GitSha::parse("1A2B3C4D5E6F7081920A1B2C3D4E5F6071829304").expect("valid");
        assert_eq!(sha.short(), "1a2b3c4");
        assert!(GitSha::parse("1a2b3c4").is_err());
        assert_eq!(ReleaseVersion(3).to_string(), "v3");
    }

    #[test]
    fn domain_names_are_checked() {
        for (given, kept) in [
            ("www.example.com", "www.example.com"),
            ("Shop.Example.COM.", "shop.example.com"),
            ("a-b.c1.io", "a-b.c1.io"),
        ] {
            assert_eq!(Fqdn::parse(given).expect(given).as_str(), kept);
        }
        for bad in [
            "",
            "localhost",
            "example..com",
            "-a.example.com",
            "a_b.example.com",
            "1.2.3.4",
            "caf\u{e9}.example.com",
            &format!("{}.com", "a".repeat(64)),
        ] {
            assert!(Fqdn::parse(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(
            Fqdn::parse_list(" paas.example.com, ,Git.Example.com.").expect("list"),
            [
                Fqdn::parse("paas.example.com").expect("ok"),
                Fqdn::parse("git.example.com").expect("ok")
            ]
        );
        assert!(Fqdn::parse_list("").expect("empty").is_empty());
        assert!(Fqdn::parse_list("paas.example.com,localhost").is_err());
        let shop = Fqdn::parse("shop.apps.example.com").expect("ok");
        assert!(shop.is_within("apps.example.com"));
        assert!(!shop.is_within("ps.example.com"));
    }
}
