#!/usr/bin/env bash
# make test: the tests clean up after themselves. "before" notes the temporary directories
# in $TMPDIR; "after" fails naming any new one (tempfile's .tmpXXXXXX) left behind.
set -euo pipefail
cd "$(dirname "$0")/.."
list() { find "${TMPDIR:-/tmp}" -maxdepth 1 -name '.tmp*' 2>/dev/null | sort; }
mkdir -p target
case "${1:-}" in
    before) list > target/tmpdir-before.txt ;;
    after)
        left=$(list | comm -13 target/tmpdir-before.txt - || true)
        if [ -n "$left" ]; then
            echo "the tests left temporary directories behind:"
            echo "$left"
            exit 1
        fi
        echo "temporary directories: none left behind"
        ;;
    *) echo "usage: $0 before|after" >&2; exit 2 ;;
esac
