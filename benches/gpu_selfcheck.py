"""Does tbench measure right on this GPU? Its numbers against independent ones, taken in the same process.

    python benches/gpu_selfcheck.py [--device cuda:0] [--model gpt2] [--batch-size 16] [--seq-len 512]

Prints one table of check / measured / expected / verdict and exits 1 if any check failed, 0 otherwise
(also when there is no CUDA device: then it says so and checks nothing, unless --device cpu asks for the
CPU dry run, which runs the same checks where they apply). About 3 minutes on one H100 with gpt2 (166 s
measured at batch 4 x 256, 2026-11-27, before the ONNX Runtime, energy and cuda:1 checks were added, which
add two ONNX exports of the model and at least 17 s of metered loops: not yet timed on a GPU).

Every reference builds its own model and inputs from the model's config (transformers' classes, seeded ids),
never through the plugin's loader or input maker.

- forward median in float32 and float16 within 3% of a hand-written CUDA-event loop on the same model and
  inputs, measured before and after the plugin's run (a reference that moved more than 3% between the two
  fails as an unstable machine); with 2+ GPUs, the same on cuda:1;
- generate TTFT and per-token decode against a hand-written greedy prefill + KV-cache decode loop;
- float16 and bfloat16 train: loss finite, weights changed, mixed precision as recorded, step time;
- the forward median under --tbench-isolate (and, on a GPU, as an A/A's current side) against the hand loop;
- --tbench-backend onnxruntime's forward median within 10% of ONNX Runtime's own run() loop over a graph the
  self-check exports itself (numpy inputs on the CPU, inputs bound on the GPU on CUDA);
- on CUDA, the forward item's average power (NVML's energy counter) within 15% of the mean of NVML's power
  readings sampled every 20 ms while the hand loop runs the same forward for as long;
- memory: known allocations measured within 2%, and the reserved peak of a small item run after a large one;
- --tbench-isolate runs on the device; a worker forked from its forkserver is not a bad fork and (on CUDA) can
  allocate on the GPU; the forkserver holds no CUDA context (NVML's process list);
- a large bf16 GEMM's TFLOP/s within [50%, 100%] of the peak table's figure for the GPU;
- NVML fields present and mapped to the item's GPU (and, with 2+ GPUs, cuda:1 against CUDA_VISIBLE_DEVICES=1).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch

from pytest_tbench.selfcheck.checks import CPU_SHAPE, Setup, run_all
from pytest_tbench.selfcheck.verdicts import exit_code, render


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--device", default="cuda", help="cuda, cuda:N, or cpu for the dry run (default cuda)"
    )
    parser.add_argument("--model", default="gpt2", help="model spec, as for --tbench-models (default gpt2)")
    parser.add_argument(
        "--batch-size", type=int, help=f"default {Setup.batch_size} on CUDA, {CPU_SHAPE[0]} on the CPU"
    )
    parser.add_argument(
        "--seq-len", type=int, help=f"default {Setup.seq_len} on CUDA, {CPU_SHAPE[1]} on the CPU"
    )
    parser.add_argument("--new-tokens", type=int, default=Setup.new_tokens)
    parser.add_argument("--rounds", type=int, default=Setup.rounds)
    parser.add_argument("--warmup", type=int, default=Setup.warmup)
    parser.add_argument(
        "--allocation-mib", type=int, nargs=2, default=Setup.allocation_mib, metavar=("LARGE", "SMALL")
    )
    args = parser.parse_args(argv)
    if args.device != "cpu" and not torch.cuda.is_available():
        print(f"gpu_selfcheck: no CUDA device (torch {torch.__version__}): nothing to check here; "
              "--device cpu runs the CPU dry run")  # fmt: skip
        return 0
    setup = Setup(
        device=args.device,
        model=args.model,
        batch_size=args.batch_size or (CPU_SHAPE[0] if args.device == "cpu" else Setup.batch_size),
        seq_len=args.seq_len or (CPU_SHAPE[1] if args.device == "cpu" else Setup.seq_len),
        new_tokens=args.new_tokens,
        rounds=args.rounds,
        warmup=args.warmup,
        allocation_mib=tuple(args.allocation_mib),
    )
    checks = run_all(setup, report=lambda rows: print(render(rows), flush=True))
    print("\n" + render(checks))
    return exit_code(checks)


if __name__ == "__main__":
    sys.exit(main())
