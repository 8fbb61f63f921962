"""``python -m lupusbayes.cli``: the same as the ``lupusbayes`` command."""

import sys

from lupusbayes.cli import main

sys.exit(main())
