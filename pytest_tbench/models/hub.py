"""Keeping ``from_pretrained`` from spending 20+ s in retries when the Hub cannot be reached."""

from __future__ import annotations

import functools
import os
import socket
from typing import Any
from urllib.parse import urlparse

_TRUTHY = {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    return any(
        os.environ.get(name, "").lower() in _TRUTHY for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


@functools.cache
def hub_reachable(timeout_s: float = 2.0) -> bool:
    """One TCP connect to the Hub endpoint per session: unresolvable or refused in well under a second."""
    from huggingface_hub import constants

    parsed = urlparse(constants.ENDPOINT)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout_s):
            return True
    except OSError:
        return False


def pretrained_kwargs(target: str, trust_remote_code: bool = False) -> dict[str, Any]:
    """Extra ``from_pretrained`` arguments: the local cache only, when the Hub is off or out of reach; and
    ``trust_remote_code=True`` when the user allowed it (--tbench-trust-remote-code), else nothing, so that
    transformers' own default (refuse a repository's code) holds."""
    kwargs: dict[str, Any] = {"trust_remote_code": True} if trust_remote_code else {}
    if os.path.isdir(target) or hub_offline() or not hub_reachable():
        kwargs["local_files_only"] = True
    return kwargs


def load_failure_hint(spec: str, target: str, builtin_names: list[str]) -> str:
    where = "the Hugging Face Hub is offline or unreachable" if (hub_offline() or not hub_reachable()) else ""
    lines = [
        f"model {spec!r} could not be loaded with from_pretrained({target!r})"
        + (f" ({where} and it is not in the local cache)" if where and not os.path.isdir(target) else ""),
        "Fix it by one of:",
        f"  - download it where the Hub is reachable (`hf download {target}`) and set HF_HUB_OFFLINE=1;",
        "  - pass a local directory written by save_pretrained();",
        f"  - use a built-in architecture with random weights: {', '.join(builtin_names)};",
        "  - define a custom config (custom_models in --tbench-config, or register_model() in conftest.py).",
    ]
    return "\n".join(lines)
