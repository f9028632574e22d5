//! Asset tool binaries the stack has no package for (tailwind): the platform fetches them
//! for the build, only from locations the operator allows, keeps them by URL and checksum
//! in the blob store, and hands them to the build where the Hex package looks for them
//! (`_build/tailwind-<target>`, with `-<version>` from tailwind 0.5 on).

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shared::gitfetch::{GitPolicy, Remote};
use shared::mixlock::MixLock;
use shared::ports::Blobs;
use shared::PortError;
use url::Url;

/// Where tailwind's Hex package downloads its binary from.
pub const TAILWIND_URL: &str =
    "https://github.com/tailwindlabs/tailwindcss/releases/download/v{version}/tailwindcss-{target}";
/// The locations allowed by default: tailwind's releases (and the storage GitHub redirects
/// release downloads to).
pub const DEFAULT_ALLOW: &[&str] = &[
    "https://github.com/tailwindlabs/tailwindcss/releases/download/",
    "https://objects.githubusercontent.com/",
    "https://release-assets.githubusercontent.com/",
];
/// Largest tool binary accepted.
const MAX_TOOL_BYTES: u64 = 256 << 20;
/// The build's platform, as the packages name it.
const TARGET: &str = "linux-x64";

/// What the operator allows.
#[derive(Debug, Clone, Default)]
pub struct ToolPolicy {
    /// URL prefixes tools may come from; empty: [`DEFAULT_ALLOW`].
    pub allow: Vec<String>,
    /// `NAME=URL-TEMPLATE` overrides of where a tool comes from (`{version}`, `{target}`).
    pub sources: Vec<String>,
    /// Let tool locations be loopback addresses (tests).
    pub allow_loopback: bool,
}

impl ToolPolicy {
    /// Whether `url` is under one of the allowed prefixes, compared as parsed URLs: the
    /// same scheme, host and port, and a path under the prefix's (so neither
    /// `https://github.com.evil.example/` nor `https://github.com/tailwindlabs/../evil/`
    /// passes for `https://github.com/tailwindlabs/`).
    fn allowed(&self, url: &str) -> bool {
        let Ok(url) = Url::parse(url) else {
            return false;
        };
        let under = |prefix: &str| {
            Url::parse(prefix).is_ok_and(|p| {
                p.scheme() == url.scheme()
                    && p.host() == url.host()
                    && p.port_or_known_default() == url.port_or_known_default()
                    && url.username().is_empty()
                    && url.password().is_none()
                    && url.path().starts_with(p.path())
            })
        };
        if self.allow.is_empty() {
            DEFAULT_ALLOW.iter().any(|p| under(p))
        } else {
            self.allow.iter().any(|p| under(p))
        }
    }

    fn template(&self, tool: &str) -> String {
        self.sources
            .iter()
            .find_map(|s| s.strip_prefix(tool)?.strip_prefix('=').map(str::to_owned))
            .unwrap_or_else(|| TAILWIND_URL.to_owned())
    }
}

/// A tool the build needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Need {
    /// `tailwind`.
    pub tool: String,
    /// The version the app's config asks for.
    pub version: String,
    /// The file name the Hex package runs under `_build/`.
    pub file: String,
}

/// The tools an app's assets need, from its mix.lock and config/config.exs.
pub fn needs(lock: &MixLock, config: Option<&str>) -> Result<Vec<Need>, String> {
    let Some(package) = lock.hex.iter().find(|h| h.package == "tailwind") else {
        return Ok(Vec::new());
    };
    let version = config
        .and_then(|c| tool_version(c, "tailwind"))
        .ok_or_else(|| {
            "the app uses the tailwind package, but config/config.exs sets no `config :tailwind, version: \"X\"`: the platform cannot tell which tailwind to provide".to_owned()
        })?;
    let newer = package
        .version
        .split('.')
        .take(2)
        .map(|p| p.parse::<u32>().unwrap_or(0))
        .collect::<Vec<_>>();
    // tailwind 0.5 keeps one binary per version
    let file = if newer.as_slice() >= [0, 5].as_slice() {
        format!("tailwind-{TARGET}-{version}")
    } else {
        format!("tailwind-{TARGET}")
    };
    Ok(vec![Need {
        tool: "tailwind".into(),
        version,
        file,
    }])
}

/// `config :tool, version: "X"` (the version may follow other options).
fn tool_version(config: &str, tool: &str) -> Option<String> {
    let start = config.find(&format!("config :{tool},"))?;
    let rest = &config[start..];
    // up to the next top-level `config` line
    let end = rest[1..].find("\nconfig ").map_or(rest.len(), |e| e + 1);
    let block = &rest[..end];
    let at = block.find("version:")?;
    let value = block[at + "version:".len()..]
        .trim_start()
        .strip_prefix('"')?;
    let version = &value[..value.find('"')?];
    (!version.is_empty()
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+')))
    .then(|| version.to_owned())
}

#[derive(Serialize, Deserialize)]
struct Kept {
    url: String,
    sha256: String,
    size: u64,
}

/// The binary for `need`: kept (by URL, then by checksum) or fetched from an allowed
/// location. `Err`: why not, and how to provide it, for the pusher.
pub async fn fetch(
    blobs: &dyn Blobs,
    policy: &ToolPolicy,
    need: &Need,
) -> Result<(Bytes, String), String> {
    let url = policy
        .template(&need.tool)
        .replace("{version}", &need.version)
        .replace("{target}", TARGET);
    let how = format!(
        "provide {} {}: its operator can allow its location (--tool-allow), or commit the binary and set `config :{}, path: \"…\"`",
        need.tool, need.version, need.tool
    );
    let index = shared::blob_keys::tool_of_url(&hex::encode(Sha256::digest(url.as_bytes())));
    match blobs.get(&index).await {
        Ok(raw) => {
            if let Ok(kept) = serde_json::from_slice::<Kept>(&raw) {
                match blobs.get(&shared::blob_keys::tool(&kept.sha256)).await {
                    Ok(bin) if hex::encode(Sha256::digest(&bin)) == kept.sha256 => {
                        return Ok((
                            bin,
                            format!(
                                "{} {} (kept, sha256 {})",
                                need.tool,
                                need.version,
                                &kept.sha256[..12]
                            ),
                        ))
                    }
                    Ok(_) | Err(PortError::NotFound) => {}
                    Err(e) => return Err(format!("the tool store failed: {e}")),
                }
            }
        }
        Err(PortError::NotFound) => {}
        Err(e) => return Err(format!("the tool store failed: {e}")),
    }
    let bin = download(policy, &url).await.map_err(|why| {
        format!(
            "{} {} could not be fetched: {why}; {how}",
            need.tool, need.version
        )
    })?;
    let sha = hex::encode(Sha256::digest(&bin));
    let kept = Kept {
        url: url.clone(),
        sha256: sha.clone(),
        size: bin.len() as u64,
    };
    blobs
        .put(&shared::blob_keys::tool(&sha), bin.clone())
        .await
        .map_err(|e| format!("the tool store failed: {e}"))?;
    let raw = serde_json::to_vec(&kept).map_err(|e| e.to_string())?;
    blobs
        .put(&index, Bytes::from(raw))
        .await
        .map_err(|e| format!("the tool store failed: {e}"))?;
    Ok((
        bin,
        format!(
            "{} {} (fetched, sha256 {})",
            need.tool,
            need.version,
            &sha[..12]
        ),
    ))
}

/// GET `url` and the redirects it gives, each location on the allow-list and at a public
/// address (loopback only when allowed), connecting to the address that was checked.
async fn download(policy: &ToolPolicy, url: &str) -> Result<Bytes, String> {
    let rules = GitPolicy {
        allow_loopback: policy.allow_loopback,
        ..GitPolicy::default()
    };
    let mut url = url.to_owned();
    for _ in 0..5 {
        if !policy.allowed(&url) {
            return Err(format!(
                "{} is not on this platform's allow-list of tool locations",
                shared::gitfetch::shown(&url)
            ));
        }
        let remote = Remote::check(&url, &rules).await?;
        let parsed = Url::parse(remote.url()).map_err(|e| e.to_string())?;
        let host = parsed.host_str().unwrap_or_default().to_owned();
        // The connection goes to the address the rules checked, not to a second lookup's.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .resolve(&host, remote.address())
            .timeout(Duration::from_secs(300))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        let mut response = client
            .get(remote.url())
            .send()
            .await
            .map_err(|e| format!("{} did not answer ({e})", remote.shown()))?;
        let status = response.status();
        if status.is_redirection() {
            let location = response
                .headers()
                .get("location")
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| "a redirect without a location".to_owned())?;
            url = parsed
                .join(location)
                .map_err(|e| e.to_string())?
                .to_string();
            continue;
        }
        if !status.is_success() {
            return Err(format!("{} answered {status}", remote.shown()));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
            if (body.len() + chunk.len()) as u64 > MAX_TOOL_BYTES {
                return Err(format!("it is larger than {} MB", MAX_TOOL_BYTES >> 20));
            }
            body.extend_from_slice(&chunk);
        }
        return Ok(Bytes::from(body));
    }
    Err("too many redirects".into())
}

/// `assets/package.json`'s npm packages (dependencies and devDependencies), by name.
pub fn npm_packages(package_json: &str) -> Result<Vec<String>, String> {
    let value: serde_json::Value = serde_json::from_str(package_json)
        .map_err(|e| format!("assets/package.json is not JSON ({e})"))?;
    let mut names = BTreeMap::new();
    for key in ["dependencies", "devDependencies"] {
        if let Some(deps) = value.get(key).and_then(|d| d.as_object()) {
            for name in deps.keys() {
                names.insert(name.clone(), ());
            }
        }
    }
    Ok(names.into_keys().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lock(tailwind: &str) -> MixLock {
        shared::mixlock::parse(&format!(
            r#"%{{"tailwind": {{:hex, :tailwind, "{tailwind}", "ab", [:mix], [], "hexpm", "cd"}}}}"#
        ))
        .expect("ok")
    }

    #[test]
    fn the_tailwind_an_app_needs() {
        let config = "config :esbuild,\n  version: \"0.25.4\"\n\n# Configure tailwind\nconfig :tailwind,\n  version: \"4.1.7\",\n  my_app: [args: ~w(--input=x)]\n";
        let n = needs(&lock("0.3.1"), Some(config)).expect("ok");
        assert_eq!(n[0].version, "4.1.7");
        assert_eq!(n[0].file, "tailwind-linux-x64");
        let n = needs(&lock("0.5.1"), Some(config)).expect("ok");
        assert_eq!(n[0].file, "tailwind-linux-x64-4.1.7");
        assert!(
            needs(&lock("0.3.1"), Some("config :esbuild, version: \"1\""))
                .expect_err("refused")
                .contains("config :tailwind")
        );
        assert!(needs(&MixLock::default(), None).expect("ok").is_empty());
    }

    #[test]
    fn only_allowed_locations() {
        let p = ToolPolicy::default();
        assert!(p.allowed("https://github.com/tailwindlabs/tailwindcss/releases/download/v4.1.7/tailwindcss-linux-x64"));
        assert!(!p.allowed("https://github.com/evil/tailwindcss/releases/download/v1/x"));
        for tricked in [
            "https://github.com.evil.example/tailwindlabs/tailwindcss/releases/download/v1/x",
            "https://github.com/tailwindlabs/tailwindcss/releases/download/../../../../evil/x",
            "https://user@github.com/tailwindlabs/tailwindcss/releases/download/v1/x",
            "http://github.com/tailwindlabs/tailwindcss/releases/download/v1/x",
            "https://github.com:8443/tailwindlabs/tailwindcss/releases/download/v1/x",
            "not a url",
        ] {
            assert!(!p.allowed(tricked), "{tricked}");
        }
        let t = ToolPolicy {
            sources: vec!["tailwind=http://127.0.0.1:9/tw/{version}/{target}".into()],
            ..ToolPolicy::default()
        };
        assert_eq!(
            t.template("tailwind"),
            "http://127.0.0.1:9/tw/{version}/{target}"
        );
    }

    #[test]
    fn npm_packages_are_listed() {
        assert_eq!(
            npm_packages(r#"{"dependencies": {"alpinejs": "3"}, "devDependencies": {"x": "1"}}"#)
                .expect("ok"),
            vec!["alpinejs", "x"]
        );
        assert!(npm_packages("{}").expect("ok").is_empty());
    }
}
