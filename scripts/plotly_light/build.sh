#!/usr/bin/env bash
# Rebuild ui/plotly_light/plotly-light.min.js from the npm registry, at the versions pinned in
# package-lock.json (plotly.js, the same release as the plotly.min.js that the plotly Python package bundles).
#   bash scripts/plotly_light/build.sh
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
npm ci --no-audit --no-fund --ignore-scripts
npm run build
version="$(node -p "require('plotly.js/package.json').version")"
out="$here/../../ui/plotly_light"
{ printf '/*! plotly.js v%s (core, heatmap, image, bar) | MIT License | Copyright 2012-2026 Plotly, Inc. | built by scripts/plotly_light/build.sh */\n' "$version"
  cat build/plotly-light.min.js; } > "$out/plotly-light.min.js"
cp node_modules/plotly.js/LICENSE "$out/LICENSE.txt"
rm -rf build
echo "wrote $out/plotly-light.min.js ($(wc -c < "$out/plotly-light.min.js") bytes, plotly.js $version)"
