#!/usr/bin/env bash
# The system tools some tests drive: Debian's chromium + chromedriver (the dashboard's browser
# tests) and prometheus + promtool (the alert rules and the scrape test). Installs only what is
# missing; needs root (apt-get). `make tools` and .ci/run call it.
set -euo pipefail
missing=()
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  missing+=(prometheus)
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-tools: missing ${missing[*]}; run as root (apt-get) or install them yourself" >&2
  exit 1
fi
echo "install-tools: installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
