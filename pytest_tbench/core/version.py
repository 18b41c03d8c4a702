"""The plugin's version, in the bottom layer: the store records it with every run (history/) and the package
exports it as ``pytest_tbench.__version__``. Keep it equal to pyproject.toml's ``version``."""

VERSION = "0.1.0"
