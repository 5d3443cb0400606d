#!/usr/bin/env bash
# After `make test`: name every test that skipped checks, and why (tests record it with
# util::skip), so that a skip never passes as silently as a success.
dir="$(dirname "$0")/../target/tmp/skipped"
[ -d "$dir" ] || { echo "skipped: none (every interop and root-only check ran)"; exit 0; }
n=$(ls "$dir" | wc -l)
echo "SKIPPED: $n tests skipped checks:"
for f in "$dir"/*; do
    printf '  %s: %s\n' "$(basename "$f" | sed 's/-/::/')" "$(cat "$f")"
done
if grep -qs "shared/vectors" "$dir"/*; then
    echo "  (the interop checks need the Qt toolchain's vectors at ../shared/vectors, beside the"
    echo "   project; with them there, 'make test' covers every vector of vectors/README.md)"
fi
