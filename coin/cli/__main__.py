"""``python -m coin.cli``: the ``coin`` command (launchers such as ``accelerate launch -m coin.cli`` use it)."""

import sys

from coin.cli import main

sys.exit(main())
