#!/usr/bin/env bash
# Installs what the project needs on a fresh machine (Debian packages for mysqlclient,
# a virtualenv with the pinned requirements) and migrates the embedded database.
# Idempotent: each step is skipped when it is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

source devtools/services/common.sh  # as_root, apt_install

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
