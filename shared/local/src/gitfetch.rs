//! Fetching from git repositories named by a push (submodules, git dependencies) or a
//! webhook, as the platform: every URL is checked before git sees it, and git runs with
//! nothing of the platform's.
//!
//! The rules, each named in the refusal:
//! - only `https://` and `http://` URLs (no `file:`, `ssh:`, `git:`, `ext::`, local paths,
//!   `user@host:path` addresses, or anything that starts with `-`);
//! - the host must resolve to public addresses only: no loopback (unless the operator
//!   allows it, for tests), no link-local (169.254/16: the cloud metadata server), private,
//!   shared, unspecified, multicast or documentation ranges; git then connects to exactly
//!   the address that was checked (`http.curloptResolve`), so a name cannot change its
//!   answer in between;
//! - no redirects; only the http and https transports (`protocol.allow`), also for
//!   anything git would fetch on its own;
//! - an empty environment: no HOME, netrc, credential helpers, system or global config, no
//!   prompts;
//! - a time limit and a size cap (no file git writes may exceed it, nor the whole fetch).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

/// The limits of a fetch, and what the operator allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GitPolicy {
    /// Allow hosts that resolve to loopback addresses (for tests with a local server).
    pub allow_loopback: bool,
    /// Longest a fetch may take.
    pub timeout: Duration,
    /// Largest a fetch (the repository it writes) may grow.
    pub max_bytes: u64,
}

impl Default for GitPolicy {
    /// Public hosts only, 2 minutes, 512 MiB.
    fn default() -> Self {
        Self {
            allow_loopback: false,
            timeout: Duration::from_secs(120),
            max_bytes: 512 << 20,
        }
    }
}

/// A URL that passed the rules, with the address git will connect to.
#[derive(Debug, Clone)]
pub struct Remote {
    url: Url,
    host: String,
    port: u16,
    addr: IpAddr,
}

impl Remote {
    /// Checks `raw` against the rules; `what` names it in refusals (e.g. "submodule lib/x").
    pub async fn check(raw: &str, policy: &GitPolicy) -> Result<Remote, String> {
        let shown = shown(raw);
        let refuse = |rule: &str| format!("{shown} was refused: {rule}");
        let raw = raw.trim();
        if raw.starts_with('-') {
            return Err(refuse(
                "it looks like a command-line option (it starts with `-`)",
            ));
        }
        if raw.chars().any(|c| c.is_control() || c == ' ') {
            return Err(refuse("it contains spaces or control characters"));
        }
        let url = match Url::parse(raw) {
            Ok(url) => url,
            Err(_) if raw.starts_with('/') || raw.starts_with('.') || raw.starts_with('~') => {
                return Err(refuse(
                    "local paths are not fetched; only https:// and http:// URLs",
                ))
            }
            Err(_) if raw.contains(':') && raw.contains('@') => return Err(refuse(
                "SSH addresses (user@host:path) are not fetched; only https:// and http:// URLs",
            )),
            Err(_) => {
                return Err(refuse(
                    "it is not a URL; only https:// and http:// URLs are fetched",
                ))
            }
        };
        if !matches!(url.scheme(), "https" | "http") {
            return Err(refuse(&format!(
                "the scheme `{}:` is not allowed; only https:// and http:// URLs are fetched",
                url.scheme()
            )));
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err(refuse("it has no host")),
        };
        let port = url.port_or_known_default().unwrap_or(443);
        let lookup = format!("{}:{port}", host_for_lookup(&host));
        let addrs: Vec<IpAddr> =
            match tokio::time::timeout(Duration::from_secs(10), tokio::net::lookup_host(lookup))
                .await
            {
                Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
                Ok(Err(_)) | Err(_) => {
                    return Err(refuse(&format!("the host name {host} does not resolve")))
                }
            };
        let Some(first) = addrs.first().copied() else {
            return Err(refuse(&format!("the host name {host} does not resolve")));
        };
        for addr in &addrs {
            if let Some(kind) = forbidden_address(*addr, policy.allow_loopback) {
                let allow = if kind == "a loopback address" {
                    " (an operator can allow loopback with --git-allow-loopback, for tests)"
                } else {
                    ""
                };
                return Err(refuse(&format!(
                    "{host} resolves to {addr}, {kind}; the platform fetches only from public addresses{allow}"
                )));
            }
        }
        Ok(Remote {
            url,
            host,
            port,
            addr: first,
        })
    }

    /// The URL as people see it: without credentials.
    pub fn shown(&self) -> String {
        shown(self.url.as_str())
    }

    /// The URL git is given.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// The address the rules checked: connect there, not to a new lookup's answer.
    pub fn address(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.addr, self.port)
    }

    /// Runs `git ARGS` in `dir` (or with `GIT_DIR`) under the rules: resolution pinned to
    /// the checked address, no redirects, http(s) only, an empty environment, the time
    /// limit and the size cap (`watch` is the directory whose size is capped).
    pub async fn git(
        &self,
        policy: &GitPolicy,
        git_dir: &Path,
        args: &[&str],
        watch: &Path,
    ) -> Result<Vec<u8>, String> {
        let resolve = match self.addr {
            IpAddr::V4(a) => format!("{}:{}:{a}", self.host, self.port),
            IpAddr::V6(a) => format!("{}:{}:[{a}]", self.host, self.port),
        };
        let home = tempfile::Builder::new()
            .prefix("gx-git-home-")
            .tempdir()
            .map_err(|e| format!("could not make a scratch directory: {e}"))?;
        let mut cmd = tokio::process::Command::new("prlimit");
        cmd.arg(format!("--fsize={}", policy.max_bytes))
            .arg("git")
            .args(["-c", &format!("http.curloptResolve={resolve}")])
            .args(["-c", "http.followRedirects=false"])
            .args(["-c", "protocol.allow=never"])
            .args(["-c", "protocol.https.allow=always"])
            .args(["-c", "protocol.http.allow=always"])
            .args(["-c", "credential.helper="])
            .args(["-c", "core.askPass="])
            .args([
                "-c",
                "http.lowSpeedLimit=1000",
                "-c",
                "http.lowSpeedTime=30",
            ])
            .args(args)
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("HOME", home.path())
            .env("GIT_DIR", git_dir)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_PROTOCOL_FROM_USER", "0")
            .env("LANG", "C")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|e| format!("could not run git: {e}"))?;
        let limit = policy.max_bytes;
        let watched = watch.to_path_buf();
        let over = async move {
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                let dir = watched.clone();
                let size = tokio::task::spawn_blocking(move || dir_size(&dir))
                    .await
                    .unwrap_or(0);
                if size > limit {
                    return;
                }
            }
        };
        let output = tokio::select! {
            out = child.wait_with_output() => out.map_err(|e| format!("git failed: {e}"))?,
            _ = tokio::time::sleep(policy.timeout) => {
                return Err(format!("{} did not finish within {} s (the time limit of a fetch)", self.shown(), policy.timeout.as_secs()));
            }
            _ = over => {
                return Err(format!("{} is larger than {} MB (the size cap of a fetch)", self.shown(), policy.max_bytes >> 20));
            }
        };
        if output.status.success() {
            return Ok(output.stdout);
        }
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            if output.status.signal() == Some(25) {
                return Err(format!(
                    "{} is larger than {} MB (the size cap of a fetch)",
                    self.shown(),
                    policy.max_bytes >> 20
                ));
            }
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(tidy(&stderr, self))
    }

    /// Fetches `commit` into the bare or non-bare repository at `git_dir` (made if
    /// missing): by id where the server allows it, else `hint` (a ref such as
    /// `refs/heads/main`), else every branch and tag; then insists the commit is there.
    pub async fn fetch_commit(
        &self,
        policy: &GitPolicy,
        git_dir: &Path,
        commit: &str,
        hint: Option<&str>,
        watch: &Path,
    ) -> Result<(), String> {
        if commit.len() != 40 || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("`{commit}` is not a full commit id"));
        }
        if !git_dir.exists() {
            local_git(&["init", "--bare", "--quiet"], git_dir).await?;
        }
        let url = self.url.as_str().to_owned();
        let by_id = self
            .git(
                policy,
                git_dir,
                &[
                    "fetch",
                    "--quiet",
                    "--no-tags",
                    "--depth=1",
                    "--",
                    &url,
                    commit,
                ],
                watch,
            )
            .await;
        if let Err(why) = by_id {
            if why.contains("time limit") || why.contains("size cap") {
                return Err(why);
            }
            let specs: Vec<String> = match hint {
                Some(r) => vec![format!("+{r}:refs/gx/fetched")],
                None => vec![
                    "+refs/heads/*:refs/gx/heads/*".into(),
                    "+refs/tags/*:refs/gx/tags/*".into(),
                ],
            };
            let mut args = vec!["fetch", "--quiet", "--no-tags", "--", url.as_str()];
            args.extend(specs.iter().map(String::as_str));
            self.git(policy, git_dir, &args, watch).await?;
        }
        local_git(
            &["cat-file", "-e", &format!("{commit}^{{commit}}")],
            git_dir,
        )
        .await
        .map_err(|_| match hint {
            Some(r) => format!("commit {commit} is not on {r} of {}", self.shown()),
            None => format!("{} has no commit {commit}", self.shown()),
        })?;
        Ok(())
    }
}

/// A URL without its credentials, for messages.
pub fn shown(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) if url.has_authority() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            format!("`{url}`")
        }
        _ => format!("`{}`", raw.chars().take(200).collect::<String>()),
    }
}

fn host_for_lookup(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// Why an address is off limits, if it is.
/// The IPv4 address in two 16-bit segments of an IPv6 one.
fn embedded_v4(high: u16, low: u16) -> Ipv4Addr {
    let [a, b] = high.to_be_bytes();
    let [c, d] = low.to_be_bytes();
    Ipv4Addr::new(a, b, c, d)
}

/// Why the platform must not connect to `addr` on a user's behalf (loopback, private,
/// link-local — the cloud metadata server —, reserved…), or `None` for a public address.
/// Loopback is allowed only with `allow_loopback` (tests with a local server).
pub fn forbidden_address(addr: IpAddr, allow_loopback: bool) -> Option<&'static str> {
    let addr = match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    match addr {
        IpAddr::V4(ip) => {
            let o = ip.octets();
            if ip.is_loopback() {
                (!allow_loopback).then_some("a loopback address")
            } else if ip.is_link_local() {
                Some("a link-local address (the cloud metadata server lives there)")
            } else if ip.is_private() {
                Some("a private address")
            } else if o[0] == 100 && (64..128).contains(&o[1]) {
                Some("a shared (carrier-grade NAT) address")
            } else if ip.is_unspecified() || o[0] == 0 {
                Some("an unspecified address")
            } else if ip.is_multicast() || ip.is_broadcast() || o[0] >= 240 {
                Some("a multicast or reserved address")
            } else if ip.is_documentation() || (o[0] == 198 && (18..20).contains(&o[1])) {
                Some("a documentation or benchmarking address")
            } else if o[0] == 192 && o[1] == 0 && o[2] == 0 {
                Some("a protocol-assignment address")
            } else {
                None
            }
        }
        IpAddr::V6(ip) => {
            let seg = ip.segments();
            if ip == Ipv6Addr::LOCALHOST {
                (!allow_loopback).then_some("a loopback address")
            } else if ip.is_unspecified() {
                Some("an unspecified address")
            } else if seg[0] & 0xffc0 == 0xfe80 {
                Some("a link-local address (the cloud metadata server lives there)")
            } else if seg[0] & 0xfe00 == 0xfc00 {
                Some("a private (unique local) address")
            } else if ip.is_multicast() {
                Some("a multicast address")
            } else if seg[0] == 0x2001 && seg[1] == 0x0db8 {
                Some("a documentation address")
            } else if (seg[0] == 0x64 && seg[1] == 0xff9b) || seg[..6] == [0; 6] {
                // NAT64 and the deprecated IPv4-compatible form (::a.b.c.d) embed an IPv4
                // address in their last 32 bits: judge that one.
                forbidden_address(IpAddr::V4(embedded_v4(seg[6], seg[7])), allow_loopback)
            } else if seg[0] == 0x2002 {
                // 6to4 routes to the IPv4 address in bits 16–48.
                forbidden_address(IpAddr::V4(embedded_v4(seg[1], seg[2])), allow_loopback)
            } else if seg[0] == 0x2001 && seg[1] == 0 {
                Some("a Teredo tunnel address")
            } else {
                None
            }
        }
    }
}

/// git's complaint, shortened, with the URL shown without credentials.
fn tidy(stderr: &str, remote: &Remote) -> String {
    let secret_free = stderr.replace(remote.url.as_str(), &remote.shown());
    let line = secret_free
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .find(|l| l.starts_with("fatal:") || l.starts_with("error:"))
        .or_else(|| secret_free.lines().map(str::trim).find(|l| !l.is_empty()))
        .unwrap_or("git failed")
        .to_owned();
    let line = line
        .trim_start_matches("fatal: ")
        .trim_start_matches("error: ");
    if line.contains("Redirect") || line.contains("redirect") {
        return format!(
            "{} answered with a redirect, which is not followed",
            remote.shown()
        );
    }
    format!("fetching {} failed: {line}", remote.shown())
}

/// git on a local repository only (no remote): `cat-file`, `init`, `archive`.
pub async fn local_git(args: &[&str], git_dir: &Path) -> Result<Vec<u8>, String> {
    local_git_in(args, git_dir, None).await
}

/// `git` on the local repository `git_dir` alone, whatever that repository came from: no
/// remote protocol, no hooks, none of the platform's environment, system or global config
/// (its credentials, proxies, `HOME`); arguments follow.
pub fn local_git_command(git_dir: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new("git");
    cmd.args([
        "-c",
        "protocol.allow=never",
        "-c",
        "core.hooksPath=/dev/null",
    ])
    .env_clear()
    .env("PATH", "/usr/local/bin:/usr/bin:/bin")
    .env("GIT_DIR", git_dir)
    .env("GIT_CONFIG_NOSYSTEM", "1")
    .env("GIT_CONFIG_GLOBAL", "/dev/null")
    .env("HOME", "/nonexistent")
    .stdin(std::process::Stdio::null());
    cmd
}

/// [`local_git`] with a work tree (`checkout`), hooks off.
pub async fn local_git_in(
    args: &[&str],
    git_dir: &Path,
    work_tree: Option<&Path>,
) -> Result<Vec<u8>, String> {
    let mut cmd = tokio::process::Command::from(local_git_command(git_dir));
    cmd.args(args);
    if let Some(tree) = work_tree {
        cmd.env("GIT_WORK_TREE", tree);
    }
    let out = cmd
        .output()
        .await
        .map_err(|e| format!("could not run git: {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Bytes under `dir` (files only; symlinks not followed).
pub fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(entry.path()),
                Ok(t) if t.is_file() => total += entry.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn refused(raw: &str, policy: &GitPolicy) -> String {
        Remote::check(raw, policy).await.expect_err(raw)
    }

    #[tokio::test]
    async fn only_public_http_urls_pass() {
        let p = GitPolicy::default();
        assert!(refused("file:///etc", &p)
            .await
            .contains("the scheme `file:` is not allowed"));
        assert!(refused("/tmp/x", &p).await.contains("local paths"));
        assert!(refused("ssh://h/r", &p).await.contains("the scheme `ssh:`"));
        assert!(refused("git@h:r", &p).await.contains("SSH addresses"));
        assert!(refused("ext::sh -c touch% /tmp/pwned", &p)
            .await
            .contains("spaces"));
        assert!(refused("ext::sh", &p).await.contains("the scheme `ext:`"));
        assert!(refused("--upload-pack=touch /tmp/pwned", &p)
            .await
            .contains("command-line option"));
        assert!(refused("git://example.org/r", &p)
            .await
            .contains("the scheme `git:`"));
        assert!(refused("http://127.0.0.1:9/r", &p)
            .await
            .contains("loopback"));
        assert!(refused("http://[::1]/r", &p).await.contains("loopback"));
        let meta = refused("http://169.254.169.254/", &p).await;
        assert!(meta.contains("link-local"), "{meta}");
        assert!(refused("http://10.0.0.1/r", &p).await.contains("private"));
        assert!(refused("http://[::ffff:192.168.1.1]/r", &p)
            .await
            .contains("private"));
        assert!(refused("http://[fd00::1]/r", &p)
            .await
            .contains("unique local"));
        assert!(refused("http://100.64.0.1/r", &p).await.contains("shared"));
        assert!(refused("http://0.0.0.0/r", &p)
            .await
            .contains("unspecified"));
        // loopback only when the operator allows it; link-local never
        let tests = GitPolicy {
            allow_loopback: true,
            ..GitPolicy::default()
        };
        assert!(Remote::check("http://127.0.0.1:9/r.git", &tests)
            .await
            .is_ok());
        assert!(refused("http://169.254.169.254/", &tests)
            .await
            .contains("link-local"));
        // a public literal address passes the rules (nothing is fetched here)
        assert!(Remote::check("https://192.0.43.10/r.git", &p).await.is_ok());
    }

    #[test]
    fn ipv6_forms_that_embed_a_forbidden_ipv4_address_are_forbidden() {
        let policy = GitPolicy::default();
        for (addr, why) in [
            ("::169.254.169.254", "link-local"),
            ("::ffff:127.0.0.1", "loopback"),
            ("2002:a9fe:a9fe::1", "link-local"),
            ("2002:0a00:0001::1", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
        ] {
            let found = forbidden_address(addr.parse().expect("address"), policy.allow_loopback);
            assert!(found.is_some_and(|f| f.contains(why)), "{addr}: {found:?}");
        }
        assert_eq!(
            forbidden_address(
                "2002:0808:0808::1".parse().expect("ip"),
                policy.allow_loopback
            ),
            None
        );
        assert_eq!(
            forbidden_address(
                "2606:4700::1111".parse().expect("ip"),
                policy.allow_loopback
            ),
            None
        );
    }

    #[test]
    fn credentials_are_never_shown() {
        assert_eq!(
            shown("https://user:s3cret@example.org/r.git"),
            "`https://example.org/r.git`"
        );
    }
}
