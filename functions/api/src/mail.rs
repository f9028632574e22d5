//! Mail to account holders (confirmations, password resets): over SMTP when the platform
//! is given a server (`--smtp-url`), else written as `.eml` files into an outbox
//! directory. A message's body holds a one-time token, so neither the body nor the token
//! is ever logged; the log says only that a message went, to whom, and about what.

use std::path::PathBuf;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Where the platform's mail goes.
#[derive(Clone)]
pub struct Mailer {
    from: Mailbox,
    transport: Transport,
}

#[derive(Clone)]
enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(PathBuf),
}

/// Why a mail could not be sent or the mailer not made.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// A bad `--smtp-url` or sender address.
    #[error("{0}")]
    Config(String),
    /// The SMTP server or the outbox refused it.
    #[error("mail could not be sent: {0}")]
    Send(String),
}

impl Mailer {
    /// Mail over SMTP to `smtp_url` (`smtp://host:port`, plain or STARTTLS when the server
    /// offers it with `?tls=required`; `smtps://host:port`, TLS from the first byte; user
    /// and password in the URL's user info), or into `outbox` when there is no URL.
    pub fn new(smtp_url: Option<&str>, outbox: PathBuf, from: &str) -> Result<Self, MailError> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| MailError::Config(format!("the sender address `{from}`: {e}")))?;
        let transport = match smtp_url.filter(|u| !u.is_empty()) {
            Some(url) => {
                let scheme = url.split("://").next().unwrap_or_default();
                if !matches!(scheme, "smtp" | "smtps") {
                    return Err(MailError::Config(format!(
                        "`--smtp-url` is smtp://HOST:PORT or smtps://HOST:PORT, not `{}`",
                        redact_url(url)
                    )));
                }
                Transport::Smtp(
                    AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
                        .map_err(|e| {
                            MailError::Config(format!("`--smtp-url` {}: {e}", redact_url(url)))
                        })?
                        .timeout(Some(std::time::Duration::from_secs(20)))
                        .build(),
                )
            }
            None => Transport::Outbox(outbox),
        };
        Ok(Self { from, transport })
    }

    /// Where mail goes, in words, for the platform's start-up log (no password).
    pub fn describe(&self) -> String {
        match &self.transport {
            Transport::Smtp(_) => "SMTP".into(),
            Transport::Outbox(dir) => format!("the outbox {}", dir.display()),
        }
    }

    /// Sends a plain-text message. `what` names it in the log (`confirmation`, `reset`).
    pub async fn send(
        &self,
        to: &str,
        subject: &str,
        body: String,
        what: &str,
    ) -> Result<(), MailError> {
        let to_box: Mailbox = to
            .parse()
            .map_err(|e| MailError::Send(format!("the address `{to}`: {e}")))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to_box)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| MailError::Send(e.to_string()))?;
        match &self.transport {
            Transport::Smtp(smtp) => {
                smtp.send(message)
                    .await
                    .map_err(|e| MailError::Send(e.to_string()))?;
                tracing::info!(to, what, "mail sent over SMTP");
            }
            Transport::Outbox(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(|e| MailError::Send(format!("{}: {e}", dir.display())))?;
                let id = AsyncFileTransport::<Tokio1Executor>::new(dir)
                    .send(message)
                    .await
                    .map_err(|e| MailError::Send(e.to_string()))?;
                tracing::info!(
                    to,
                    what,
                    file = %dir.join(format!("{id}.eml")).display(),
                    "mail written to the outbox (no SMTP server configured)"
                );
            }
        }
        Ok(())
    }
}

/// `url` without the password of its user info.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("[redacted]"));
            parsed.to_string()
        }
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(not a URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_smtp_urls_are_taken_and_their_passwords_never_shown() {
        let dir = PathBuf::from("/nonexistent");
        let Err(err) = Mailer::new(Some("http://u:hunter2@host:25"), dir.clone(), "a@b.example")
        else {
            panic!("http accepted")
        };
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(err.to_string().contains("smtp://"), "{err}");
        assert!(Mailer::new(Some("smtp://127.0.0.1:2525"), dir.clone(), "a@b.example").is_ok());
        assert!(Mailer::new(None, dir.clone(), "not an address").is_err());
        let outbox = Mailer::new(None, dir, "Platform <noreply@b.example>").expect("outbox");
        assert!(outbox.describe().contains("/nonexistent"));
    }

    #[tokio::test]
    async fn the_outbox_holds_each_message_as_an_eml_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let mailer =
            Mailer::new(None, dir.path().join("outbox"), "noreply@b.example").expect("mailer");
        mailer
            .send("ada@example.com", "Hello", "the body 123".into(), "test")
            .await
            .expect("send");
        let files: Vec<_> = std::fs::read_dir(dir.path().join("outbox"))
            .expect("outbox")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].extension().and_then(|e| e.to_str()), Some("eml"));
        let text = std::fs::read_to_string(&files[0]).expect("read");
        assert!(text.contains("To: ada@example.com"), "{text}");
        assert!(text.contains("the body 123"), "{text}");
    }
}
