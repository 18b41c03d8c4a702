"""How an item is measured, apart from time: each tracker brackets the item and returns extra_info entries."""

from pytest_tbench.measure.trackers.memory import MemoryTracker, memory_tracker

__all__ = ["MemoryTracker", "memory_tracker"]
