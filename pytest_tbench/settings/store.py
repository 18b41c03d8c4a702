"""The ``--tbench-store`` setting's value: the URL as given (to connect with), shown only with its password
masked, so that the settings recorded in the run's JSON, and every message, never hold it. Imports neither
SQLAlchemy nor torch: the options table loads it in every session."""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl, unquote, urlsplit

STORE_ENV = "TBENCH_STORE"
DEFAULT_STORE = ".benchmarks/tbench.sqlite"

# user:password@host in anything that looks like a URL: the password runs to the last "@" of the authority
# (libpq and urllib read a raw "@" in a password so), where a host without "@" follows.
_PASSWORD_IN_TEXT = re.compile(r"(://[^:/@\s]*:)[^/\s]*?(@)(?=[^@/\s]*(?:[/?#\s]|$))")
# Query keys libpq takes a secret from (psycopg passes them through): password, sslpassword, passfile.
_SECRET_QUERY = re.compile(r"([?&](?:password|sslpassword|passfile)=)[^&#\s]*", re.IGNORECASE)
# Secrets of the store URL this process was last given (StoreLocation), masked wherever they appear: a
# password with a space in it, which no pattern can tell from the text after it. Replaced, not grown: a
# long-lived process (in-process sessions) masks the store it now uses, not every one it was ever given.
_KNOWN_SECRETS: frozenset[str] = frozenset()


def url_secrets(url: str) -> list[str]:
    """The password and secret query values of ``url``, as written and decoded (urllib: no SQLAlchemy)."""
    if "://" not in url:
        return []
    parts = urlsplit(url)
    found = [parts.password or ""] if parts.password else []
    found += [
        value
        for key, value in parse_qsl(parts.query)
        if key.lower() in ("password", "sslpassword", "passfile")
    ]
    return [secret for value in found for secret in {value, unquote(value)} if secret]


def mask_text(text: str) -> str:
    """``text`` with the password of any URL in it replaced by ``***`` (also in its query, and any secret of
    a URL this process was given, wherever it is quoted)."""
    for secret in sorted(_KNOWN_SECRETS, key=len, reverse=True):
        text = text.replace(secret, "***")
    return _SECRET_QUERY.sub(r"\1***", _PASSWORD_IN_TEXT.sub(r"\1***\2", text))


@dataclass(frozen=True)
class StoreLocation:
    url: str  # as given: a file path or a URL, password included

    def __post_init__(self) -> None:
        global _KNOWN_SECRETS
        _KNOWN_SECRETS = frozenset(url_secrets(self.url))

    def __str__(self) -> str:  # TBenchConfig.record() writes settings that are not plain values as str()
        return mask_text(self.url)

    def __repr__(self) -> str:
        return f"StoreLocation({mask_text(self.url)!r})"


# The URL forms urls.store_url accepts, told apart without SQLAlchemy (which parses them when the run is
# written): importing it in the measuring process would add its memory to every CPU item's peak RSS.
_SCHEME = re.compile(r"^(?P<backend>[A-Za-z][A-Za-z0-9]*)(\+[A-Za-z0-9_]+)?://")
BACKENDS = ("sqlite", "postgresql", "postgres")
FORMS = "a file path, sqlite:///PATH, or postgresql://USER@HOST[:PORT]/DATABASE"


def check_store_text(text: str) -> str | None:
    """Why ``text`` cannot be a store (None: it can, as far as can be told before connecting)."""
    text = text.strip()
    if not text:
        return f"no store given; give {FORMS}"
    if importlib.util.find_spec("sqlalchemy") is None:
        return "a store needs SQLAlchemy; pip install 'pytest-tbench[store]'"
    if "://" not in text:
        return None  # a file path
    scheme = _SCHEME.match(text)
    if scheme is None:
        return f"store {mask_text(text)!r} is not a URL; give {FORMS}"
    if scheme.group("backend").lower() not in BACKENDS:
        return f"store {mask_text(text)}: unsupported database {scheme.group('backend')!r}; give {FORMS}"
    return None


def default_store(environ: Mapping[str, str] | None = None) -> str:
    """The store used where none is given: ``$TBENCH_STORE``, else ``.benchmarks/tbench.sqlite``."""
    environ = os.environ if environ is None else environ
    return environ.get(STORE_ENV) or DEFAULT_STORE
