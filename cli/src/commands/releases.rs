//! Releases: `releases`.

use gigalixir_core::model::{DeployedBy, ReleaseStatus};
use gigalixir_core::wire::ReleaseView;

use super::apps::not_found;
use super::{say, Ctx};

/// What `releases` prints for an app that has none.
const NO_RELEASES: &str = "No releases yet: push with `git push gigalixir main`";

/// `releases`.
pub fn list(ctx: &Ctx, app: Option<String>, json: bool) -> anyhow::Result<()> {
    let name = ctx.app(app)?;
    let auth = ctx.auth()?;
    let releases = ctx
        .client
        .releases(&auth, &name)
        .map_err(not_found(&name))?;
    if json {
        return say(serde_json::to_string_pretty(&releases)?);
    }
    if releases.is_empty() {
        return say(NO_RELEASES);
    }
    say(table(&releases))
}

/// How long `releases:rollback` watches the new release before leaving it to run.
const ROLLBACK_WATCH: std::time::Duration = std::time::Duration::from_secs(180);

/// The release a rollback goes to by default: the newest one older than the running
/// release that ever ran.
fn default_target(releases: &[ReleaseView]) -> Option<u32> {
    let running = releases
        .iter()
        .find(|r| r.status == ReleaseStatus::Deployed)?;
    releases
        .iter()
        .filter(|r| r.version < running.version)
        .find(|r| {
            matches!(
                r.status,
                ReleaseStatus::Superseded | ReleaseStatus::RolledBack
            )
        })
        .map(|r| r.version)
}

/// `releases:rollback`.
pub fn rollback(ctx: &Ctx, app: Option<String>, version: Option<String>) -> anyhow::Result<()> {
    let name = ctx.app(app)?;
    let auth = ctx.auth()?;
    let target = match version {
        Some(v) => v.trim_start_matches('v').parse::<u32>().map_err(|_| {
            anyhow::anyhow!(
                "`{v}` is not a release version: give a number like 3 (see `gigalixir releases`)"
            )
        })?,
        None => {
            let releases = ctx
                .client
                .releases(&auth, &name)
                .map_err(not_found(&name))?;
            default_target(&releases).ok_or_else(|| {
                anyhow::anyhow!(
                    "{name} has no earlier release to roll back to (see `gigalixir releases`)"
                )
            })?
        }
    };
    let created = ctx
        .client
        .rollback(&auth, &name, target)
        .map_err(|e| match e {
            // The app exists (it was resolved above): the 404 is about the release.
            crate::client::ApiError::NotFound(msg) if msg.contains("release") => {
                anyhow::anyhow!("{name} has no release v{target}: `gigalixir releases` lists them")
            }
            e => not_found(&name)(e),
        })?;
    say(format!(
        "Rolling back {name} to v{target}: release v{} has v{target}'s slug and config.",
        created.version
    ))?;
    let deadline = std::time::Instant::now() + ROLLBACK_WATCH;
    while std::time::Instant::now() < deadline {
        let releases = ctx
            .client
            .releases(&auth, &name)
            .map_err(not_found(&name))?;
        let mine = releases.iter().find(|r| r.version == created.version);
        match mine.map(|r| r.status) {
            Some(ReleaseStatus::Deployed) => {
                return say(format!(
                    "v{} is live{}",
                    created.version,
                    how(mine.and_then(|r| r.deployed_by))
                ))
            }
            Some(ReleaseStatus::Failed) => anyhow::bail!(
                "v{} failed to start; the previous release keeps serving (see `gigalixir logs`)",
                created.version
            ),
            _ => std::thread::sleep(std::time::Duration::from_millis(300)),
        }
    }
    say(format!(
        "v{} is still deploying; `gigalixir releases` shows when it is live.",
        created.version
    ))
}

/// How a rollback went live, for people.
fn how(by: Option<DeployedBy>) -> &'static str {
    match by {
        Some(DeployedBy::HotDowngrade) => ": back in place (a hot downgrade), no restart.",
        Some(DeployedBy::HotUpgrade) => ": loaded into the running replicas, no restart.",
        Some(DeployedBy::NewReplicas) => ": new replicas (the app restarted).",
        Some(DeployedBy::Kept) => {
            ": the running replicas carry on (they already run its slug and config), no restart."
        }
        None => ".",
    }
}

fn status(status: ReleaseStatus) -> &'static str {
    match status {
        ReleaseStatus::Pending => "pending",
        ReleaseStatus::Deployed => "deployed",
        ReleaseStatus::Failed => "failed",
        ReleaseStatus::RolledBack => "rolled_back",
        ReleaseStatus::Superseded => "superseded",
    }
}

/// The releases in the order given (the platform sends them newest first).
fn table(releases: &[ReleaseView]) -> String {
    let rows: Vec<[String; 5]> = releases
        .iter()
        .map(|r| {
            [
                format!("v{}", r.version),
                status(r.status).to_owned(),
                r.sha
                    .as_deref()
                    .map(|s| s.chars().take(7).collect())
                    .unwrap_or_else(|| "-".to_owned()),
                r.created_at.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
                r.summary.clone(),
            ]
        })
        .collect();
    super::table(["VERSION", "STATUS", "SHA", "CREATED", "SUMMARY"], &rows)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn release(
        version: u32,
        status: ReleaseStatus,
        sha: Option<&str>,
        summary: &str,
    ) -> ReleaseView {
        ReleaseView {
            version,
            created_at: Utc
                .with_ymd_and_hms(2024, 5, 1, 9, 3, version)
                .single()
                .expect("a date"),
            summary: summary.into(),
            sha: sha.map(str::to_owned),
            status,
            rollback_id: version.checked_sub(1).filter(|v| *v > 0),
            slug_size: 1234,
            deployed_by: None,
        }
    }

    #[test]
    fn table_lists_releases_in_the_order_given_with_short_shas() {
        let t = table(&[
            release(12, ReleaseStatus::RolledBack, None, "Set FOO"),
            release(
                2,
                ReleaseStatus::Deployed,
                Some("1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d"),
                "Deploy 1a2b3c4",
            ),
            release(1, ReleaseStatus::Superseded, Some("ffee"), "Deploy ffee"),
        ]);
        assert_eq!(
            t,
            "VERSION  STATUS       SHA      CREATED                  SUMMARY\n\
             v12      rolled_back  -        2024-05-01 09:03:12 UTC  Set FOO\n\
             v2       deployed     1a2b3c4  2024-05-01 09:03:02 UTC  Deploy 1a2b3c4\n\
             v1       superseded   ffee     2024-05-01 09:03:01 UTC  Deploy ffee"
        );
    }

    #[test]
    fn an_empty_summary_leaves_no_trailing_spaces() {
        let t = table(&[release(1, ReleaseStatus::Pending, None, "")]);
        assert_eq!(
            t,
            "VERSION  STATUS   SHA  CREATED                  SUMMARY\n\
             v1       pending  -    2024-05-01 09:03:01 UTC"
        );
    }

    #[test]
    fn statuses_read_as_the_api_spells_them() {
        for s in [
            ReleaseStatus::Pending,
            ReleaseStatus::Deployed,
            ReleaseStatus::Failed,
            ReleaseStatus::RolledBack,
            ReleaseStatus::Superseded,
        ] {
            assert_eq!(
                serde_json::to_value(s).expect("json"),
                serde_json::Value::from(status(s))
            );
        }
    }

    #[test]
    fn the_empty_message_says_how_to_deploy() {
        assert!(NO_RELEASES.contains("git push gigalixir main"));
    }
}
