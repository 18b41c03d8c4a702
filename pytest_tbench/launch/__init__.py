"""Where an item runs, behind one interface (``base.Launcher``: ``measure(job) -> Attempt``): in the pytest
process (``inprocess.py``), in one worker process (``isolated.py``), with its rounds split over several
(``processes.py``), as tensor-parallel ranks (``torchrun.py``), or on two sides at once (``ab/``). All of them
run the same rounds (measure/rounds.py) through measure/item.py's ``run_item``; ``choose.py`` picks one from
the settings. Retries under the regression gate: ``retries.py``.

Nothing is imported here: an A/B side's process (``ab/zygote.py``) imports this package before it has put
the side's import path in place, so it must not import torch or transformers yet.
"""
