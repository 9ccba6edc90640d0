#!/usr/bin/env bash
# Stops the servers up.sh started (by their pid files).
set -uo pipefail
cd "$(dirname "$0")"
for service in ${*:-elasticsearch pulsar mariadb}; do "./$service.sh" stop; done
