"""``--tbench-ab``: every item measured on a base side and on the current code, interleaved in one session.

What differs between the sides (``sides``), the processes that run each side (``side_process``: one per
side, which forks the item's workers), how one pair of workers alternates its rounds (``pairs``), the paired
statistics and verdicts (``paired``), and the launcher that puts it together for an item (``launcher``).
"""
