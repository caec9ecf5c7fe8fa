#!/bin/sh
# Debian packages the serve tests use: Orthanc (a real PACS), dicom3tools (dciodvfy validates the
# SR and SEG objects), DCMTK (storescu/echoscu for manual checks) and Chromium (the viewer test,
# driven by Playwright with Debian's browser). Idempotent: apt-get skips what is installed.
# Without root or without apt-get it only says so; the tests that need a missing binary then skip
# with the reason printed.
set -eu
PACKAGES="orthanc dicom3tools dcmtk chromium"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install-system-deps: apt-get not found; install $PACKAGES yourself (the serve tests skip without them)"
    exit 0
fi
if [ "$(id -u)" != "0" ]; then
    echo "install-system-deps: not root; skipping apt-get install $PACKAGES (the serve tests skip without them)"
    exit 0
fi
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
    echo "install-system-deps: all present ($PACKAGES)"
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
# The package's own Orthanc service is not wanted (tests start Orthanc with their own config).
if command -v systemctl >/dev/null 2>&1; then systemctl disable --now orthanc >/dev/null 2>&1 || true; fi
