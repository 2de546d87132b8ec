"""``python -m lnq_napari``: the ``lnq-napari`` program."""

import sys

from lnq_napari.launch import main

sys.exit(main())
