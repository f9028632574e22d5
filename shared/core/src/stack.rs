//! Stacks: the Debian suites the platform builds and runs apps on, each an Erlang/OTP and
//! Elixir pair with its own Hex client, rebar3 and esbuild, and the choice of one for a
//! build from what the app asks for.
//!
//! The choice, as GIGALIXIR's buildpack makes it: the app's stack when its owner set one
//! (`stack:set`), else the versions the app asks for — `elixir_buildpack.config`
//! (`erlang_version`, `elixir_version`) wins over `.tool-versions` (`erlang`, `elixir`),
//! which wins over the `elixir:` requirement of `mix.exs` — matched by Elixir major.minor
//! and OTP major. bookworm and trixie are chosen automatically, the newest first; forky
//! (Debian testing) only when nothing else satisfies; an app that asks for nothing gets
//! trixie.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::Invalid;

/// A stack: the Debian suite its builder and runner images come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Stack {
    /// Debian 12: Erlang/OTP 25, Elixir 1.14, no Hex client.
    Bookworm,
    /// Debian 13: Erlang/OTP 27, Elixir 1.18, Hex 2.0.
    Trixie,
    /// Debian testing: Erlang/OTP 29, Elixir 1.20; moves with testing.
    Forky,
}

impl Stack {
    /// Every stack, oldest first.
    pub const ALL: [Stack; 3] = [Stack::Bookworm, Stack::Trixie, Stack::Forky];
    /// The order an automatic choice tries them in: the newest stable first, testing last.
    pub const PREFERENCE: [Stack; 3] = [Stack::Trixie, Stack::Bookworm, Stack::Forky];
    /// What an app that asks for nothing gets.
    pub const DEFAULT: Stack = Stack::Trixie;

    /// Its name, as users type it.
    pub fn as_str(self) -> &'static str {
        match self {
            Stack::Bookworm => "bookworm",
            Stack::Trixie => "trixie",
            Stack::Forky => "forky",
        }
    }

    /// Parses a stack name.
    pub fn parse(name: &str) -> Result<Stack, Invalid> {
        Stack::ALL
            .into_iter()
            .find(|s| s.as_str() == name.trim())
            .ok_or_else(|| {
                Invalid(format!(
                    "unknown stack `{name}`: the stacks are {}",
                    Stack::ALL.map(Stack::as_str).join(", ")
                ))
            })
    }

    /// The builder image `scripts/images` makes for it.
    pub fn builder_image(self) -> String {
        format!("gigalixir-builder:{}", self.as_str())
    }

    /// The runner image `scripts/images` makes for it.
    pub fn runner_image(self) -> String {
        format!("gigalixir-runner:{}", self.as_str())
    }

    /// The versions Debian ships in it (what the images have, give or take a patch
    /// release), for stacks whose images are not built here.
    pub fn nominal(self) -> StackVersions {
        let (otp, elixir, hex) = match self {
            Stack::Bookworm => ("25", "1.14", None),
            Stack::Trixie => ("27", "1.18", Some("2.0")),
            Stack::Forky => ("29", "1.20", Some("2.6")),
        };
        StackVersions {
            stack: self,
            otp: otp.into(),
            elixir: elixir.into(),
            hex: hex.map(Into::into),
        }
    }

    /// Whether it is chosen without being asked for by name or by a version only it has.
    pub fn automatic(self) -> bool {
        self != Stack::Forky
    }

    /// Whether it follows a Debian suite that still changes (testing).
    pub fn moving(self) -> bool {
        self == Stack::Forky
    }
}

impl fmt::Display for Stack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Stack {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Stack {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Stack::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// What a stack's builder has, as its image labels say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StackVersions {
    /// The stack.
    pub stack: Stack,
    /// Erlang/OTP, e.g. `27.3.4`.
    pub otp: String,
    /// Elixir, e.g. `1.18.3`.
    pub elixir: String,
    /// The Hex client, when the stack has one.
    pub hex: Option<String>,
}

impl fmt::Display for StackVersions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (Erlang/OTP {}, Elixir {}",
            self.stack, self.otp, self.elixir
        )?;
        if self.stack.moving() {
            f.write_str(", Debian testing: moves")?;
        }
        f.write_str(")")
    }
}

/// Where an app asked for a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `elixir_buildpack.config`.
    BuildpackConfig,
    /// `.tool-versions`.
    ToolVersions,
    /// The `elixir:` requirement of `mix.exs`.
    MixExs,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Source::BuildpackConfig => "elixir_buildpack.config",
            Source::ToolVersions => ".tool-versions",
            Source::MixExs => "mix.exs",
        })
    }
}

/// A version the app asked for, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    /// As written (`1.18.3`, `27.2`, `~> 1.15`).
    pub version: String,
    /// Where.
    pub source: Source,
}

/// What an app asks for: at most one Elixir and one Erlang/OTP version, each from the
/// file that wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// The Elixir version (or, from mix.exs, requirement).
    pub elixir: Option<Asked>,
    /// The Erlang/OTP version.
    pub otp: Option<Asked>,
}

impl Request {
    /// Reads the app's files (any may be missing).
    pub fn from_files(
        buildpack_config: Option<&str>,
        tool_versions: Option<&str>,
        mix_exs: Option<&str>,
    ) -> Request {
        let mut request = Request::default();
        let offer = |slot: &mut Option<Asked>, version: Option<String>, source| {
            if slot.is_none() {
                if let Some(version) = version.filter(|v| !v.is_empty()) {
                    *slot = Some(Asked { version, source });
                }
            }
        };
        if let Some(text) = buildpack_config {
            let value = |key: &str| {
                text.lines().find_map(|line| {
                    let (k, v) = line.trim().split_once('=')?;
                    (k.trim() == key).then(|| unquote(v)).flatten()
                })
            };
            offer(
                &mut request.elixir,
                value("elixir_version"),
                Source::BuildpackConfig,
            );
            offer(
                &mut request.otp,
                value("erlang_version"),
                Source::BuildpackConfig,
            );
        }
        if let Some(text) = tool_versions {
            let value = |tool: &str| {
                text.lines().find_map(|line| {
                    let mut words = line.split('#').next()?.split_whitespace();
                    (words.next()? == tool).then(|| words.next().map(str::to_owned))?
                })
            };
            offer(&mut request.elixir, value("elixir"), Source::ToolVersions);
            offer(&mut request.otp, value("erlang"), Source::ToolVersions);
        }
        if let Some(text) = mix_exs {
            offer(
                &mut request.elixir,
                mix_elixir_requirement(text),
                Source::MixExs,
            );
        }
        request
    }

    /// Whether the app asks for anything.
    pub fn is_empty(&self) -> bool {
        self.elixir.is_none() && self.otp.is_none()
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(a) = &self.elixir {
            parts.push(format!("Elixir {} (in {})", a.version, a.source));
        }
        if let Some(a) = &self.otp {
            parts.push(format!("Erlang/OTP {} (in {})", a.version, a.source));
        }
        parts.join(" and ")
    }
}

/// `"1.18.3"`, `'1.18'`, `(1.18)`, with a trailing comment: the bare value.
fn unquote(raw: &str) -> Option<String> {
    let v = raw.split('#').next()?.trim();
    let v = v.trim_matches(|c| c == '"' || c == '\'' || c == '(' || c == ')');
    Some(v.trim().to_owned())
}

/// The `elixir: "~> 1.15"` requirement of a mix.exs.
fn mix_elixir_requirement(mix_exs: &str) -> Option<String> {
    let at = mix_exs.find("elixir:")?;
    let rest = mix_exs[at + "elixir:".len()..].trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(rest[..rest.find('"')?].trim().to_owned())
}

/// `v1.18.3-otp-27`, `OTP-27.2`, `27.2.1`: the dotted numbers.
fn numbers(version: &str) -> Vec<u64> {
    let v = version.trim();
    let v = v.strip_prefix("OTP-").unwrap_or(v);
    let v = v.strip_prefix('v').unwrap_or(v);
    let v = v.split(['-', '+', ' ']).next().unwrap_or_default();
    v.split('.').map_while(|p| p.parse().ok()).collect()
}

/// Whether `have` (e.g. `1.18.3`) satisfies an Elixir requirement (`~> 1.15`,
/// `>= 1.14.0 and < 2.0.0`, `== 1.18.3`, `1.18.3 or ~> 1.19`), as `Version.match?`.
pub fn requirement_matches(requirement: &str, have: &str) -> Option<bool> {
    let have = pad(&numbers(have));
    let mut any = false;
    for alternative in requirement.split(" or ") {
        let mut all = true;
        for clause in alternative.split(" and ") {
            let clause = clause.trim();
            let (op, version) = ["~>", ">=", "<=", "==", "!=", ">", "<"]
                .into_iter()
                .find_map(|op| clause.strip_prefix(op).map(|v| (op, v.trim())))
                .unwrap_or(("==", clause));
            let given = numbers(version);
            if given.is_empty() {
                return None;
            }
            let want = pad(&given);
            let ok = match op {
                "~>" => {
                    let upper = if given.len() >= 3 {
                        [given[0], given[1].saturating_add(1), 0]
                    } else {
                        [given[0].saturating_add(1), 0, 0]
                    };
                    have >= want && have < upper
                }
                ">=" => have >= want,
                "<=" => have <= want,
                ">" => have > want,
                "<" => have < want,
                "!=" => have != want,
                _ => have == want,
            };
            all &= ok;
        }
        any |= all;
    }
    Some(any)
}

fn pad(v: &[u64]) -> [u64; 3] {
    [
        v.first().copied().unwrap_or(0),
        v.get(1).copied().unwrap_or(0),
        v.get(2).copied().unwrap_or(0),
    ]
}

/// How well a stack's versions meet a request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fit {
    /// Every asked-for version matches; lines for versions that differ in their patch.
    Yes(Vec<String>),
    /// Something does not match.
    No,
}

fn fit(request: &Request, have: &StackVersions) -> Fit {
    let mut notes = Vec::new();
    if let Some(asked) = &request.elixir {
        if asked.source == Source::MixExs {
            if requirement_matches(&asked.version, &have.elixir) == Some(false) {
                return Fit::No;
            }
        } else {
            let (want, got) = (numbers(&asked.version), numbers(&have.elixir));
            if want.len() < 2 || want[..2] != got[..2.min(got.len())] {
                return Fit::No;
            }
            if want.len() > 2 && got.len() > 2 && want[2] != got[2] {
                notes.push(format!(
                    "Elixir {} asked for in {}; {} has {}: building with {}",
                    asked.version, asked.source, have.stack, have.elixir, have.elixir
                ));
            }
        }
    }
    if let Some(asked) = &request.otp {
        let (want, got) = (numbers(&asked.version), numbers(&have.otp));
        if want.is_empty() || got.first() != want.first() {
            return Fit::No;
        }
        if want.len() > 1 && want[1..] != got[1.min(got.len())..] {
            notes.push(format!(
                "Erlang/OTP {} asked for in {}; {} has {}: building with {}",
                asked.version, asked.source, have.stack, have.otp, have.otp
            ));
        }
    }
    Fit::Yes(notes)
}

/// The stack a build runs on, and lines for the build's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The stack.
    pub stack: StackVersions,
    /// Why it was chosen, then any version differences, for people.
    pub lines: Vec<String>,
}

/// Chooses the stack of a build. `pinned`: the app's own setting. `built`: the stacks
/// whose images this platform has, with their versions. `Err`: why the build cannot run,
/// for the pusher.
pub fn choose(
    pinned: Option<Stack>,
    request: &Request,
    built: &[StackVersions],
) -> Result<Choice, String> {
    let built_of = |s: Stack| built.iter().find(|b| b.stack == s);
    let listing = || {
        Stack::ALL
            .into_iter()
            .map(|s| match built_of(s) {
                Some(v) => v.to_string(),
                None => format!("{} (not built on this platform)", s.nominal()),
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    if let Some(stack) = pinned {
        let Some(have) = built_of(stack) else {
            return Err(format!(
                "this app's stack is {stack} (set with stack:set), which this platform has not built (the operator runs `scripts/images --stack {stack}`); stacks: {}",
                listing()
            ));
        };
        let mut lines = vec![format!("Stack {have}: the app's stack (stack:set)")];
        match fit(request, have) {
            Fit::Yes(notes) => lines.extend(notes),
            Fit::No => lines.push(format!(
                "the app asks for {}, which {stack} does not have: building with what it has",
                request.describe()
            )),
        }
        return Ok(Choice {
            stack: have.clone(),
            lines,
        });
    }
    if request.is_empty() {
        return match built_of(Stack::DEFAULT) {
            Some(have) => Ok(Choice {
                stack: have.clone(),
                lines: vec![format!(
                    "Stack {have}: the default (no Elixir or Erlang version asked for in elixir_buildpack.config, .tool-versions or mix.exs)"
                )],
            }),
            None => Err(format!(
                "the default stack {} is not built on this platform (the operator runs `scripts/images`); stacks: {}",
                Stack::DEFAULT,
                listing()
            )),
        };
    }
    let mut unbuilt = Vec::new();
    for stack in Stack::PREFERENCE {
        let have = built_of(stack).cloned();
        let versions = have.clone().unwrap_or_else(|| stack.nominal());
        let Fit::Yes(notes) = fit(request, &versions) else {
            continue;
        };
        match have {
            Some(have) => {
                let mut lines = vec![format!("Stack {have}: it has {}", request.describe())];
                if !stack.automatic() {
                    lines[0].push_str("; no stable stack does");
                }
                lines.extend(notes);
                return Ok(Choice { stack: have, lines });
            }
            None => unbuilt.push(stack),
        }
    }
    if let Some(stack) = unbuilt.first() {
        return Err(format!(
            "the app asks for {}, which only stack {stack} has, and this platform has not built it (the operator runs `scripts/images --stack {stack}`); stacks: {}",
            request.describe(),
            listing()
        ));
    }
    Err(format!(
        "no stack has {}; stacks: {}. Ask for one of these versions, or set a stack with `gigalixir stack:set -s STACK`",
        request.describe(),
        listing()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn built() -> Vec<StackVersions> {
        vec![
            StackVersions {
                stack: Stack::Bookworm,
                otp: "25.2.3".into(),
                elixir: "1.14.0".into(),
                hex: None,
            },
            StackVersions {
                stack: Stack::Trixie,
                otp: "27.3.4".into(),
                elixir: "1.18.3".into(),
                hex: Some("2.0.6".into()),
            },
        ]
    }

    fn tools(text: &str) -> Request {
        Request::from_files(None, Some(text), None)
    }

    #[test]
    fn nothing_asked_gets_trixie() {
        let c = choose(None, &Request::default(), &built()).expect("ok");
        assert_eq!(c.stack.stack, Stack::Trixie);
        assert!(c.lines[0].contains("the default"), "{:?}", c.lines);
    }

    #[test]
    fn tool_versions_pick_by_major_minor() {
        let c = choose(
            None,
            &tools("elixir 1.14.5-otp-25\nerlang 25.3\n"),
            &built(),
        )
        .expect("ok");
        assert_eq!(c.stack.stack, Stack::Bookworm);
        // a patch difference is one line each
        assert_eq!(c.lines.len(), 3, "{:?}", c.lines);
        assert!(c.lines[1]
            .contains("Elixir 1.14.5-otp-25 asked for in .tool-versions; bookworm has 1.14.0"));
        let c = choose(None, &tools("elixir 1.18\n"), &built()).expect("ok");
        assert_eq!(c.stack.stack, Stack::Trixie);
        assert_eq!(c.lines.len(), 1);
    }

    #[test]
    fn versions_no_stack_has_are_refused_with_the_stacks_listed() {
        for asked in ["elixir 1.16.2", "elixir 1.99.0", "erlang 26.2"] {
            let err = choose(None, &tools(asked), &built()).expect_err("refused");
            assert!(err.starts_with("no stack has"), "{err}");
            assert!(
                err.contains("trixie (Erlang/OTP 27.3.4, Elixir 1.18.3)"),
                "{err}"
            );
            assert!(err.contains("forky (Erlang/OTP 29, Elixir 1.20"), "{err}");
        }
        let err = choose(None, &tools("elixir 1.20.0"), &built()).expect_err("refused");
        assert!(err.contains("only stack forky has"), "{err}");
        assert!(err.contains("scripts/images --stack forky"), "{err}");
    }

    #[test]
    fn the_buildpack_config_beats_tool_versions_which_beats_mix_exs() {
        let r = Request::from_files(
            Some("elixir_version=1.14.0\n# erlang_version=27\n"),
            Some("elixir 1.18.3\nerlang 25.2\n"),
            Some("def project, do: [app: :x, elixir: \"~> 1.15\"]"),
        );
        assert_eq!(r.elixir.as_ref().expect("ok").version, "1.14.0");
        assert_eq!(
            r.elixir.as_ref().expect("ok").source,
            Source::BuildpackConfig
        );
        assert_eq!(r.otp.as_ref().expect("ok").source, Source::ToolVersions);
        assert_eq!(
            choose(None, &r, &built()).expect("ok").stack.stack,
            Stack::Bookworm
        );
        let r = Request::from_files(None, None, Some("  elixir: \"~> 1.15\",\n"));
        assert_eq!(
            choose(None, &r, &built()).expect("ok").stack.stack,
            Stack::Trixie
        );
        let r = Request::from_files(None, None, Some("  elixir: \"~> 1.13\",\n"));
        assert_eq!(
            choose(None, &r, &built()).expect("ok").stack.stack,
            Stack::Trixie
        );
        let r = Request::from_files(None, None, Some("  elixir: \"~> 1.14.0\",\n"));
        assert_eq!(
            choose(None, &r, &built()).expect("ok").stack.stack,
            Stack::Bookworm
        );
        let r = Request::from_files(Some("elixir_version=\"1.18.3\"  # pinned\n"), None, None);
        assert_eq!(r.elixir.expect("ok").version, "1.18.3");
    }

    #[test]
    fn a_pinned_stack_wins_and_says_so() {
        let c = choose(Some(Stack::Bookworm), &tools("elixir 1.18.3"), &built()).expect("ok");
        assert_eq!(c.stack.stack, Stack::Bookworm);
        assert!(c.lines[1].contains("does not have"), "{:?}", c.lines);
        let err = choose(Some(Stack::Forky), &Request::default(), &built()).expect_err("refused");
        assert!(err.contains("scripts/images --stack forky"), "{err}");
    }

    #[test]
    fn requirements_match_as_elixir_does() {
        let m = |r, v| requirement_matches(r, v).expect("ok");
        assert!(m("~> 1.15", "1.18.3"));
        assert!(!m("~> 1.15", "1.14.0"));
        assert!(!m("~> 1.15", "2.0.0"));
        assert!(m("~> 1.14.0", "1.14.5"));
        assert!(!m("~> 1.14.0", "1.15.0"));
        assert!(m(">= 1.14.0 and < 1.19.0", "1.18.3"));
        assert!(m("== 1.14.0 or ~> 1.18", "1.18.3"));
        assert!(requirement_matches("~> banana", "1.18.3").is_none());
    }

    #[test]
    fn stack_names_round_trip() {
        for s in Stack::ALL {
            assert_eq!(Stack::parse(s.as_str()).expect("ok"), s);
            let json = serde_json::to_string(&s).expect("ok");
            assert_eq!(serde_json::from_str::<Stack>(&json).expect("ok"), s);
        }
        assert!(Stack::parse("gigalixir-20")
            .expect_err("refused")
            .0
            .contains("bookworm, trixie, forky"));
    }
}
