#!/usr/bin/env bash
# Training on a GPU node, from nothing: the CUDA training smoke test, then the shipped models' training cohort
# (config.yaml's `train` cohort: 120 synthetic participants, soft and sharp reconstructions) generated, discovered
# and preprocessed on the node, then benchmarks/training.py on CUDA (full runs with the config's hyper-parameters
# unless MAX_EPOCHS caps them). Run from the repository root with cacflow importable:
#     bash benchmarks/gpu_training.sh [MODELS=localizer,regressor] [WORKDIR=/tmp/cacflow_gpu_train] [WORKERS=16]
# Writes $WORKDIR/smoke.log, $WORKDIR/training_cuda.json (per model: seconds per epoch and the card's test
# metrics), $WORKDIR/localizer_batches_cuda.json (the localizer's epoch with 0 / 4 / 8 batch workers) and the
# trained models under $WORKDIR/models. Figures of one run: benchmarks/README.md ("GPU training").
set -euo pipefail
MODELS=${1:-localizer,regressor}; WORK=${2:-/tmp/cacflow_gpu_train}; WORKERS=${3:-16}
MAX_EPOCHS=${MAX_EPOCHS:-0}; SMOKE=${SMOKE:-1}
mkdir -p "$WORK"
stamp() { echo "$(date -u +%H:%M:%S) $*"; }

if [ "$SMOKE" = 1 ]; then  # the training smoke test on CUDA, beside the cohort's generation (it has its own cohort)
    stamp "smoke test on cuda"
    (CACFLOW_TEST_DEVICE=cuda python3 -m pytest -q -p no:cacheprovider tests/training/test_training_smoke.py \
        > "$WORK/smoke.log" 2>&1; echo "exit $?" >> "$WORK/smoke.log") &
    smoke=$!
fi

python3 - "$WORK" <<'PY'
import sys, yaml
work = sys.argv[1]
config = yaml.safe_load(open("config.yaml"))
config.update(results=f"{work}/results", resources=f"{work}/resources")
config["cohorts"] = {"train": config["cohorts"]["train"]}
yaml.safe_dump(config, open(f"{work}/config.yaml", "w"), sort_keys=False)
PY
C="$WORK/config.yaml"
read -r N SEED SMALL ANATOMY < <(python3 -c "
import yaml; s = yaml.safe_load(open('$C'))['cohorts']['train']['synthetic']
print(s['n'], s['seed'], int(s.get('small', False)), s.get('anatomy', 1))")
stamp "synth n=$N seed=$SEED anatomy=$ANATOMY"
small=(); [ "$SMALL" = 1 ] && small=(--small)
python3 -m cacflow.cli synth --out "$WORK/resources/synthetic/train" --n "$N" --seed "$SEED" "${small[@]}" \
    --anatomy "$ANATOMY" --workers "$WORKERS" > "$WORK/synth.json"
stamp "discover"
python3 -m cacflow.cli discover --config "$C" --cohort train --workers "$WORKERS" > "$WORK/discover.json"
stamp "preprocess"
python3 -m cacflow.cli preprocess --config "$C" --cohort train --workers "$WORKERS" > "$WORK/preprocess.json"
if [ "$SMOKE" = 1 ]; then wait "$smoke" || true; stamp "smoke: $(tail -2 "$WORK/smoke.log" | tr '\n' ' ')"; fi
stamp "training $MODELS on cuda"
python3 benchmarks/training.py --config "$C" --device cuda --models "$MODELS" --max-epochs "$MAX_EPOCHS" \
    --models-out "$WORK/models" --out "$WORK/training_cuda.json"
stamp "localizer batches in 0 / 4 / 8 worker processes on cuda"
python3 benchmarks/localizer_batches.py --config "$C" --device cuda --workers 0,4,8 \
    --out "$WORK/localizer_batches_cuda.json"
stamp "done"
