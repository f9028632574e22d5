//! SSH keys: list, add, remove (`account:ssh_keys`, `account:ssh_keys:add`,
//! `account:ssh_keys:remove`). Each change announces `ssh-keys-changed`; the deploy
//! function then gives every replica of the account's apps the account's current keys.
//!
//! A key is checked the way the replicas' SSH server will read it: one line
//! `TYPE BASE64 [comment]`, a type OpenSSH's server admits, base64 data that decodes to a
//! well-formed key of that same type. It is stored normalised (no options, one line), since
//! the runtime writes the stored lines into the replicas' `authorized_keys` as they are.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use base64::alphabet;
use base64::engine::general_purpose::{
    GeneralPurpose, GeneralPurposeConfig, STANDARD, STANDARD_NO_PAD,
};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use chrono::Utc;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use shared::domain::UserId;
use shared::messages::{Envelope, Event};
use shared::model::SshKey;
use shared::wire::{Data, NewSshKey, SshKeyRemove, SshKeyView};
use shared::PortError;

use crate::apps::with_lock;
use crate::auth::AuthUser;
use crate::error::{ApiError, ApiJson};
use crate::ApiState;

/// Most SSH keys one account may have.
pub const MAX_SSH_KEYS: usize = 50;
/// Longest key line accepted (a 16384-bit RSA key takes about 2.8 kB).
pub const MAX_KEY_LINE_BYTES: usize = 8 * 1024;
/// Smallest RSA key OpenSSH's server admits (its `RequiredRSASize` default).
pub const MIN_RSA_BITS: usize = 1024;
/// Largest RSA key OpenSSH handles.
pub const MAX_RSA_BITS: usize = 16 * 1024;

/// What the data of each admitted key type holds after its type string.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// A 32-byte public key.
    Ed25519,
    /// An RSA exponent and modulus.
    Rsa,
    /// A curve name and a point on it, with coordinates of this many bytes.
    Ecdsa {
        curve: &'static str,
        coordinate: usize,
    },
}

/// A key type the replicas' SSH server admits, and whether it is a FIDO (security key) one,
/// whose data ends with the application string.
struct KeyType {
    name: &'static str,
    shape: Shape,
    security_key: bool,
}

const KEY_TYPES: &[KeyType] = &[
    KeyType {
        name: "ssh-ed25519",
        shape: Shape::Ed25519,
        security_key: false,
    },
    KeyType {
        name: "ssh-rsa",
        shape: Shape::Rsa,
        security_key: false,
    },
    KeyType {
        name: "ecdsa-sha2-nistp256",
        shape: Shape::Ecdsa {
            curve: "nistp256",
            coordinate: 32,
        },
        security_key: false,
    },
    KeyType {
        name: "ecdsa-sha2-nistp384",
        shape: Shape::Ecdsa {
            curve: "nistp384",
            coordinate: 48,
        },
        security_key: false,
    },
    KeyType {
        name: "ecdsa-sha2-nistp521",
        shape: Shape::Ecdsa {
            curve: "nistp521",
            coordinate: 66,
        },
        security_key: false,
    },
    KeyType {
        name: "sk-ssh-ed25519@openssh.com",
        shape: Shape::Ed25519,
        security_key: true,
    },
    KeyType {
        name: "sk-ecdsa-sha2-nistp256@openssh.com",
        shape: Shape::Ecdsa {
            curve: "nistp256",
            coordinate: 32,
        },
        security_key: true,
    },
];

const TYPE_LIST: &str = "ssh-ed25519, ssh-rsa, ecdsa-sha2-nistp256/384/521, sk-ssh-ed25519@openssh.com or sk-ecdsa-sha2-nistp256@openssh.com";

/// Base64 as OpenSSH writes it, read with or without its padding.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// A checked SSH public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// Its type: `ssh-ed25519`, `ssh-rsa`, ….
    pub kind: &'static str,
    /// The decoded key data (what the fingerprint hashes).
    pub blob: Vec<u8>,
    /// The comment after the data, trimmed; may be empty.
    pub comment: String,
}

impl PublicKey {
    /// Reads one OpenSSH public key line (the contents of a `.pub` file). The error says,
    /// for people, what is wrong and what to give instead; it starts with "SSH key".
    pub fn parse(text: &str) -> Result<Self, String> {
        let line = text.trim();
        if line.is_empty() {
            return Err("SSH key is empty: give the contents of your public key file, e.g. ~/.ssh/id_ed25519.pub".into());
        }
        if line.len() > MAX_KEY_LINE_BYTES {
            return Err(format!(
                "SSH key is longer than {MAX_KEY_LINE_BYTES} bytes: give one public key line"
            ));
        }
        if line.contains("PRIVATE KEY") {
            return Err("SSH key is a private key: never share it; give the public key instead (the contents of the .pub file)".into());
        }
        if line.starts_with("---- BEGIN SSH2 PUBLIC KEY") {
            return Err("SSH key is in the RFC 4716 format: convert it with `ssh-keygen -i -f FILE` and give the line it prints".into());
        }
        let lines = line.lines().count();
        if lines > 1 || line.contains('\r') {
            return Err(format!(
                "SSH key has {} lines: give one key, on one line (the contents of one .pub file)",
                lines.max(2)
            ));
        }
        let (kind, rest) = split_field(line);
        let (data, comment) = split_field(rest);
        let comment = comment.trim();
        let Some(key_type) = KEY_TYPES.iter().find(|t| t.name == kind) else {
            return Err(unknown_type(kind, line));
        };
        if data.is_empty() {
            return Err(format!(
                "SSH key has no key data after `{kind}`: copy the whole line of the .pub file"
            ));
        }
        let blob = BASE64_LENIENT.decode(data).map_err(|_| {
            format!("SSH key data after `{kind}` is not valid base64: copy the whole line of the .pub file unchanged")
        })?;
        check_blob(key_type, &blob)?;
        if let Some(c) = comment.chars().find(|c| c.is_control() && *c != '\t') {
            return Err(format!(
                "SSH key comment has a control character ({}): remove it",
                c.escape_debug()
            ));
        }
        Ok(Self {
            kind: key_type.name,
            blob,
            comment: comment.to_owned(),
        })
    }

    /// The line to store and give to the SSH servers: `TYPE BASE64 [comment]`.
    pub fn line(&self) -> String {
        let mut line = format!("{} {}", self.kind, STANDARD.encode(&self.blob));
        if !self.comment.is_empty() {
            line.push(' ');
            line.push_str(&self.comment);
        }
        line
    }

    /// The SHA-256 fingerprint, as `ssh-keygen -l` prints it: `SHA256:` and the unpadded
    /// base64 of the SHA-256 of the key data.
    pub fn fingerprint(&self) -> String {
        format!(
            "SHA256:{}",
            STANDARD_NO_PAD.encode(Sha256::digest(&self.blob))
        )
    }
}

/// The first whitespace-separated field and the rest (leading whitespace removed).
fn split_field(s: &str) -> (&str, &str) {
    let s = s.trim_start();
    match s.find(|c: char| c.is_ascii_whitespace()) {
        Some(i) => (&s[..i], s[i..].trim_start()),
        None => (s, ""),
    }
}

fn unknown_type(kind: &str, line: &str) -> String {
    let later_type = line
        .split_ascii_whitespace()
        .skip(1)
        .find(|w| KEY_TYPES.iter().any(|t| t.name == *w));
    if let Some(t) = later_type {
        return format!(
            "SSH key has something before its type `{t}` (`{}`): give the key alone, starting with its type; options and markers are not accepted",
            shorten(kind)
        );
    }
    if kind == "ssh-dss" {
        return "SSH key is a DSA key (ssh-dss), which the SSH server refuses: make an ed25519 key with `ssh-keygen -t ed25519`".into();
    }
    if kind.contains("-cert-v01@openssh.com") {
        return format!("SSH key is a certificate (`{kind}`): give the plain public key instead");
    }
    if kind.starts_with("AAAA") {
        return format!(
            "SSH key starts with its data but has no type: give the whole line, starting with its type ({TYPE_LIST})"
        );
    }
    format!(
        "SSH key has an unknown type `{}`: expected {TYPE_LIST} (the first word of a .pub file)",
        shorten(kind)
    )
}

/// At most 40 characters of something the user gave, for a message.
fn shorten(s: &str) -> String {
    let mut out: String = s.chars().take(40).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out.escape_debug().to_string()
}

/// Reads the length-prefixed strings of SSH key data (RFC 4251).
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn string(&mut self) -> Option<&'a [u8]> {
        let (len, rest) = self.0.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
        if rest.len() < len {
            return None;
        }
        let (s, rest) = rest.split_at(len);
        self.0 = rest;
        Some(s)
    }

    fn is_done(&self) -> bool {
        self.0.is_empty()
    }
}

const DAMAGED: &str = "is damaged or cut short: copy the whole line of the .pub file unchanged";

/// Checks that `blob` is a well-formed key of `key_type`.
fn check_blob(key_type: &KeyType, blob: &[u8]) -> Result<(), String> {
    let kind = key_type.name;
    let damaged = || format!("SSH key data of `{kind}` {DAMAGED}");
    let mut r = Reader(blob);
    let embedded = r.string().ok_or_else(damaged)?;
    if embedded != kind.as_bytes() {
        let embedded = String::from_utf8_lossy(embedded);
        return Err(
            if KEY_TYPES.iter().any(|t| t.name == embedded) || embedded.starts_with("ssh-") {
                format!(
                    "SSH key says `{kind}` but its data is a `{}` key: copy the line of the .pub file unchanged",
                    shorten(&embedded)
                )
            } else {
                format!("SSH key data does not hold a `{kind}` key: copy the line of the .pub file unchanged")
            },
        );
    }
    match key_type.shape {
        Shape::Ed25519 => {
            let pk = r.string().ok_or_else(damaged)?;
            if pk.len() != 32 {
                return Err(damaged());
            }
        }
        Shape::Rsa => {
            let e = r.string().ok_or_else(damaged)?;
            let n = r.string().ok_or_else(damaged)?;
            if !positive_mpint(e) || !positive_mpint(n) {
                return Err(damaged());
            }
            let bits = mpint_bits(n);
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "SSH key is a {bits}-bit RSA key, which the SSH server refuses (at least {MIN_RSA_BITS} bits): make an ed25519 key with `ssh-keygen -t ed25519`"
                ));
            }
            if bits > MAX_RSA_BITS {
                return Err(format!(
                    "SSH key is a {bits}-bit RSA key, larger than OpenSSH accepts ({MAX_RSA_BITS} bits)"
                ));
            }
        }
        Shape::Ecdsa { curve, coordinate } => {
            let named = r.string().ok_or_else(damaged)?;
            if named != curve.as_bytes() {
                return Err(damaged());
            }
            let point = r.string().ok_or_else(damaged)?;
            let well_formed = match point.first() {
                Some(4) => point.len() == 1 + 2 * coordinate,
                Some(2 | 3) => point.len() == 1 + coordinate,
                _ => false,
            };
            if !well_formed {
                return Err(damaged());
            }
        }
    }
    if key_type.security_key {
        r.string().ok_or_else(damaged)?;
    }
    if !r.is_done() {
        return Err(damaged());
    }
    Ok(())
}

/// Whether an SSH mpint is a positive number in its shortest form.
fn positive_mpint(m: &[u8]) -> bool {
    match m {
        [] => false,
        [first, ..] if first & 0x80 != 0 => false,
        [0, second, ..] => second & 0x80 != 0,
        [0] => false,
        _ => true,
    }
}

/// The bits of a positive mpint.
fn mpint_bits(m: &[u8]) -> usize {
    let m = match m {
        [0, rest @ ..] => rest,
        m => m,
    };
    match m.first() {
        Some(first) => (m.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    }
}

fn view(key: &SshKey) -> SshKeyView {
    SshKeyView {
        id: key.id.clone(),
        key: key.key.clone(),
        fingerprint: key.fingerprint.clone(),
        created_at: key.created_at,
    }
}

/// Announces that the account's keys changed, so that its apps' replicas get them.
async fn announce(state: &ApiState, user: &UserId) -> Result<(), ApiError> {
    let event = Event::SshKeysChanged {
        user: user.clone(),
        app: None,
    };
    state
        .bus
        .publish(&event.topic(), &Envelope::event(&event, None))
        .await?;
    Ok(())
}

/// `GET /api/ssh_keys`: the caller's keys, oldest first.
pub async fn list(
    State(state): State<ApiState>,
    AuthUser(user): AuthUser,
) -> Result<Json<Data<Vec<SshKeyView>>>, ApiError> {
    let keys = state.store.ssh_keys(&user.id).await?;
    Ok(Json(Data {
        data: keys.iter().map(view).collect(),
    }))
}

fn already_added(existing: &SshKey) -> ApiError {
    ApiError::invalid(
        "ssh_key",
        format!(
            "SSH key {} is already added to your account (id {})",
            existing.fingerprint, existing.id
        ),
    )
}

/// `POST /api/ssh_keys` `{"ssh_key": "ssh-ed25519 AAAA… comment"}`: adds a key to the
/// caller's account and announces `ssh-keys-changed`. 201 with the key; 422 for a key that
/// is invalid, already added, or beyond the [`MAX_SSH_KEYS`] of an account.
pub async fn add(
    State(state): State<ApiState>,
    AuthUser(user): AuthUser,
    ApiJson(body): ApiJson<NewSshKey>,
) -> Result<(StatusCode, Json<Data<SshKeyView>>), ApiError> {
    let key = PublicKey::parse(&body.ssh_key).map_err(|m| ApiError::invalid("ssh_key", m))?;
    let fingerprint = key.fingerprint();
    // One change of the account's keys at a time, so that the limit holds.
    let record = with_lock(
        &state,
        &format!("ssh-keys:{}", user.id.0),
        || "Another change to your SSH keys is in progress; try again shortly.".to_owned(),
        || async {
            let existing = state.store.ssh_keys(&user.id).await?;
            if let Some(same) = existing.iter().find(|k| k.fingerprint == fingerprint) {
                return Err(already_added(same));
            }
            if existing.len() >= MAX_SSH_KEYS {
                return Err(ApiError::invalid(
                    "ssh_key",
                    format!(
                        "SSH key not added: your account has {} keys, the most it may have is {MAX_SSH_KEYS}; remove one first (`gigalixir account:ssh_keys` lists them)",
                        existing.len()
                    ),
                ));
            }
            let record = SshKey {
                id: uuid::Uuid::new_v4().to_string(),
                user: user.id.clone(),
                key: key.line(),
                fingerprint: fingerprint.clone(),
                created_at: Utc::now(),
            };
            match state.store.add_ssh_key(&record).await {
                Ok(()) => Ok(record),
                Err(PortError::AlreadyExists) => Err(already_added(&record)),
                Err(err) => Err(err.into()),
            }
        },
    )
    .await?;
    announce(&state, &user.id).await?;
    tracing::info!(user = %user.id, fingerprint = %record.fingerprint, "ssh key added");
    Ok((
        StatusCode::CREATED,
        Json(Data {
            data: view(&record),
        }),
    ))
}

/// `DELETE /api/ssh_keys` `{"id": "…"}`: removes one of the caller's keys and announces
/// `ssh-keys-changed`. 404 if the caller has no such key.
pub async fn remove(
    State(state): State<ApiState>,
    AuthUser(user): AuthUser,
    ApiJson(body): ApiJson<SshKeyRemove>,
) -> Result<Json<Data<Value>>, ApiError> {
    let id = body.id.trim();
    match state.store.remove_ssh_key(&user.id, id).await {
        Ok(()) => {}
        Err(PortError::NotFound) => {
            return Err(ApiError::not_found(format!(
                "You have no SSH key with id `{}`.",
                shorten(id)
            )))
        }
        Err(err) => return Err(err.into()),
    }
    announce(&state, &user.id).await?;
    tracing::info!(user = %user.id, key = %id, "ssh key removed");
    Ok(Json(Data { data: json!({}) }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real key, as `ssh-keygen -t ed25519 -C ada@laptop` wrote it, and its fingerprint
    /// as `ssh-keygen -lf` printed it.
    const ED25519: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIIrloD7x9w/v15IUUUg24mSXyzhSvsi63NaloVoYCMTw ada@laptop";
    const ED25519_FP: &str = "SHA256:Pz+qqGLw4LqaK/z3a+ImNfyT7m2bF86CqoFO3kqTbQM";

    fn blob(parts: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in parts {
            out.extend_from_slice(&u32::try_from(p.len()).unwrap_or(0).to_be_bytes());
            out.extend_from_slice(p);
        }
        out
    }

    fn line(kind: &str, parts: &[&[u8]]) -> String {
        format!("{kind} {}", STANDARD.encode(blob(parts)))
    }

    fn err(text: &str) -> String {
        match PublicKey::parse(text) {
            Ok(k) => panic!("accepted {text:?}: {k:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn a_real_key_parses_with_its_fingerprint() {
        let key = PublicKey::parse(&format!("  {ED25519}\n")).expect("valid");
        assert_eq!(key.kind, "ssh-ed25519");
        assert_eq!(key.comment, "ada@laptop");
        assert_eq!(key.line(), ED25519);
        assert_eq!(key.fingerprint(), ED25519_FP);
        // Tabs, runs of spaces and a comment with spaces: normalised, comment kept.
        let spaced = ED25519
            .replacen(' ', "\t  ", 2)
            .replace("ada@laptop", "Ada's  laptop ");
        let key = PublicKey::parse(&spaced).expect("valid");
        assert_eq!(key.comment, "Ada's  laptop");
        assert_eq!(key.fingerprint(), ED25519_FP);
        // Without a comment, and without base64 padding.
        let bare =
            PublicKey::parse(&line("ssh-ed25519", &[b"ssh-ed25519", &[7; 32]])).expect("valid");
        assert_eq!(bare.comment, "");
        assert!(!bare.line().ends_with(' '));
        let unpadded = bare.line().trim_end_matches('=').to_owned();
        assert_eq!(PublicKey::parse(&unpadded).expect("valid"), bare);
    }

    /// Generates keys of every type the machine's `ssh-keygen` makes without hardware, and
    /// compares our fingerprints with what `ssh-keygen -lf` prints.
    #[test]
    fn fingerprints_match_ssh_keygen() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (t, bits) in [
            ("ed25519", None),
            ("rsa", Some("3072")),
            ("ecdsa", Some("256")),
            ("ecdsa", Some("384")),
            ("ecdsa", Some("521")),
        ] {
            let file = dir.path().join(format!("id_{t}{}", bits.unwrap_or("")));
            let mut cmd = std::process::Command::new("ssh-keygen");
            cmd.args(["-q", "-t", t, "-N", "", "-C", "test key", "-f"])
                .arg(&file);
            if let Some(b) = bits {
                cmd.args(["-b", b]);
            }
            let out = cmd
                .output()
                .expect("ssh-keygen runs (install openssh-client: these tests compare with it)");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let pub_file = file.with_extension("pub");
            let text = std::fs::read_to_string(&pub_file).expect("pub");
            let key = PublicKey::parse(&text).unwrap_or_else(|e| panic!("{t}: {e}"));
            assert_eq!(key.line(), text.trim(), "{t} is stored as written");
            let out = std::process::Command::new("ssh-keygen")
                .arg("-lf")
                .arg(&pub_file)
                .output()
                .expect("ssh-keygen -lf");
            let printed = String::from_utf8_lossy(&out.stdout);
            // `3072 SHA256:… test key (RSA)`
            let theirs = printed.split_whitespace().nth(1).expect("a fingerprint");
            assert_eq!(key.fingerprint(), theirs, "{t} {bits:?}");
        }
    }

    #[test]
    fn security_keys_and_every_admitted_type_parse() {
        let p256 = [&[4u8][..], &[1; 64]].concat();
        for (kind, parts) in [
            (
                "sk-ssh-ed25519@openssh.com",
                vec![&b"sk-ssh-ed25519@openssh.com"[..], &[1; 32], b"ssh:"],
            ),
            (
                "sk-ecdsa-sha2-nistp256@openssh.com",
                vec![
                    &b"sk-ecdsa-sha2-nistp256@openssh.com"[..],
                    b"nistp256",
                    &p256,
                    b"ssh:",
                ],
            ),
            (
                "ecdsa-sha2-nistp256",
                vec![&b"ecdsa-sha2-nistp256"[..], b"nistp256", &p256],
            ),
        ] {
            let key =
                PublicKey::parse(&line(kind, &parts)).unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(key.kind, kind);
        }
    }

    #[test]
    fn invalid_keys_are_refused_with_a_reason() {
        let ed = |data: &[u8]| line("ssh-ed25519", &[b"ssh-ed25519", data]);
        let rsa = |e: &[u8], n: &[u8]| line("ssh-rsa", &[b"ssh-rsa", e, n]);
        let n_1024: Vec<u8> = [&[0xc1u8][..], &[7; 127]].concat();
        let n_1024 = [&[0u8][..], &n_1024].concat();
        let n_768: Vec<u8> = [&[0u8, 0xc1][..], &[7; 95]].concat();
        assert!(PublicKey::parse(&rsa(&[1, 0, 1], &n_1024)).is_ok());
        for (text, needle) in [
            (String::new(), "is empty"),
            ("   \n ".into(), "is empty"),
            (format!("{ED25519}\n{ED25519}"), "has 2 lines"),
            (
                "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEA\n-----END OPENSSH PRIVATE KEY-----".into(),
                "is a private key",
            ),
            ("---- BEGIN SSH2 PUBLIC KEY ----".into(), "RFC 4716"),
            ("ssh-foo AAAA".into(), "unknown type `ssh-foo`"),
            ("hello".into(), "unknown type `hello`"),
            ("ssh-dss AAAAB3NzaC1kc3MAAACBAP".into(), "DSA"),
            (
                "ssh-ed25519-cert-v01@openssh.com AAAA".into(),
                "is a certificate",
            ),
            (format!("command=\"ls\" {ED25519}"), "something before its type"),
            (format!("restrict {ED25519}"), "something before its type"),
            ("AAAAC3NzaC1lZDI1NTE5AAAAIIrloD7x9w/v15IUUUg24mSXyzhSvsi63NaloVoYCMTw".into(), "has no type"),
            ("ssh-ed25519".into(), "no key data"),
            ("ssh-ed25519 not*base64!".into(), "not valid base64"),
            (
                line("ssh-ed25519", &[b"xyz", &[1; 32]]),
                "does not hold a `ssh-ed25519` key",
            ),
            (
                line("ssh-ed25519", &[b"ssh-rsa", &[1, 0, 1], &n_1024]),
                "says `ssh-ed25519` but its data is a `ssh-rsa` key",
            ),
            (ed(&[1; 31]), "damaged"),
            (ed(&[1; 33]), "damaged"),
            (
                format!(
                    "ssh-ed25519 {} trailing byte",
                    STANDARD.encode([&blob(&[b"ssh-ed25519", &[1; 32]])[..], &[0]].concat())
                ),
                "damaged",
            ),
            (format!("ssh-ed25519 {}", STANDARD.encode([0, 0, 0])), "damaged"),
            (rsa(&[1, 0, 1], &n_768), "768-bit RSA key"),
            (rsa(&[], &n_1024), "damaged"),
            (rsa(&[1, 0, 1], &[0x80; 128]), "damaged"),
            (
                line("ecdsa-sha2-nistp384", &[b"ecdsa-sha2-nistp384", b"nistp256", &[4; 65]]),
                "damaged",
            ),
            (
                line("ecdsa-sha2-nistp256", &[b"ecdsa-sha2-nistp256", b"nistp256", &[4; 64]]),
                "damaged",
            ),
            (
                line("sk-ssh-ed25519@openssh.com", &[b"sk-ssh-ed25519@openssh.com", &[1; 32]]),
                "damaged",
            ),
            (format!("{ED25519} bell\u{7}"), "control character"),
            ("x".repeat(MAX_KEY_LINE_BYTES + 1), "longer than"),
        ] {
            let e = err(&text);
            assert!(e.contains(needle), "{text:?}: {e}");
            assert!(e.starts_with("SSH key"), "{e}");
        }
    }

    #[test]
    fn mpints_are_read_like_openssh() {
        assert!(positive_mpint(&[1, 0, 1]));
        assert!(positive_mpint(&[0, 0x80]));
        assert!(!positive_mpint(&[0x80]));
        assert!(!positive_mpint(&[0, 1]));
        assert!(!positive_mpint(&[]));
        assert_eq!(mpint_bits(&[1, 0, 1]), 17);
        assert_eq!(mpint_bits(&[0, 0x80, 0]), 16);
    }
}
