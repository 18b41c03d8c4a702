"""What the CPU peak-memory sampler costs the timed calls (issue 30, lesser point): a host-bound loop (a tiny
GPT-2's greedy decode, batch 1, 32 new tokens: ~1 ms steps of Python and small kernels) timed inside each
tracker method, interleaved in one process, against the same loop with nothing beside it.

    python benches/rss_sampler.py [--reps 7] [--calls 20]

Methods: none; ``vmhwm`` (the kernel's high-water mark, nothing runs beside the calls); ``sampling`` (a
sampler process reading /proc every 1 ms); ``sampling_thread`` (the former sampler: a thread of this process,
taking the GIL every 1 ms). Prints the median call time per method and its ratio to none.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from pytest_tbench.measure.trackers.memory import RssTracker, can_reset_peak_rss

METHODS = ("none", "vmhwm", "sampling", "sampling_thread")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reps", type=int, default=7, help="interleaved repetitions of every method")
    parser.add_argument("--calls", type=int, default=20, help="timed calls per method and repetition")
    args = parser.parse_args()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=64, n_head=2)).eval()
    ids = torch.randint(0, 1000, (1, 8))

    def call() -> None:
        with torch.inference_mode():
            model.generate(ids, max_new_tokens=32, min_new_tokens=32, do_sample=False, pad_token_id=0)

    for _ in range(3):
        call()
    methods = [m for m in METHODS if m != "vmhwm" or can_reset_peak_rss()]
    times: dict[str, list[float]] = {m: [] for m in methods}
    for rep in range(args.reps):
        for method in methods[rep % len(methods) :] + methods[: rep % len(methods)]:  # rotate the order
            tracker = None
            if method != "none":
                tracker = RssTracker(force_sampling=method != "vmhwm")
                tracker.method = method
                tracker.start()
            for _ in range(args.calls):
                start = time.perf_counter()
                call()
                times[method].append(time.perf_counter() - start)
            if tracker is not None:
                tracker.stop()
    base = statistics.median(times["none"])
    print(
        f"torch threads {torch.get_num_threads()}, {args.reps} x {args.calls} calls per method, interleaved"
    )
    for method in methods:
        median = statistics.median(times[method])
        print(f"{method:16s} median {median * 1e3:7.2f} ms per call  x{median / base:.3f}")


if __name__ == "__main__":
    main()
