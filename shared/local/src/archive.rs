//! Tar archives: merging and re-rooting them (sources with submodules, build inputs).

use std::io::{Read, Write};

/// A reader that fails once more than its cap has come through it: an untrusted stream
/// (a tar git writes from a pushed commit) is refused while it is read, not after.
pub struct CappedReader<R> {
    inner: R,
    cap: u64,
    read: u64,
    what: String,
}

impl<R: Read> CappedReader<R> {
    /// Reads at most `cap` bytes of `inner`; beyond, fails with "`what` is larger than …".
    pub fn new(inner: R, cap: u64, what: impl Into<String>) -> Self {
        Self {
            inner,
            cap,
            read: 0,
            what: what.into(),
        }
    }

    /// How many bytes came through so far.
    pub fn read_so_far(&self) -> u64 {
        self.read
    }
}

impl<R: Read> Read for CappedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.cap {
            return Err(std::io::Error::new(
                std::io::ErrorKind::FileTooLarge,
                format!(
                    "{} is larger than {}",
                    self.what,
                    crate::ports::blobs::size_text(self.cap)
                ),
            ));
        }
        Ok(n)
    }
}

/// Appends every entry of the tar `input` to `out` under `prefix` (`""` or ending in `/`),
/// optionally owned by `owner` (uid = gid), streaming each file's data through. Links stay
/// links; pax headers are dropped.
pub fn copy_tar<R: Read, W: Write>(
    input: R,
    prefix: &str,
    owner: Option<u64>,
    out: &mut tar::Builder<W>,
) -> std::io::Result<()> {
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let path = path.trim_start_matches("./");
        if path.is_empty() || path.starts_with("pax_global_header") {
            continue;
        }
        let target = format!("{prefix}{path}");
        let mut header = entry.header().clone();
        if let Some(id) = owner {
            header.set_uid(id);
            header.set_gid(id);
        }
        match header.entry_type() {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let link = entry
                    .link_name()?
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                out.append_link(&mut header, &target, link)?;
            }
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader => {}
            _ => out.append_data(&mut header, &target, &mut entry)?,
        }
    }
    Ok(())
}

/// The files among `names` found in the tar `input`, each read only if it is a regular file
/// of at most `max` bytes (a larger one, or a link, directory or device in its place, is
/// reported as `None`): one pass, for looking at a few small files of a source tree.
pub fn small_files<R: Read>(
    input: R,
    names: &[&str],
    max: u64,
) -> std::io::Result<std::collections::BTreeMap<String, Option<Vec<u8>>>> {
    let mut found = std::collections::BTreeMap::new();
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry
            .path()?
            .to_string_lossy()
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_owned();
        if !names.contains(&path.as_str()) {
            continue;
        }
        if entry.header().entry_type() != tar::EntryType::Regular || entry.size() > max {
            found.insert(path, None);
            continue;
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data)?;
        found.insert(path, Some(data));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, body) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, body.as_bytes())
                .expect("append");
        }
        b.into_inner().expect("tar")
    }

    #[test]
    fn small_files_reads_regular_files_only_and_only_small_ones() {
        let mut b = tar::Builder::new(Vec::new());
        for (name, body) in [("mix.exs", "defmodule"), ("big.txt", "0123456789")] {
            let mut h = tar::Header::new_gnu();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            b.append_data(&mut h, name, body.as_bytes())
                .expect("append");
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "mix.lock", "/etc/passwd")
            .expect("link");
        let tar = b.into_inner().expect("tar");
        let found = small_files(
            tar.as_slice(),
            &["mix.exs", "mix.lock", "big.txt", "absent"],
            9,
        )
        .expect("read");
        assert_eq!(found["mix.exs"].as_deref(), Some(&b"defmodule"[..]));
        assert_eq!(found["mix.lock"], None, "a link is not read");
        assert_eq!(found["big.txt"], None, "larger than the cap");
        assert!(!found.contains_key("absent"));
    }

    #[test]
    fn a_capped_reader_fails_past_its_cap_while_reading() {
        let big = tar_of(&[("a.txt", &"x".repeat(4096))]);
        let mut out = tar::Builder::new(Vec::new());
        let err = copy_tar(
            CappedReader::new(big.as_slice(), 2048, "the tree"),
            "",
            None,
            &mut out,
        )
        .expect_err("over the cap");
        assert_eq!(err.to_string(), "the tree is larger than 2 kB");
        let mut capped = CappedReader::new(big.as_slice(), big.len() as u64, "the tree");
        std::io::copy(&mut capped, &mut std::io::sink()).expect("at the cap");
        assert_eq!(capped.read_so_far(), big.len() as u64);
    }

    #[test]
    fn copy_re_roots_and_reowns() {
        let mut out = tar::Builder::new(Vec::new());
        copy_tar(
            tar_of(&[("a.txt", "A"), ("d/b.txt", "B")]).as_slice(),
            "src/",
            Some(1000),
            &mut out,
        )
        .expect("copy");
        let merged = out.into_inner().expect("tar");
        let found = small_files(merged.as_slice(), &["src/d/b.txt", "a.txt"], 10).expect("read");
        assert_eq!(found["src/d/b.txt"].as_deref(), Some(&b"B"[..]));
        assert!(!found.contains_key("a.txt"));
        let mut a = tar::Archive::new(merged.as_slice());
        for e in a.entries().expect("entries") {
            assert_eq!(e.expect("entry").header().uid().expect("uid"), 1000);
        }
    }
}
