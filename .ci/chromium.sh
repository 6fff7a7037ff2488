#!/usr/bin/env bash
# Install Debian's chromium (headless browser for tests/test_html_page.py) when it is missing.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
command -v chromium >/dev/null
