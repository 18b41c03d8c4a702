"""Reference loops written by hand, sharing no timing code with the plugin.

On CUDA the times come from events recorded on the device's current stream and read after the last one has
completed (the plugin times with the host clock after a device synchronise); on CPU, ``time.perf_counter``.
"""

from __future__ import annotations

import inspect
import itertools
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch


class Stopwatch:
    """Marks on one device's timeline; ``seconds()`` gives each mark relative to the first."""

    def __init__(self, device: str) -> None:
        self.device = torch.device(device)
        self._marks: list[Any] = []

    def mark(self) -> None:
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record(torch.cuda.current_stream(self.device))
            self._marks.append(event)
        else:
            self._marks.append(time.perf_counter())

    def seconds(self) -> list[float]:
        if self.device.type != "cuda":
            return [m - self._marks[0] for m in self._marks]
        self._marks[-1].synchronize()
        return [self._marks[0].elapsed_time(m) / 1000 for m in self._marks]


def timed_calls(call: Callable[[], object], device: str, rounds: int, warmup: int) -> list[float]:
    """Seconds of each of ``rounds`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(rounds):
        watch = Stopwatch(device)
        watch.mark()
        call()
        watch.mark()
        times.append(watch.seconds()[-1])
    return times


def host_timed_calls(call: Callable[[], object], device: str, rounds: int) -> list[float]:
    """Seconds of each call by the host clock, the device synchronised inside: the plugin's way of timing,
    written again, beside the events' to tell a clock's disagreement from the machine's drift."""
    times = []
    for _ in range(rounds):
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        call()
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return times


def forward_kwargs(model: Any, inputs: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """A lone forward's arguments, as the plugin's forward mode passes them: no cache built."""
    kwargs: dict[str, Any] = dict(inputs)
    if "use_cache" in inspect.signature(model.forward).parameters:
        kwargs["use_cache"] = False
    return kwargs


def forward_call(model: Any, inputs: Mapping[str, torch.Tensor]) -> Callable[[], None]:
    kwargs = forward_kwargs(model, inputs)

    def call() -> None:
        with torch.inference_mode():
            model(**kwargs)

    return call


def forward_medians_s(
    model: Any, inputs: Mapping[str, torch.Tensor], device: str, rounds: int, warmup: int
) -> tuple[float, float]:
    """Medians of a lone forward: by events on the device's stream, then by the host clock."""
    call = forward_call(model, inputs)
    events = statistics.median(timed_calls(call, device, rounds, warmup))
    return events, statistics.median(host_timed_calls(call, device, rounds))


def calls_for(call: Callable[[], object], device: str, seconds: float) -> int:
    """Call back to back, the device synchronised after each call as the plugin's rounds are, until
    ``seconds`` have passed by the host clock; how many calls ran."""
    end = time.perf_counter() + seconds
    calls = 0
    while time.perf_counter() < end:
        call()
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        calls += 1
    return calls


def greedy_decode(
    model: Any,
    input_ids: torch.Tensor,
    new_tokens: int,
    device: str,
    attention_mask: torch.Tensor | None = None,
) -> tuple[float, list[float]]:
    """A prefill and ``new_tokens - 1`` KV-cache decode steps, greedy: the first token's time from the call's
    start, and each later token's interval. An ``attention_mask`` grows by a column of ones a step, as
    ``generate`` grows the one it is given."""
    # transformers 5.x names the cache argument and output ``cache``; 4.x ``past_key_values``.
    cache_arg = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    masks = {} if attention_mask is None else {"attention_mask": attention_mask}
    watch = Stopwatch(device)
    with torch.inference_mode():
        watch.mark()
        out = model(input_ids=input_ids, use_cache=True, **masks)
        token = out.logits[:, -1:].argmax(-1)
        watch.mark()
        for _ in range(new_tokens - 1):
            if attention_mask is not None:
                masks["attention_mask"] = torch.cat([masks["attention_mask"], torch.ones_like(token)], dim=1)
            out = model(input_ids=token, use_cache=True, **{cache_arg: out[cache_arg]}, **masks)
            token = out.logits[:, -1:].argmax(-1)
            watch.mark()
    marks = watch.seconds()
    return marks[1], [b - a for a, b in itertools.pairwise(marks[1:])]


def decode_medians_s(
    model: Any, inputs: Mapping[str, torch.Tensor], new_tokens: int, device: str, rounds: int, warmup: int
) -> tuple[float, float]:
    """Median time to first token over the rounds, and median per-token decode interval over every step;
    ``inputs``: input ids and, where the model takes one, an attention mask."""
    ids, mask = inputs["input_ids"], inputs.get("attention_mask")
    for _ in range(warmup):
        greedy_decode(model, ids, new_tokens, device, mask)
    firsts, steps = [], []
    for _ in range(rounds):
        first, intervals = greedy_decode(model, ids, new_tokens, device, mask)
        firsts.append(first)
        steps.extend(intervals)
    return statistics.median(firsts), statistics.median(steps)


def train_step_median_s(
    model: Any, input_ids: torch.Tensor, device: str, dtype: str, rounds: int, warmup: int
) -> float:
    """Median of a training step written by hand as the plugin's train mode takes one: forward with the
    inputs as labels, backward, AdamW at lr 1e-5, gradients freed; float16/bfloat16 under autocast over
    float32 weights, float16 with a GradScaler. Timed by the stopwatch (events on CUDA): a step whose
    device work the plugin did not wait for would be shorter there than here."""
    device_type = torch.device(device).type
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    amp = getattr(torch, dtype) if dtype in ("float16", "bfloat16") else None
    scaler = torch.amp.GradScaler(device_type) if dtype == "float16" else None

    def step() -> None:
        if amp is None:
            loss = model(input_ids=input_ids, labels=input_ids).loss
        else:
            with torch.autocast(device_type, dtype=amp):
                loss = model(input_ids=input_ids, labels=input_ids).loss
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    model.train()
    try:
        return statistics.median(timed_calls(step, device, rounds, warmup))
    finally:
        model.eval()


def matmul_tflops(device: str, dtype: str, size: int, rounds: int) -> float:
    """Achieved TFLOP/s of a square ``size`` x ``size`` matmul in ``dtype`` (2 size^3 FLOPs a call), its
    operands built here: the median call by the stopwatch."""
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=getattr(torch, dtype), generator=generator)
    b = torch.randn(size, size, device=device, dtype=getattr(torch, dtype), generator=generator)
    median = statistics.median(timed_calls(lambda: torch.mm(a, b), device, rounds, warmup=3))
    return 2 * size**3 / median / 1e12
