"""``python -m har``: the same as the ``har`` command."""

import sys

from .cli import main

sys.exit(main())
