//! Hex registry resources as the repository specification defines them: a resource is
//! gzip(`Signed { payload, signature }`), the payload a `Package` (or `Names`, `Versions`)
//! protobuf message, the signature RSA PKCS#1 v1.5 over SHA-512 of the payload bytes.
//!
//! The cache passes upstream bytes through unchanged (so the Hex client in a build verifies
//! them with the key it trusts); this module only reads them, to check the signature, the
//! record's origin and the checksums it lists.

use std::io::Read;

use prost::Message;
use rsa::pkcs1v15::{Signature, VerifyingKey};
use rsa::signature::Verifier;
use rsa::RsaPublicKey;
use sha2::Sha512;

/// The public key hex.pm signs its registry with, as published on hex.pm's public keys page
/// (the same key Hex clients have built in).
pub const HEXPM_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEApqREcFDt5vV21JVe2QNB
Edvzk6w36aNFhVGWN5toNJRjRJ6m4hIuG4KaXtDWVLjnvct6MYMfqhC79HAGwyF+
IqR6Q6a5bbFSsImgBJwz1oadoVKD6ZNetAuCIK84cjMrEFRkELtEIPNHblCzUkkM
3rS9+DPlnfG8hBvGi6tvQIuZmXGCxF/73hU0/MyGhbmEjIKRtG6b0sJYKelRLTPW
XgK7s5pESgiwf2YC/2MGDXjAJfpfCd0RpLdvd4eRiXtVlE9qO9bND94E7PgQ/xqZ
J1i2xWFndWa6nfFnRxZmCStCOZWYYPlaxr+FZceFbpMwzTNs4g3d4tLNUcbKAIH4
0wIDAQAB
-----END PUBLIC KEY-----
";

/// Largest registry resource accepted, compressed and uncompressed.
pub const MAX_RESOURCE_BYTES: u64 = 32 << 20;

/// `Signed`: a payload and its signature.
#[derive(Clone, PartialEq, Message)]
pub struct Signed {
    /// The encoded inner message.
    #[prost(bytes = "vec", required, tag = "1")]
    pub payload: Vec<u8>,
    /// RSA PKCS#1 v1.5 / SHA-512 of `payload`.
    #[prost(bytes = "vec", optional, tag = "2")]
    pub signature: Option<Vec<u8>>,
}

/// `Package`: every release of one package.
#[derive(Clone, PartialEq, Message)]
pub struct Package {
    /// Its releases, oldest first.
    #[prost(message, repeated, tag = "1")]
    pub releases: Vec<Release>,
    /// The package's name.
    #[prost(string, required, tag = "2")]
    pub name: String,
    /// The repository it belongs to (`hexpm`).
    #[prost(string, required, tag = "3")]
    pub repository: String,
}

/// `Release`: one version of a package.
#[derive(Clone, PartialEq, Message)]
pub struct Release {
    /// The version.
    #[prost(string, required, tag = "1")]
    pub version: String,
    /// sha256 over the tarball's VERSION, metadata.config and contents.tar.gz.
    #[prost(bytes = "vec", required, tag = "2")]
    pub inner_checksum: Vec<u8>,
    /// Its dependencies.
    #[prost(message, repeated, tag = "3")]
    pub dependencies: Vec<Dependency>,
    /// sha256 of the whole tarball.
    #[prost(bytes = "vec", optional, tag = "5")]
    pub outer_checksum: Option<Vec<u8>>,
}

/// `Dependency`: one requirement of a release.
#[derive(Clone, PartialEq, Message)]
pub struct Dependency {
    /// The package required.
    #[prost(string, required, tag = "1")]
    pub package: String,
    /// Its version requirement.
    #[prost(string, required, tag = "2")]
    pub requirement: String,
    /// Whether it is optional.
    #[prost(bool, optional, tag = "3")]
    pub optional: Option<bool>,
}

/// `Names`/`Versions`: only their repository is read.
#[derive(Clone, PartialEq, Message)]
pub struct Listing {
    /// The repository.
    #[prost(string, required, tag = "2")]
    pub repository: String,
}

/// Why a registry resource is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not gzip, not protobuf, too large.
    #[error("the record is malformed ({0})")]
    Malformed(String),
    /// The signature does not verify with the upstream's key.
    #[error("the record's signature does not verify with the upstream's public key")]
    BadSignature,
    /// The record is for another package or repository than asked for.
    #[error("the record is for {found}, not {wanted}")]
    WrongOrigin {
        /// What was asked for.
        wanted: String,
        /// What the record says.
        found: String,
    },
}

/// Parses a PEM public key, SubjectPublicKeyInfo or PKCS#1.
pub fn public_key(pem: &str) -> Result<RsaPublicKey, String> {
    use rsa::pkcs1::DecodeRsaPublicKey;
    use rsa::pkcs8::DecodePublicKey;
    let pem = pem.trim();
    RsaPublicKey::from_public_key_pem(pem)
        .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
        .map_err(|e| format!("not an RSA public key in PEM form ({e})"))
}

fn gunzip(body: &[u8]) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .take(MAX_RESOURCE_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| RecordError::Malformed(format!("not gzip: {e}")))?;
    if out.len() as u64 > MAX_RESOURCE_BYTES {
        return Err(RecordError::Malformed("larger than 32 MB".into()));
    }
    Ok(out)
}

/// The verified payload of a resource body (gzip of `Signed`).
pub fn verified_payload(body: &[u8], key: &RsaPublicKey) -> Result<Vec<u8>, RecordError> {
    let signed = Signed::decode(gunzip(body)?.as_slice())
        .map_err(|e| RecordError::Malformed(e.to_string()))?;
    let signature = signed.signature.ok_or(RecordError::BadSignature)?;
    let signature =
        Signature::try_from(signature.as_slice()).map_err(|_| RecordError::BadSignature)?;
    VerifyingKey::<Sha512>::new(key.clone())
        .verify(&signed.payload, &signature)
        .map_err(|_| RecordError::BadSignature)?;
    Ok(signed.payload)
}

/// Reads a `/packages/NAME` body: signed by `key`, of package `name` in `repository`.
pub fn package(
    body: &[u8],
    key: &RsaPublicKey,
    name: &str,
    repository: &str,
) -> Result<Package, RecordError> {
    let payload = verified_payload(body, key)?;
    let package =
        Package::decode(payload.as_slice()).map_err(|e| RecordError::Malformed(e.to_string()))?;
    if package.name != name || package.repository != repository {
        return Err(RecordError::WrongOrigin {
            wanted: format!("{repository}/{name}"),
            found: format!("{}/{}", package.repository, package.name),
        });
    }
    Ok(package)
}

/// Reads a `/names` or `/versions` body: signed by `key`, of `repository`.
pub fn listing(body: &[u8], key: &RsaPublicKey, repository: &str) -> Result<(), RecordError> {
    let payload = verified_payload(body, key)?;
    let listing =
        Listing::decode(payload.as_slice()).map_err(|e| RecordError::Malformed(e.to_string()))?;
    if listing.repository != repository {
        return Err(RecordError::WrongOrigin {
            wanted: repository.to_owned(),
            found: listing.repository,
        });
    }
    Ok(())
}

/// Whether `name` is a Hex package name: lowercase letters, digits and underscores,
/// starting with a letter, at most 100 characters.
pub fn valid_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Whether `version` looks like a SemVer version (digits, letters, `.`, `-`, `+`).
pub fn valid_version(version: &str) -> bool {
    (1..=100).contains(&version.len())
        && version.starts_with(|c: char| c.is_ascii_digit())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1v15::SigningKey;
    use rsa::signature::{SignatureEncoding, Signer};
    use std::io::Write;

    fn keys() -> (rsa::RsaPrivateKey, RsaPublicKey) {
        let mut rng = rand::thread_rng();
        let private = rsa::RsaPrivateKey::new(&mut rng, 1024).expect("ok");
        let public = private.to_public_key();
        (private, public)
    }

    fn resource(private: &rsa::RsaPrivateKey, payload: Vec<u8>) -> Vec<u8> {
        let signature = SigningKey::<Sha512>::new(private.clone())
            .sign(&payload)
            .to_vec();
        let signed = Signed {
            payload,
            signature: Some(signature),
        }
        .encode_to_vec();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&signed).expect("ok");
        gz.finish().expect("ok")
    }

    fn package_of(name: &str, repo: &str) -> Vec<u8> {
        Package {
            releases: vec![Release {
                version: "1.0.0".into(),
                inner_checksum: vec![1; 32],
                dependencies: vec![],
                outer_checksum: Some(vec![2; 32]),
            }],
            name: name.into(),
            repository: repo.into(),
        }
        .encode_to_vec()
    }

    #[test]
    fn signed_records_verify_and_others_do_not() {
        let (private, public) = keys();
        let body = resource(&private, package_of("jason", "hexpm"));
        let p = package(&body, &public, "jason", "hexpm").expect("ok");
        assert_eq!(
            p.releases[0].outer_checksum.as_deref(),
            Some(&[2u8; 32][..])
        );
        // another key
        let (_, other) = keys();
        assert_eq!(
            package(&body, &other, "jason", "hexpm"),
            Err(RecordError::BadSignature)
        );
        // a record of another package, validly signed
        assert!(matches!(
            package(&body, &public, "plug", "hexpm"),
            Err(RecordError::WrongOrigin { .. })
        ));
        assert!(matches!(
            package(b"junk", &public, "jason", "hexpm"),
            Err(RecordError::Malformed(_))
        ));
        // hex.pm's key parses
        public_key(HEXPM_PUBLIC_KEY).expect("ok");
    }

    #[test]
    fn names_and_versions() {
        assert!(valid_name("telemetry_poller"));
        for bad in ["", "Jason", "a/b", "..", "a\0", "1abc", "a-b"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(valid_version("1.0.0-rc.1+build"));
        for bad in ["", "../1", "1.0/0", "v1"] {
            assert!(!valid_version(bad), "{bad:?}");
        }
    }
}
