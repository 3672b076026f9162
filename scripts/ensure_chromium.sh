#!/usr/bin/env bash
# Installs Debian's chromium for the built-site browser test when it is missing.
# Playwright drives this system browser; it never downloads a browser of its own.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
echo "Installing Debian's chromium for the browser test..."
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null
