//! Releases: `releases`.

use shared::model::ReleaseStatus;
use shared::wire::ReleaseView;

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
