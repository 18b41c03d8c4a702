"""What is run: each scenario turns a loaded model and a case into one measurable call (a ``Work``)."""

from .base import Work
from .forward import forward_work

__all__ = ["Work", "forward_work"]
