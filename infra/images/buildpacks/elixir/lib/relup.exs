# relup.exs OLD_ROOT NEW_ROOT [SOURCE]: prepares the release in NEW_ROOT to hot-upgrade a node
# running the release in OLD_ROOT (an OTP release upgrade): an appup per application whose
# version changed (the app's own rel/appups/APP/APP.appup from SOURCE if it ships one, else
# generated from the modules that changed), then the relup. Prints what it did.
# Exit: 0 prepared, 3 not possible (the reason on the last line), 4 the same version.
defmodule Relup do
  def main([old_root, new_root | rest]) do
    source = List.first(rest)
    {old_erts, old_vsn} = start_erl(old_root)
    {new_erts, new_vsn} = start_erl(new_root)
    if old_vsn == new_vsn, do: stop(4, "the release version is #{new_vsn} in both")
    if old_erts != new_erts, do: no("the Erlang runtime changed (ERTS #{old_erts} -> #{new_erts})")
    {old_rel, {old_name, old_apps}} = rel(old_root, old_vsn)
    {new_rel, {new_name, new_apps}} = rel(new_root, new_vsn)
    if old_name != new_name, do: no("the release name changed (#{old_name} -> #{new_name})")
    added = Map.keys(new_apps) -- Map.keys(old_apps)
    removed = Map.keys(old_apps) -- Map.keys(new_apps)
    if added != [], do: no("applications were added (#{Enum.join(added, ", ")})")
    if removed != [], do: no("applications were removed (#{Enum.join(removed, ", ")})")
    changed = for {app, vsn} <- new_apps, old_apps[app] != vsn, do: app
    if changed == [], do: no("no application's version changed: bump the version in mix.exs")
    for app <- Enum.sort(changed), do: appup(app, old_root, old_apps[app], new_root, new_apps[app], source)
    paths =
      for root <- [old_root, new_root], dir <- Path.wildcard(Path.join(root, "lib/*/ebin")),
          do: String.to_charlist(dir)
    outdir = Path.join(new_root, "releases/#{new_vsn}")
    # A rollback to the old version is a hot downgrade only when every changed application's
    # appup says how to go back (generated appups do not: a process state converted by
    # code_change/3 cannot be assumed to convert back).
    down? = Enum.all?(changed, &downgrades?(new_root, &1, new_apps[&1], old_apps[&1]))
    downs = if down?, do: [to_rel(old_rel)], else: []
    case :systools.make_relup(to_rel(new_rel), [to_rel(old_rel)], downs, [:silent, :no_warn_sasl, path: paths, outdir: String.to_charlist(outdir)]) do
      {:ok, _relup, _mod, _warnings} ->
        IO.puts("relup #{old_vsn} -> #{new_vsn} written")
        IO.puts(
          if down?,
            do: "a rollback to #{old_vsn} is a hot downgrade (the appups' downgrade instructions)",
            else: "a rollback to #{old_vsn} restarts the app (no downgrade instructions in the appups)"
        )

      {:error, mod, reason} -> no("the relup could not be made: #{mod.format_error(reason)}")
      other -> no("the relup could not be made: #{inspect(other)}")
    end
  end

  defp start_erl(root) do
    [erts, vsn] = Path.join(root, "releases/start_erl.data") |> File.read!() |> String.split()
    {erts, vsn}
  end

  defp rel(root, vsn) do
    [file] =
      Path.wildcard(Path.join(root, "releases/#{vsn}/*.rel"))
      |> Enum.reject(&String.ends_with?(&1, "/start_clean.rel"))
    {:ok, [{:release, {name, _}, _erts, apps}]} = :file.consult(String.to_charlist(file))
    {file, {to_string(name), Map.new(apps, fn a -> {elem(a, 0), to_string(elem(a, 1))} end)}}
  end

  defp to_rel(file), do: file |> String.trim_trailing(".rel") |> String.to_charlist()

  defp appup(app, old_root, old_vsn, new_root, new_vsn, source) do
    ebin = Path.join(new_root, "lib/#{app}-#{new_vsn}/ebin")
    target = Path.join(ebin, "#{app}.appup")
    custom = source && Path.join(source, "rel/appups/#{app}/#{app}.appup")
    cond do
      custom && File.exists?(custom) ->
        File.cp!(custom, target)
        IO.puts("#{app} #{old_vsn} -> #{new_vsn}: its own appup (rel/appups/#{app}/#{app}.appup)")
      File.exists?(target) ->
        IO.puts("#{app} #{old_vsn} -> #{new_vsn}: the appup it ships")
      true ->
        old = beams(Path.join(old_root, "lib/#{app}-#{old_vsn}/ebin"))
        new = beams(ebin)
        added = Map.keys(new) -- Map.keys(old)
        removed = Map.keys(old) -- Map.keys(new)
        kept = for m <- Map.keys(new), Map.has_key?(old, m), md5(old[m]) != md5(new[m]), do: m
        {update, load} = Enum.split_with(Enum.sort(kept), &code_change?(new[&1]))
        # Each changed module goes after the changed modules it calls (systools orders the
        # loads by these), and its old code is purged once no process runs it (soft): a
        # request in flight in a changed module finishes instead of being killed.
        moved = added ++ kept
        deps = fn m -> calls(new[m], moved -- [m]) end
        up =
          Enum.map(Enum.sort(added), &{:add_module, &1, deps.(&1)}) ++
            Enum.map(load, &{:load_module, &1, :brutal_purge, :soft_purge, deps.(&1)}) ++
            Enum.map(update, &{:update, &1, {:advanced, []}, :brutal_purge, :soft_purge, deps.(&1)}) ++
            Enum.map(Enum.sort(removed), &{:delete_module, &1})
        appup = {String.to_charlist(new_vsn), [{String.to_charlist(old_vsn), up}], []}
        File.write!(target, :io_lib.format(~c"~p.~n", [appup]))
        say = fn what, ms -> if ms != [], do: "#{what} #{Enum.map_join(ms, ", ", &inspect/1)}" end
        parts = [say.("updated", update), say.("loaded", load), say.("added", added), say.("removed", removed)]
        IO.puts("#{app} #{old_vsn} -> #{new_vsn}: " <> (parts |> Enum.reject(&is_nil/1) |> Enum.join("; ") |> then(&if(&1 == "", do: "no module changed", else: &1))))
    end
  end

  # Whether the appup of `app` (as the new release holds it) has instructions back to `old`.
  defp downgrades?(root, app, vsn, old) do
    case :file.consult(String.to_charlist(Path.join(root, "lib/#{app}-#{vsn}/ebin/#{app}.appup"))) do
      {:ok, [{_vsn, _ups, downs}]} when is_list(downs) ->
        Enum.any?(downs, fn {to, _} -> vsn_matches?(to, old); _ -> false end)
      _ ->
        false
    end
  end

  defp vsn_matches?(to, vsn) when is_list(to), do: to_string(to) == vsn
  defp vsn_matches?(to, vsn) when is_binary(to), do: Regex.match?(~r/\A(?:#{to})\z/, vsn)
  defp vsn_matches?(_, _), do: false

  defp beams(dir) do
    for f <- Path.wildcard(Path.join(dir, "*.beam")), into: %{} do
      {f |> Path.basename(".beam") |> String.to_atom(), String.to_charlist(f)}
    end
  end

  defp md5(file) do
    {:ok, {_, md5}} = :beam_lib.md5(file)
    md5
  end

  # The modules among `among` that the module in `file` calls.
  defp calls(file, among) do
    {:ok, {_, [imports: imports]}} = :beam_lib.chunks(file, [:imports])
    called = for {m, _f, _a} <- imports, into: MapSet.new(), do: m
    Enum.filter(Enum.sort(among), &MapSet.member?(called, &1))
  end

  defp code_change?(file) do
    {:ok, {_, [exports: exports]}} = :beam_lib.chunks(file, [:exports])
    {:code_change, 3} in exports
  end

  defp no(why), do: stop(3, "Hot upgrade not possible: #{why}")

  defp stop(code, line) do
    IO.puts(line)
    System.halt(code)
  end
end

Relup.main(System.argv())
