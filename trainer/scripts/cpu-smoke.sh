#!/usr/bin/env bash
# Short CPU smoke run (seconds): a small shapes set, yolov5n at 128 px, 3 epochs,
# then yolov5-val on the best checkpoint. Run from the repository root after
# `meson setup build && ninja -C build`. BUILD=dir selects another build dir.
set -euo pipefail
BUILD=${BUILD:-build}
WORK=${WORK:-$BUILD/cpu-smoke}
rm -rf "$WORK"
"$BUILD/trainer/make-shapes-dataset" --out "$WORK/shapes" --train 128 --val 32 --img 128 --seed 0
"$BUILD/trainer/yolov5-train" --cfg yolov5n.yaml --data "$WORK/shapes/shapes.yaml" --img 128 \
  --batch-size 16 --epochs 3 --workers 2 --device cpu --project "$WORK/runs" --name smoke
"$BUILD/trainer/yolov5-val" --weights "$WORK/runs/smoke/weights/best.pt" --data "$WORK/shapes/shapes.yaml" \
  --img 128 --device cpu
ls -l "$WORK/runs/smoke" "$WORK/runs/smoke/weights"
echo "cpu-smoke: OK"
