#!/usr/bin/env bash
# Renders a statekit report.html in headless Chromium and writes a PNG screenshot next to it,
# failing if Chromium cannot render it or the screenshot is implausibly small (a blank page).
#
#   bench-harness/scripts/check-report-html.sh OUT_DIR/report.html [SCREENSHOT.png]
#
# Needs Chromium (`apt-get install -y chromium`). The report is self-contained, so the
# browser runs with networking off: a report that needed a CDN would render without charts.
set -euo pipefail

html=${1:?usage: check-report-html.sh REPORT.html [SCREENSHOT.png]}
png=${2:-${html%.html}.png}
[[ -f $html ]] || { echo "no such report: $html" >&2; exit 2; }
browser=$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)
[[ -n $browser ]] || { echo "Chromium not found; install it with: apt-get install -y chromium" >&2; exit 2; }

profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
rm -f "$png"
"$browser" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$profile" --window-size=1200,2400 --hide-scrollbars \
  --screenshot="$png" "file://$(realpath "$html")" >/dev/null 2>&1

[[ -s $png ]] || { echo "Chromium wrote no screenshot for $html" >&2; exit 1; }
bytes=$(stat -c %s "$png")
# A blank 1200x2400 page compresses to a few kilobytes; charts and tables make it far larger.
if (( bytes < 30000 )); then
  echo "screenshot $png is only $bytes bytes: the report looks blank" >&2
  exit 1
fi
if grep -qE '<script|https?://' "$html"; then
  echo "$html is not self-contained (scripts or external URLs)" >&2
  exit 1
fi
echo "rendered $html -> $png ($bytes bytes)"
