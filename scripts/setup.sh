#!/usr/bin/env bash
# Set up napari-gbm in ./.venv from nothing.
#   bash scripts/setup.sh          runtime (CLI, plugin, headless pipeline)
#   bash scripts/setup.sh --dev    + test tools, Qt binding, and the Debian packages for
#                                  Xvfb + Mesa that the napari tests render with, and
#                                  ./.venv-omics with anndata (reads back our .h5ad files)
#                                  and napari-gbm[spatialdata] (pandas < 3)
# Safe to run again: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
[[ "${1:-}" == "--dev" ]] && DEV=1
PYTHON="${PYTHON:-python3}"

if [[ $DEV == 1 ]]; then
  # Xvfb and the GL/X libraries Qt 6 needs to render under it (see docs/ENVIRONMENT.md).
  PKGS=(xvfb xauth libgl1 libglx-mesa0 libgl1-mesa-dri libegl1 libfontconfig1
        fonts-dejavu-core libglib2.0-0 libx11-xcb1 libxkbcommon-x11-0 libxcb-cursor0
        libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0
        libxcb-shape0 libxcb-xfixes0 libxcb-xkb1)
  MISSING=()
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || MISSING+=("$p")
  done
  if [[ ${#MISSING[@]} -gt 0 ]]; then
    echo "setup: installing Debian packages: ${MISSING[*]}"
    SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${MISSING[@]}" >/dev/null
  fi
fi

[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip
# torch is pinned: the CPU wheel of exactly this version is what the project's machines
# carry; an unpinned torch pulls a multi-GB CUDA build.
"${PIP[@]}" install -q -c constraints.txt "torch==2.13.0"
if [[ $DEV == 1 ]]; then
  "${PIP[@]}" install -q -c constraints.txt -e ".[dev]"
else
  "${PIP[@]}" install -q -c constraints.txt -e ".[gui]"
fi
if [[ $DEV == 1 ]]; then
  # anndata itself, to read back the .h5ad files napari-gbm writes with h5py
  # (tests/test_export_anndata.py), and napari-gbm with the spatialdata extra, as users
  # install it (tests/test_export_spatialdata.py). A venv of its own: anndata 0.12 needs
  # pandas < 3. About 2.5 minutes from nothing.
  [[ -x .venv-omics/bin/python ]] || "$PYTHON" -m venv .venv-omics
  OPIP=(.venv-omics/bin/python -m pip --disable-pip-version-check)
  "${OPIP[@]}" install -q "anndata>=0.10" "pandas<3"
  "${OPIP[@]}" install -q -c constraints.txt "torch==2.13.0"
  "${OPIP[@]}" install -q -c constraints.txt -e ".[spatialdata]"
fi
echo "setup: ready ($(.venv/bin/napari-gbm --version))"
