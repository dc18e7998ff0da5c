"""``python -m ebv_gen`` runs the ``ebv-gen`` command line."""

import sys

from .cli import main

sys.exit(main())
