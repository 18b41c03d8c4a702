"""pytest-tbench: benchmarks of Hugging Face transformers models as pytest items."""

from .cases import BenchCase
from .config import TBenchConfig
from .fixture import TBench
from .models.registry import register_model

__version__ = "0.1.0"
__all__ = ["BenchCase", "TBench", "TBenchConfig", "__version__", "register_model"]
