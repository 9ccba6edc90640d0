#!/usr/bin/env bash
# Installs what the project needs on a fresh machine (Debian packages for mysqlclient,
# a virtualenv with the pinned requirements) and migrates the embedded database.
# Idempotent: each step is skipped when it is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "setup: need root (or sudo) to run: $*" >&2; exit 1; fi
}

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing Debian packages: ${missing[*]}"
    if [ ! -f /var/lib/apt/periodic/tracardi-updated ]; then
      as_root apt-get update -qq
      as_root mkdir -p /var/lib/apt/periodic && as_root touch /var/lib/apt/periodic/tracardi-updated
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

# mysqlclient builds against MariaDB's client headers.
apt_install gcc pkg-config libmariadb-dev
if [ "${WITH_BROWSER:-0}" = 1 ]; then apt_install chromium chromium-driver; fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages (requirements.txt)"
  .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
  echo "$want" > "$stamp"
fi

mkdir -p var
.venv/bin/python manage.py migrate --no-input -v 0
.venv/bin/python manage.py collectstatic --no-input -v 0
