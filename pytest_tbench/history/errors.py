"""The store's one error type, in a module that imports nothing, so that the plugin, the console script and
every history module can catch it without loading SQLAlchemy."""

from __future__ import annotations


class StoreError(Exception):
    """The store cannot be opened, read or written: a bad URL, a missing driver, an unreachable server, a
    store from a newer pytest-tbench. The message names the store by its URL with the password masked, and
    the fix; it never holds a password."""
