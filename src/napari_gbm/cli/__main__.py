"""``python -m napari_gbm.cli``: the ``napari-gbm`` command."""

from __future__ import annotations

import sys

from napari_gbm.cli import main

if __name__ == "__main__":  # imported (e.g. by a walk over the package): nothing runs
    sys.exit(main())
