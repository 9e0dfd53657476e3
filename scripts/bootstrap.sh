#!/usr/bin/env bash
# Shared by scripts/demo and scripts/test: create or update the project's virtual
# environment and install what Kumix needs. Sourced, not run.
set -euo pipefail

KUMIX_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${KUMIX_VENV:-$KUMIX_ROOT/.venv}"
PYTHON="${KUMIX_PYTHON:-python3}"

kumix_need_python() {
  if ! "$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
    echo "kumix: Python 3.11 or newer is needed (found: $("$PYTHON" --version 2>&1 || echo none))" >&2
    exit 1
  fi
}

# Install Debian packages when missing; needs root (or sudo) and apt.
kumix_apt_install() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
      echo "kumix: please install these Debian packages: ${missing[*]}" >&2
      return 1
    fi
  fi
  echo "kumix: installing Debian packages: ${missing[*]}" >&2
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# venv + editable install with the given extras; quick when nothing changed.
kumix_venv() {
  local extras="$1"
  kumix_need_python
  if [ ! -x "$VENV/bin/python" ]; then
    echo "kumix: creating virtual environment in $VENV" >&2
    "$PYTHON" -m venv "$VENV"
  fi
  local stamp="$VENV/.kumix-installed-$extras"
  if [ ! -f "$stamp" ] || [ "$KUMIX_ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "kumix: installing Python packages ($extras)" >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip
    "$VENV/bin/python" -m pip install -q -e "$KUMIX_ROOT[$extras]"
    touch "$stamp"
  fi
}
