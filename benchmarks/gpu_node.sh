#!/usr/bin/env bash
# The inference benchmark on a GPU node, from nothing: a synthetic cohort of N participants generated, discovered and
# preprocessed on the node (so the shards read real Zarr stores of distinct scans), then benchmarks/inference.py on
# CUDA with every shipped segmentation scorer. Run from the repository root with cacflow importable:
#     bash benchmarks/gpu_node.sh [N=64] [WORKDIR=/tmp/cacflow_gpu_bench] [WORKERS=16]
# (DEVICE=cpu runs the same on the CPU.) Writes benchmarks/out/inference_$DEVICE.json. Figures of one run: benchmarks/README.md ("GPU inference").
set -euo pipefail
N=${1:-64}; WORK=${2:-/tmp/cacflow_gpu_bench}; WORKERS=${3:-16}; DEVICE=${DEVICE:-cuda}
mkdir -p "$WORK" benchmarks/out
python3 - "$WORK" "$N" <<'PY'
import sys, yaml
work, n = sys.argv[1], int(sys.argv[2])
config = yaml.safe_load(open("config.yaml"))
config.update(results=f"{work}/results", resources=f"{work}/resources",
              cohorts={"gpu": {"synthetic": {"n": n, "seed": 20261123, "small": False}}})
yaml.safe_dump(config, open(f"{work}/config.yaml", "w"), sort_keys=False)
PY
C="$WORK/config.yaml"
python3 -m cacflow.cli synth --out "$WORK/resources/synthetic/gpu" --n "$N" --seed 20261123 --workers "$WORKERS" \
    > "$WORK/synth.json"
python3 -m cacflow.cli discover --config "$C" --cohort gpu --workers "$WORKERS"
python3 -m cacflow.cli preprocess --config "$C" --cohort gpu --workers "$WORKERS"
sizes=1; for s in 4 16 32 64 128; do [ "$s" -le "$N" ] && sizes="$sizes,$s"; done
python3 benchmarks/inference.py --config "$C" --results "$WORK/results" --cohort gpu --device "$DEVICE" --repeats 3 \
    --batches 16,64,256 --sizes "$sizes" --segmentation unetpp,unet,levels,lstm,patch3d \
    --out "benchmarks/out/inference_$DEVICE.json"
