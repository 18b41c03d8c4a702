"""The project-wide "bad input" error, in a module that imports nothing, so that every layer can raise it.

Setting parsers, the gate's expressions, run files and model names all raise it; the plugin turns it into a
usage error, the console script into exit code 2.
"""

from __future__ import annotations


class OptionError(ValueError):
    """A bad setting value or input file; the message names the value and the fix."""
