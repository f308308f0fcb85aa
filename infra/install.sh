#!/usr/bin/env bash
# Installs what `make demo` and `make test` need, and only what is missing:
# Debian packages (PostgreSQL 15 + PostGIS 3, a JDK and Maven for Kafka, Prometheus) and the
# cached Python venv (torch, tritonclient, nvidia-pytriton's tritonserver, ...).
# The venv lives outside the clone (REVISIT_CACHE_DIR, ~/.cache/revisit by default),
# so every clone reuses it; it is reinstalled only when requirements.lock changes.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE_DIR=${REVISIT_CACHE_DIR:-$HOME/.cache/revisit}
VENV=${REVISIT_VENV:-$CACHE_DIR/venv}

say() { printf 'install: %s\n' "$*"; }

missing=()
dpkg -s postgresql-15-postgis-3 >/dev/null 2>&1 || missing+=(postgresql-15-postgis-3)
command -v java >/dev/null 2>&1 || missing+=(default-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v prometheus-postgres-exporter >/dev/null 2>&1 || missing+=(prometheus-postgres-exporter)
if ((${#missing[@]})); then
  say "Debian packages: ${missing[*]}"
  if [ "$(id -u)" -eq 0 ]; then sudo=""; elif command -v sudo >/dev/null; then sudo="sudo"; else
    echo "install: run as root or install: apt-get install ${missing[*]}" >&2; exit 1
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python=""
for candidate in python3.11 python3; do
  if command -v "$candidate" >/dev/null 2>&1 &&
    "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
    python=$(command -v "$candidate"); break
  fi
done
[ -n "$python" ] || { echo "install: Python 3.11 is required (tritonserver's stub is built for it)" >&2; exit 1; }

if [ ! -x "$VENV/bin/python" ]; then
  say "creating the venv $VENV"
  mkdir -p "$(dirname "$VENV")"
  "$python" -m venv "$VENV"
fi
want=$(sha256sum requirements.lock | cut -d' ' -f1)
have=$(cat "$VENV/.revisit-lock.sha256" 2>/dev/null || true)
if [ "$want" != "$have" ]; then
  say "installing requirements.lock into $VENV (torch brings ~3 GB, once)"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r requirements.lock
  echo "$want" > "$VENV/.revisit-lock.sha256"
fi
