//! `mix.lock`: the Elixir map Mix writes, read without evaluating it. Only the term syntax
//! Mix writes is accepted (maps, tuples, lists, keyword lists, atoms, strings, integers);
//! anything else is an error naming the line.

use std::collections::BTreeMap;
use std::fmt;

/// One locked Hex package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HexLock {
    /// The dependency's name in the app (the lock's key).
    pub dep: String,
    /// The package's name in its repository (differs when `hex: :other` renamed it).
    pub package: String,
    /// The locked version.
    pub version: String,
    /// The inner checksum (over the tarball's contents), hex.
    pub inner_checksum: String,
    /// The outer checksum (sha256 of the whole tarball), hex; locks written by Hex before
    /// 0.20 have none.
    pub outer_checksum: Option<String>,
    /// The repository: `hexpm`, or `hexpm:ORG` for a private organization.
    pub repo: String,
    /// Its build tools (`mix`, `rebar3`, `make`).
    pub build_tools: Vec<String>,
}

/// One locked git dependency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitLock {
    /// The dependency's name in the app.
    pub dep: String,
    /// The repository URL.
    pub url: String,
    /// The locked commit, 40 hex digits.
    pub rev: String,
    /// `branch:`, `tag:`, `ref:`, `sparse:`, `depth:`, `submodules:`, `subdir:` as locked.
    pub opts: BTreeMap<String, String>,
}

/// What a mix.lock pins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MixLock {
    /// Hex packages, by dependency name.
    pub hex: Vec<HexLock>,
    /// Git dependencies, by dependency name.
    pub git: Vec<GitLock>,
}

/// Why a mix.lock cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("mix.lock line {line}: {message}")]
pub struct LockError {
    /// 1-based.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// An Elixir term, as far as mix.lock uses them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// `:name`, `true`, `nil`.
    Atom(String),
    /// `"text"`.
    Str(String),
    /// `42`.
    Int(i64),
    /// `[a, b]` and keyword lists (`[k: v]` is `[{:k, v}]`).
    List(Vec<Term>),
    /// `{a, b}`.
    Tuple(Vec<Term>),
    /// `%{k => v}` and `%{"k": v}`.
    Map(Vec<(Term, Term)>),
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Term::Atom(a) => write!(f, ":{a}"),
            Term::Str(s) => write!(f, "{s:?}"),
            Term::Int(i) => write!(f, "{i}"),
            Term::List(_) => f.write_str("[...]"),
            Term::Tuple(_) => f.write_str("{...}"),
            Term::Map(_) => f.write_str("%{...}"),
        }
    }
}

impl Term {
    fn text(&self) -> Option<&str> {
        match self {
            Term::Atom(s) | Term::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// Reads a mix.lock.
pub fn parse(text: &str) -> Result<MixLock, LockError> {
    let mut p = Parser {
        s: text.as_bytes(),
        i: 0,
        depth: 0,
    };
    p.skip();
    if p.i == p.s.len() {
        return Ok(MixLock::default());
    }
    let term = p.term()?;
    p.skip();
    if p.i != p.s.len() {
        return Err(p.error("unexpected text after the map"));
    }
    let Term::Map(entries) = term else {
        return Err(LockError {
            line: 1,
            message: "the lock is not a map".into(),
        });
    };
    let mut lock = MixLock::default();
    for (key, value) in entries {
        let Some(dep) = key.text().map(str::to_owned) else {
            continue;
        };
        let Term::Tuple(items) = value else {
            return Err(LockError {
                line: 1,
                message: format!("the entry of {dep} is not a tuple"),
            });
        };
        let bad = |what: &str| LockError {
            line: 1,
            message: format!("the entry of {dep} has {what}"),
        };
        match items.first().and_then(Term::text) {
            Some("hex") => {
                let s = |i: usize| items.get(i).and_then(Term::text).map(str::to_owned);
                let tools = match items.get(4) {
                    Some(Term::List(l)) => l
                        .iter()
                        .filter_map(|t| t.text().map(str::to_owned))
                        .collect(),
                    _ => Vec::new(),
                };
                lock.hex.push(HexLock {
                    package: s(1).ok_or_else(|| bad("no package name"))?,
                    version: s(2).ok_or_else(|| bad("no version"))?,
                    inner_checksum: s(3).ok_or_else(|| bad("no checksum"))?.to_ascii_lowercase(),
                    repo: s(6).unwrap_or_else(|| "hexpm".into()),
                    outer_checksum: s(7).map(|c| c.to_ascii_lowercase()),
                    build_tools: tools,
                    dep,
                });
            }
            Some("git") => {
                let s = |i: usize| items.get(i).and_then(Term::text).map(str::to_owned);
                let mut opts = BTreeMap::new();
                if let Some(Term::List(list)) = items.get(3) {
                    for item in list {
                        if let Term::Tuple(kv) = item {
                            if let (Some(k), Some(v)) = (kv.first().and_then(Term::text), kv.get(1))
                            {
                                let v = match v {
                                    Term::Int(i) => i.to_string(),
                                    other => other.text().unwrap_or_default().to_owned(),
                                };
                                opts.insert(k.to_owned(), v);
                            }
                        }
                    }
                }
                let rev = s(2).ok_or_else(|| bad("no commit"))?;
                if rev.len() != 40 || !rev.bytes().all(|c| c.is_ascii_hexdigit()) {
                    return Err(bad("a commit that is not 40 hex digits"));
                }
                if let Some(k) = opts.keys().find(|k| opts[*k].chars().any(char::is_control)) {
                    return Err(bad(&format!("a control character in `{k}`")));
                }
                lock.git.push(GitLock {
                    url: s(1).ok_or_else(|| bad("no url"))?,
                    rev: rev.to_ascii_lowercase(),
                    opts,
                    dep,
                });
            }
            // path dependencies are not locked; anything else Mix would not write
            _ => {}
        }
    }
    Ok(lock)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
    /// How many maps, tuples and lists enclose the value being read.
    depth: usize,
}

/// Deeper than any lock Mix writes (4); bounds the parser's recursion on hostile input.
const MAX_DEPTH: usize = 32;

impl Parser<'_> {
    fn error(&self, message: &str) -> LockError {
        let line = 1 + self.s[..self.i.min(self.s.len())]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        LockError {
            line,
            message: message.to_owned(),
        }
    }

    fn skip(&mut self) {
        while let Some(&c) = self.s.get(self.i) {
            if c.is_ascii_whitespace() {
                self.i += 1;
            } else if c == b'#' {
                while self.s.get(self.i).is_some_and(|c| *c != b'\n') {
                    self.i += 1;
                }
            } else {
                break;
            }
        }
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), LockError> {
        self.skip();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(self.error(&format!("expected `{}`", c as char)))
        }
    }

    /// A comma-separated sequence up to `close`, each item read by `item`.
    fn items<T>(
        &mut self,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Result<T, LockError>,
    ) -> Result<Vec<T>, LockError> {
        let mut out = Vec::new();
        loop {
            self.skip();
            if self.peek() == Some(close) {
                self.i += 1;
                return Ok(out);
            }
            if out.len() > 100_000 {
                return Err(self.error("too many items"));
            }
            out.push(item(self)?);
            self.skip();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(c) if c == close => {}
                _ => return Err(self.error(&format!("expected `,` or `{}`", close as char))),
            }
        }
    }

    /// A keyword key (`name:` or `"name":`), if one starts here.
    fn keyword_key(&mut self) -> Result<Option<String>, LockError> {
        let start = self.i;
        let key = if self.peek() == Some(b'"') {
            self.string()?
        } else {
            let w = self.word();
            if w.is_empty() {
                return Ok(None);
            }
            w
        };
        if self.peek() == Some(b':')
            && self
                .s
                .get(self.i + 1)
                .is_some_and(|c| c.is_ascii_whitespace())
        {
            self.i += 1;
            Ok(Some(key))
        } else {
            self.i = start;
            Ok(None)
        }
    }

    fn word(&mut self) -> String {
        let start = self.i;
        while self.peek().is_some_and(|c| {
            c.is_ascii_alphanumeric() || c == b'_' || c == b'?' || c == b'!' || c == b'@'
        }) {
            self.i += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }

    fn string(&mut self) -> Result<String, LockError> {
        self.expect(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(self.error("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') => {
                    let c = self
                        .s
                        .get(self.i + 1)
                        .copied()
                        .ok_or_else(|| self.error("unterminated string"))?;
                    out.push(match c {
                        b'n' => b'\n',
                        b't' => b'\t',
                        other => other,
                    });
                    self.i += 2;
                }
                Some(b'#') if self.s.get(self.i + 1) == Some(&b'{') => {
                    return Err(self.error("interpolation is not allowed in mix.lock"));
                }
                Some(c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }

    fn list_item(&mut self) -> Result<Term, LockError> {
        self.skip();
        if let Some(key) = self.keyword_key()? {
            let value = self.term()?;
            return Ok(Term::Tuple(vec![Term::Atom(key), value]));
        }
        self.term()
    }

    fn term(&mut self) -> Result<Term, LockError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error("values nested too deeply"));
        }
        self.depth += 1;
        let term = self.term_here();
        self.depth -= 1;
        term
    }

    fn term_here(&mut self) -> Result<Term, LockError> {
        self.skip();
        match self.peek() {
            Some(b'%') => {
                self.i += 1;
                self.expect(b'{')?;
                let pairs = self.items(b'}', |p| {
                    p.skip();
                    if let Some(key) = p.keyword_key()? {
                        return Ok((Term::Str(key), p.term()?));
                    }
                    let key = p.term()?;
                    p.skip();
                    if p.s[p.i..].starts_with(b"=>") {
                        p.i += 2;
                    } else {
                        return Err(p.error("expected `=>`"));
                    }
                    Ok((key, p.term()?))
                })?;
                Ok(Term::Map(pairs))
            }
            Some(b'{') => {
                self.i += 1;
                Ok(Term::Tuple(self.items(b'}', Self::list_item)?))
            }
            Some(b'[') => {
                self.i += 1;
                Ok(Term::List(self.items(b']', Self::list_item)?))
            }
            Some(b'"') => Ok(Term::Str(self.string()?)),
            Some(b':') => {
                self.i += 1;
                if self.peek() == Some(b'"') {
                    return Ok(Term::Atom(self.string()?));
                }
                let w = self.word();
                if w.is_empty() {
                    return Err(self.error("expected an atom"));
                }
                Ok(Term::Atom(w))
            }
            Some(c) if c.is_ascii_digit() || c == b'-' => {
                let start = self.i;
                self.i += 1;
                while self.peek().is_some_and(|c| c.is_ascii_digit() || c == b'_') {
                    self.i += 1;
                }
                let text: String = String::from_utf8_lossy(&self.s[start..self.i]).replace('_', "");
                text.parse()
                    .map(Term::Int)
                    .map_err(|_| self.error("bad integer"))
            }
            Some(c) if c.is_ascii_lowercase() => {
                let w = self.word();
                match w.as_str() {
                    "true" | "false" | "nil" => Ok(Term::Atom(w)),
                    _ => Err(self.error(&format!("`{w}` is not a value mix.lock can hold"))),
                }
            }
            _ => Err(self.error("expected a value")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCK: &str = r#"%{
  "bandit": {:hex, :bandit, "1.6.7", "42f30e37a1e89a2a12943c5dca76f731a2313e8a2e21c1a95dc8241893e922d1", [:mix], [{:hpax, "~> 1.0", [hex: :hpax, repo: "hexpm", optional: false]}, {:plug, "~> 1.14", [hex: :plug, repo: "hexpm", optional: false]}], "hexpm", "551ba8ff5e4fc908cbeb8c9f0697775fb6813a96d9de5f7fe02e34e76fd7d184"},
  "heroicons": {:git, "https://github.com/tailwindlabs/heroicons.git", "88ab3a0d790e6a47404cba02800a6b25d2afae50", [tag: "v2.1.1", sparse: "optimized", depth: 1]},
  "old": {:hex, :old_name, "0.1.0", "ABCDEF", [:rebar3], [], "hexpm"},
  # a comment
  "telemetry": {:hex, :telemetry, "1.3.0", "fedebbae410d715cf8e7062c96a1ef32ec22e764197f70cda73d82778d61e7a2", [:rebar3], [], "hexpm", "7015fc8919dbe63764f4b4b87a95b7c0996bd539e0d499be6ec9d7f3875b79e6"},
}
"#;

    #[test]
    fn a_lock_as_mix_writes_it() {
        let lock = parse(LOCK).expect("ok");
        assert_eq!(lock.hex.len(), 3);
        let bandit = &lock.hex[0];
        assert_eq!(
            (
                bandit.dep.as_str(),
                bandit.package.as_str(),
                bandit.version.as_str()
            ),
            ("bandit", "bandit", "1.6.7")
        );
        assert_eq!(
            bandit.outer_checksum.as_deref(),
            Some("551ba8ff5e4fc908cbeb8c9f0697775fb6813a96d9de5f7fe02e34e76fd7d184")
        );
        assert_eq!(bandit.repo, "hexpm");
        assert_eq!(bandit.build_tools, vec!["mix"]);
        let old = &lock.hex[1];
        assert_eq!(
            (
                old.package.as_str(),
                old.inner_checksum.as_str(),
                old.outer_checksum.as_ref()
            ),
            ("old_name", "abcdef", None)
        );
        assert_eq!(lock.hex[2].build_tools, vec!["rebar3"]);
        let git = &lock.git[0];
        assert_eq!(git.dep, "heroicons");
        assert_eq!(git.rev, "88ab3a0d790e6a47404cba02800a6b25d2afae50");
        assert_eq!(git.opts["sparse"], "optimized");
        assert_eq!(git.opts["depth"], "1");
        assert_eq!(git.opts["tag"], "v2.1.1");
    }

    #[test]
    fn anything_else_is_refused_with_its_line() {
        assert_eq!(parse("").expect("ok"), MixLock::default());
        let err = parse("%{\n  \"x\": {:hex, :x, \"1.0.0\", \"#{System.cmd(\"id\")}\"}\n}")
            .expect_err("refused");
        assert_eq!(err.line, 2);
        assert!(parse("%{\"x\": File.read!(\"/etc/passwd\")}").is_err());
        assert!(parse("%{\"x\": {:hex, :x}").is_err());
        assert!(parse("[1, 2]")
            .expect_err("refused")
            .message
            .contains("not a map"));
    }

    #[test]
    fn hostile_nesting_and_git_fields_are_refused() {
        // Deep enough to overflow a thread's stack without the bound.
        let deep = format!("%{{\"x\": {}{}}}", "[".repeat(500_000), "]".repeat(500_000));
        let err = parse(&deep).expect_err("refused");
        assert!(err.message.contains("nested too deeply"), "{err:?}");
        let git = |rev: &str, opts: &str| {
            parse(&format!(
                "%{{\"g\": {{:git, \"https://example.com/g.git\", \"{rev}\", [{opts}]}}}}"
            ))
        };
        let rev = "88ab3a0d790e6a47404cba02800a6b25d2afae50";
        assert!(git(rev, "sparse: \"optimized\"").is_ok());
        let err = git("../../x", "").expect_err("refused");
        assert!(err.message.contains("not 40 hex digits"), "{err:?}");
        let err = git(rev, "sparse: \"a\\n/*\"").expect_err("refused");
        assert!(
            err.message.contains("control character in `sparse`"),
            "{err:?}"
        );
    }
}
