#!/usr/bin/env bash
# The re-captioning experiment (docs/experiments/recaptioning.md): two DiTs trained alike except for their captions, one always
# on short captions (short_caption_prob 1.0) and one always on detailed captions (0.0), scored on
# text_alignment by the world benchmark.
#
#   scripts/recaption_experiment.sh VAE_MODEL MINUTES_PER_DIT [OUT]
#
# VAE_MODEL: a model folder whose VAE and tokenizer both DiTs start from, with an untrained DiT: the
# model/ folder of a `tessera train vae` run, or the shipped VAE around a fresh DiT
# (`tessera model init --vae tessera/assets/model --out runs/recaption-vae`). Its preset is the DiTs'
# preset: use a small one, s or tiny. MINUTES_PER_DIT: --time-limit-min of each DiT run, a safety net:
# both runs get the same fixed --steps, and the table says if either stopped early. OUT: default
# runs/recaption.
# Rerunning resumes unfinished runs and keeps finished evaluations.
#
# Settings, the same for both runs (environment variables, defaults in brackets):
#   STEPS [3000] BATCH [16] SHAPES [17x128x128: the quick suite's clips; the full suite's are 33 frames]
#   TASKS [t2v:1] LR [1e-4] WORLD_CLIPS [0: fresh world clips every step; N > 0: the first N clips,
#   rendered once, their latents cached]
#   SEED [0] DEVICE [auto] CAPTION_DROPOUT [0.1]
#   OBJECT_WEIGHT [0; the shipped DiT trains with 10: without it, a few thousand steps draw no objects]
#   EVAL_SUITE [quick] EVAL_STEPS [the suite's] EVAL_LIMIT [all prompts] EXPAND_SEED [0]
#   TRAIN_ONLY [0; 1: stop after training, e.g. to fit a time-limited call; rerun to evaluate]
#   ARMS ["dit-short dit-detailed"; one of them trains and evaluates that DiT alone, e.g. one per
#   machine; the table then has the rows of the arms found in OUT]
# A rerun passes STEPS to the resumed runs, so both can be given the same new total.
#
# Prompts. Both DiTs get the same prompts in two conditions:
#   detailed  `tessera eval` as it is: each prompt is the scene's own detailed caption, i.e. the ideal
#             expansion (it states everything the scene holds);
#   expanded  the scene's short caption expanded by `tessera expand` (seed EXPAND_SEED), what
#             `tessera generate` does with a user's prompt; facts the short caption leaves open are drawn,
#             so they score at chance for both models alike;
# and, as the baseline the recipe must beat, the short-caption DiT prompted with the short captions.
set -euo pipefail
tessera() { python -m tessera.cli "$@"; }  # the checkout's own CLI, installed or not

if [ $# -lt 2 ]; then
  sed -n 2,34p "$0"
  exit 2
fi
vae=$1
minutes=$2
out=${3:-runs/recaption}
STEPS=${STEPS:-3000} BATCH=${BATCH:-16} SHAPES=${SHAPES:-17x128x128} TASKS=${TASKS:-t2v:1}
LR=${LR:-1e-4} SEED=${SEED:-0} DEVICE=${DEVICE:-auto} CAPTION_DROPOUT=${CAPTION_DROPOUT:-0.1}
OBJECT_WEIGHT=${OBJECT_WEIGHT:-0} WORLD_CLIPS=${WORLD_CLIPS:-0} TRAIN_ONLY=${TRAIN_ONLY:-0} ARMS=${ARMS:-dit-short dit-detailed}
EVAL_SUITE=${EVAL_SUITE:-quick} EVAL_STEPS=${EVAL_STEPS:-} EVAL_LIMIT=${EVAL_LIMIT:-} EXPAND_SEED=${EXPAND_SEED:-0}

[ -f "$vae/config.json" ] || { echo "error: $vae is not a model folder (no config.json)" >&2; exit 2; }
preset=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["preset"])' "$vae/config.json")
mkdir -p "$out"
echo "re-captioning experiment: preset $preset, $STEPS steps of batch $BATCH ($SHAPES, tasks $TASKS), " \
  "at most $minutes min per DiT, device $DEVICE -> $out"

# 1. Train: the two runs differ only in short_caption_prob.
step_of() {  # RUN -> the step of its last checkpoint
  python -c 'import json, sys; print(json.load(open(sys.argv[1]))["step"])' "$1/state/state.json"
}
train() {  # NAME SHORT_CAPTION_PROB
  local run=$out/$1 t0=$SECONDS
  if [ -f "$run/state/state.json" ] && [ "$(step_of "$run")" = "$STEPS" ]; then
    echo "== $run has its $STEPS steps"  # resuming would render and encode its clips only to stop
    return
  elif [ -f "$run/state/state.json" ]; then
    echo "== resuming $run"
    tessera train dit --resume "$run" --steps "$STEPS" --time-limit-min "$minutes" --device "$DEVICE"
  else
    rm -rf "$run"  # a run that never reached its first checkpoint starts again
    cat > "$out/$1.config.json" <<EOF
{"short_caption_prob": $2, "caption_dropout": $CAPTION_DROPOUT, "tasks": "$TASKS", "shapes": "$SHAPES",
 "seed": $SEED, "lr": $LR, "sample_every": 0, "object_weight": $OBJECT_WEIGHT,
 "world_clips": $WORLD_CLIPS, "cache_latents": $([ "$WORLD_CLIPS" -gt 0 ] && echo true || echo false)}
EOF
    echo "== training $run (short_caption_prob $2)"
    tessera train dit --out "$run" --init "$vae" --preset "$preset" --config "$out/$1.config.json" \
      --steps "$STEPS" --batch-size "$BATCH" --device "$DEVICE" --time-limit-min "$minutes"
  fi
  echo $(($(cat "$run/train_seconds.txt" 2>/dev/null || echo 0) + SECONDS - t0)) > "$run/train_seconds.txt"
}
done_for() {  # EVAL_DIR ARM: true when that evaluation exists for the arm's current step
  [ -f "$1/results.json" ] && [ "$(cat "$1/step.txt" 2>/dev/null)" = "$(step_of "$out/$2")" ]
}
for arm in $ARMS; do
  case $arm in
  dit-short) train dit-short 1.0 ;;
  dit-detailed) train dit-detailed 0.0 ;;
  *) echo "error: ARMS names '$arm'; allowed: dit-short, dit-detailed" >&2; exit 2 ;;
  esac
done
[ "$TRAIN_ONLY" = 1 ] && exit 0

# 2. Evaluate: the same prompts and sampler settings for both.
eval_flags=(--suite "$EVAL_SUITE" --device "$DEVICE")
[ -n "$EVAL_STEPS" ] && eval_flags+=(--steps "$EVAL_STEPS")
[ -n "$EVAL_LIMIT" ] && eval_flags+=(--limit "$EVAL_LIMIT")
for arm in $ARMS; do
  if ! done_for "$out/eval-$arm-detailed" "$arm"; then
    echo "== tessera eval $arm (detailed captions)"
    tessera eval "$out/$arm/model" "${eval_flags[@]}" --out "$out/eval-$arm-detailed"
    step_of "$out/$arm" > "$out/eval-$arm-detailed/step.txt"
  fi
done

# The other prompt texts: the same suite through the same run_suite call, with only the text given to the
# model replaced (the scene, and so the truth it is scored against, stays). `tessera eval` has no flag for
# this yet.
reworded_eval() {  # ARM TEXT(expanded|short)
  done_for "$out/eval-$1-$2" "$1" && return
  echo "== eval $1 ($2 prompts)"
  python - "$out/$1/model" "$out/eval-$1-$2" "$2" "$EVAL_SUITE" "$DEVICE" "$EXPAND_SEED" "$EVAL_STEPS" \
    "$EVAL_LIMIT" <<'PY'
import dataclasses, sys
from pathlib import Path

from tessera.caption.expand import expand
from tessera.eval.prompts import EvalPrompt, load_prompt_set
from tessera.eval.report import write_report
from tessera.eval.suite import SUITES, run_suite

model, out, text, suite, device, seed, steps, limit = sys.argv[1:]


@dataclasses.dataclass(frozen=True)
class Reworded(EvalPrompt):
    """A benchmark prompt whose model-facing text is replaced; its scene is the original one."""

    original: str = ""

    def scene(self):
        return dataclasses.replace(EvalPrompt(**{f.name: getattr(self, f.name) for f in
                                                 dataclasses.fields(EvalPrompt)}), caption=self.original).scene()


def given(p: EvalPrompt) -> str:
    return expand(p.short, int(seed)).caption if text == "expanded" else p.short


prompts = [Reworded(**dataclasses.asdict(p) | {"caption": given(p), "original": p.caption})
           for p in load_prompt_set(suite)[: int(limit) if limit else None]]
s = SUITES.get(suite, SUITES["quick"])
settings = dataclasses.replace(s, steps=int(steps)) if steps else s
results = run_suite(prompts, Path(out), Path(model), settings, device)
results["suite"] = f"{suite} ({text} prompts, expansion seed {seed})"
write_report(results, Path(out))
PY
  step_of "$out/$1" > "$out/eval-$1-$2/step.txt"
}
for arm in $ARMS; do reworded_eval "$arm" expanded; done
[[ " $ARMS " == *" dit-short "* ]] && reworded_eval dit-short short

# 3. The table, last.
python - "$out" "$STEPS" <<'PY'
import json, statistics, sys
from pathlib import Path

from tessera.eval.report import paired_difference

out, steps = Path(sys.argv[1]), int(sys.argv[2])
PARTS = ("objects", "sizes", "count", "motion", "camera")


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def fmt(x):
    return "–" if x is None else f"{x:.3f}"


print("\n| DiT trained on | prompted with | steps | train s | text_alignment | " + " | ".join(PARTS)
      + " | text_alignment train / heldout | objects seen (median) | object_permanence | fwd |"
      + " text_alignment − baseline (bootstrap 95%) |")
print("|---" * (10 + len(PARTS)) + "|")
baseline = out / "eval-dit-short-short" / "results.json"
base = json.loads(baseline.read_text()) if baseline.exists() else None


def paired(r):  # per-prompt difference to the baseline, 95% bootstrap interval (as `tessera eval --compare`)
    d = None if base is None else paired_difference(base, r, "text_alignment")
    return "–" if d is None else f"{d['mean']:+.3f} ({d['low']:+.3f} to {d['high']:+.3f})"


warn, reached = [], {}
for arm, label in (("dit-short", "short captions"), ("dit-detailed", "detailed captions")):
    if not (out / arm / "state" / "state.json").exists():
        warn.append(f"{arm} has not been trained in {out}: its rows are missing")
        continue
    state = json.loads((out / arm / "state" / "state.json").read_text())
    secs = out / arm / "train_seconds.txt"
    reached[arm] = state["step"]
    if state["step"] != steps:
        warn.append(f"{arm} stopped at step {state['step']} of {steps} (time limit; rerun to continue it)")
    for text in ("detailed", "expanded", "short"):
        res = out / f"eval-{arm}-{text}" / "results.json"
        if not res.exists():
            continue
        r = json.loads(res.read_text())
        parts = [mean([row["details"]["text_alignment"].get(k) for row in r["prompts"]]) for k in PARTS]
        split = r["by_split"]
        print(f"| {label} | {text} captions | {state['step']} | "
              f"{secs.read_text().strip() if secs.exists() else '?'} | **{fmt(r['metrics']['text_alignment'])}** | "
              + " | ".join(fmt(x) for x in parts)
              + f" | {fmt(split['train']['text_alignment'])} / {fmt(split['heldout']['text_alignment'])}"
              + f" | {statistics.median(row['details']['text_alignment']['objects_seen'] for row in r['prompts'])}"
              + f" | {fmt(r['metrics']['object_permanence'])} | {fmt(r['metrics']['fwd'])} | {paired(r)} |")
for res in sorted(out.glob("eval-*-detailed/results.json"))[:1]:
    r = json.loads(res.read_text())
    print(f"\nsuite {r['suite']}, {len(r['prompts'])} prompts, sampler steps {r['settings']['steps']}, "
          f"guidance {r['settings']['guidance']}, {r['settings']['width']}x{r['settings']['height']}, "
          f"device {r['device']}; reports in {out}/eval-*/report.md")
if len(set(reached.values())) > 1:
    warn.append(f"the runs stopped at different steps {reached}: this is not a same-steps comparison")
for w in warn:
    print(f"WARNING: {w}")
PY
