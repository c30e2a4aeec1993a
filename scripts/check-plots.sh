#!/usr/bin/env bash
# Render SVG plots in a real browser (headless Chromium) to PNG screenshots,
# so a person can look at what `orch demo --plot` drew. Not part of
# `cargo test`: it needs Chromium (Debian: `apt-get install -y chromium`).
#
#   scripts/check-plots.sh                      # docs/demo-plan.svg and docs/demo-naive.svg
#   scripts/check-plots.sh out/plot.svg ...     # other SVGs
#
# Each FILE.svg gives FILE.png beside it (git ignores docs/*.png) and the
# script fails if Chromium cannot render one or the screenshot is blank.
set -euo pipefail

cd "$(dirname "$0")/.."
browser=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$browser" ]; then
    echo "check-plots: no chromium on PATH (Debian: apt-get install -y chromium)" >&2
    exit 2
fi
if [ "$#" -eq 0 ]; then
    set -- docs/demo-plan.svg docs/demo-naive.svg
fi

status=0
for svg in "$@"; do
    if [ ! -s "$svg" ]; then
        echo "check-plots: $svg is missing or empty" >&2
        status=1
        continue
    fi
    png="${svg%.svg}.png"
    profile=$(mktemp -d)
    rm -f "$png"
    # No network, no first-run or background work: only render the file.
    "$browser" --headless --no-sandbox --disable-gpu --disable-quic \
        --no-first-run --disable-background-networking \
        --disable-component-update --disable-sync \
        --user-data-dir="$profile" --hide-scrollbars \
        --screenshot="$png" --window-size=1200,700 \
        "file://$(realpath "$svg")" >/dev/null 2>&1 || true
    rm -rf "$profile"
    # A blank white 1200x700 PNG compresses to a few kB; a drawn plot does not.
    size=$(stat -c %s "$png" 2>/dev/null || echo 0)
    if [ "$size" -lt 20000 ]; then
        echo "check-plots: $svg: no screenshot or a blank one ($size bytes in $png)" >&2
        status=1
    else
        echo "check-plots: $svg -> $png ($size bytes); look at it"
    fi
done
exit "$status"
