"""GIGALIXIR's official CLI (`gigalixir==1.16.1` from PyPI), unchanged, drives the platform.

Every command runs as a user would run it, with `GIGALIXIR_CLI__HOST` pointing at a real
platform started for this suite and the user's own HOME (netrc there). The assertions are
on what the CLI prints and on the platform's state, read back through our API.
Run with scripts/test-compat.
"""

import os
import subprocess
import unittest

from harness import Checks, Platform, User, wait_for

PLATFORM = None
ADA = None

# What the official CLI says for a 401 (its `AuthException`).
NO_ACCESS = (
    "Sorry, you do not have access to that app or account. Try passing the app name "
    "explicitly with the `-a` flag. If that doesn't work, try running `gigalixir login` or "
    "check your ~/.netrc file."
)


def setUpModule():
    global PLATFORM, ADA
    # Drains to 127.0.0.1 (refused connections, nothing leaves this machine).
    PLATFORM = Platform(args=["--drains-allow-loopback"])
    unittest.addModuleCleanup(PLATFORM.stop)
    PLATFORM.start()
    ADA = sign_up("ada@example.com", "correct-horse-battery")


def sign_up(email, password):
    """An account made and logged in with our CLI (netrc `machine localhost`)."""
    user = User(PLATFORM, email, password)
    for args in (
        ["create", "user", "-e", email, "-p", password],
        ["login", "-e", email, "-p", password, "-y"],
    ):
        r = user.ours(*args)
        if r.code != 0:
            raise AssertionError(str(r))
    return user


class Case(Checks, unittest.TestCase):
    maxDiff = None

    def release_deployed(self, user, app, version):
        def deployed():
            status, body = user.api("GET", f"/api/apps/{app}/releases")
            self.assertEqual(status, 200, body)
            for r in body["data"]:
                if r["version"] == version:
                    self.assertNotEqual(r["status"], "failed", f"v{version} failed: {r}")
                    return r["status"] == "deployed"
            return False

        wait_for(f"{app} v{version} to be deployed", deployed)


class Account(Case):
    def test_account_shows_the_account(self):
        r = self.ok(ADA.official("account"))
        data = r.json()
        self.assertEqual(data["email"], "ada@example.com")
        self.assertEqual(data["tier"], "FREE")

    def test_a_bad_key_gets_the_clis_no_access_message(self):
        eve = User(PLATFORM, "ada@example.com", "unused")
        with open(eve.netrc_path, "w") as f:
            f.write("machine localhost\n\tlogin ada@example.com\n\tpassword 00ff\n")
        os.chmod(eve.netrc_path, 0o600)
        self.fails_with(eve.official("account"), NO_ACCESS)
        self.fails_with(eve.official("apps"), NO_ACCESS)

    def test_ssh_keys_are_listed_added_and_removed(self):
        path = os.path.join(ADA.home, "id_account_test")
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ada@laptop", "-f", path],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        with open(path + ".pub") as f:
            public = f.read().strip()
        fingerprint = subprocess.run(
            ["ssh-keygen", "-l", "-f", path + ".pub"], capture_output=True, text=True, check=True
        ).stdout.split()[1]

        r = self.ok(ADA.official("account:ssh_keys:add", public))
        self.assertEqual(
            r.message,
            "Please allow a few minutes for the SSH key to propagate to your run containers.",
        )
        listed = [k for k in self.ok(ADA.official("account:ssh_keys")).json() if k["fingerprint"] == fingerprint]
        self.assertEqual(len(listed), 1, listed)
        self.assertEqual(listed[0]["key"], public)
        status, body = ADA.api("GET", "/api/ssh_keys")
        self.assertIn(fingerprint, [k["fingerprint"] for k in body["data"]])

        r = self.fails_with_prefix(
            ADA.official("account:ssh_keys:add", public), '{"errors":{"ssh_key":['
        )

        key_id = listed[0]["id"]
        r = self.ok(ADA.official("account:ssh_keys:remove", key_id))
        self.assertEqual(r.out, "")
        status, body = ADA.api("GET", "/api/ssh_keys")
        self.assertNotIn(fingerprint, [k["fingerprint"] for k in body["data"]])
        self.fails_with(
            ADA.official("account:ssh_keys:remove", key_id),
            '{"errors":{"":["You have no SSH key with id `%s`."]}}' % key_id,
        )
        self.fails_with_prefix(
            ADA.official("account:ssh_keys:add", "not-a-key"),
            '{"errors":{"ssh_key":["SSH key has an unknown type `not-a-key`',
        )

    def fails_with_prefix(self, result, prefix):
        self.assertEqual(result.code, 1, str(result))
        self.assertTrue(result.message.startswith(prefix), str(result))
        return result


class Login(Case):
    """`login` and `account:api_key:reset` write GIGALIXIR's host names to the netrc."""

    @classmethod
    def setUpClass(cls):
        # Its own account: a key reset revokes every key of the account. The password has
        # characters the official CLI percent-encodes.
        cls.user = sign_up("grace@example.com", "horse battery@staple%25/é")

    def official_login(self):
        u = self.user
        r = self.ok(u.official("login", "-e", u.email, "-p", u.password, "-y"))
        self.assertEqual(r.message, f"Logged in as {u.email}.")
        return r

    def test_login_writes_gigalixir_host_names(self):
        u = self.user
        before = u.key("localhost")
        self.official_login()
        hosts = u.netrc_hosts()
        self.assertEqual(sorted(hosts), ["api.gigalixir.com", "git.gigalixir.com", "localhost"])
        self.assertEqual(hosts["api.gigalixir.com"], hosts["git.gigalixir.com"])
        self.assertEqual(hosts["api.gigalixir.com"][0], u.email)
        self.assertEqual(hosts["localhost"], (u.email, before))
        # The key it got is a real one, and the one the platform's host uses still works.
        self.assertEqual(u.api("GET", "/api/users", key=u.key("api.gigalixir.com"))[0], 200)
        self.assertEqual(self.ok(u.official("account")).json()["email"], u.email)

    def test_api_key_reset_answered_no_prints_the_key(self):
        u = self.user
        old = u.key("localhost")
        r = self.ok(u.official("account:api_key:reset", "-p", u.password, stdin_text="n\n"))
        self.assertEqual(r.out, "Would you like to save your api key to your ~/.netrc file? [y/N]: ")
        first, warning = r.message.splitlines()
        self.assertTrue(first.startswith("Your api key is "), r.message)
        self.assertIn("~/.netrc file contains your GIGALIXIR credentials", warning)
        new = first[len("Your api key is "):]
        self.assertEqual(u.api("GET", "/api/users", key=new)[0], 200)
        self.assertEqual(u.api("GET", "/api/users", key=old)[0], 401)
        self.ok(u.ours("login", "-e", u.email, "-p", u.password, "-y"))

    def test_api_key_reset_y_needs_its_own_netrc_entry(self):
        # With only the platform's entry, it resets the key, then fails to save it.
        heidi = sign_up("heidi@example.com", "password-of-heidi")
        r = heidi.official("account:api_key:reset", "-p", heidi.password, "-y")
        self.fails_with(r, "'api.gigalixir.com'")
        self.assertEqual(heidi.api("GET", "/api/users")[0], 401)
        self.assertEqual(sorted(heidi.netrc_hosts()), ["localhost"])

    def test_login_with_a_wrong_password_is_refused(self):
        u = self.user
        self.fails_with(
            u.official("login", "-e", u.email, "-p", "wrong password", "-y"),
            "Sorry, we could not authenticate you. If you need to reset your password, run "
            f"`gigalixir account:password:reset --email={u.email}`.",
        )

    def test_api_key_reset_revokes_every_key(self):
        u = self.user
        self.official_login()
        old = u.key("localhost")
        # A wrong password changes nothing.
        self.fails_with(u.official("account:api_key:reset", "-p", "wrong password", "-y"), NO_ACCESS)
        self.assertEqual(u.api("GET", "/api/users", key=old)[0], 200)

        r = self.ok(u.official("account:api_key:reset", "-p", u.password, "-y"))
        self.assertEqual(r.out, "")
        new = u.key("api.gigalixir.com")
        self.assertEqual(u.key("git.gigalixir.com"), new)
        self.assertNotEqual(new, old)
        self.assertEqual(u.api("GET", "/api/users", key=new)[0], 200)
        self.assertEqual(u.api("GET", "/api/users", key=old)[0], 401)
        # The platform's netrc entry still holds the revoked key until `gigalixir login`
        # (ours) replaces it.
        self.assertEqual(u.key("localhost"), old)
        self.fails_with(u.official("account"), NO_ACCESS)
        self.ok(u.ours("login", "-e", u.email, "-p", u.password, "-y"))
        self.assertEqual(self.ok(u.official("account")).json()["email"], u.email)


class Apps(Case):
    """Apps and config, without a deploy."""

    def create(self, name):
        repo = PLATFORM.fixture_repo(ADA, "hello")
        r = self.ok(ADA.official("create", "-n", name, cwd=repo))
        self.assertEqual(r.out, f"{name}\n")
        self.assertEqual(r.message, f"Created app: {name}.\nSet git remote: gigalixir.")
        return repo

    def config(self, app):
        status, body = ADA.api("GET", f"/api/apps/{app}/configs")
        self.assertEqual(status, 200, body)
        return body["data"]

    def test_create_then_point_the_remote_at_the_platform(self):
        repo = self.create("compat-create")
        remote = ADA.git("remote", "get-url", "gigalixir", cwd=repo)
        self.assertEqual(remote.out.strip(), "https://git.gigalixir.com/compat-create.git/")
        self.assertEqual(ADA.api("GET", "/api/apps/compat-create")[0], 200)

        self.ok(ADA.ours("git:remote", "compat-create", cwd=repo))
        remote = ADA.git("remote", "get-url", "gigalixir", cwd=repo)
        self.assertEqual(remote.out.strip(), f"{PLATFORM.url}/compat-create.git")

        self.fails_with(
            ADA.official("create", "-n", "compat-create", cwd=repo),
            '{"errors":{"unique_name":["has already been taken"]}}',
        )
        # Its app detection knows GIGALIXIR's git host only.
        self.fails_with(
            ADA.official("apps:info", cwd=repo),
            "Could not detect app name. Try passing the app name explicitly with the `-a` "
            "flag or create an app with `gigalixir create`.",
        )

    def test_apps_and_apps_info(self):
        self.create("compat-info")
        names = [a["unique_name"] for a in self.ok(ADA.official("apps")).json()]
        self.assertIn("compat-info", names)
        info = self.ok(ADA.official("apps:info", "-a", "compat-info")).json()
        self.assertEqual(info["unique_name"], "compat-info")
        self.assertEqual(info["replicas"], 1)
        self.assertEqual(
            sorted(info),
            ["cloud", "maintenance", "region", "replicas", "size", "stack", "unique_name"],
        )
        info = self.ok(
            ADA.official("apps:info", env={"GIGALIXIR_APP": "compat-info"})
        ).json()
        self.assertEqual(info["unique_name"], "compat-info")
        self.fails_with(
            ADA.official("apps:info", "-a", "no-such-app"),
            '{"errors":{"":["App `no-such-app` not found."]}}',
        )

    def test_stack_set_and_create_with_a_stack(self):
        repo = PLATFORM.fixture_repo(ADA, "hello")
        created = self.ok(
            ADA.official("create", "-n", "compat-stack", "--stack", "bookworm", cwd=repo)
        )
        self.assertIn("compat-stack", created.out)
        info = self.ok(ADA.official("apps:info", "-a", "compat-stack")).json()
        self.assertEqual(info["stack"], "bookworm")
        shown = self.ok(ADA.official("stack:set", "-a", "compat-stack", "-s", "trixie")).json()
        self.assertEqual(shown["stack"], "trixie")
        self.assertEqual(ADA.api("GET", "/api/apps/compat-stack")[1]["data"]["stack"], "trixie")
        self.fails_with(
            ADA.official("stack:set", "-a", "compat-stack", "-s", "gigalixir-22"),
            '{"errors":{"stack":["unknown stack `gigalixir-22`: the stacks are bookworm, trixie, forky"]}}',
        )

    def test_config_set_unset(self):
        self.create("compat-config")
        self.assertEqual(self.ok(ADA.official("config", "-a", "compat-config")).json(), {})
        r = self.ok(
            ADA.official("config:set", "-a", "compat-config", "FOO=bar", "GREETING=hello world=1")
        )
        want = {"FOO": "bar", "GREETING": "hello world=1"}
        self.assertEqual(r.json(), want)
        self.assertEqual(self.config("compat-config"), want)
        self.assertEqual(self.ok(ADA.official("config", "-a", "compat-config")).json(), want)

        r = self.ok(ADA.official("config:unset", "-a", "compat-config", "FOO"))
        self.assertEqual(r.json(), {"GREETING": "hello world=1"})
        self.assertEqual(self.config("compat-config"), {"GREETING": "hello world=1"})
        self.fails_with(
            ADA.official("config:unset", "-a", "compat-config", "FOO"),
            '{"errors":{"key":["key `FOO` is not set on compat-config; nothing was changed"]}}',
        )
        self.fails_with(
            ADA.official("config:set", "-a", "compat-config", "PORT=1"),
            '{"errors":{"key":["key `PORT` is reserved by the platform, which sets it in every replica"]}}',
        )
        self.assertEqual(self.config("compat-config"), {"GREETING": "hello world=1"})

    def test_config_copy(self):
        self.create("compat-src")
        self.create("compat-dst")
        self.ok(ADA.official("config:set", "-a", "compat-src", "A=1", "B=2"))
        self.ok(ADA.official("config:set", "-a", "compat-dst", "B=old", "C=3"))
        warning = (
            "WARNING: This will copy all configs from compat-src to compat-dst. "
            "This might overwrite some configs in compat-dst."
        )
        # Without -y it asks; with nothing to read it stops, and nothing is copied.
        r = ADA.official("config:copy", "-s", "compat-src", "-d", "compat-dst")
        self.assertEqual(r.code, 1, str(r))
        self.assertEqual(r.out, "Are you sure you want to continue? [y/N]: ")
        self.assertEqual(r.message, warning)
        self.assertEqual(self.config("compat-dst"), {"B": "old", "C": "3"})

        r = self.ok(ADA.official("config:copy", "-s", "compat-src", "-d", "compat-dst", "-y"))
        self.assertEqual(r.message, warning)
        merged = {"A": "1", "B": "2", "C": "3"}
        self.assertEqual(r.json(), merged)
        self.assertEqual(self.config("compat-dst"), merged)
        self.assertEqual(self.config("compat-src"), {"A": "1", "B": "2"})

    def test_canary(self):
        self.create("compat-blue")
        self.create("compat-green")
        r = self.ok(ADA.official("canary:set", "-a", "compat-blue", "-c", "compat-green", "-w", "10"))
        self.assertEqual(r.json(), {"canary": "compat-green", "weight": 10})
        r = self.ok(ADA.official("canary:set", "-a", "compat-blue", "-w", "25"))
        self.assertEqual(r.json(), {"canary": "compat-green", "weight": 25})
        self.assertEqual(
            self.ok(ADA.official("canary", "-a", "compat-blue")).json(),
            {"canary": "compat-green", "weight": 25},
        )
        self.fails_with(
            ADA.official("canary:set", "-a", "compat-blue", "-w", "101"),
            '{"errors":{"weight":["is a percentage, 0 to 100"]}}',
        )
        r = self.ok(ADA.official("canary:unset", "-a", "compat-blue", "-c", "compat-green"))
        self.assertEqual(r.json(), {"canary": None, "weight": 0})

    def test_domains(self):
        self.create("compat-domains")
        r = self.ok(ADA.official("domains:add", "-a", "compat-domains", "www.compat-shop.example"))
        self.assertEqual(
            r.message,
            "Added www.compat-shop.example.\n"
            "Create a CNAME or ALIAS record with your DNS provider pointing to "
            "compat-domains.localhost\n"
            "Please give us a few minutes to set up a new TLS certificate.",
        )
        listed = self.ok(ADA.official("domains", "-a", "compat-domains")).json()
        self.assertEqual(
            [(d["fqdn"], d["cname"]) for d in listed],
            [("www.compat-shop.example", "compat-domains.localhost")],
        )
        r = ADA.official("domains:add", "-a", "compat-domains", "not a domain")
        self.assertEqual(r.code, 1, str(r))
        self.assertIn("is not a domain name", r.message)
        r = self.ok(
            ADA.official("domains:remove", "-a", "compat-domains", "www.compat-shop.example")
        )
        self.assertEqual(self.ok(ADA.official("domains", "-a", "compat-domains")).json(), [])

    def test_drains(self):
        self.create("compat-drains")
        self.assertEqual(self.ok(ADA.official("drains", "-a", "compat-drains")).json(), [])
        for url in ("https://127.0.0.1:9/logs", "syslog+tls://127.0.0.1:9"):
            self.ok(ADA.official("drains:add", "-a", "compat-drains", url))
        listed = self.ok(ADA.official("drains", "-a", "compat-drains")).json()
        self.assertEqual(
            [d["url"] for d in listed], ["https://127.0.0.1:9/logs", "syslog+tls://127.0.0.1:9"]
        )
        r = ADA.official("drains:add", "-a", "compat-drains", "https://169.254.169.254/")
        self.assertEqual(r.code, 1, str(r))
        self.assertIn("link-local", r.out + r.err)
        self.ok(ADA.official("drains:remove", "-a", "compat-drains", listed[0]["id"]))
        listed = self.ok(ADA.official("drains", "-a", "compat-drains")).json()
        self.assertEqual([d["url"] for d in listed], ["syslog+tls://127.0.0.1:9"])

    def test_apps_destroy(self):
        self.create("compat-doomed")
        r = self.ok(ADA.official("apps:destroy", "-a", "compat-doomed", "-y"))
        self.assertEqual(r.message, "WARNING: Deleting an app can not be undone.")
        self.assertEqual(r.json(), {})
        self.assertEqual(ADA.api("GET", "/api/apps/compat-doomed")[0], 404)
        names = [a["unique_name"] for a in self.ok(ADA.official("apps")).json()]
        self.assertNotIn("compat-doomed", names)
        self.fails_with(
            ADA.official("apps:destroy", "-a", "compat-doomed", "-y"),
            "WARNING: Deleting an app can not be undone.\n"
            '{"errors":{"":["App `compat-doomed` not found."]}}',
        )


APP = "compat-hello"


class DeployedApp(Case):
    """Releases, processes, logs and SSH of an app deployed with a real `git push`. The
    steps build on each other, in the order of their names."""

    @classmethod
    def setUpClass(cls):
        cls.repo = PLATFORM.fixture_repo(ADA, "hello")
        r = ADA.official("create", "-n", APP, cwd=cls.repo)
        if r.code != 0:
            raise AssertionError(str(r))
        r = ADA.ours("git:remote", APP, cwd=cls.repo)
        if r.code != 0:
            raise AssertionError(str(r))
        # Returns once the build is deployed (or failed).
        cls.push = ADA.git("push", "gigalixir", "master", cwd=cls.repo)
        cls.sha = ADA.git("rev-parse", "HEAD", cwd=cls.repo).out.strip()

    def running_pods(self):
        status, body = ADA.api("GET", f"/api/apps/{APP}/status")
        self.assertEqual(status, 200, body)
        return sorted(
            (p["name"], p["version"]) for p in body["data"]["pods"] if p["status"] == "running"
        )

    def test_00_push_deploys(self):
        self.assertEqual(self.push.code, 0, str(self.push))
        self.assertIn(f"Deployed v1 to http://{APP}.localhost:{PLATFORM.port}/", self.push.err)
        self.assertEqual(PLATFORM.get_app(APP), (200, "Hello from hello v1\n"))

    def test_01_releases(self):
        releases = self.ok(ADA.official("releases", "-a", APP)).json()
        self.assertEqual(len(releases), 1, releases)
        self.assertEqual(releases[0]["version"], 1)
        self.assertEqual(releases[0]["sha"], self.sha)
        self.assertEqual(releases[0]["summary"], f"Deploy {self.sha[:7]}")

    def test_02_logs(self):
        r = self.ok(ADA.official("logs", "-a", APP, "-n", "3", "--no_tail"))
        lines = r.out.splitlines()
        self.assertEqual(len(lines), 3, r.out)
        for line in lines:
            self.assertTrue(line.startswith(f"{APP}[web.1]: "), r.out)
        r = self.ok(ADA.official("logs", "-a", APP, "-n", "100", "--no_tail"))
        self.assertIn("listening on port 4000", r.out)

    def test_03_ps(self):
        data = self.ok(ADA.official("ps", "-a", APP)).json()
        self.assertEqual(data["unique_name"], APP)
        self.assertEqual(data["replicas_desired"], 1)
        self.assertEqual(data["replicas_running"], 1)
        running = [p for p in data["pods"] if p["status"] == "running"]
        self.assertEqual(len(running), 1, data)
        self.assertEqual((running[0]["version"], running[0]["sha"]), (1, self.sha))
        self.fails_with(
            ADA.official("ps", "-a", "no-such-app"),
            '{"errors":{"":["App `no-such-app` not found."]}}',
        )

    def test_04_ps_ssh(self):
        key = os.path.join(ADA.home, ".ssh", "id_compat")
        os.makedirs(os.path.dirname(key), mode=0o700, exist_ok=True)
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        with open(key + ".pub") as f:
            self.ok(ADA.official("account:ssh_keys:add", f.read().strip()))

        status, body = ADA.api("GET", f"/api/apps/{APP}/ssh_ip")
        self.assertEqual(status, 200, body)
        access = body["data"]
        self.assertEqual((access["ssh_ip"], access["ssh_user"]), ("127.0.0.1", "app"))

        # Unchanged, it runs `ssh -t root@SSH_IP` (port 22): what it tries, seen by a fake ssh.
        fake = os.path.join(ADA.home, "fake-bin")
        os.makedirs(fake, exist_ok=True)
        with open(os.path.join(fake, "ssh"), "w") as f:
            f.write('#!/bin/sh\nprintf "%s\\n" "$@"\n')
        os.chmod(os.path.join(fake, "ssh"), 0o755)
        r = self.ok(
            ADA.official(
                "ps:ssh", "-a", APP, env={"PATH": fake + os.pathsep + os.environ["PATH"]}
            )
        )
        self.assertEqual(r.out.splitlines(), ["-t", "root@127.0.0.1"])

        # With the port and user as ssh options, the real ssh reaches the replica.
        opts = (
            f"-T -p {access['ssh_port']} -l app -o StrictHostKeyChecking=no "
            "-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
        )
        r = self.ok(
            ADA.official(
                "ps:ssh", "-a", APP, "-o", opts, "printenv", "APP_NAME", "PORT",
                env={"GIGALIXIR_IDENTITY_FILE": key},
            )
        )
        self.assertEqual(r.out, f"{APP}\n4000\n")

        # Its `ps:run` and `ps:remote_console` go through `gigalixir_run` on the replica.
        # (`--` ends its own options: its `-c` is the ssh command.)
        for command, printed in ((["pwd"], "/app\n"), (["printenv", "APP_NAME"], f"{APP}\n")):
            r = self.ok(
                ADA.official(
                    "ps:run", "-a", APP, "-o", opts, "--", *command,
                    env={"GIGALIXIR_IDENTITY_FILE": key},
                )
            )
            self.assertEqual(r.out, printed)
        r = self.ok(
            ADA.official(
                "ps:remote_console", "-a", APP, "-o", opts,
                env={"GIGALIXIR_IDENTITY_FILE": key},
                stdin_text="node() |> Atom.to_string() |> String.starts_with?(\"%s@\")\n" % APP,
            )
        )
        self.assertEqual(r.out.strip().splitlines()[-1], "true")

    def test_05_config_set_makes_a_release(self):
        r = self.ok(ADA.official("config:set", "-a", APP, "GREETING=hi"))
        self.assertEqual(r.json(), {"GREETING": "hi"})
        self.release_deployed(ADA, APP, 2)
        releases = self.ok(ADA.official("releases", "-a", APP)).json()
        self.assertEqual(
            [(r["version"], r["summary"]) for r in releases],
            [(2, "Set GREETING"), (1, f"Deploy {self.sha[:7]}")],
        )
        self.assertEqual(PLATFORM.get_app(APP), (200, "Hello from hello v1\n"))

    def test_06_rollback(self):
        # Without -r: the second most recent release, v1 (without GREETING).
        r = self.ok(ADA.official("releases:rollback", "-a", APP))
        data = r.json()
        self.assertEqual((data["version"], data["summary"]), (3, "Rollback to v1"))
        self.release_deployed(ADA, APP, 3)
        self.assertEqual(ADA.api("GET", f"/api/apps/{APP}/configs")[1]["data"], {})

        r = self.ok(ADA.official("releases:rollback", "-a", APP, "-r", "2"))
        self.assertEqual((r.json()["version"], r.json()["summary"]), (4, "Rollback to v2"))
        self.release_deployed(ADA, APP, 4)
        self.assertEqual(ADA.api("GET", f"/api/apps/{APP}/configs")[1]["data"], {"GREETING": "hi"})
        self.assertEqual(PLATFORM.get_app(APP), (200, "Hello from hello v1\n"))

        self.fails_with(
            ADA.official("releases:rollback", "-a", APP, "-r", "99"),
            '{"errors":{"":["`%s` has no release v99."]}}' % APP,
        )

    def test_06b_activity(self):
        # (Sorted after test_06_rollback: `_` comes before `b`.) Newest first: what Ada did,
        # and the release the platform made of her push.
        activity = self.ok(ADA.official("apps:activity", "-a", APP)).json()
        short = self.sha[:7]
        self.assertEqual(
            [(a["actor"], a["action"], a["detail"]) for a in activity],
            [
                (ADA.email, "rollback", "to v2 (v4)"),
                (ADA.email, "rollback", "to v1 (v3)"),
                (ADA.email, "config:set", "Set GREETING (v2)"),
                ("platform", "release", f"v1: Deploy {short}"),
                (ADA.email, "push", f"{short} to master"),
            ],
        )
        times = [a["at"] for a in activity]
        self.assertEqual(times, sorted(times, reverse=True), activity)

    def test_06c_maintenance(self):
        # The app keeps running: 503 with Retry-After through the router, then back.
        r = self.ok(ADA.official("maintenance:on", "-a", APP, "-y"))
        self.assertEqual(r.json()["maintenance"], True)
        wait_for("503 from the router", lambda: PLATFORM.get_app(APP)[0] == 503)
        status, body = PLATFORM.get_app(APP)
        self.assertIn("down for maintenance", body)
        # Still running, the same release.
        self.assertEqual([version for _, version in self.running_pods()], [4])
        r = self.ok(ADA.official("maintenance:off", "-a", APP, "-y"))
        self.assertEqual(r.json()["maintenance"], False)
        wait_for("the app again", lambda: PLATFORM.get_app(APP) == (200, "Hello from hello v1\n"))

    def test_07_scale(self):
        r = self.ok(ADA.official("ps:scale", "-a", APP, "-r", "2"))
        self.assertEqual(r.json(), {"replicas": 2, "size": 0.5, "unique_name": APP})
        self.assertEqual(ADA.api("GET", f"/api/apps/{APP}")[1]["data"]["replicas"], 2)
        wait_for("2 running replicas", lambda: len(self.running_pods()) == 2)
        data = self.ok(ADA.official("ps", "-a", APP)).json()
        self.assertEqual((data["replicas_desired"], data["replicas_running"]), (2, 2))
        self.fails_with(
            ADA.official("ps:scale", "-a", APP, "-r", "99"),
            '{"errors":{"replicas":["replicas must be between 0 and 16"]}}',
        )

    def test_08_restart(self):
        before = self.running_pods()
        self.assertEqual(len(before), 2, before)
        r = self.ok(ADA.official("restart", "-a", APP))
        self.assertEqual(r.json(), {})

        def replaced():
            now = self.running_pods()
            names = {n for n, _ in now}
            return len(now) == 2 and not names & {n for n, _ in before} and now

        after = wait_for("both replicas to be replaced", replaced)
        self.assertEqual({v for _, v in after}, {4})
        self.assertEqual(PLATFORM.get_app(APP), (200, "Hello from hello v1\n"))

    def test_08b_kill(self):
        # (After test_08_restart.) One replica dies as in a crash and comes back by itself.
        pods = self.running_pods()
        self.assertEqual(len(pods), 2, pods)
        victim = pods[0][0]
        r = self.ok(ADA.official("ps:kill", "-a", APP, "-p", victim, "-y"))
        self.assertEqual(r.json(), {"name": victim, "status": "killed"})
        wait_for(
            "the killed replica to run again",
            lambda: len(self.running_pods()) == 2 and PLATFORM.get_app(APP)[0] == 200,
        )
        r = ADA.official("ps:kill", "-a", APP, "-p", "gx-no-such-replica", "-y")
        self.assertNotEqual(r.code, 0, str(r))
        self.assertIn("no running replica", r.out + r.err)

    def test_08c_run(self):
        # GIGALIXIR's `run` starts the job and returns; it shows in `ps` while it runs.
        r = self.ok(ADA.official("run", "-a", APP, "sleep", "20"))
        self.assertIn("Starting new container to run: `sleep 20`.", r.out)

        def listed():
            status, body = ADA.api("GET", f"/api/apps/{APP}/status")
            self.assertEqual(status, 200, body)
            return [j["version"] for j in body["data"]["jobs"]] == [4]

        wait_for("the job in ps", listed)
        activity = ADA.api("GET", f"/api/apps/{APP}/activity")[1]["data"]
        self.assertEqual(activity[0]["action"], "run", activity)
        self.assertNotIn("sleep", activity[0]["detail"])

    def test_08d_pg(self):
        # GIGALIXIR's pg:* on the platform's own PostgreSQL cluster: the URL reaches the
        # app's config, psql opens it, a backup restores, the database goes.
        r = self.ok(ADA.official("pg:create", "-a", APP))
        self.assertIn("Creating new database.", r.err)
        dbs = self.ok(ADA.official("pg", "-a", APP)).json()
        self.assertEqual(len(dbs), 1, dbs)
        db = dbs[0]
        self.assertEqual((db["state"], db["tier"], db["size"]), ("AVAILABLE", "STANDARD", 0.6))
        config = ADA.api("GET", f"/api/apps/{APP}/configs")[1]["data"]
        self.assertEqual(config["DATABASE_URL"], db["url"])
        self.assertEqual(config["POOL_SIZE"], "10")
        # pg:psql runs psql on the URL; it reads the statements from stdin.
        r = self.ok(ADA.official(
            "pg:psql", "-a", APP,
            stdin_text="create table notes (body text);\n"
            "insert into notes values ('kept');\nselect 40 + 2 as answer;\n",
        ))
        self.assertIn("42", r.out)
        # A backup (ours: the official CLI has no backups:create), a write, a restore.
        self.assertEqual(self.ok(ADA.official("pg:backups", "-a", APP, "-d", db["id"])).json(), [])
        r = ADA.ours("pg:backups:create", "-a", APP, "-d", db["id"])
        self.assertEqual(r.code, 0, str(r))
        backups = self.ok(ADA.official("pg:backups", "-a", APP, "-d", db["id"])).json()
        self.assertEqual([b["type"] for b in backups], ["ON_DEMAND"], backups)
        self.ok(ADA.official(
            "pg:psql", "-a", APP, stdin_text="insert into notes values ('lost');\n"
        ))
        r = self.ok(ADA.official(
            "pg:backups:restore", "-a", APP, "-d", db["id"], "-b", backups[0]["id"]
        ))
        self.assertEqual(r.json()["id"], backups[0]["id"])
        r = self.ok(ADA.official(
            "pg:psql", "-a", APP, stdin_text="select string_agg(body, ',') from notes;\n"
        ))
        self.assertIn("kept", r.out)
        self.assertNotIn("lost", r.out)
        # Size, restart, stop/start, what is not offered.
        self.ok(ADA.official("pg:scale", "-a", APP, "-d", db["id"], "-s", "1.7"))
        self.assertEqual(self.ok(ADA.official("pg", "-a", APP)).json()[0]["size"], 1.7)
        self.ok(ADA.official("pg:restart", "-a", APP, "-d", db["id"], "-y"))
        self.ok(ADA.official("pg:stop", "-a", APP, "-d", db["id"], "-y"))
        self.assertEqual(self.ok(ADA.official("pg", "-a", APP)).json()[0]["state"], "STOPPED")
        r = ADA.official("pg:psql", "-a", APP, stdin_text="select 1;\n")
        self.assertIn("Sorry, no databases found.", r.out + r.err)
        self.ok(ADA.official("pg:start", "-a", APP, "-d", db["id"]))
        self.assertEqual(
            self.ok(ADA.official("pg:read_replicas", "-a", APP, "-d", db["id"])).json(), []
        )
        r = ADA.official("pg:upgrade", "-a", APP, "-d", db["id"], "POSTGRES_99")
        self.assertNotEqual(r.code, 0, str(r))
        self.assertIn("only version here", r.out + r.err)
        # A free one beside it; then both go, and DATABASE_URL with the first.
        r = self.ok(ADA.official("pg:create", "-a", APP, "--free", "-y"))
        free = r.json()
        self.assertEqual(free["tier"], "FREE")
        for d in (db, free):
            self.ok(ADA.official("pg:destroy", "-a", APP, "-d", d["id"], "-y"))
        self.assertEqual(self.ok(ADA.official("pg", "-a", APP)).json(), [])
        config = ADA.api("GET", f"/api/apps/{APP}/configs")[1]["data"]
        self.assertNotIn("DATABASE_URL", config)

    def test_09_destroy(self):
        r = self.ok(ADA.official("apps:destroy", "-a", APP, "-y"))
        self.assertEqual(r.json(), {})
        self.assertEqual(ADA.api("GET", f"/api/apps/{APP}")[0], 404)
        wait_for("the app's containers to go", lambda: PLATFORM.containers(APP) == [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
