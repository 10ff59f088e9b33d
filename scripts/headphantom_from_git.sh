#!/usr/bin/env bash
# Lay out the DCPT head phantom for scripts/gpu_wheels.sh from a git snapshot of nbassler/dicomexport (the fetch
# tool's /work/.mirror/nbassler+dicomexport/repo, or a clone): its CT series into DEST/ct/ and its RT Struct as
# DEST/RS_headphantom.dcm (the layout of examples/headphantom_rs.toml).
#   bash scripts/headphantom_from_git.sh SNAPSHOT_GIT_DIR [DEST]      # DEST default /tmp/headphantom
# Only the CT and RS files are taken, by a pathspec: the stored snapshot lacks the objects of the folder's RD files,
# and `git archive HEAD res/test_studies/DCPT_headphantom` then stops with "invalid object" and leaves no RS file
# (gputry audit 2026-12-06, F3).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 SNAPSHOT_GIT_DIR [DEST]" >&2; exit 2; }
SRC=$1
DEST=${2:-/tmp/headphantom}
DIR=res/test_studies/DCPT_headphantom
git -C "$SRC" rev-parse --verify -q HEAD > /dev/null \
  || { echo "$0: $SRC is not a git repository with a HEAD (give the snapshot's git directory)" >&2; exit 2; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# (git 2.39 still says "invalid object ... RD.*.dcm" for the absent RD objects, and exits 0: those lines are dropped)
git -C "$SRC" archive HEAD -- ":(glob)$DIR/CT.*.dcm" ":(glob)$DIR/RS.*.dcm" 2> "$TMP/err" | tar -x -C "$TMP"
grep -v "^error: invalid object .* for '$DIR/RD\." "$TMP/err" >&2 || true
n_ct=$(find "$TMP/$DIR" -maxdepth 1 -name 'CT.*.dcm' | wc -l)
mapfile -t rs < <(find "$TMP/$DIR" -maxdepth 1 -name 'RS.*.dcm')
if [ "$n_ct" -lt 1 ] || [ "${#rs[@]}" -ne 1 ]; then
  echo "$0: $SRC:$DIR holds $n_ct CT.*.dcm and ${#rs[@]} RS.*.dcm files (need at least one CT and exactly one RS)" >&2
  exit 1
fi
rm -rf "$DEST/ct" "$DEST/RS_headphantom.dcm"
mkdir -p "$DEST/ct"
mv "$TMP/$DIR"/CT.*.dcm "$DEST/ct/"
mv "${rs[0]}" "$DEST/RS_headphantom.dcm"
echo "headphantom_from_git.sh: $n_ct CT files in $DEST/ct, $DEST/RS_headphantom.dcm (from $(git -C "$SRC" rev-parse --short HEAD))"
