# Helpers shared by the scripts in this folder. Source it; it defines functions only.

repo_root() { cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd; }

# Where cargo puts binaries (honours CARGO_TARGET_DIR).
target_dir() { echo "${CARGO_TARGET_DIR:-$(repo_root)/target}"; }

# Installs Debian packages that are missing (needs root or sudo; says so otherwise).
ensure_apt() {
  local missing=()
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing ${missing[*]} (apt)" >&2
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

need_cargo() {
  command -v cargo >/dev/null || {
    echo "error: cargo is not installed; install Rust (rustup) and rerun" >&2
    exit 1
  }
}

# Prints a free TCP port on 127.0.0.1.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits until URL answers 200, up to $2 seconds (default 30).
wait_healthy() {
  local url=$1 limit=${2:-30} n=0
  until curl -fs -o /dev/null "$url"; do
    n=$((n + 1))
    [ $n -ge $((limit * 10)) ] && return 1
    sleep 0.1
  done
}
