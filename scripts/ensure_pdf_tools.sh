#!/usr/bin/env bash
# Installs Debian's poppler-utils (pdftotext, pdfinfo, pdfimages; under 1 MB) when missing:
# make pdf reads the printed book's named destinations with pdfinfo, and tests/test_pdf.py reads
# its text with pdftotext.
set -euo pipefail
if command -v pdftotext >/dev/null 2>&1 && command -v pdfinfo >/dev/null 2>&1; then exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
echo "Installing Debian's poppler-utils for the PDF..."
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends poppler-utils >/dev/null
command -v pdftotext >/dev/null && command -v pdfinfo >/dev/null
