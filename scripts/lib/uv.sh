# shellcheck shell=bash
# Sourced by scripts/demo and scripts/test: makes `uv` runnable without touching the system Python.
#
# A `uv` already on PATH is used as it is. Otherwise uv goes into a private virtualenv,
# .tools/uv-venv (gitignored), made with the machine's python3: Debian's own python3 is
# externally managed (PEP 668), so `python3 -m pip install uv` is refused there, and a minimal
# image has no pip at all. `python3 -m venv` needs Debian's python3-venv, installed when missing.
# .tools/bin (uv alone, not the venv's python or pip) is then put first on PATH, also for the
# programs the scripts start (the tests install this project on a test host with it).

_uv_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
_uv_tools="$_uv_root/.tools"

_uv_as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

_uv_install() {
  local python venv="$_uv_tools/uv-venv"
  python="$(command -v python3 || true)"
  if [ -z "$python" ]; then
    echo "uv is not on PATH and there is no python3 to install it with: install python3 (3.11+)" >&2
    return 1
  fi
  if ! "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    echo "installing Debian package python3-venv (for a private virtualenv holding uv)"
    _uv_as_root apt-get update -qq
    _uv_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends python3-venv
  fi
  echo "installing uv into $venv"
  # The link is made last: a run killed midway leaves no link, and the next one starts over.
  rm -rf "$venv" "$_uv_tools/bin/uv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'uv>=0.13'
  mkdir -p "$_uv_tools/bin"
  ln -s ../uv-venv/bin/uv "$_uv_tools/bin/uv"
}

# uv trusts its own bundled roots by default, which lack any CA the machine's admin added (a
# TLS-inspecting egress proxy's, say); Debian's bundle holds the public roots plus those.
if [ -z "${UV_SYSTEM_CERTS:-}${SSL_CERT_FILE:-}" ] && [ -s /etc/ssl/certs/ca-certificates.crt ]; then
  export UV_SYSTEM_CERTS=true
fi

if ! command -v uv >/dev/null 2>&1; then
  [ -x "$_uv_tools/bin/uv" ] || _uv_install
  export PATH="$_uv_tools/bin:$PATH"
fi
uv --version
