#!/usr/bin/env bash
# Browser tests drive Debian's Chromium through Playwright (never `playwright install`, which downloads).
# Installs it when missing and we are root on Debian; otherwise says what to do and lets the browser tests skip.
set -u
if [ -x /usr/bin/chromium ] || [ -n "${FEATVIZ_CHROMIUM:-}" ]; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser tests..."
  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium && apt-get clean) >/tmp/featviz-chromium.log 2>&1 \
    && exit 0
  echo "Could not install chromium (see /tmp/featviz-chromium.log); the browser tests will be skipped."
  exit 0
fi
cat <<'TXT'
Chromium was not found at /usr/bin/chromium, so the browser tests will be skipped.
  Debian/Ubuntu:  sudo apt-get install chromium
  elsewhere:      install Chromium or Chrome and set FEATVIZ_CHROMIUM=/path/to/the/browser
TXT
exit 0
