#!/usr/bin/env python3
"""Runs the README's walkthrough for real, so the README stays true.

Starts a platform with `scripts/up --detach` on a free port, a fresh data directory and
its own Docker instance label, then runs every ```sh block under the "## Walkthrough"
heading, in order, in one bash with `set -euo pipefail`, a temporary HOME, and
GIGALIXIR_API_URL pointing at that platform; the README's port 5080 is replaced by the free
port. Fails if any command fails or the app never answers; removes the platform's
containers afterwards.
"""
import os
import re
import socket
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def walkthrough_blocks(text):
    section = re.search(r"^## Walkthrough\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if not section:
        sys.exit("README.md has no '## Walkthrough' section")
    blocks = re.findall(r"^```sh\n(.*?)^```", section.group(1), re.S | re.M)
    if not blocks:
        sys.exit("the README walkthrough has no ```sh blocks")
    return blocks


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    with open(os.path.join(ROOT, "README.md")) as f:
        script = "\n".join(walkthrough_blocks(f.read()))
    port = str(free_port())
    script = script.replace(":5080", ":" + port)
    instance = "readme" + port
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ)
        env.update(
            GIGALIXIR_PORT=port,
            GIGALIXIR_DATA_DIR=os.path.join(tmp, "data"),
            GIGALIXIR_RUN_DIR=os.path.join(tmp, "run"),
            GIGALIXIR_INSTANCE=instance,
        )
        subprocess.run([os.path.join(ROOT, "scripts/up"), "--detach"], env=env, check=True)
        try:
            home = os.path.join(tmp, "home")
            os.makedirs(home)
            target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
            user_env = dict(
                env,
                HOME=home,
                GIGALIXIR_API_URL=f"http://localhost:{port}",
                # The README adds $PWD/target/release; CI's target dir may be elsewhere.
                PATH=os.path.join(target, "release") + os.pathsep + env["PATH"],
                GIT_AUTHOR_NAME="Ada", GIT_AUTHOR_EMAIL="ada@example.com",
                GIT_COMMITTER_NAME="Ada", GIT_COMMITTER_EMAIL="ada@example.com",
            )
            user_env.pop("GIGALIXIR_APP", None)
            user_env.pop("NETRC", None)
            run = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", script],
                cwd=ROOT, env=user_env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )
            print(run.stdout)
            if run.returncode != 0:
                sys.exit(f"README walkthrough failed (exit {run.returncode})")
            if "my-app" not in run.stdout or "Hello from hello v1" not in run.stdout:
                sys.exit("README walkthrough ran but the app never answered")
            print("README walkthrough: 1 passed, 0 failed")
        finally:
            subprocess.run([os.path.join(ROOT, "scripts/down")], env=env, check=False)
            label = f"label=gigalixir.instance={instance}"
            removals = {"ps": ["docker", "rm", "-f"], "network": ["docker", "network", "rm"],
                        "volume": ["docker", "volume", "rm", "-f"]}
            for kind in (["ps", "-aq"], ["network", "ls", "-q"], ["volume", "ls", "-q"]):
                ids = subprocess.run(["docker", *kind, "--filter", label],
                                     stdout=subprocess.PIPE, text=True).stdout.split()
                remove = removals[kind[0]]
                if ids:
                    subprocess.run(remove + ids, stdout=subprocess.DEVNULL, check=False)


if __name__ == "__main__":
    main()
