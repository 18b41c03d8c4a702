"""``--tbench-ab``: every item measured on a base side and on the current code, interleaved in one session.

The processes that run each side (``zygote`` and ``side_process``: one per side and pair, which forks the
item's workers), the base revision's worktree (``worktree``), how one pair of workers alternates its rounds
(``pairs``), and the launcher that puts it together for an item (``launcher``). What differs between the
sides is settings/ab.py's; the paired statistics and verdicts are judge/paired.py's.

Nothing is imported here, for the same reason as in ``launch``: the zygote imports this package first.
"""
