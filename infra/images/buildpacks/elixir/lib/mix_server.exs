# mix_server.exs SOCKET: a Mix kept running in a warm builder, so the next build of the app
# skips the start of the VM, Elixir and Mix (about half a second) and the loading of its code.
#
# Started by bin/compile after a build (with the environment that build's mix had), it listens
# on the Unix socket SOCKET and runs one request at a time, each on its own connection. Every
# frame is a 4-byte big-endian length and its bytes. A request is one frame: the working
# directory, then the environment as NAME=VALUE entries, then the mix arguments, one per line,
# parts separated by lines "--". The answer is frames of output ("o" and the bytes, from both
# standard output and standard error, in the order written) and a last frame "s" and the exit
# status in decimal, after which the connection closes.
#
# Before each request Mix forgets what ran (tasks, the project stack, its caches) and the
# environment becomes the request's exactly, so a request runs as `mix ARGS` would. Whatever
# the build changes that Mix reads only once (mix.exs files, the lock, config/) is for
# bin/compile to notice: it starts a new server then. After a request that failed, or when the
# client goes away before the end, the server stops: the next build starts a new one. It also
# stops after ten minutes without a request (it holds about 100 MB that an idle builder
# would otherwise keep for its two hours), and after 100 requests (what a long-lived VM
# gathers stays bounded).
[socket] = System.argv()

defmodule GigalixirMixServer.Output do
  @moduledoc false
  # an I/O server (Erlang's I/O protocol) that sends what is written to the client

  def start(conn), do: spawn_link(fn -> loop(conn) end)

  defp loop(conn) do
    receive do
      {:io_request, from, reply_as, request} ->
        send(from, {:io_reply, reply_as, handle(conn, request)})
        loop(conn)

      {:flush, from} ->
        send(from, :flushed)
        loop(conn)
    end
  end

  defp handle(conn, {:put_chars, encoding, chars}) do
    case :unicode.characters_to_binary(chars, encoding, :unicode) do
      bin when is_binary(bin) -> emit(conn, bin)
      _ -> {:error, :put_chars}
    end
  end

  defp handle(conn, {:put_chars, encoding, m, f, a}) do
    handle(conn, {:put_chars, encoding, apply(m, f, a)})
  end

  defp handle(conn, {:put_chars, chars}), do: handle(conn, {:put_chars, :latin1, chars})

  defp handle(conn, {:requests, requests}) do
    Enum.reduce_while(requests, :ok, fn r, _ ->
      case handle(conn, r) do
        :ok -> {:cont, :ok}
        other -> {:halt, other}
      end
    end)
  end

  defp handle(_conn, {:setopts, _}), do: :ok
  defp handle(_conn, :getopts), do: [binary: true, encoding: :unicode]
  defp handle(_conn, {:get_geometry, _}), do: {:error, :enotsup}
  defp handle(_conn, _input), do: :eof

  defp emit(_conn, ""), do: :ok

  defp emit(conn, bin) do
    case :gen_tcp.send(conn, ["o", bin]) do
      :ok -> :ok
      # the client went away: nothing of this build matters any more
      {:error, _} -> System.halt(1)
    end
  end
end

defmodule GigalixirMixServer do
  @moduledoc false

  def listen(socket) do
    :persistent_term.put(__MODULE__, socket)
    File.cd!(Path.dirname(socket))
    File.rm(socket)

    {:ok, listener} =
      :gen_tcp.listen(0, [:binary, ifaddr: {:local, socket}, packet: 4, active: false])

    File.chmod!(socket, 0o600)
    Mix.start()
    # what every build uses, loaded before the first request
    for app <- [:mix, :elixir, :eex], mod <- Application.spec(app, :modules) || [] do
      Code.ensure_loaded(mod)
    end

    accept(listener, 0)
  end

  @idle_ms 600_000
  @max_requests 100

  defp accept(_listener, @max_requests), do: System.halt(0)

  defp accept(listener, served) do
    conn =
      case :gen_tcp.accept(listener, @idle_ms) do
        {:ok, conn} -> conn
        {:error, _} -> System.halt(0)
      end

    case :gen_tcp.recv(conn, 0, 10_000) do
      {:ok, request} ->
        status = serve(conn, parse(request))
        :gen_tcp.send(conn, ["s", Integer.to_string(status)])
        :gen_tcp.close(conn)
        if status != 0, do: System.halt(0)

      {:error, _} ->
        :gen_tcp.close(conn)
    end

    accept(listener, served + 1)
  end

  defp parse(request) do
    [cwd, "--" | rest] = String.split(request, "\n")
    {env, ["--" | args]} = Enum.split_while(rest, &(&1 != "--"))
    {cwd, Enum.map(env, &unescape/1), args}
  end

  # environment values may hold newlines: the client writes them as \n and backslashes as \\
  defp unescape(entry) do
    Regex.replace(~r/\\(.)/, entry, fn _, "n" -> "\n"; _, c -> c end)
  end

  defp serve(conn, {cwd, env, args}) do
    out = GigalixirMixServer.Output.start(conn)
    :inet.setopts(conn, active: :once)
    parent = self()

    {pid, ref} =
      spawn_monitor(fn ->
        Process.group_leader(self(), out)
        send(parent, {:done, run(out, cwd, env, args)})
      end)

    receive do
      {:done, status} ->
        Process.demonitor(ref, [:flush])
        flush(out)
        status

      {:DOWN, ^ref, _, _, reason} ->
        write(out, "** (mix) #{Exception.format_exit(reason)}\n")
        flush(out)
        1

      {:tcp_closed, ^conn} ->
        Process.exit(pid, :kill)
        System.halt(1)
    end
  end

  defp flush(out) do
    send(out, {:flush, self()})

    receive do
      :flushed -> :ok
    end
  end

  defp write(out, text), do: IO.write(out, text)

  defp run(out, cwd, env, args) do
    # standard error goes to the client as well, for this request
    previous = Process.whereis(:standard_error)
    swap(:standard_error, previous, out)

    try do
      reset(cwd, env)
      Mix.CLI.main(args)
      0
    rescue
      e in Mix.Error ->
        write(out, "** (Mix) #{Exception.message(e)}\n")
        1

      e ->
        write(out, Exception.format(:error, e, __STACKTRACE__))
        1
    catch
      :exit, {:shutdown, 0} ->
        0

      :exit, {:shutdown, code} when is_integer(code) ->
        code

      kind, reason ->
        write(out, Exception.format(kind, reason, __STACKTRACE__))
        1
    after
      swap(:standard_error, out, previous)
      # the build's directory goes with it, and a process the VM starts (a port) cannot
      # start in a directory that is gone
      File.cd!(Path.dirname(socket()))
    end
  end

  defp socket, do: :persistent_term.get(__MODULE__)

  defp swap(name, from, to) do
    if from && Process.whereis(name) == from, do: Process.unregister(name)
    if to, do: Process.register(to, name)
  end

  # what one `mix` run starts from
  defp reset(cwd, env) do
    File.cd!(cwd)
    wanted = Map.new(env, fn entry -> List.to_tuple(String.split(entry, "=", parts: 2)) end)

    for {name, _} <- System.get_env(), not Map.has_key?(wanted, name),
        do: System.delete_env(name)

    System.put_env(wanted)
    Mix.Task.clear()
    Mix.State.clear_cache()
    Mix.ProjectStack.clear_stack()

    # the projects' modules (mix.exs files) are compiled again by Mix: no "redefining" warning
    for {mod, _} <- :code.all_loaded(),
        source = mod.module_info(:compile)[:source],
        is_list(source) and Path.basename(List.to_string(source)) == "mix.exs" do
      :code.purge(mod)
      :code.delete(mod)
    end

    :ok
  end
end

GigalixirMixServer.listen(socket)
