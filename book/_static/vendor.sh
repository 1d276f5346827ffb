#!/usr/bin/env bash
# Re-create the vendored JavaScript in this folder from the npm registry (pinned versions).
# The book must render without internet, so these files are committed; this script only
# documents where they came from and lets a maintainer refresh them. Needs: npm, tar, sha256sum.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
npm pack --silent @jupyter-widgets/html-manager@1.0.15 mathjax@3.2.2 >/dev/null
sha256sum -c - <<'SUMS'
2b9d65cb7913e1c7d671757a10008b32c9c2448d4429513371e55c07d6107638  jupyter-widgets-html-manager-1.0.15.tgz
1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09  mathjax-3.2.2.tgz
SUMS
mkdir hm mj
tar -xzf jupyter-widgets-html-manager-1.0.15.tgz -C hm
tar -xzf mathjax-3.2.2.tgz -C mj
# Widget manager: the non-AMD bundle (core ipywidgets only, no RequireJS) + the Font Awesome
# web fonts it references relative to its own URL (woff2/woff only: every current browser).
rm -rf "$here/jupyter-widgets"; mkdir -p "$here/jupyter-widgets"
cp hm/package/dist/embed.js hm/package/dist/embed.js.LICENSE.txt "$here/jupyter-widgets/"
cp hm/package/dist/*.woff2 hm/package/dist/*.woff "$here/jupyter-widgets/"
# MathJax 3: the single-file TeX + CommonHTML build with every TeX package, and its fonts.
rm -rf "$here/mathjax"; mkdir -p "$here/mathjax/output/chtml/fonts"
cp mj/package/es5/tex-chtml-full.js mj/package/LICENSE "$here/mathjax/"
cp -r mj/package/es5/output/chtml/fonts/woff-v2 "$here/mathjax/output/chtml/fonts/"
echo "vendored files refreshed in $here"
