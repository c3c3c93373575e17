#!/usr/bin/env bash
# Debian packages the test suite uses: PostgreSQL (sql sources, audit store, the production topology's
# metadata DB), Redis (the production topology's Celery broker) and Chromium (the browser test drives it
# through Playwright; no browser is ever downloaded).
# Installs only what is missing; needs root or sudo the first time, nothing afterwards.
set -euo pipefail
missing=()
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgresql)
command -v runuser >/dev/null || missing+=(util-linux)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "system-deps: installing Debian packages: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
# The packages start servers of their own on the default ports; the tests start their own instead.
for service in postgresql redis-server; do
  $sudo systemctl disable --now "$service" >/dev/null 2>&1 || $sudo service "$service" stop >/dev/null 2>&1 || true
done
