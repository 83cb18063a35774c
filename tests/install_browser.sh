#!/bin/sh
# Chromium and ChromeDriver (Debian's packages) for the HTML report's browser test
# (tests/test_html_report.py); nothing to do when both are on PATH already.
# Elsewhere: install Chromium or Chrome and its ChromeDriver, or set CHROME and CHROMEDRIVER.
set -e
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then exit 0; fi
if [ -n "$CHROME" ] && [ -n "$CHROMEDRIVER" ]; then exit 0; fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser.sh: no apt-get; install Chromium (or Chrome) and ChromeDriver, or set CHROME and CHROMEDRIVER" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q chromium chromium-driver
