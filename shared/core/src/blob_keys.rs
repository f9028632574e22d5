//! Every blob key the pipeline shares, spelled once. The first part of a key is its space
//! (`repos`, `sources`, `slugs`, `caches`, `packages`: one bucket each on Cloud Storage, see
//! [`crate::deployment::BLOB_SPACES`]).

use crate::domain::{AppName, BuildId};

/// The space of slugs.
pub const SLUGS: &str = "slugs/";

/// An app's git repository, kept between pushes (receive).
pub fn repo(app: &AppName) -> String {
    format!("repos/{app}.tar")
}

/// A build's source archive (receive writes it, build reads it).
pub fn source(app: &AppName, build: &BuildId) -> String {
    format!("sources/{app}/{build}.tar")
}

/// Where an app's source archives are.
pub fn sources_of(app: &AppName) -> String {
    format!("sources/{app}/")
}

/// An app's build cache copy, which seeds a builder that has none (upload writes it,
/// build reads it).
pub fn cache(app: &AppName) -> String {
    format!("caches/{app}.tar")
}

/// A slug, by the sha256 of its bytes (upload writes it; the runtimes read it).
pub fn slug(sha256: &str) -> String {
    format!("{SLUGS}{sha256}.tgz")
}

/// A slug's file name within the slug space (`<sha256>.tgz`), as a runtime keeps slugs in
/// a directory of their own; `None` for any other key (lowercase hex digits and `.tgz`
/// only: nothing that could leave that directory or name a marker).
pub fn slug_file(key: &str) -> Option<&str> {
    let name = key.strip_prefix(SLUGS)?;
    let hash = name.strip_suffix(".tgz")?;
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    (!hash.is_empty() && hash.len() <= 64 && hash.bytes().all(hex)).then_some(name)
}

/// The marker saying `app` runs the slug `sha256` (kept while any app does).
pub fn slug_user(sha256: &str, app: &AppName) -> String {
    format!("{SLUGS}users/{sha256}/{app}")
}

/// Where the markers of the apps running the slug `sha256` are.
pub fn slug_users(sha256: &str) -> String {
    format!("{SLUGS}users/{sha256}/")
}

/// The marker saying which slug `app` ran, by sha256 (to find its slugs when it goes).
pub fn app_slug(app: &AppName, sha256: &str) -> String {
    format!("{SLUGS}apps/{app}/{sha256}")
}

/// Where the markers of `app`'s slugs are.
pub fn app_slugs(app: &AppName) -> String {
    format!("{SLUGS}apps/{app}/")
}

/// A Hex registry resource (`names`, `versions`, `packages/NAME`) as the package cache
/// keeps it, verified.
pub fn hex_registry(path: &str) -> String {
    format!("packages/hex/registry/{path}")
}

/// What the package cache knows of a kept registry resource (when it was fetched, its
/// ETag).
pub fn hex_registry_meta(path: &str) -> String {
    format!("packages/hex/meta/{path}.json")
}

/// A Hex tarball, by its outer checksum.
pub fn hex_tarball(sha256: &str) -> String {
    format!("packages/hex/tarballs/{sha256}.tar")
}

/// A build tool (esbuild, tailwind) downloaded once, by the sha256 of its bytes.
pub fn tool(sha256: &str) -> String {
    format!("packages/tools/sha256/{sha256}")
}

/// Which tool binary a download URL gave, by the sha256 of the URL.
pub fn tool_of_url(url_sha256: &str) -> String {
    format!("packages/tools/url/{url_sha256}.json")
}

/// A git dependency's tree at a commit, by the sha256 of its URL, the commit and a digest
/// of its sparse path.
pub fn git_dependency(url_sha256: &str, rev: &str, sparse_digest: &str) -> String {
    format!("packages/gitdeps/{url_sha256}/{rev}-{sparse_digest}.tar")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_spelled_once_and_slug_files_stay_in_their_directory() {
        let app = AppName::parse("shop").expect("name");
        assert_eq!(repo(&app), "repos/shop.tar");
        assert_eq!(cache(&app), "caches/shop.tar");
        assert_eq!(slug("ab"), "slugs/ab.tgz");
        assert_eq!(slug_file(&slug("ab")), Some("ab.tgz"));
        for bad in [
            "slugs/",
            "slugs/../x",
            "slugs/a/b.tgz",
            "slugs/users",
            "slugs/.tgz",
            "slugs/AB.tgz",
            "caches/shop.tar",
            "slugs/..",
        ] {
            assert_eq!(slug_file(bad), None, "{bad}");
        }
        assert!(slug_user("ab", &app).starts_with(&slug_users("ab")));
        assert!(app_slug(&app, "ab").starts_with(&app_slugs(&app)));
    }
}
