"""The ``--tbench-store`` setting's value: the URL as given (to connect with), shown only with its password
masked, so that the settings recorded in the run's JSON, and every message, never hold it. Imports neither
SQLAlchemy nor torch: the options table loads it in every session."""

from __future__ import annotations

import re
from dataclasses import dataclass

# user:password@ in anything that looks like a URL.
_PASSWORD_IN_TEXT = re.compile(r"(://[^:/@\s]*:)[^@\s]*(@)")


def mask_text(text: str) -> str:
    """``text`` with the password of any URL in it replaced by ``***``."""
    return _PASSWORD_IN_TEXT.sub(r"\1***\2", text)


@dataclass(frozen=True)
class StoreLocation:
    url: str  # as given: a file path or a URL, password included

    def __str__(self) -> str:  # TBenchConfig.record() writes settings that are not plain values as str()
        return mask_text(self.url)

    def __repr__(self) -> str:
        return f"StoreLocation({mask_text(self.url)!r})"
