#!/usr/bin/env bash
# Refresh the console's two vendored libraries (served by the API itself, so the console
# works offline and under its CSP): marked renders the model's Markdown, DOMPurify
# sanitises the HTML it makes. Bump the versions here, run this, and commit the result.
set -euo pipefail
MARKED=18.3.0
DOMPURIFY=3.5.0
cd "$(dirname "$0")/.."
out=api/static/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "marked@$MARKED" "dompurify@$DOMPURIFY" >/dev/null)
tar xzf "$work/marked-$MARKED.tgz" -C "$work" --one-top-level=marked
tar xzf "$work/dompurify-$DOMPURIFY.tgz" -C "$work" --one-top-level=dompurify
cp "$work/marked/package/lib/marked.umd.js" "$out/marked.umd.js"
cp "$work/marked/package/LICENSE" "$out/LICENSE.marked"
cp "$work/dompurify/package/dist/purify.min.js" "$out/purify.min.js"
cp "$work/dompurify/package/LICENSE" "$out/LICENSE.dompurify"
sed -i '/sourceMappingURL/d' "$out/marked.umd.js" "$out/purify.min.js"
echo "vendored marked $MARKED and DOMPurify $DOMPURIFY into $out"
