"""Root conftest: keeps every run of this repository offline-safe."""

import os

# A missing model must fail at once, not after ~20 s of Hub retries.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
