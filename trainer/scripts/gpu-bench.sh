#!/usr/bin/env bash
# GPU benchmark of the trainer: yolov5s, 640 px, batch 32, mixed precision,
# on 2000 generated 640-px shapes images; prints images/s of the second epoch
# and peak GPU memory. Run from the repository root of the GPU machine:
#
#   bash trainer/scripts/gpu-bench.sh
#
# Needs python3 with a CUDA pip torch (its LibTorch is what we link), g++,
# and the fmt / CLI11 / yaml-cpp / stb headers and libraries: from the system,
# or from build-deps/ made on a Debian machine by trainer/scripts/gpu-pack-deps.sh.
# Results go to $OUT (default build-gpu/out): bench.log, summary.txt, train.log,
# build.log, results.csv, results.png, nvidia-smi.csv (and train-nobenchmark.log).
#
# The build compiles the trainer's sources directly with g++ (list taken from
# trainer/meson.build) rather than configuring the whole meson project, whose
# other parts need packages a GPU image may not have.
#
# Knobs (environment): EPOCHS (3), BATCH (32), IMG (640), NTRAIN (2000),
# NVAL (200), WORKERS (cores - 1), DEVICE (cuda; "cpu" to dry-run the script
# on a machine without a GPU), JOBS (build parallelism), TIME_LIMIT (240 s for
# the training run; the optional second run gets half).
set -euo pipefail

ROOT=$(pwd)
[ -f trainer/meson.build ] || { echo "gpu-bench: run from the repository root" >&2; exit 2; }
OUT=${OUT:-$ROOT/build-gpu/out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/bench.log") 2>&1
T0=$(date +%s)
step() { echo "== [$(( $(date +%s) - T0 ))s] $*"; }
fail() { echo "gpu-bench: FAILED: $*"; echo "FAILED: $*" >> "$OUT/summary.txt"; exit 1; }

DEVICE=${DEVICE:-cuda}
EPOCHS=${EPOCHS:-3}
BATCH=${BATCH:-32}
IMG=${IMG:-640}
NTRAIN=${NTRAIN:-2000}
NVAL=${NVAL:-200}
CORES=$(nproc)
WORKERS=${WORKERS:-$(( CORES > 2 ? CORES - 1 : 1 ))}
JOBS=${JOBS:-$CORES}
TIME_LIMIT=${TIME_LIMIT:-240}
B=$ROOT/build-gpu
mkdir -p "$B/obj"

# ---- 1. Torch ---------------------------------------------------------------
step "locating LibTorch"
if [ -n "${TORCH_INCLUDE_DIRS:-}" ] && [ -n "${TORCH_LIB_DIR:-}" ]; then
  TORCH_INC=($TORCH_INCLUDE_DIRS)
  TORCH_LIB=$TORCH_LIB_DIR
  TORCH_ABI=${TORCH_ABI:-1}
else
  TORCH_ROOT=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))') \
    || fail "python3 cannot import torch (need pip torch with CUDA)"
  TORCH_INC=("$TORCH_ROOT/include" "$TORCH_ROOT/include/torch/csrc/api/include")
  TORCH_LIB=$TORCH_ROOT/lib
  TORCH_ABI=$(python3 -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())'
  if [ "$DEVICE" = cuda ]; then
    python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' || fail "torch sees no CUDA device"
  fi
fi
[ "$TORCH_ABI" = 1 ] || fail "LibTorch uses the pre-C++11 string ABI; the Debian-built yaml-cpp/fmt need _GLIBCXX_USE_CXX11_ABI=1"
for l in torch torch_cpu c10; do [ -f "$TORCH_LIB/lib$l.so" ] || fail "$TORCH_LIB/lib$l.so missing"; done
TORCH_LINK=(-L"$TORCH_LIB" -Wl,-rpath,"$TORCH_LIB")
CUDA_FLAGS=()   # CUDA runtime headers, for the allocator statistics
CUDA_STATS=0
if [ -f "$TORCH_LIB/libtorch_cuda.so" ] && [ -f "$TORCH_LIB/libc10_cuda.so" ]; then
  # --no-as-needed: loading torch_cuda registers the CUDA kernels. The CUDA
  # libraries it needs are found at run time through its own RUNPATH (the
  # nvidia wheels), so the link does not insist on resolving them now.
  TORCH_LINK+=(-Wl,--allow-shlib-undefined -Wl,--no-as-needed -ltorch_cuda -lc10_cuda -Wl,--as-needed)
  for d in "${CUDA_HOME:-/usr/local/cuda}/include" /usr/local/cuda/include; do
    if [ -f "$d/cuda_runtime_api.h" ]; then CUDA_FLAGS+=(-isystem "$d"); CUDA_STATS=1; break; fi
  done
elif [ "$DEVICE" = cuda ]; then
  fail "no libtorch_cuda.so in $TORCH_LIB"
fi
TORCH_LINK+=(-ltorch -ltorch_cpu -lc10)

# ---- 2. fmt, CLI11, yaml-cpp, stb -----------------------------------------
step "locating fmt / CLI11 / yaml-cpp / stb"
DEP_INC=() DEP_LINK=()
if [ -d "$ROOT/build-deps/include" ]; then
  DEP_INC=(-isystem "$ROOT/build-deps/include")
  DEP_LINK=(-L"$ROOT/build-deps/lib" -Wl,-rpath,"$ROOT/build-deps/lib")
  echo "using $ROOT/build-deps"
elif [ -d /usr/include/yaml-cpp ] && [ -d /usr/include/CLI ] && [ -d /usr/include/fmt ] && [ -f /usr/include/stb/stb_image.h ]; then
  DEP_INC=(-isystem /usr/include/stb)
  echo "using the system's packages"
else
  fail "fmt/CLI11/yaml-cpp/stb not found: on a Debian machine run 'bash trainer/scripts/gpu-pack-deps.sh' in the repository root and carry build-deps/"
fi
DEP_LINK+=(-lyaml-cpp -lfmt -lstb -lpthread)
# Optional image support, as trainer/meson.build: each library used when its
# header is found (system or build-deps/), else the trainer names the missing
# package when a dataset needs it.
IMG_DEFS=()
have_header() { [ -f "/usr/include/$1" ] || [ -f "/usr/include/x86_64-linux-gnu/$1" ] || [ -f "$ROOT/build-deps/include/$1" ]; }
if have_header tiffio.h; then IMG_DEFS+=(YOLO_HAVE_TIFF); DEP_LINK+=(-ltiff); fi
if have_header webp/decode.h; then IMG_DEFS+=(YOLO_HAVE_WEBP); DEP_LINK+=(-lwebp); fi
if have_header libexif/exif-data.h; then IMG_DEFS+=(YOLO_HAVE_EXIF); DEP_LINK+=(-lexif); fi
echo "image support: ${IMG_DEFS[*]:-stb formats only}"

# ---- 3. build ---------------------------------------------------------------
step "building the trainer with g++ -O2 (-j$JOBS)"
CXX=${CXX:-g++}
SRCS=$(sed -n "/^trainer_sources = files(/,/^)/p" trainer/meson.build | grep -o "'[^']*\.cc'" | tr -d "'")
[ -n "$SRCS" ] || fail "could not read trainer_sources from trainer/meson.build"
# LibTorch ships its own (newer) fmt headers: use fmt header-only so headers and code always match.
CXXFLAGS=(-std=c++20 -O2 -DNDEBUG -fPIC -DFMT_HEADER_ONLY=1 -D_GLIBCXX_USE_CXX11_ABI="$TORCH_ABI" -Itrainer)
for d in "${TORCH_INC[@]}"; do CXXFLAGS+=(-isystem "$d"); done
CXXFLAGS+=("${DEP_INC[@]}")
# trainer_config.h as trainer/meson.build writes it (a second copy without the
# allocator statistics for the fallback build of train/device.cc).
write_config() {  # dir with-stats
  mkdir -p "$1"
  { [ "$2" = 1 ] && echo "#define YOLO_HAVE_CUDA_STATS 1"
    for d in "${IMG_DEFS[@]}"; do echo "#define $d 1"; done
    echo "#define YOLO_MODELS_DIR \"$ROOT/trainer/models\""; } > "$1/trainer_config.h"
}
write_config "$B/config" "$CUDA_STATS"
write_config "$B/config-nostats" 0
: > "$OUT/build.log"
rm -f "$B"/obj/*.o "$B"/obj/*.log
compile() {  # src obj extra-flags...   (log beside the object, gathered below)
  local src=$1 obj=$2; shift 2
  "$CXX" "${CXXFLAGS[@]}" "$@" -c "$src" -o "$obj" > "$obj.log" 2>&1
}
gather_logs() { for f in "$B"/obj/*.log; do [ -s "$f" ] && { echo "--- $f"; cat "$f"; } >> "$OUT/build.log"; rm -f "$f"; done; true; }
pids=()
objs=()
for s in $SRCS yolov5_train.cc; do
  o="$B/obj/$(echo "$s" | tr / _).o"
  objs+=("$o")
  compile "trainer/$s" "$o" -I"$B/config" "${CUDA_FLAGS[@]}" &
  pids+=($!)
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 0.2; done
done
"$CXX" -std=c++20 -O2 -Itrainer "${DEP_INC[@]}" trainer/tools/make_shapes_dataset.cc -o "$B/make-shapes-dataset" \
  "${DEP_LINK[@]}" >> "$OUT/build.log" 2>&1 || { cat "$OUT/build.log"; fail "make-shapes-dataset did not build"; }
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=1; done
gather_logs
if [ "$failed" = 1 ] && [ ! -f "$B/obj/train_device.cc.o" ] && [ "$CUDA_STATS" = 1 ]; then
  # Allocator statistics are the only code using c10/cuda headers; without
  # them the trainer still runs (memory then comes from nvidia-smi only).
  step "retrying train/device.cc without CUDA allocator statistics"
  compile trainer/train/device.cc "$B/obj/train_device.cc.o" -I"$B/config-nostats" || true
  gather_logs
  failed=0
  for o in "${objs[@]}"; do [ -f "$o" ] || failed=1; done
fi
[ "$failed" = 0 ] || { grep -m 40 -E "error" "$OUT/build.log"; fail "compilation failed (see build.log)"; }
"$CXX" "${objs[@]}" -o "$B/yolov5-train" "${TORCH_LINK[@]}" "${DEP_LINK[@]}" >> "$OUT/build.log" 2>&1 \
  || { tail -30 "$OUT/build.log"; fail "link failed (see build.log)"; }
"$B/yolov5-train" --cfg yolov5s.yaml --summary || fail "yolov5-train does not start"

# ---- 4. dataset -------------------------------------------------------------
step "generating $NTRAIN train + $NVAL val ${IMG}-px shapes images"
DATA=$B/shapes-$IMG
if [ ! -f "$DATA/shapes.yaml" ] || [ "$(ls "$DATA/images/train" | wc -l)" != "$NTRAIN" ]; then
  rm -rf "$DATA"
  "$B/make-shapes-dataset" --out "$DATA" --train "$NTRAIN" --val "$NVAL" --img "$IMG" --seed 0 \
    || fail "make-shapes-dataset failed"
fi

# ---- 5. train ---------------------------------------------------------------
step "training yolov5s: img $IMG, batch $BATCH, $EPOCHS epochs, device $DEVICE, $WORKERS workers"
SMI_PID=
if command -v nvidia-smi >/dev/null && [ "$DEVICE" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.used,utilization.gpu --format=csv -lms 500 > "$OUT/nvidia-smi.csv" 2>/dev/null &
  SMI_PID=$!
fi
set +e
timeout "$TIME_LIMIT" "$B/yolov5-train" --cfg yolov5s.yaml --data "$DATA/shapes.yaml" --img "$IMG" \
  --batch-size "$BATCH" --epochs "$EPOCHS" --device "$DEVICE" --workers "$WORKERS" \
  --project "$B/runs" --name bench --exist-ok --seed 0 --cache ram 2>&1 | tee "$OUT/train.log"
rc=${PIPESTATUS[0]}
set -e
[ -n "$SMI_PID" ] && kill "$SMI_PID" 2>/dev/null || true
cp "$B/runs/bench/results.csv" "$B/runs/bench/results.png" "$OUT/" 2>/dev/null || true
[ "$rc" = 0 ] || fail "training exited with status $rc (124: over ${TIME_LIMIT}s)"

# ---- 5b. memory fallback ------------------------------------------------------
# cudnn autotuning may pick algorithms with large workspaces. If the second
# epoch's peak reserved memory is above the 6.2 GB reference, measure again
# with autotuning off, so both figures are on record.
MEM_LIMIT_GB=${MEM_LIMIT_GB:-6.2}
peak=$(grep -E "^epoch 1: " "$OUT/train.log" | sed -n 's/.*peak \([0-9.]*\) GB reserved.*/\1/p' | head -1)
if [ "$DEVICE" = cuda ] && [ -n "$peak" ] && awk -v p="$peak" -v l="$MEM_LIMIT_GB" 'BEGIN { exit !(p > l) }'; then
  step "peak reserved $peak GB > $MEM_LIMIT_GB GB: second run with cudnn autotuning off (2 epochs)"
  set +e
  YOLO_CUDNN_BENCHMARK=0 timeout $(( TIME_LIMIT / 2 )) "$B/yolov5-train" --cfg yolov5s.yaml --data "$DATA/shapes.yaml" \
    --img "$IMG" --batch-size "$BATCH" --epochs 2 --device "$DEVICE" --workers "$WORKERS" --noval \
    --project "$B/runs" --name bench-nobenchmark --exist-ok --seed 0 --cache ram > "$OUT/train-nobenchmark.log" 2>&1
  set -e
  grep -E "^epoch [0-9]+: " "$OUT/train-nobenchmark.log" | sed 's/^/  cudnn autotuning off: /' || true
fi

# ---- 6. summary -------------------------------------------------------------
step "summary"
{
  echo "trainer GPU benchmark: yolov5s, img $IMG, batch $BATCH, AMP on CUDA, $NTRAIN train images"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
  python3 -c 'import torch; print("torch", torch.__version__)' 2>/dev/null || true
  grep -E "^epoch [0-9]+: " "$OUT/train.log"
  second=$(grep -E "^epoch 1: " "$OUT/train.log" | head -1)
  echo "SECOND EPOCH: $second"
  if [ -s "$OUT/nvidia-smi.csv" ]; then
    awk -F', ' 'NR > 1 { gsub(/ MiB/, "", $2); if ($2 + 0 > m) m = $2 + 0 } END { print "nvidia-smi peak memory.used (whole process incl. CUDA context): " m " MiB" }' "$OUT/nvidia-smi.csv"
  fi
  grep -E "all " "$OUT/train.log" | tail -1 | sed 's/^ */final val (Class Images Instances P R mAP50 mAP50-95): /'
  if [ -f "$OUT/train-nobenchmark.log" ]; then
    grep -E "^epoch [0-9]+: " "$OUT/train-nobenchmark.log" | sed 's/^/cudnn autotuning off: /'
  fi
  echo "wall time of the whole script: $(( $(date +%s) - T0 )) s"
} | tee "$OUT/summary.txt"
