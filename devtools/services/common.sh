# Shared by the service scripts: data under var/services/<name>/, a pid file, loopback only.
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SERVICES_VAR=${SERVICES_VAR:-$ROOT/var/services}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    echo "services: need root (or sudo) to run: $*" >&2; return 1; fi
}

# Debian packages, installed without starting their system services (we start our own).
apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "services: installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  local had_policy=1
  [ -e /usr/sbin/policy-rc.d ] || { had_policy=0; printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null; as_root chmod +x /usr/sbin/policy-rc.d; }
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  [ "$had_policy" = 1 ] || as_root rm -f /usr/sbin/policy-rc.d
}

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_until <seconds> <pidfile> <log> <command...>: until the command succeeds, or the process dies.
wait_until() {
  local seconds=$1 pidfile=$2 log=$3; shift 3
  for _ in $(seq 1 "$seconds"); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    if ! running "$pidfile"; then echo "services: the process died; last lines of $log:" >&2; tail -40 "$log" >&2; return 1; fi
    sleep 1
  done
  echo "services: not ready after ${seconds}s; last lines of $log:" >&2; tail -40 "$log" >&2
  return 1
}

# stop_pid <pidfile> <seconds>: SIGTERM the process we started, SIGKILL after the grace period.
stop_pid() {
  local pidfile=$1 seconds=${2:-30}
  running "$pidfile" || { rm -f "$pidfile"; return 0; }
  local pid; pid=$(cat "$pidfile")
  kill -TERM "$pid"
  for _ in $(seq 1 "$seconds"); do kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; return 0; }; sleep 1; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$pidfile"
}
