//! The versions of `tests/fixtures/hot_counter` that the hot upgrade test and benchmark push
//! over its 0.1.0.

/// `git push gigalixir master` asking for a hot upgrade.
pub const HOT: [&str; 5] = [
    "-c",
    "http.extraheader=GIGALIXIR-HOT: true",
    "push",
    "gigalixir",
    "master",
];

/// 0.2.0's counter: a map, converted from 0.1.0's integer by `code_change/3`.
pub const STORE_V2: &str = r##"defmodule Counter.Store do
  @moduledoc "The counter, held in a GenServer's state: a map in 0.2.0."
  use GenServer

  def start_link(_), do: GenServer.start_link(__MODULE__, %{count: 0, upgraded_from: nil}, name: __MODULE__)
  def bump, do: GenServer.call(__MODULE__, :bump)
  # the same answer as 0.1.0's, for callers still on 0.1.0's code during the upgrade
  def value, do: GenServer.call(__MODULE__, :value)
  def state, do: GenServer.call(__MODULE__, :state)

  @impl true
  def init(state), do: {:ok, state}

  @impl true
  def handle_call(:bump, _from, s), do: {:reply, s.count + 1, %{s | count: s.count + 1}}
  def handle_call(:value, _from, s), do: {:reply, s.count, s}
  def handle_call(:state, _from, s), do: {:reply, s, s}

  @impl true
  def code_change(_old, n, _extra) when is_integer(n), do: {:ok, %{count: n, upgraded_from: "0.1.0"}}
  def code_change(_old, state, _extra), do: {:ok, state}
end
"##;

/// A module 0.2.0 adds.
pub const EXTRA_V2: &str = r##"defmodule Counter.Extra do
  @moduledoc "Describes 0.2.0's state."
  def describe(%{count: n, upgraded_from: from}), do: "#{n} (a map, upgraded from #{inspect(from)})"
end
"##;

/// 0.3.0's counter: 0.2.0's, but its `code_change/3` cannot convert anything.
pub fn store_v3() -> String {
    let (head, _) = STORE_V2
        .split_once("  def code_change(")
        .expect("0.2.0 has code_change/3");
    format!(
        "{head}  def code_change(_old, state, _extra), do: raise(\"0.3.0 cannot convert #{{inspect(state)}}\")\nend\n"
    )
}

/// Writes version `version` of the app: its `mix.exs` version, the page's banner, and the
/// given files.
pub fn write_version(repo: &std::path::Path, version: &str, files: &[(&str, &str)]) {
    let mix = repo.join("mix.exs");
    let text = std::fs::read_to_string(&mix).expect("mix.exs");
    let old = text
        .lines()
        .find(|l| l.trim_start().starts_with("version:"))
        .expect("a version line")
        .to_owned();
    std::fs::write(
        &mix,
        text.replace(&old, &format!("      version: \"{version}\",")),
    )
    .expect("mix.exs");
    let page = repo.join("lib/counter/page.ex");
    let text = std::fs::read_to_string(&page).expect("page");
    let banner = text
        .split("\"counter ")
        .nth(1)
        .and_then(|rest| rest.split(':').next())
        .expect("a banner")
        .to_owned();
    let mut text = text.replace(
        &format!("counter {banner}:"),
        &format!("counter {version}:"),
    );
    if version != "0.1.0" {
        text = text.replace(
            "#{Counter.Store.value()}",
            "#{Counter.Extra.describe(Counter.Store.state())}",
        );
    }
    std::fs::write(&page, text).expect("page");
    for (path, body) in files {
        let path = repo.join(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        std::fs::write(path, body).expect("write");
    }
}

/// Writes 0.2.0: a map for the counter's state (converted by `code_change/3`), a changed
/// page, an added module.
pub fn write_v0_2_0(repo: &std::path::Path) {
    write_version(
        repo,
        "0.2.0",
        &[
            ("lib/counter/store.ex", STORE_V2),
            ("lib/counter/extra.ex", EXTRA_V2),
        ],
    );
}

/// 0.2.0 whose `code_change/3` runs `first` (an Elixir expression, its value dropped unless
/// it raises or is falsy) before converting 0.1.0's integer.
pub fn write_v0_2_0_with(repo: &std::path::Path, first: &str) {
    let (from, to) = (
        "def code_change(_old, n, _extra) when is_integer(n), do:",
        format!("def code_change(_old, n, _extra) when is_integer(n), do: ({first}) ||"),
    );
    let store = STORE_V2.replacen(from, &to, 1);
    assert_ne!(store, STORE_V2, "0.2.0's code_change/3 moved");
    write_version(
        repo,
        "0.2.0",
        &[
            ("lib/counter/store.ex", &store),
            ("lib/counter/extra.ex", EXTRA_V2),
        ],
    );
}
