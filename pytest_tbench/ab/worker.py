"""One A/B worker: loads the item's model, warms up, then runs one measured round whenever the pytest
process asks, so that the rounds of the two sides' workers alternate. Between rounds it blocks on its
socket (no CPU); what it measured comes back like an isolated worker's (``launchers.worker.Outcome``).

Messages (pickled tuples):
  <- ("job", job)  -> ("ready",) once warmed up, or an Outcome with status "oom"/"error"
  <- ("round",)    -> ("sample", seconds)
  <- ("stop",)     -> the Outcome: the measured rounds, their records and the item's extra_info
"""

from __future__ import annotations

import traceback
from multiprocessing.connection import Connection
from typing import Any

from ..launchers.base import Job
from ..launchers.conftests import ConftestImportError, ensure
from ..launchers.item import run_item
from ..launchers.rounds import run_rounds
from ..launchers.worker import Outcome, resolved_spec
from ..memory_errors import is_out_of_memory
from ..models.loading import load_model
from ..scenarios import Work, build_work

# Why an A/B item records no energy: a device's counter measures the whole device, and each side's measured
# rounds alternate with the other side's on it, so no window holds one side's rounds alone.
AB_ENERGY = (
    "--tbench-ab: the two sides' rounds alternate on one device, so no meter window holds one side alone"
)


def serve(conn: Connection) -> None:
    try:
        _, job = conn.recv()
        conn.send(measure(conn, job))
    except EOFError:
        return  # the pytest process gave up on this item
    except ConftestImportError as exc:
        conn.send(Outcome("error", message=str(exc)))
    except Exception as exc:
        if is_out_of_memory(exc):
            conn.send(Outcome("oom", message=f"{type(exc).__name__}: {exc}"))
        else:
            conn.send(Outcome("error", message=traceback.format_exc()))
    finally:
        conn.close()


def measure(conn: Connection, job: Job) -> Outcome:
    case = job.case
    ensure(job.conftests)
    loaded = load_model(resolved_spec(job), case.model_key)
    work = build_work(loaded, case, job.settings)
    samples: list[float] = []
    records: list[Any] = []

    def rounds(_: Work) -> None:  # the rounds run unmetered: see AB_ENERGY
        # Every GPU of a device-mapped model is synchronised, as in the other launchers.
        run_rounds(work, case.device, 0, job.warmup, job.rules, loaded.devices)  # warm-up only
        conn.send(("ready",))
        while conn.recv()[0] == "round":
            (sample,) = run_rounds(work, case.device, 1, 0, job.rules, loaded.devices)
            samples.append(sample)
            conn.send(("sample", sample))
        records.extend(work.records(job.warmup))

    info = run_item(case, loaded, work, job.rounds, job.warmup, rounds, energy_unavailable=AB_ENERGY)
    return Outcome("ok", samples, info, records)
