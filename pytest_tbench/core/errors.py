"""The project-wide errors, in a module that imports nothing, so that every layer can raise them.

``OptionError``: bad input. Setting parsers, the gate's expressions, run files and model names all raise it;
the plugin turns it into a usage error, the console script into exit code 2. ``ItemFailed`` and
``ItemSkipped``: one item's end, raised where it is decided (a launcher, the gate's retries); ``RunStopped``:
the session's end, found during an item. The plugin (plugin/fixture.py) turns them into pytest's fail, skip
and exit, so that the layers below pytest do not raise pytest's outcomes themselves.
"""

from __future__ import annotations


class OptionError(ValueError):
    """A bad setting value or input file; the message names the value and the fix."""


class ItemFailed(Exception):
    """An item that failed for a reason its message says in full (a worker that died, a side that broke, a
    regression the gate confirmed): failed without a traceback, and the session goes on."""


class RunStopped(Exception):
    """A session that cannot go on, for a reason its message says in full (a baseline whose torch flags
    differ, found at the first item): the plugin stops the session with a usage error."""


class ItemSkipped(Exception):
    """An item that cannot run here (it ran out of memory, a closure under --tbench-tp): skipped with the
    message as its reason."""
