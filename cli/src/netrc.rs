//! The netrc file, edited without disturbing it.
//!
//! The CLI keeps one credential in netrc: a `machine` entry for the platform's host with
//! `login EMAIL` and `password API_KEY`. git (through libcurl) and curl read the same entry,
//! so one `gigalixir login` serves both the API and `git push`.
//!
//! A netrc is often shared with other tools and edited by hand, so this module never
//! re-serialises the file. It parses it into items that remember their byte spans, and an
//! edit replaces only the bytes of our own entry (or appends a new one): every other byte —
//! other machines, comments, `macdef` bodies, odd whitespace — is kept exactly. A file it
//! cannot parse is refused rather than rewritten, so a mistake in it is never made worse.
//!
//! The grammar accepted is the common one (curl, Python's `netrc`, inetutils `ftp`):
//! whitespace-separated tokens; `machine NAME`, `default`, then `login`, `password` and
//! `account` each followed by a value; `macdef NAME` followed by lines up to the first empty
//! line; `#` starting a comment (to the end of the line) where a keyword is expected; values
//! may be double-quoted with backslash escapes.

use std::fmt;
use std::io::Write;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context};

/// Why a netrc file could not be parsed. The line is 1-based.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// Line where the problem was found.
    pub line: usize,
    /// What is wrong, for the person who will fix the file.
    pub message: String,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for Malformed {}

/// A keyword that takes a value inside an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// `login`.
    Login,
    /// `password`.
    Password,
    /// `account`.
    Account,
}

/// One `KEY VALUE` pair of an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Which keyword.
    pub key: Key,
    /// The value, unquoted.
    pub value: String,
    /// Bytes of the value token as written (quotes included).
    pub value_span: Range<usize>,
}

/// What an item of the file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemKind {
    /// `machine NAME …`.
    Machine(String),
    /// `default …`.
    Default,
    /// `macdef NAME` and its body.
    Macdef(String),
}

/// One top-level item with the bytes it occupies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// What it is.
    pub kind: ItemKind,
    /// From its first keyword to the end of its last token (or of a macro's body).
    pub span: Range<usize>,
    /// Bytes of the item's name token (`machine`/`macdef` only), else empty at the keyword.
    pub name_span: Range<usize>,
    /// Its `login`/`password`/`account` pairs, in order (empty for a macro).
    pub fields: Vec<Field>,
}

/// A parsed netrc file: the original text and its items.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Netrc {
    text: String,
    items: Vec<Item>,
    /// The last item is a macro that runs to the end of the file without its empty line;
    /// anything appended must first close it, or it would become part of the macro.
    open_macro_at_end: bool,
}

/// The credentials of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `login`.
    pub login: String,
    /// `password`.
    pub password: String,
}

const KEYWORD_HINT: &str = "`machine`, `default` or `macdef`";
const ENTRY_HINT: &str = "`login`, `password`, `account`, `machine`, `default` or `macdef`";

/// A token and where it is.
struct Token {
    value: String,
    span: Range<usize>,
}

struct Lexer<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Lexer<'a> {
    fn line_of(&self, pos: usize) -> usize {
        self.text.as_bytes()[..pos.min(self.text.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1
    }

    fn skip_whitespace(&mut self) {
        let bytes = self.text.as_bytes();
        while self.pos < bytes.len() && bytes[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    /// The next token where a keyword is expected: comments are skipped.
    fn keyword(&mut self) -> Result<Option<Token>, Malformed> {
        loop {
            self.skip_whitespace();
            if self.text.as_bytes().get(self.pos) == Some(&b'#') {
                self.skip_line();
                continue;
            }
            return self.value();
        }
    }

    /// The next token where a value is expected: `#` is an ordinary character.
    fn value(&mut self) -> Result<Option<Token>, Malformed> {
        self.skip_whitespace();
        let bytes = self.text.as_bytes();
        let start = self.pos;
        if start >= bytes.len() {
            return Ok(None);
        }
        if bytes[start] == b'"' {
            let mut value = String::new();
            let mut chars = self.text[start + 1..].char_indices();
            while let Some((i, c)) = chars.next() {
                match c {
                    '"' => {
                        self.pos = start + 1 + i + 1;
                        return Ok(Some(Token {
                            value,
                            span: start..self.pos,
                        }));
                    }
                    '\\' => match chars.next() {
                        Some((_, escaped)) => value.push(escaped),
                        None => break,
                    },
                    c => value.push(c),
                }
            }
            return Err(Malformed {
                line: self.line_of(start),
                message: "a quoted value is never closed (missing `\"`)".into(),
            });
        }
        let mut end = start;
        while end < bytes.len() && !bytes[end].is_ascii_whitespace() {
            end += 1;
        }
        self.pos = end;
        Ok(Some(Token {
            value: self.text[start..end].to_owned(),
            span: start..end,
        }))
    }

    fn skip_line(&mut self) {
        match self.text[self.pos..].find('\n') {
            Some(i) => self.pos += i + 1,
            None => self.pos = self.text.len(),
        }
    }

    /// Skips a macro body: the lines after the current one, up to the first empty line.
    /// Returns where the body ends and whether that empty line was found.
    fn macro_body(&mut self) -> (usize, bool) {
        self.skip_line();
        loop {
            if self.pos >= self.text.len() {
                return (self.text.len(), false);
            }
            let rest = &self.text[self.pos..];
            let line = rest.find('\n').map_or(rest, |i| &rest[..i]);
            if line.is_empty() || line == "\r" {
                return (self.pos, true);
            }
            self.skip_line();
        }
    }
}

fn is_keyword(word: &str) -> bool {
    matches!(
        word,
        "machine" | "default" | "macdef" | "login" | "password" | "account"
    )
}

impl Netrc {
    /// Parses `text`; nothing in it is changed.
    pub fn parse(text: &str) -> Result<Self, Malformed> {
        let mut lex = Lexer { text, pos: 0 };
        let mut items: Vec<Item> = Vec::new();
        let mut open_macro_at_end = false;
        // Whether the last item is an entry that can still take fields.
        let mut in_entry = false;
        while let Some(tok) = lex.keyword()? {
            let line = lex.line_of(tok.span.start);
            match tok.value.as_str() {
                "machine" | "macdef" => {
                    let what = tok.value.clone();
                    let name = lex.value()?.filter(|n| !is_keyword(&n.value));
                    let Some(name) = name else {
                        let message = if what == "machine" {
                            "`machine` has no host name after it"
                        } else {
                            "`macdef` has no macro name after it"
                        };
                        return Err(Malformed {
                            line,
                            message: message.into(),
                        });
                    };
                    if what == "machine" {
                        items.push(Item {
                            kind: ItemKind::Machine(name.value),
                            span: tok.span.start..name.span.end,
                            name_span: name.span,
                            fields: Vec::new(),
                        });
                        in_entry = true;
                    } else {
                        let (end, closed) = lex.macro_body();
                        items.push(Item {
                            kind: ItemKind::Macdef(name.value),
                            span: tok.span.start..end.max(name.span.end),
                            name_span: name.span,
                            fields: Vec::new(),
                        });
                        open_macro_at_end = !closed;
                        in_entry = false;
                    }
                }
                "default" => {
                    items.push(Item {
                        kind: ItemKind::Default,
                        span: tok.span.clone(),
                        name_span: tok.span.end..tok.span.end,
                        fields: Vec::new(),
                    });
                    in_entry = true;
                }
                word @ ("login" | "password" | "account") => {
                    let item = match items.last_mut() {
                        Some(item) if in_entry => item,
                        _ => {
                            return Err(Malformed {
                                line,
                                message: format!(
                                    "`{word}` appears before any `machine` or `default` entry"
                                ),
                            })
                        }
                    };
                    let Some(value) = lex.value()? else {
                        return Err(Malformed {
                            line,
                            message: format!("`{word}` has no value after it"),
                        });
                    };
                    let key = match word {
                        "login" => Key::Login,
                        "password" => Key::Password,
                        _ => Key::Account,
                    };
                    item.span.end = value.span.end;
                    item.fields.push(Field {
                        key,
                        value: value.value,
                        value_span: value.span,
                    });
                }
                other => {
                    let expected = if in_entry { ENTRY_HINT } else { KEYWORD_HINT };
                    return Err(Malformed {
                        line,
                        message: format!("unexpected `{other}` where {expected} was expected"),
                    });
                }
            }
            if !matches!(items.last().map(|i| &i.kind), Some(ItemKind::Macdef(_))) {
                open_macro_at_end = false;
            }
        }
        Ok(Self {
            text: text.to_owned(),
            items,
            open_macro_at_end,
        })
    }

    /// The items, in file order.
    #[cfg(test)]
    pub fn items(&self) -> &[Item] {
        &self.items
    }

    fn entries_for<'s>(&'s self, host: &'s str) -> impl Iterator<Item = &'s Item> + 's {
        self.items
            .iter()
            .filter(move |i| matches!(&i.kind, ItemKind::Machine(m) if m == host))
    }

    /// The credentials of the first entry for `host` (the one curl and git use), when it
    /// has both a login and a password. `default` is not consulted: it is not ours.
    pub fn credentials(&self, host: &str) -> Option<Credentials> {
        let entry = self.entries_for(host).next()?;
        let last = |key| {
            entry
                .fields
                .iter()
                .rev()
                .find(|f| f.key == key)
                .map(|f| f.value.clone())
        };
        Some(Credentials {
            login: last(Key::Login)?,
            password: last(Key::Password)?,
        })
    }

    /// The text with `host`'s entry set to `login`/`password`: the first entry's values are
    /// replaced in place (or added to it), later duplicates removed; with no entry, one is
    /// appended (before a `default` entry, which must stay last). Every other byte is kept.
    pub fn with_credentials(&self, host: &str, login: &str, password: &str) -> String {
        let mut edits: Vec<(Range<usize>, String)> = Vec::new();
        let mut entries = self.entries_for(host);
        match entries.next() {
            Some(entry) => {
                let has = |key| entry.fields.iter().any(|f| f.key == key);
                for field in &entry.fields {
                    let new = match field.key {
                        Key::Login => login,
                        Key::Password => password,
                        Key::Account => continue,
                    };
                    edits.push((field.value_span.clone(), quote(new)));
                }
                match (has(Key::Login), has(Key::Password)) {
                    (true, true) => {}
                    (true, false) => edits.push((
                        entry.span.end..entry.span.end,
                        format!(" password {}", quote(password)),
                    )),
                    (false, true) => edits.push((
                        entry.name_span.end..entry.name_span.end,
                        format!(" login {}", quote(login)),
                    )),
                    (false, false) => edits.push((
                        entry.name_span.end..entry.name_span.end,
                        format!(" login {} password {}", quote(login), quote(password)),
                    )),
                }
                for duplicate in entries {
                    edits.push((self.removal_range(duplicate), String::new()));
                }
            }
            None => {
                let entry = format!(
                    "machine {}\n\tlogin {}\n\tpassword {}\n",
                    quote(host),
                    quote(login),
                    quote(password)
                );
                let default = self.items.iter().find(|i| i.kind == ItemKind::Default);
                match default {
                    Some(default) => edits.push((default.span.start..default.span.start, entry)),
                    None => {
                        let mut prefix = String::new();
                        let mut entry = entry;
                        if !self.text.is_empty() && !self.text.ends_with('\n') {
                            // End the last line, and keep the file's style of no final
                            // newline, so that `without` gives back the very same bytes.
                            prefix.push('\n');
                            entry.pop();
                        }
                        if self.open_macro_at_end {
                            prefix.push('\n');
                        }
                        let end = self.text.len();
                        edits.push((end..end, prefix + &entry));
                    }
                }
            }
        }
        apply(&self.text, edits)
    }

    /// The text without any entry for `host`, or `None` when there is none.
    pub fn without(&self, host: &str) -> Option<String> {
        let edits: Vec<_> = self
            .entries_for(host)
            .map(|e| (self.removal_range(e), String::new()))
            .collect();
        if edits.is_empty() {
            return None;
        }
        Some(apply(&self.text, edits))
    }

    /// The bytes to delete to remove `item`: its span, widened to whole lines when it has
    /// its lines to itself (so no blank line is left behind), else to the blanks after it.
    fn removal_range(&self, item: &Item) -> Range<usize> {
        let bytes = self.text.as_bytes();
        let blank = |b: &u8| *b == b' ' || *b == b'\t' || *b == b'\r';
        let line_start = self.text[..item.span.start]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let mut after = item.span.end;
        while after < bytes.len() && blank(&bytes[after]) {
            after += 1;
        }
        let alone_before = bytes[line_start..item.span.start].iter().all(blank);
        let alone_after = after == bytes.len() || bytes[after] == b'\n';
        if alone_before && alone_after {
            if after < bytes.len() {
                line_start..after + 1
            } else if line_start > 0 {
                // The last line, without a final newline: the newline before it goes too,
                // as it only served to start the entry's line.
                line_start - 1..after
            } else {
                line_start..after
            }
        } else if alone_after {
            // Something precedes it on its line: keep that line's newline, drop the blanks
            // that separated the entry from it.
            let mut start = item.span.start;
            while start > line_start && blank(&bytes[start - 1]) {
                start -= 1;
            }
            start..after
        } else {
            item.span.start..after
        }
    }
}

/// Applies non-overlapping edits (given in any order).
fn apply(text: &str, mut edits: Vec<(Range<usize>, String)>) -> String {
    edits.sort_by_key(|(r, _)| (r.start, r.end));
    let mut out = String::with_capacity(text.len() + 128);
    let mut pos = 0;
    for (range, replacement) in edits {
        if range.start < pos {
            continue;
        }
        out.push_str(&text[pos..range.start]);
        out.push_str(&replacement);
        pos = range.end;
    }
    out.push_str(&text[pos..]);
    out
}

/// A value as a netrc token: bare when it can be, else double-quoted with escapes.
fn quote(value: &str) -> String {
    let bare = !value.is_empty()
        && !value.starts_with('#')
        && !value
            .chars()
            .any(|c| c.is_whitespace() || c == '"' || c == '\\');
    if bare {
        return value.to_owned();
    }
    let mut out = String::from("\"");
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// Where the netrc file is: `$NETRC` when set, else `$HOME/.netrc`.
pub fn default_path() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("NETRC").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            anyhow!("cannot find your netrc file: HOME is not set (set HOME, or NETRC to its path)")
        })?;
    Ok(PathBuf::from(home).join(".netrc"))
}

/// Why a netrc file could not be used.
#[derive(Debug)]
pub enum LoadError {
    /// It could not be read.
    Io(PathBuf, std::io::Error),
    /// It is not UTF-8 text.
    NotText(PathBuf),
    /// It does not parse.
    Malformed(PathBuf, Malformed),
}

impl LoadError {
    /// The error for a command that was about to rewrite the file: it says that nothing
    /// was changed.
    pub fn refusing_to_edit(self) -> anyhow::Error {
        match self {
            Self::Io(..) => anyhow::Error::new(self),
            Self::NotText(path) => anyhow!(
                "{} is not UTF-8 text, so it was not rewritten and nothing was changed: fix it, or set NETRC to use another file",
                path.display()
            ),
            Self::Malformed(path, e) => anyhow!(
                "{} is malformed ({e}), so it was not rewritten and nothing was changed: fix that line, or set NETRC to use another file",
                path.display()
            ),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io(path, e) => write!(f, "cannot read {}: {e}", path.display()),
            Self::NotText(path) => write!(
                f,
                "{} is not UTF-8 text: fix it, or set NETRC to use another file",
                path.display()
            ),
            Self::Malformed(path, e) => write!(
                f,
                "{} is malformed ({e}): fix that line, or set NETRC to use another file",
                path.display()
            ),
        }
    }
}

impl std::error::Error for LoadError {}

/// Reads and parses the file at `path`; an absent file is an empty netrc.
pub fn load(path: &Path) -> Result<Netrc, LoadError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(LoadError::Io(path.to_owned(), e)),
    };
    let text = String::from_utf8(bytes).map_err(|_| LoadError::NotText(path.to_owned()))?;
    Netrc::parse(&text).map_err(|e| LoadError::Malformed(path.to_owned(), e))
}

/// Replaces the file at `path` with `text`, atomically, readable by its owner only (0600).
/// A symlinked netrc (dotfile managers) is written through the link.
pub fn save(path: &Path, text: &str) -> anyhow::Result<()> {
    let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| ".netrc".into());
    let tmp = dir.join(format!(".{file_name}.gigalixir-{}.tmp", std::process::id()));
    let result = write_private(&tmp, text.as_bytes()).and_then(|()| std::fs::rename(&tmp, &target));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", target.display()));
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    #[cfg(unix)]
    {
        // The umask may have cleared bits of 0600, never added any; make it exact.
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn parse(text: &str) -> Netrc {
        Netrc::parse(text).expect("parses")
    }

    fn malformed(text: &str) -> Malformed {
        Netrc::parse(text).expect_err("is malformed")
    }

    /// A file that exercises everything at once.
    const BUSY: &str = concat!(
        "# my netrc, hand-kept\n",
        "machine github.com\n",
        "\tlogin octo   password  \"s3 cret \\\"x\\\"\"\n",
        "   # a comment between entries\n",
        "machine example.org login bob password #hash account  acc\n",
        "\n",
        "macdef init\n",
        "cd /tmp\n",
        "  ls # not a comment\n",
        "\n",
        "machine  other.net   login\tann   password pw  \n",
        "default login anonymous password me@example.com\n",
    );

    #[test]
    fn parses_items_with_their_spans() {
        let n = parse(BUSY);
        let kinds: Vec<_> = n.items().iter().map(|i| i.kind.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                ItemKind::Machine("github.com".into()),
                ItemKind::Machine("example.org".into()),
                ItemKind::Macdef("init".into()),
                ItemKind::Machine("other.net".into()),
                ItemKind::Default,
            ]
        );
        let gh = &n.items()[0];
        assert_eq!(
            &BUSY[gh.span.clone()],
            "machine github.com\n\tlogin octo   password  \"s3 cret \\\"x\\\"\""
        );
        assert_eq!(gh.fields[1].value, "s3 cret \"x\"");
        let macro_ = &n.items()[2];
        assert_eq!(
            &BUSY[macro_.span.clone()],
            "macdef init\ncd /tmp\n  ls # not a comment\n"
        );
        let other = &n.items()[3];
        assert_eq!(
            &BUSY[other.span.clone()],
            "machine  other.net   login\tann   password pw"
        );
    }

    #[test]
    fn hash_is_a_comment_only_where_a_keyword_is_expected() {
        let n = parse(BUSY);
        assert_eq!(
            n.credentials("example.org"),
            Some(Credentials {
                login: "bob".into(),
                password: "#hash".into()
            })
        );
    }

    #[test]
    fn credentials_come_from_the_first_entry_and_ignore_default() {
        let n = parse("machine h login a password 1\nmachine h login b password 2\n");
        assert_eq!(n.credentials("h").map(|c| c.login), Some("a".into()));
        let n = parse("default login x password y\n");
        assert_eq!(n.credentials("h"), None);
        let n = parse("machine h login only\n");
        assert_eq!(n.credentials("h"), None);
    }

    #[test]
    fn appends_to_an_empty_or_missing_file() {
        let text = parse("").with_credentials("localhost", "a@b.co", KEY);
        assert_eq!(
            text,
            format!("machine localhost\n\tlogin a@b.co\n\tpassword {KEY}\n")
        );
        let again = parse(&text);
        assert_eq!(
            again.credentials("localhost"),
            Some(Credentials {
                login: "a@b.co".into(),
                password: KEY.into()
            })
        );
    }

    #[test]
    fn inserts_before_default_and_keeps_every_other_byte() {
        let n = parse(BUSY);
        let text = n.with_credentials("localhost", "a@b.co", KEY);
        let entry = format!("machine localhost\n\tlogin a@b.co\n\tpassword {KEY}\n");
        let at = BUSY.find("default").expect("has default");
        assert_eq!(text, format!("{}{entry}{}", &BUSY[..at], &BUSY[at..]));
        // And removing it gives the original back, byte for byte.
        assert_eq!(parse(&text).without("localhost").as_deref(), Some(BUSY));
    }

    #[test]
    fn appending_adds_a_missing_final_newline() {
        let original = "machine a login b password c";
        let text = parse(original).with_credentials("localhost", "e@x.io", "k");
        assert_eq!(
            text,
            "machine a login b password c\nmachine localhost\n\tlogin e@x.io\n\tpassword k"
        );
        assert_eq!(
            parse(&text).credentials("a").map(|c| c.password),
            Some("c".into())
        );
        assert_eq!(parse(&text).without("localhost").as_deref(), Some(original));
        // A final comment without a newline must not swallow the entry.
        let original = "machine a login b password c\n# the end";
        let text = parse(original).with_credentials("localhost", "e@x.io", "k");
        assert!(parse(&text).credentials("localhost").is_some());
        assert_eq!(parse(&text).without("localhost").as_deref(), Some(original));
    }

    #[test]
    fn appending_closes_a_macro_that_runs_to_the_end() {
        let original = "machine a login b password c\nmacdef up\necho hi\n";
        let text = parse(original).with_credentials("localhost", "e@x.io", "k");
        assert!(text.starts_with(original));
        let n = parse(&text);
        assert_eq!(
            n.credentials("localhost"),
            Some(Credentials {
                login: "e@x.io".into(),
                password: "k".into()
            })
        );
        assert_eq!(&text[n.items()[1].span.clone()], "macdef up\necho hi\n");
        // Without a final newline at all.
        let original = "macdef up\necho hi";
        let text = parse(original).with_credentials("localhost", "e@x.io", "k");
        assert!(text.starts_with(original));
        assert!(parse(&text).credentials("localhost").is_some());
    }

    #[test]
    fn replaces_only_the_values_of_an_existing_entry() {
        let original = "# keep me\nmachine localhost   login old@x.io\n  # inside\n  password \"old key\" account team\nmachine z login y password x\n";
        let text = parse(original).with_credentials("localhost", "new@x.io", KEY);
        assert_eq!(
            text,
            format!("# keep me\nmachine localhost   login new@x.io\n  # inside\n  password {KEY} account team\nmachine z login y password x\n")
        );
    }

    #[test]
    fn completes_an_entry_that_lacks_a_login_or_a_password() {
        let text = parse("machine localhost\nmachine z login y password x\n").with_credentials(
            "localhost",
            "e@x.io",
            "k",
        );
        assert_eq!(
            text,
            "machine localhost login e@x.io password k\nmachine z login y password x\n"
        );
        let text =
            parse("machine localhost login e@x.io\n").with_credentials("localhost", "e@x.io", "k");
        assert_eq!(text, "machine localhost login e@x.io password k\n");
        let text =
            parse("machine localhost password old\n").with_credentials("localhost", "e@x.io", "k");
        assert_eq!(text, "machine localhost login e@x.io password k\n");
    }

    #[test]
    fn keeps_one_entry_when_the_host_appears_twice() {
        let original = "machine localhost login a password 1\nmachine z login y password x\nmachine localhost login b password 2\n";
        let text = parse(original).with_credentials("localhost", "e@x.io", "k");
        assert_eq!(
            text,
            "machine localhost login e@x.io password k\nmachine z login y password x\n"
        );
    }

    #[test]
    fn removes_only_the_entry() {
        let n = parse(BUSY);
        let text = n.without("other.net").expect("has the entry");
        assert_eq!(
            text,
            BUSY.replace("machine  other.net   login\tann   password pw  \n", "")
        );
        assert_eq!(n.without("nowhere"), None);
    }

    #[test]
    fn removes_an_entry_that_shares_its_line() {
        let text = parse("machine a login b password c machine localhost login d password e\n")
            .without("localhost");
        assert_eq!(text.as_deref(), Some("machine a login b password c\n"));
        let text = parse("machine localhost login d password e machine a login b password c\n")
            .without("localhost");
        assert_eq!(text.as_deref(), Some("machine a login b password c\n"));
        let text = parse("machine localhost login d password e").without("localhost");
        assert_eq!(text.as_deref(), Some(""));
    }

    #[test]
    fn quotes_values_that_need_it() {
        let text = parse("").with_credentials("h", "a b", "x\"y\\z");
        assert_eq!(
            text,
            "machine h\n\tlogin \"a b\"\n\tpassword \"x\\\"y\\\\z\"\n"
        );
        assert_eq!(
            parse(&text).credentials("h"),
            Some(Credentials {
                login: "a b".into(),
                password: "x\"y\\z".into()
            })
        );
    }

    #[test]
    fn odd_whitespace_and_crlf_survive_an_edit() {
        let original = "machine a\r\n\tlogin b\r\n\tpassword c\r\n\r\n\t \n";
        let text = parse(original).with_credentials("localhost", "e@x.io", "k");
        assert!(text.starts_with(original));
        assert_eq!(parse(&text).without("localhost").as_deref(), Some(original));
    }

    #[test]
    fn refuses_an_unknown_token() {
        let e = malformed("machine a login b\nfoo bar\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("unexpected `foo`"), "{e}");
        let e = malformed("hello\n");
        assert_eq!(e.line, 1);
        assert!(
            e.message.contains("`machine`, `default` or `macdef`"),
            "{e}"
        );
    }

    #[test]
    fn refuses_a_machine_without_a_name() {
        let e = malformed("machine a login b password c\nmachine\n");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("no host name"), "{e}");
        let e = malformed("machine login b password c\n");
        assert!(e.message.contains("no host name"), "{e}");
        let e = malformed("macdef\n");
        assert!(e.message.contains("no macro name"), "{e}");
    }

    #[test]
    fn refuses_a_keyword_without_its_value() {
        let e = malformed("machine a login b password");
        assert_eq!(e.message, "`password` has no value after it");
        let e = malformed("machine a\n login\n\n");
        assert_eq!(e.line, 2);
    }

    #[test]
    fn refuses_fields_outside_an_entry() {
        let e = malformed("login a password b\n");
        assert!(e.message.contains("before any `machine`"), "{e}");
        let e = malformed("macdef m\nbody\n\nlogin a\n");
        assert!(e.message.contains("before any `machine`"), "{e}");
    }

    #[test]
    fn refuses_an_unclosed_quote() {
        let e = malformed("machine a login b password \"abc\n");
        assert!(e.message.contains("never closed"), "{e}");
    }

    #[test]
    fn comments_and_blank_files_parse() {
        assert!(parse("# only a comment").items().is_empty());
        assert!(parse("\n\n  \t\n").items().is_empty());
        let n = parse("machine a # trailing comment\n login b password c\n");
        assert_eq!(n.credentials("a").map(|c| c.login), Some("b".into()));
    }

    #[test]
    fn save_writes_mode_0600_and_replaces_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".netrc");
        std::fs::write(&path, "old").expect("write");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        save(&path, "machine a login b password c\n").expect("save");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "machine a login b password c\n"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .filter_map(Result::ok)
            .filter(|e| e.file_name() != ".netrc")
            .collect();
        assert!(leftovers.is_empty());
    }

    #[cfg(unix)]
    #[test]
    fn save_writes_through_a_symlink() {
        let dir = tempfile::tempdir().expect("tempdir");
        let real = dir.path().join("dotfiles-netrc");
        std::fs::write(&real, "").expect("write");
        let link = dir.path().join(".netrc");
        std::os::unix::fs::symlink(&real, &link).expect("symlink");
        save(&link, "machine a login b password c\n").expect("save");
        assert!(std::fs::symlink_metadata(&link)
            .expect("stat")
            .file_type()
            .is_symlink());
        assert_eq!(
            std::fs::read_to_string(&real).expect("read"),
            "machine a login b password c\n"
        );
    }

    #[test]
    fn load_refuses_a_malformed_file_and_treats_a_missing_one_as_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".netrc");
        assert!(load(&path).expect("missing is empty").items().is_empty());
        std::fs::write(&path, "machine\n").expect("write");
        let e = load(&path).expect_err("malformed");
        assert!(e.to_string().contains("line 1"), "{e}");
        let msg = e.refusing_to_edit().to_string();
        assert!(msg.contains("malformed"), "{msg}");
        assert!(msg.contains("nothing was changed"), "{msg}");
        assert!(msg.contains("line 1"), "{msg}");
    }
}
