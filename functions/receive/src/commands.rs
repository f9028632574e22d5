//! The ref-update commands at the head of a `git-receive-pack` request body.
//!
//! A push that waited for another push of the same app was prepared against refs that have
//! moved since. Its commands say "update master from OLD", and git would refuse them as
//! stale. [`rebase`] rewrites OLD to the ref's current value in place (object ids have a
//! fixed length, so the pkt-line framing is unchanged); the pre-receive step then accepts
//! the update only if the pushed commit descends from the current one.

use std::collections::BTreeMap;

/// Where the commands are, and what they said, before any rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Byte offset of the old object id in the body.
    pub old_at: usize,
    /// Old object id as sent.
    pub old: String,
    /// New object id.
    pub new: String,
    /// Full ref name.
    pub name: String,
}

fn is_oid(s: &[u8]) -> bool {
    s.len() == 40 && s.iter().all(|b| b.is_ascii_hexdigit())
}

/// Reads the command pkt-lines up to the first flush packet.
pub fn parse(body: &[u8]) -> Vec<Command> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 4 <= body.len() {
        let Some(len) = std::str::from_utf8(&body[at..at + 4])
            .ok()
            .and_then(|h| usize::from_str_radix(h, 16).ok())
        else {
            break;
        };
        if len == 0 || len < 4 || at + len > body.len() {
            break;
        }
        let line = &body[at + 4..at + len];
        let line = line.split(|b| *b == 0).next().unwrap_or(line);
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        if line.len() > 82
            && is_oid(&line[..40])
            && line[40] == b' '
            && is_oid(&line[41..81])
            && line[81] == b' '
        {
            out.push(Command {
                old_at: at + 4,
                old: String::from_utf8_lossy(&line[..40]).into_owned(),
                new: String::from_utf8_lossy(&line[41..81]).into_owned(),
                name: String::from_utf8_lossy(&line[82..]).into_owned(),
            });
        }
        at += len;
    }
    out
}

/// Points every command whose old id differs from the ref's `current` value at the current
/// value. Returns the refs rewritten, with the old id the client sent.
pub fn rebase(body: &mut [u8], current: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let zero = "0".repeat(40);
    let mut rewritten = BTreeMap::new();
    for cmd in parse(body) {
        let now = current
            .get(&cmd.name)
            .cloned()
            .unwrap_or_else(|| zero.clone());
        if now != cmd.old {
            body[cmd.old_at..cmd.old_at + 40].copy_from_slice(now.as_bytes());
            rewritten.insert(cmd.name, cmd.old);
        }
    }
    rewritten
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(s: &str) -> String {
        format!("{:04x}{s}", s.len() + 4)
    }

    #[test]
    fn commands_parse_and_rebase_in_place() {
        let (a, b, c) = ("a".repeat(40), "b".repeat(40), "c".repeat(40));
        let body = format!(
            "{}{}0000PACK...",
            pkt(&format!(
                "{a} {b} refs/heads/master\0report-status side-band-64k"
            )),
            pkt(&format!("{} {c} refs/heads/feature\n", "0".repeat(40)))
        );
        let mut bytes = body.clone().into_bytes();
        let cmds = parse(&bytes);
        assert_eq!(cmds.len(), 2);
        assert_eq!(cmds[0].name, "refs/heads/master");
        assert_eq!(cmds[1].name, "refs/heads/feature");
        let current: BTreeMap<String, String> =
            [("refs/heads/master".to_owned(), c.clone())].into();
        let rewritten = rebase(&mut bytes, &current);
        assert_eq!(
            rewritten,
            [("refs/heads/master".to_owned(), a.clone())].into()
        );
        let after = String::from_utf8(bytes).expect("utf8");
        assert_eq!(after.len(), body.len());
        assert!(after.contains(&format!("{c} {b} refs/heads/master")));
        assert!(after.ends_with("0000PACK..."));
    }
}
