"""``python -m pytest_tbench.cli``: the tbench command where its script is not on PATH (the gate runs the
store export so, in a child process)."""

import sys

from pytest_tbench.cli import main

sys.exit(main())
