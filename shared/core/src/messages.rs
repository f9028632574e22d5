//! What travels on the bus: topics, the envelope, and the pipeline events.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{AppName, BuildId, Invalid, ReleaseVersion};
use crate::model::SlugRef;

/// A topic name: 3–255 characters of letters, digits and `-_.`, starting with a letter, as
/// Pub/Sub allows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Topic(Cow<'static, str>);

impl Topic {
    /// A push was accepted and its source archived.
    pub const BUILD_REQUESTED: Topic = Topic(Cow::Borrowed("build-requested"));
    /// A builder produced a slug.
    pub const SLUG_BUILT: Topic = Topic(Cow::Borrowed("slug-built"));
    /// The slug is in the slug store.
    pub const SLUG_UPLOADED: Topic = Topic(Cow::Borrowed("slug-uploaded"));
    /// A release without a push was asked for (a config change, a rollback).
    pub const RELEASE_REQUESTED: Topic = Topic(Cow::Borrowed("release-requested"));
    /// A release was recorded.
    pub const RELEASE_CREATED: Topic = Topic(Cow::Borrowed("release-created"));
    /// A release runs and is healthy.
    pub const DEPLOY_SUCCEEDED: Topic = Topic(Cow::Borrowed("deploy-succeeded"));
    /// A release could not be run; the app went back to its last healthy release.
    pub const DEPLOY_FAILED: Topic = Topic(Cow::Borrowed("deploy-failed"));
    /// An app was destroyed: its runtime resources go too.
    pub const APP_DESTROYED: Topic = Topic(Cow::Borrowed("app-destroyed"));
    /// An app's replica count changed.
    pub const APP_SCALED: Topic = Topic(Cow::Borrowed("app-scaled"));
    /// A rolling restart of an app was asked for.
    pub const RESTART_REQUESTED: Topic = Topic(Cow::Borrowed("restart-requested"));
    /// An account's SSH keys changed.
    pub const SSH_KEYS_CHANGED: Topic = Topic(Cow::Borrowed("ssh-keys-changed"));
    /// An app's custom domains changed.
    pub const DOMAINS_CHANGED: Topic = Topic(Cow::Borrowed("domains-changed"));
    /// Messages no subscriber could handle after the allowed attempts.
    pub const DEAD_LETTER: Topic = Topic(Cow::Borrowed("dead-letter"));

    /// Checks a topic name.
    pub fn parse(name: &str) -> Result<Self, Invalid> {
        let ok = (3..=255).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_alphabetic())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if ok {
            Ok(Self(Cow::Owned(name.to_owned())))
        } else {
            Err(Invalid(format!("`{name}` is not a valid topic name")))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Topic {
    type Error = Invalid;
    fn try_from(s: String) -> Result<Self, Invalid> {
        Topic::parse(&s)
    }
}

impl From<Topic> for String {
    fn from(t: Topic) -> String {
        t.0.into_owned()
    }
}

/// Attribute naming the event type of a pipeline message.
pub const ATTR_EVENT: &str = "event";
/// Attribute carrying the app name, for filtering and logs.
pub const ATTR_APP: &str = "app";
/// Attribute carrying the build id.
pub const ATTR_BUILD: &str = "build";
/// Attribute carrying the trace id across steps.
pub const ATTR_TRACE: &str = "trace_id";

/// A message as published: opaque data plus string attributes, the Pub/Sub model.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Envelope {
    /// The payload; JSON of an [`Event`] for pipeline topics.
    #[serde(with = "b64")]
    pub data: Vec<u8>,
    /// Small string metadata (event type, app, build, trace id).
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

impl Envelope {
    /// Wraps a pipeline event, with its identifying attributes.
    pub fn event(event: &Event, trace_id: Option<&str>) -> Self {
        let mut attributes = BTreeMap::new();
        attributes.insert(ATTR_EVENT.to_owned(), event.kind().to_owned());
        if let Some(app) = event.app() {
            attributes.insert(ATTR_APP.to_owned(), app.to_string());
        }
        if let Some(build) = event.build() {
            attributes.insert(ATTR_BUILD.to_owned(), build.to_string());
        }
        if let Some(trace) = trace_id {
            attributes.insert(ATTR_TRACE.to_owned(), trace.to_owned());
        }
        Self {
            // Serialising these plain structs cannot fail.
            data: serde_json::to_vec(event).unwrap_or_default(),
            attributes,
        }
    }

    /// Reads the pipeline event in the data.
    pub fn decode_event(&self) -> Result<Event, serde_json::Error> {
        serde_json::from_slice(&self.data)
    }
}

/// A message handed to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Id the bus gave the message at publish; the same on every redelivery.
    pub message_id: String,
    /// What was published.
    pub envelope: Envelope,
    /// 1 on the first delivery, then 2, 3, …
    pub attempt: u32,
    /// The subscription delivering it.
    pub subscription: String,
    /// When it was published.
    pub publish_time: DateTime<Utc>,
}

/// A release asked for without a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseRequest {
    /// The release's idempotency key: the same request delivered twice makes one release.
    pub key: String,
    /// One line for people: "Set FOO", "Rollback to v3".
    pub summary: String,
    /// What the release runs.
    pub kind: ReleaseKind,
}

/// What a requested release runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ReleaseKind {
    /// The app's config as it is when the release is made, with the slug of its newest
    /// release that did not fail (the one that runs, or is about to).
    Config,
    /// The slug of an earlier release, with the app's config as it is when the release is
    /// made (the rollback set it to that release's config; a later change stays).
    Rollback {
        /// That release.
        to: ReleaseVersion,
    },
}

/// The pipeline's events, one topic each (see [`Event::topic`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Event {
    /// A push was accepted; its source archive waits in the blob store.
    BuildRequested {
        /// The app.
        app: AppName,
        /// The build.
        build: BuildId,
    },
    /// The builder holds the build's slug ([`BuildOutput`](crate::ports::builder::BuildOutput)).
    SlugBuilt {
        /// The app.
        app: AppName,
        /// The build.
        build: BuildId,
    },
    /// The slug is stored and verified.
    SlugUploaded {
        /// The app.
        app: AppName,
        /// The build.
        build: BuildId,
        /// Where the slug lies.
        slug: SlugRef,
    },
    /// A new release of what runs was asked for without a push; the release step numbers
    /// it, as it numbers pushes' releases.
    ReleaseRequested {
        /// The app.
        app: AppName,
        /// What to release, and the key that makes it happen once.
        request: ReleaseRequest,
    },
    /// A release was recorded and should be deployed.
    ReleaseCreated {
        /// The app.
        app: AppName,
        /// The build it came from, if a push.
        build: Option<BuildId>,
        /// Its version.
        version: ReleaseVersion,
    },
    /// The release runs and is healthy.
    DeploySucceeded {
        /// The app.
        app: AppName,
        /// The build it came from, if a push.
        build: Option<BuildId>,
        /// Its version.
        version: ReleaseVersion,
    },
    /// The release failed; the app runs its last healthy release.
    DeployFailed {
        /// The app.
        app: AppName,
        /// The build it came from, if a push.
        build: Option<BuildId>,
        /// Its version.
        version: ReleaseVersion,
        /// What went wrong, for people.
        reason: String,
    },
    /// The app and its records are gone; whatever runs it must stop.
    AppDestroyed {
        /// The app.
        app: AppName,
    },
    /// The app's desired replicas changed (see the app record).
    AppScaled {
        /// The app.
        app: AppName,
    },
    /// Restart the app's replicas, one at a time.
    RestartRequested {
        /// The app.
        app: AppName,
    },
    /// The account's SSH keys changed: every replica of its apps (owned or shared) must
    /// admit the new set. With `app`, only that app's people changed (access given, taken
    /// away, an owner changed): only its replicas are synced.
    SshKeysChanged {
        /// The account.
        user: crate::domain::UserId,
        /// The one app whose people changed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        app: Option<AppName>,
    },
    /// The app's routes changed (its custom domains, maintenance mode or canary; or a
    /// canary of it deployed for the first time): the runtime's ingress must follow.
    DomainsChanged {
        /// The app.
        app: AppName,
    },
}

impl Event {
    /// The topic this event is published on.
    pub fn topic(&self) -> Topic {
        match self {
            Event::BuildRequested { .. } => Topic::BUILD_REQUESTED,
            Event::SlugBuilt { .. } => Topic::SLUG_BUILT,
            Event::SlugUploaded { .. } => Topic::SLUG_UPLOADED,
            Event::ReleaseRequested { .. } => Topic::RELEASE_REQUESTED,
            Event::ReleaseCreated { .. } => Topic::RELEASE_CREATED,
            Event::DeploySucceeded { .. } => Topic::DEPLOY_SUCCEEDED,
            Event::DeployFailed { .. } => Topic::DEPLOY_FAILED,
            Event::AppDestroyed { .. } => Topic::APP_DESTROYED,
            Event::AppScaled { .. } => Topic::APP_SCALED,
            Event::RestartRequested { .. } => Topic::RESTART_REQUESTED,
            Event::SshKeysChanged { .. } => Topic::SSH_KEYS_CHANGED,
            Event::DomainsChanged { .. } => Topic::DOMAINS_CHANGED,
        }
    }

    /// The event's type name, as in its JSON `type`.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::BuildRequested { .. } => "build-requested",
            Event::SlugBuilt { .. } => "slug-built",
            Event::SlugUploaded { .. } => "slug-uploaded",
            Event::ReleaseRequested { .. } => "release-requested",
            Event::ReleaseCreated { .. } => "release-created",
            Event::DeploySucceeded { .. } => "deploy-succeeded",
            Event::DeployFailed { .. } => "deploy-failed",
            Event::AppDestroyed { .. } => "app-destroyed",
            Event::AppScaled { .. } => "app-scaled",
            Event::RestartRequested { .. } => "restart-requested",
            Event::SshKeysChanged { .. } => "ssh-keys-changed",
            Event::DomainsChanged { .. } => "domains-changed",
        }
    }

    /// The app concerned, if the event concerns one.
    pub fn app(&self) -> Option<&AppName> {
        Some(match self {
            Event::BuildRequested { app, .. }
            | Event::SlugBuilt { app, .. }
            | Event::SlugUploaded { app, .. }
            | Event::ReleaseRequested { app, .. }
            | Event::ReleaseCreated { app, .. }
            | Event::DeploySucceeded { app, .. }
            | Event::DeployFailed { app, .. }
            | Event::AppDestroyed { app }
            | Event::AppScaled { app }
            | Event::RestartRequested { app }
            | Event::DomainsChanged { app } => app,
            Event::SshKeysChanged { .. } => return None,
        })
    }

    /// The build concerned, if any.
    pub fn build(&self) -> Option<&BuildId> {
        match self {
            Event::BuildRequested { build, .. }
            | Event::SlugBuilt { build, .. }
            | Event::SlugUploaded { build, .. } => Some(build),
            Event::ReleaseCreated { build, .. }
            | Event::DeploySucceeded { build, .. }
            | Event::DeployFailed { build, .. } => build.as_ref(),
            Event::ReleaseRequested { .. }
            | Event::AppDestroyed { .. }
            | Event::AppScaled { .. }
            | Event::RestartRequested { .. }
            | Event::SshKeysChanged { .. }
            | Event::DomainsChanged { .. } => None,
        }
    }
}

mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(data))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app() -> AppName {
        AppName::parse("my-app").expect("valid")
    }

    #[test]
    fn event_envelope_round_trip() {
        let event = Event::BuildRequested {
            app: app(),
            build: BuildId("b-1".into()),
        };
        let env = Envelope::event(&event, Some("trace-9"));
        assert_eq!(env.attributes[ATTR_EVENT], "build-requested");
        assert_eq!(env.attributes[ATTR_APP], "my-app");
        assert_eq!(env.attributes[ATTR_BUILD], "b-1");
        assert_eq!(env.attributes[ATTR_TRACE], "trace-9");
        assert_eq!(env.decode_event().expect("decodes"), event);
        let json = serde_json::to_value(&env).expect("json");
        let back: Envelope = serde_json::from_value(json).expect("back");
        assert_eq!(back, env);
    }

    #[test]
    fn event_json_is_tagged() {
        let event = Event::ReleaseCreated {
            app: app(),
            build: None,
            version: ReleaseVersion(4),
        };
        let json = serde_json::to_value(&event).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"type": "release-created", "app": "my-app", "build": null, "version": 4})
        );
        assert_eq!(event.topic(), Topic::RELEASE_CREATED);
    }

    #[test]
    fn topic_names_are_checked() {
        assert!(Topic::parse("slug-built").is_ok());
        assert!(Topic::parse("9lives").is_err());
        assert!(Topic::parse("a b").is_err());
        assert!(serde_json::from_str::<Topic>("\"x\"").is_err());
    }
}
