#!/usr/bin/env bash
# The learned detector runs from an installed wheel with the network off.
#
#   bash scripts/check_offline_install.sh [PYTHON]
#
# Builds the wheel (no dependencies), checks it holds the detector's weights, installs it
# alone into an empty folder, and runs `analyze --detector learned` on the bundled sample
# slide inside a new network namespace (`unshare -rn`: no interface but a down loopback),
# importing napari_gbm from that folder only. PYTHON (default .venv/bin/python) supplies the
# dependencies. Exits non-zero if anything fails or the network is reachable.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${1:-$ROOT/.venv/bin/python}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
"$PY" -m pip wheel "$ROOT" --no-deps --no-build-isolation -q -w "$WORK/wheel"
WHEEL="$(ls "$WORK"/wheel/napari_gbm-*.whl)"
"$PY" -m zipfile -l "$WHEEL" | grep -E "napari_gbm/detect/weights/nucleus_net\.(pt|json)"
"$PY" -m pip install --no-deps --no-index -q --target "$WORK/site" "$WHEEL"
cd "$WORK"
unshare -rn env PYTHONPATH="$WORK/site" "$PY" - "$ROOT" "$WORK" <<'PY'
import json, socket, sys
root, work = sys.argv[1], sys.argv[2]
import napari_gbm
assert napari_gbm.__file__.startswith(work), f"napari_gbm imported from {napari_gbm.__file__}"
try:
    socket.create_connection(("pypi.org", 443), timeout=3)
except OSError as exc:
    print(f"network off ({exc})")
else:
    sys.exit("the network is reachable: this check must run without it")
from napari_gbm.cli import main
out = f"{work}/out"
rc = main(["analyze", f"{root}/sample_data/cmu-1-small-region.svs", "--out", out,
           "--detector", "learned", "--no-texture"])
summary = json.load(open(f"{out}/summary.json"))
assert rc == 0 and summary["parameters"]["cells"]["nucleus"]["detector"] == "learned"
print(f"OK: napari_gbm from {napari_gbm.__file__}, weights {summary['software']['nucleus_net_sha256'][:12]}, "
      f"{summary['n_cells']} cells, offline")
PY
