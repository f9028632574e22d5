"""What the compatibility suite needs around GIGALIXIR's official CLI: a real
`gigalixir-platform` of its own (free port, own data dir, unique Docker instance label),
a HOME per user with its netrc, the official CLI and ours, real git, and our API to check
the platform's state.

Environment (scripts/test-compat sets it):
  COMPAT_BIN_DIR     where `gigalixir-platform` and our `gigalixir` are (default target/debug)
  COMPAT_OFFICIAL    the official CLI's `gigalixir` (default: next to this Python)
  COMPAT_INSTANCE    the platform's --instance (default: a fresh one)
  COMPAT_WORK        a directory for the platform's pid file, data and logs (default: a temp dir)
"""

import base64
import json
import netrc
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")

# Lines the official CLI adds to stderr when it fails: its report to Rollbar (GIGALIXIR's
# error tracker), refused at once by the dead proxy. The CLI's own message is the rest.
_ROLLBAR_NOISE_STARTS = (
    "Traceback ",
    "  ",
    "Exception while posting item",
    "The above exception",
    "During handling",
    "urllib3.",
    "requests.",
    "ConnectionRefusedError",
)

# Long enough for a cold build and a deploy on a busy 2-core machine; only a failure waits
# this long.
DEADLINE_SECONDS = 600


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def without_proxies(env):
    """A copy of `env` without any proxy setting, whatever its case."""
    return {k: v for k, v in env.items() if not k.lower().endswith("_proxy")}


def cli_message(stderr):
    """The official CLI's stderr without its Rollbar report: what it tells the user."""
    return "\n".join(
        line
        for line in stderr.splitlines()
        if line.strip() and not line.startswith(_ROLLBAR_NOISE_STARTS)
    )


def wait_for(what, check, deadline=DEADLINE_SECONDS, every=0.5):
    """Polls `check` until it returns something true, and returns it; fails with `what`."""
    end = time.monotonic() + deadline
    last = None
    while time.monotonic() < end:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"gave up waiting for {what}; last seen: {last!r}")


class Result:
    """A finished command: exit code, stdout, stderr."""

    def __init__(self, args, proc):
        self.args = args
        self.code = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    @property
    def message(self):
        return cli_message(self.err)

    def json(self):
        try:
            return json.loads(self.out)
        except ValueError as e:
            raise AssertionError(f"{self.args}: stdout is not JSON ({e}):\n{self}") from e

    def __str__(self):
        return f"$ {' '.join(self.args)}\nexit {self.code}\n--- stdout\n{self.out}--- stderr\n{self.err}"


class User:
    """A person using the platform: an email, a password and a HOME of their own."""

    def __init__(self, platform, email, password):
        self.platform = platform
        self.email = email
        self.password = password
        self.home = tempfile.mkdtemp(prefix="home-", dir=platform.work)

    @property
    def netrc_path(self):
        return os.path.join(self.home, ".netrc")

    def netrc_hosts(self):
        """The netrc entries, as {machine: (login, password)}."""
        if not os.path.exists(self.netrc_path):
            return {}
        return {h: (a[0], a[2]) for h, a in netrc.netrc(self.netrc_path).hosts.items()}

    def key(self, machine="localhost"):
        """The API key the netrc holds for `machine`."""
        return self.netrc_hosts()[machine][1]

    def _env(self, extra):
        env = without_proxies(os.environ)
        for name in ("GIGALIXIR_APP", "GIGALIXIR_ENV", "GIGALIXIR_IDENTITY_FILE", "NETRC"):
            env.pop(name, None)
        env["HOME"] = self.home
        env.update(extra)
        return env

    def _run(self, argv, cwd, env, stdin_text):
        proc = subprocess.run(
            argv,
            cwd=cwd or self.home,
            env=env,
            input=stdin_text if stdin_text is not None else None,
            stdin=None if stdin_text is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=DEADLINE_SECONDS,
        )
        return Result(argv, proc)

    def official_env(self, env=None):
        """The environment GIGALIXIR's official CLI runs in: this user's HOME, the
        platform as its host, and its error reports (to Rollbar, over HTTPS) sent to a dead
        proxy, where they fail at once."""
        extra = {
            "GIGALIXIR_CLI__HOST": self.platform.url,
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "NO_PROXY": "localhost,127.0.0.1",
        }
        extra.update(env or {})
        return self._env(extra)

    def official(self, *args, cwd=None, env=None, stdin_text=None):
        """Runs GIGALIXIR's official CLI, unchanged, against this platform."""
        argv = [self.platform.official_cli, *args]
        return self._run(argv, cwd, self.official_env(env), stdin_text)

    def ours(self, *args, cwd=None):
        """Runs our `gigalixir` CLI."""
        argv = [self.platform.binary("gigalixir"), *args]
        return self._run(argv, cwd, self._env({"GIGALIXIR_API_URL": self.platform.url}), None)

    def git(self, *args, cwd):
        env = self._env(
            {
                "GIT_AUTHOR_NAME": "Ada",
                "GIT_AUTHOR_EMAIL": self.email,
                "GIT_COMMITTER_NAME": "Ada",
                "GIT_COMMITTER_EMAIL": self.email,
                "GIT_TERMINAL_PROMPT": "0",
                "GIT_CONFIG_NOSYSTEM": "1",
            }
        )
        env.pop("GIT_DIR", None)
        return self._run(["git", *args], cwd, env, None)

    def api(self, method, path, body=None, key=None):
        """Our API as this user (netrc key for `localhost` unless `key`): (status, JSON)."""
        secret = key if key is not None else self.key()
        token = base64.b64encode(f"{self.email}:{secret}".encode()).decode()
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.platform.url + path, data=data, method=method)
        req.add_header("Authorization", "Basic " + token)
        req.add_header("Content-Type", "application/json")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=60) as resp:
                return resp.status, json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")


class Platform:
    """A running `gigalixir-platform`; `stop()` ends it and removes its containers and
    networks and build-cache volumes."""

    def __init__(self, args=(), env=None, data="data"):
        """`args` and `env` are added to the platform's; `data` names its data directory
        in the work directory (a test module with a platform of its own takes its own)."""
        self.args = list(args)
        self.env = dict(env or {})
        self.bin_dir = os.environ.get("COMPAT_BIN_DIR") or os.path.join(ROOT, "target", "debug")
        self.official_cli = os.environ.get("COMPAT_OFFICIAL") or os.path.join(
            os.path.dirname(sys.executable), "gigalixir"
        )
        self.instance = os.environ.get("COMPAT_INSTANCE") or "compat" + uuid.uuid4().hex[:10]
        self.own_work = not os.environ.get("COMPAT_WORK")
        self.work = os.environ.get("COMPAT_WORK") or tempfile.mkdtemp(prefix="gigalixir-compat-")
        os.makedirs(self.work, exist_ok=True)
        # PostgreSQL's user passes through to the platform's database cluster.
        os.chmod(self.work, 0o711)
        self.port = free_port()
        self.url = f"http://localhost:{self.port}"
        self.data_dir = os.path.join(self.work, data)
        self.log_path = os.path.join(self.work, "platform.log")
        self.proc = None

    def binary(self, name):
        path = os.path.join(self.bin_dir, name)
        if not os.path.exists(path):
            raise AssertionError(
                f"{path} is missing: run scripts/test-compat (it builds it), "
                "or `cargo build -p gigalixir-platform -p gigalixir-cli`"
            )
        return path

    def check_prerequisites(self):
        if not os.path.exists(self.official_cli):
            raise AssertionError(
                f"GIGALIXIR's CLI is missing at {self.official_cli}: run scripts/test-compat"
            )
        for image in ("gigalixir-builder:bookworm", "gigalixir-runner:bookworm", "gigalixir-builder:trixie", "gigalixir-runner:trixie"):
            found = subprocess.run(
                ["docker", "image", "inspect", image],
                stdin=subprocess.DEVNULL,
                capture_output=True,
            )
            if found.returncode != 0:
                raise AssertionError(f"the image {image} is missing: run scripts/images")
        for tool in ("git", "ssh", "ssh-keygen"):
            if shutil.which(tool) is None:
                raise AssertionError(f"`{tool}` is missing: install git and openssh-client")

    def start(self):
        self.check_prerequisites()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                self.binary("gigalixir-platform"),
                "--port",
                str(self.port),
                "--instance",
                self.instance,
                "--https-port",
                "0",
                "--data-dir",
                self.data_dir,
                *self.args,
            ],
            # Accounts are active at once unless a test starts a platform that confirms
            # emails (env={"GIGALIXIR_NO_EMAIL_CONFIRMATION": "false", ...}).
            env={
                **without_proxies(os.environ),
                "RUST_LOG": "info",
                "GIGALIXIR_NO_EMAIL_CONFIRMATION": "true",
                **self.env,
            },
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        log.close()
        with open(os.path.join(self.work, "platform.pid"), "w") as f:
            f.write(str(self.proc.pid))

        def up():
            if self.proc.poll() is not None:
                raise AssertionError(f"the platform exited at start:\n{self.log()}")
            try:
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                with opener.open(f"http://127.0.0.1:{self.port}/healthz", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for("the platform to answer /healthz", up, deadline=60, every=0.1)

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # Its database cluster outlives it: a fast shutdown (SIGINT to the postmaster).
        pidfile = os.path.join(self.data_dir, "postgres", "data", "postmaster.pid")
        try:
            with open(pidfile) as f:
                os.kill(int(f.readline().strip()), signal.SIGINT)
            wait_for("the database cluster to stop", lambda: not os.path.exists(pidfile), deadline=30)
        except (OSError, ValueError, AssertionError):
            pass
        # Gone: scripts/test-compat must not signal this pid again.
        try:
            os.remove(os.path.join(self.work, "platform.pid"))
        except OSError:
            pass
        label = f"label=gigalixir.instance={self.instance}"
        removals = {
            "container": ["rm", "-f"],
            "network": ["network", "rm"],
            "volume": ["volume", "rm", "-f"],
        }
        for kind, listing in (
            ("container", ["ps", "-aq"]),
            ("network", ["network", "ls", "-q"]),
            ("volume", ["volume", "ls", "-q"]),
        ):
            ids = subprocess.run(
                ["docker", *listing, "--filter", label],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
            ).stdout.split()
            if ids:
                rm = removals[kind]
                subprocess.run(
                    ["docker", *rm, *ids], stdin=subprocess.DEVNULL, capture_output=True
                )
        if self.own_work:
            shutil.rmtree(self.work, ignore_errors=True)

    def containers(self, app):
        """Names of the running containers of `app` on this platform."""
        out = subprocess.run(
            [
                "docker",
                "ps",
                "--format",
                "{{.Names}}",
                "--filter",
                f"label=gigalixir.instance={self.instance}",
                "--filter",
                f"label=gigalixir.app={app}",
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        ).stdout
        return sorted(out.split())

    def get_app(self, app, path="/"):
        """GET `path` of `app` through the router: (status, body); (0, error) when down."""
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}")
        req.add_header("Host", f"{app}.localhost:{self.port}")
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(req, timeout=10) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")
        except OSError as e:
            return 0, str(e)

    def fixture_repo(self, user, name):
        """A fresh git repository (one commit on master) with tests/fixtures/NAME."""
        repo = os.path.join(tempfile.mkdtemp(prefix="repo-", dir=self.work), name)
        shutil.copytree(os.path.join(FIXTURES, name), repo)
        for args in (["init", "-q", "--initial-branch=master"], ["add", "-A"], ["commit", "-qm", "first"]):
            r = user.git(*args, cwd=repo)
            if r.code != 0:
                raise AssertionError(str(r))
        return repo


class Checks:
    """What the test cases of both modules check of a CLI run (mixed into a TestCase)."""

    def ok(self, result):
        self.assertEqual(result.code, 0, str(result))
        return result

    def fails_with(self, result, message):
        """The command failed (exit 1) and told the user exactly `message`."""
        self.assertEqual(result.code, 1, str(result))
        self.assertEqual(result.message, message, str(result))
