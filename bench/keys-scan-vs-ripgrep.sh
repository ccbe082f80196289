#!/bin/sh
# Files/s of `align keys scan` against ripgrep with the token regex on the same tree.
# Usage: cargo build --release -p align-cli && bench/keys-scan-vs-ripgrep.sh TREE
# (TREE: any source tree; the figure in align-cli/README.md used a copy of the cargo
# registry sources, 19,720 files, 447 MB, with 20 valid and 20 mistyped keys added).
set -e
TREE=${1:?usage: keys-scan-vs-ripgrep.sh TREE}
ALIGN=${ALIGN:-${CARGO_TARGET_DIR:-target}/release/align}
RE='\b(ako|akt)_[0-9a-f]{8}_[0-9A-Za-z]{49}\b'
FILES=$(rg --files --hidden --no-require-git -g '!.git' "$TREE" | wc -l)
echo "files searched: $FILES"
# warm the page cache
rg --hidden --no-require-git -g '!.git' -c "$RE" "$TREE" >/dev/null || true
for i in 1 2 3 4 5; do
  s=$(date +%s.%N); rg --hidden --no-require-git -g '!.git' -n -o "$RE" "$TREE" >"${TMPDIR:-/tmp}/rg.out" || true; e=$(date +%s.%N)
  echo "rg    $(echo "$e - $s" | bc)"
  s=$(date +%s.%N); "$ALIGN" keys scan "$TREE" >"${TMPDIR:-/tmp}/align.out" 2>/dev/null || true; e=$(date +%s.%N)
  echo "align $(echo "$e - $s" | bc)"
done
echo "rg matches: $(wc -l < "${TMPDIR:-/tmp}/rg.out")  align finds: $(wc -l < "${TMPDIR:-/tmp}/align.out")"
