#!/usr/bin/env bash
# Prepare, here (with PyPI access), what the GPU benchmark needs on the device machine, which
# has JAX but neither keras nor the data: the keras wheels for its Python 3.12 in .whl/ and an
# evenly spread subset of the Kermany JPEGs in .benchdata/kermany/ (both git-ignored; the
# device tool carries at most 64 MiB, so not all 71 MB of Kermany fit).
#
#   bash benchmarks/device/prepare.sh [KERMANY_DIR] [N_IMAGES]
# then, with the device tool: carry [".whl", ".benchdata"], command
#   bash benchmarks/device/gpu_bench.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
DATA=${1:-../shared/data/kermany-pneumonia}
N=${2:-3000}
[ -d "$DATA" ] || { echo "error: no Kermany folder at $DATA (give its path as the first argument)" >&2; exit 2; }

rm -rf .whl && mkdir -p .whl
for plat in manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do P+=(--platform "$plat"); done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${P[@]}" -d .whl keras==3.15.1 namex==0.1.0 optree==0.20.0

rm -rf .benchdata/kermany && mkdir -p .benchdata/kermany
python3 - "$DATA" "$N" <<'PY'
import shutil, sys
from pathlib import Path
src, n = Path(sys.argv[1]), int(sys.argv[2])
files = sorted(p for p in src.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
step = max(1, len(files) / n)
chosen = [files[int(i * step)] for i in range(min(n, len(files)))]  # every k-th: both classes
for f in chosen:
    dest = Path(".benchdata/kermany") / f.parent.name / f.name  # keeps NORMAL/ PNEUMONIA/
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(f, dest)
print(f"{len(chosen)} of {len(files)} JPEGs copied to .benchdata/kermany")
PY
du -sh .whl .benchdata
