#!/usr/bin/env bash
# Screenshot an HTML file (e.g. the rlhf-eval HTML report) with headless Chromium, fully offline.
# Usage: scripts/screenshot-html.sh REPORT.html OUT.png [WIDTHxHEIGHT]     (default 1400x2000)
# Needs `chromium` (Debian: apt-get install chromium) or set CHROMIUM=/path/to/chrome.
set -euo pipefail
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  echo "usage: $0 REPORT.html OUT.png [WIDTHxHEIGHT]" >&2
  exit 2
fi
html=$1
out=$2
size=${3:-1400x2000}
case $size in
  *[!0-9x]* | x* | *x | *x*x* | [!0-9]*) echo "$0: size must be WIDTHxHEIGHT, e.g. 1400x2000 (got '$size')" >&2; exit 2 ;;
esac
[ -f "$html" ] || { echo "$0: no such file: $html" >&2; exit 2; }
browser=${CHROMIUM:-chromium}
command -v "$browser" >/dev/null || { echo "$0: '$browser' not found (apt-get install chromium, or set CHROMIUM)" >&2; exit 2; }
abs_html=$(cd "$(dirname "$html")" && pwd)/$(basename "$html")
url=${abs_html//%/%25}; url=${url// /%20}; url=${url//#/%23}; url=${url//\?/%3F}   # a file:// URL
case $out in /*) abs_out=$out ;; *) abs_out=$PWD/$out ;; esac
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
rm -f "$abs_out"
limit=(); command -v timeout >/dev/null && limit=(timeout "${SCREENSHOT_TIMEOUT:-120}")
"${limit[@]}" "$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --hide-scrollbars --window-size="${size/x/,}" \
  --screenshot="$abs_out" "file://$url" >"$profile/chromium.log" 2>&1 || {
  echo "$0: chromium failed:" >&2; tail -20 "$profile/chromium.log" >&2; exit 1; }
[ -s "$abs_out" ] || { echo "$0: chromium wrote no screenshot:" >&2; tail -20 "$profile/chromium.log" >&2; exit 1; }
echo "$abs_out"
