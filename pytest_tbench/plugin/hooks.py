"""pytest hooks and fixtures of pytest-tbench; the work itself lives in the modules they call."""

from __future__ import annotations

import warnings
from collections.abc import Generator
from typing import Any

import pytest

from pytest_tbench.core.axes import DEVICE_MAP_NONE, TP_NONE
from pytest_tbench.core.errors import OptionError
from pytest_tbench.core.modes import DEFAULT_MODE, mode_names
from pytest_tbench.judge.gate import open_gate
from pytest_tbench.judge.run_verdict import RunVerdict
from pytest_tbench.launch.ab.session import open_ab
from pytest_tbench.launch.choose import runs_in_workers
from pytest_tbench.launch.conftests import session_conftests
from pytest_tbench.launch.preload import add_model_code, modeling_module
from pytest_tbench.machine.devices import absent_reason, is_cuda
from pytest_tbench.machine.environment import environment
from pytest_tbench.measure.memory_errors import (
    OutOfMemory,
    catch_out_of_memory,
    settle_out_of_memory,
)
from pytest_tbench.models.families import family_of
from pytest_tbench.models.fit import MemoryEstimate, WorkShape, estimate
from pytest_tbench.models.loading import (
    HEADS,
    TORCH_DTYPES,
    ModelCache,
    ModelLoadError,
    head_unsupported_reason,
)
from pytest_tbench.models.placement import spread_unsupported_reason
from pytest_tbench.models.quantization import unavailable_reason as quantization_reason
from pytest_tbench.plugin import xdist as xdist_session
from pytest_tbench.plugin.fixture import TBench
from pytest_tbench.plugin.pytest_benchmark_session import (
    measure_in_worker,
    storage_folder,
    worker_saves_nothing,
)
from pytest_tbench.plugin.settings import session_settings
from pytest_tbench.plugin.signals import defer_sigterm, save_on_sigterm
from pytest_tbench.plugin.state import STATE, SessionState
from pytest_tbench.scenarios import SCENARIOS
from pytest_tbench.scenarios.backends import unavailable_reason as backend_reason
from pytest_tbench.settings.benchlist import check_unique, list_cases
from pytest_tbench.settings.cases import BenchCase, build_cases
from pytest_tbench.settings.config import TBenchConfig
from pytest_tbench.settings.options import SETTINGS, legacy_spelling_errors, normalise_compare_args
from pytest_tbench.show.compare_table import render
from pytest_tbench.show.listing import list_models, list_presets
from pytest_tbench.show.profile_table import profile_lines
from pytest_tbench.show.summary import LEGEND, summary_tables


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tbench", "transformers benchmarks (pytest-tbench)")
    for setting in SETTINGS:
        if setting.flag:
            kind: dict[str, Any] = {"action": "store_const", "const": True}
        elif setting.bare is not None:
            kind = {"nargs": "?", "const": setting.bare, "metavar": setting.metavar}
        else:
            kind = {"action": "append" if setting.repeat else "store", "metavar": setting.metavar}
        # argparse %-formats help texts ("time:5%" must reach it as "time:5%%"); ini help is printed as is.
        group.addoption(setting.cli, dest=setting.dest, help=setting.help.replace("%", "%%"), **kind)
        parser.addini(setting.ini, setting.help, default="")
    config_help = (
        "YAML or TOML file with the settings' keys (as the ini keys, without their tbench_ prefix; and "
        "custom_models), and optionally a benchmarks: list of entries, each a model with its own settings "
        "(the seeds' list format too)"
    )
    group.addoption("--tbench-config", dest="tbench_config", default=None, metavar="FILE", help=config_help)
    parser.addini("tbench_config", config_help, default="")
    group.addoption("--tbench-list-presets", action="store_true", help="show the presets and exit")
    group.addoption("--tbench-list-models", action="store_true", help="show the model specs and exit")


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    errors = legacy_spelling_errors(args)
    if errors:
        raise pytest.UsageError(*errors)
    normalise_compare_args(args)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # Read now, not at import: the initial conftest.py files, which may register modes, are imported by now.
    config.addinivalue_line(
        "markers",
        f"tbench(mode={DEFAULT_MODE!r}, head=...): the mode ({', '.join(mode_names())}, or one added with "
        f"pytest_tbench.register_mode) and model head ({', '.join(HEADS)}; default: the mode's) of a test "
        "that takes the tbench fixture",
    )
    xdist_session.apply_worker_plan(config)  # first: its CUDA_VISIBLE_DEVICES must precede any CUDA call
    if hasattr(config.option, "benchmark_save_data"):
        # Raw samples are what later statistics (and regression gates) are computed from: always keep them.
        config.option.benchmark_save_data = True
    tbench_config = session_settings(config)
    models = ModelCache(tbench_config.sweep.custom_models, tbench_config.run.trust_remote_code)
    try:
        # Before collection, so that it is a usage error at once.
        check_unique(tbench_config.sweep.benchmarks, models.config)
    except OptionError as exc:
        raise pytest.UsageError(str(exc)) from None
    xdist_session.start_controller(config, tbench_config)
    config.stash[STATE] = SessionState(tbench_config, models)
    config.stash[STATE].restore_sigterm = save_on_sigterm()
    config.pluginmanager.register(SaveGuard(), "tbench-save-guard")


def pytest_sessionstart(session: pytest.Session) -> None:
    # After every plugin's pytest_configure: pytest-benchmark's storage exists only from then on.
    state = session.config.stash[STATE]
    if xdist_session.is_worker(session.config):
        worker_saves_nothing(session.config)  # the controller saves every worker's items, once
    storage, cwd = storage_folder(session.config), session.config.invocation_params.dir
    try:  # what the gate's baseline or the A/B base side cannot use is the user's to fix
        state.gate = open_gate(state.config, storage, cwd)
        if state.config.ab.side is not None:
            state.ab = open_ab(state.config.ab.side, session.config.rootpath, state.config.ab.path)
    except OptionError as exc:
        raise pytest.UsageError(str(exc)) from None


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if config.getoption("tbench_list_presets"):
        print(list_presets())
        return 0
    if config.getoption("tbench_list_models"):
        print(list_models(session_settings(config)))  # runs before pytest_configure
        return 0
    return None


def _mode_and_head(marker: pytest.Mark | None) -> tuple[str, str]:
    """The mark's mode and head, checked against the tables as they are now (a conftest.py may have added
    modes with register_mode)."""
    kwargs = dict(marker.kwargs) if marker else {}
    mode = kwargs.pop("mode", marker.args[0] if marker and marker.args else DEFAULT_MODE)
    head = kwargs.pop("head", SCENARIOS[mode].default_head if mode in SCENARIOS else "base")
    if mode not in SCENARIOS or head not in HEADS or kwargs:
        raise pytest.UsageError(
            f"@pytest.mark.tbench(mode={mode!r}, head={head!r}{', ' if kwargs else ''}"
            f"{', '.join(f'{k}=...' for k in kwargs)}): valid modes {', '.join(mode_names())} (more with "
            f"pytest_tbench.register_mode); valid heads {', '.join(HEADS)}; no other arguments"
        )
    return mode, head


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "tbench_case" not in metafunc.fixturenames:
        return
    mode, head = _mode_and_head(metafunc.definition.get_closest_marker("tbench"))
    state = metafunc.config.stash[STATE]
    if state.config.sweep.benchmarks:
        try:
            made = list_cases(state.config.sweep.benchmarks, mode, head, state.models.config)
        except OptionError as exc:  # a mode registered after configure can still make two entries collide
            raise pytest.UsageError(str(exc)) from None
        state.entries.update(made)
        cases = [case for case, _ in made]
    else:
        cases = build_cases(state.config, mode, head, state.models.config)
    metafunc.parametrize(
        "tbench_case",
        [
            pytest.param(c.as_params(), id=c.id, marks=xdist_session.model_group(metafunc.config, c))
            for c in cases
        ],
        indirect=True,
    )


def _case_of(item: pytest.Item) -> BenchCase | None:
    """The case a tbench item was parametrised with; None for other tests."""
    params = getattr(getattr(item, "callspec", None), "params", {})
    return BenchCase.from_params(params["tbench_case"]) if "tbench_case" in params else None


@pytest.hookimpl(tryfirst=True)  # before an xdist worker sends the controller what it collected
def pytest_collection_finish(session: pytest.Session) -> None:
    # The items that will run, once every plugin has reordered and deselected: pytest-split deselects in a
    # trylast pytest_collection_modifyitems of its own that runs after any of ours, and a model whose last
    # item is deselected would stay loaded under the next model's items, in their peak memory.
    state = session.config.stash[STATE]
    cases = [(item, _case_of(item)) for item in session.items]
    for item, case in cases:
        if case is not None:
            state.last_user[case.model_key] = xdist_session.plain_nodeid(item)
    cpu_items = sum(1 for _, case in cases if case is not None and case.device == "cpu")
    xdist_session.refuse_shared_cpu(
        session.config, session.items, cpu_items, state.config.launch.allow_shared_cpu
    )
    xdist_session.check_grouping(session.config, session.items)
    if state.ab is not None:
        state.ab.items = sum(1 for _, case in cases if case is not None)
    if state.gate is not None:  # each timing test's share of the run's error rate (judge/judge.py)
        state.gate.plan([item.nodeid for item, case in cases if case is not None])


@pytest.fixture
def tbench_case(request: pytest.FixtureRequest) -> BenchCase:
    """The item's coordinates: mode, model, head, batch size, input length, device, dtype."""
    return BenchCase.from_params(request.param)


def _batch_input_reason(case: BenchCase, config: TBenchConfig, models: ModelCache) -> str | None:
    """The batch x input guard; for a family without a token axis, the input is the positions its model runs
    over (an image's patches, an audio window's frames)."""
    if not case.media:  # text: as given, without reading the config
        length, what = case.seq_len, f"input length {case.seq_len}"
    else:
        model_config = models.config(case.model)
        length = family_of(model_config).sequence_tokens(model_config, case.seq_len)
        text = f"input length {case.seq_len} + " if case.seq_len else ""
        what = f"{text}{case.media} ({length} positions per sample)"
    product = case.batch_size * length
    if product > config.sweep.max_batch_input_product:
        return (
            f"batch {case.batch_size} x {what} = {product} exceeds "
            f"--tbench-max-batch-input-product {config.sweep.max_batch_input_product}"
        )
    return None


def _skip_reason(case: BenchCase, config: TBenchConfig, models: ModelCache) -> str | None:
    too_big = _batch_input_reason(case, config, models)
    if too_big:
        return too_big
    absent = absent_reason(case.device)
    if absent:
        return absent
    model_config = models.config(case.model)
    family = family_of(model_config)
    scenario = SCENARIOS[case.mode]
    unsupported = (
        scenario.unsupported_reason(case.model, model_config)
        or head_unsupported_reason(case.model, case.head, model_config)
        or scenario.variant_reason(case, config.run)
        or models.attention_reason(case.model_key)
        or quantization_reason(case.quantization, case.model_key.train, case.device)
        or backend_reason(case)
        or spread_unsupported_reason(
            case.model, model_config, case.device, case.device_map, case.tp, case.quantization, case.backend
        )
    )
    if unsupported:
        return unsupported
    extra = family.extra_positions(model_config)
    limit, needed = family.token_limit(model_config), scenario.positions_needed(case) + extra
    if limit is not None and needed > limit:
        what = " + ".join(
            part
            for part in (
                f"input length {case.seq_len}" if family.token_axis else "",
                f"{extra} positions of its {case.media or family.name} input" if extra else "",
                f"{case.new_tokens} new tokens" if case.new_tokens else "",
            )
            if part
        )
        return f"{what} exceeds {case.model}'s max positions ({limit})"
    return None


def _memory_estimate(case: BenchCase, config: TBenchConfig, models: ModelCache) -> MemoryEstimate | None:
    """What the item needs and what its device has free (models/fit.py); None without --tbench-fit-check."""
    if not config.measure.fit_check:
        return None
    key = case.model_key
    model_config = models.config(case.model)
    # Positions per sample as the model runs them: text tokens, image patches, encoder frames.
    positions = family_of(model_config).sequence_tokens(model_config, case.seq_len)
    bytes_per_element = TORCH_DTYPES[case.dtype].itemsize
    shape = WorkShape(case.mode, case.head, case.batch_size, positions, case.new_tokens, bytes_per_element)
    # Tensor parallel ranks are processes of their own, like isolated workers.
    in_this_process = not runs_in_workers(config) and case.tp == TP_NONE
    loaded = in_this_process and models.is_loaded(key)
    found = models.weights_estimate(key)
    every_gpu = case.device_map != DEVICE_MAP_NONE  # the map may use any visible GPU
    return estimate(model_config, shape, found, loaded, case.device, in_this_process, every_gpu)


def _preload_model_code(state: SessionState) -> None:
    if state.preloaded:
        return
    state.preloaded = True
    modules = []
    specs = [entry.model for entry in state.config.sweep.benchmarks] or state.config.sweep.models
    for spec in dict.fromkeys(specs):
        try:
            module = modeling_module(state.models.config(spec).model_type)
        except ModelLoadError:
            continue
        if module:
            modules.append(module)
    add_model_code(modules)


@pytest.fixture
def tbench(request: pytest.FixtureRequest, tbench_case: BenchCase) -> TBench:
    """Benchmark the item's model: ``tbench.forward()``, or ``tbench.measure(call, tokens=...)``."""
    state: SessionState = request.config.stash[STATE]
    case = tbench_case
    settings = state.settings_of(case)
    entry = state.entries.get(case)
    workers = runs_in_workers(state.config)  # the item runs in worker processes: they load the model

    def release_if_last() -> None:
        if state.last_user.get(case.model_key) == xdist_session.plain_nodeid(request.node):
            state.models.release(case.model_key)
            if state.ab is not None:  # the A/B pairs' workers that kept the model for its next item
                state.ab.release_workers()

    request.addfinalizer(release_if_last)  # first, so that skipped and failed items release too
    try:
        reason = _skip_reason(case, settings, state.models)
        memory = _memory_estimate(case, settings, state.models) if reason is None else None
        if reason is None and memory is not None:
            reason = memory.skip_reason()
        if reason is None and state.config.measure.oom_skip:
            reason = state.ooms.covering(case)
        if xdist_session.is_worker(request.config):
            state.models.release_others(case.model_key)
        # Load now, so that a broken model errors at setup, not in the test (an isolated item loads in its
        # worker).
        loaded = (
            None
            if reason or workers or case.tp != TP_NONE  # ranks load their own shards
            else catch_out_of_memory(lambda: state.models.get(case.model_key))
        )
    except ModelLoadError as exc:
        pytest.fail(str(exc), pytrace=False)
    if reason:
        pytest.skip(reason)
    if isinstance(loaded, OutOfMemory):  # skipped like an item that ran out while measuring, and recorded
        pytest.skip(
            settle_out_of_memory(
                case,
                f"while loading the model: {loaded.detail}",
                state.ooms,
                release=lambda: state.models.release(case.model_key),
            )
        )
    if workers:
        _preload_model_code(state)
    if state.conftests is None and (workers or case.tp != TP_NONE):
        # Every conftest is imported by now (collection is over): workers import the same, in this order.
        state.conftests = session_conftests(request.config.pluginmanager.list_name_plugin())
    nodeid = xdist_session.plain_nodeid(request.node)
    benchmark = request.getfixturevalue("benchmark")  # only now: a skipped item never creates an unused one
    if xdist_session.is_worker(request.config):
        measure_in_worker(benchmark, request.config, nodeid)
        if is_cuda(case.device):
            xdist_session.check_worker_gpus(request.config)
    return TBench(
        case,
        lambda: state.models.get(case.model_key),
        state.models.resolve(case.model),
        benchmark,
        settings=settings,
        record=state.results.append,
        nodeid=nodeid,
        ooms=state.ooms,
        gate=state.gate,
        not_measured=lambda outcome: state.not_measured_item(nodeid, outcome),
        ab=state.ab,
        memory_estimate=memory,
        benchmark_entry=entry.record() if entry is not None else None,
        placement=xdist_session.placement(request.config),
        conftests=state.conftests or (),
    )


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    machine_info["tbench"] = environment()
    state = config.stash.get(STATE, None)
    if state is not None:
        machine_info["tbench"]["settings"] = state.config.record()
        if state.workers:  # under pytest-xdist: each worker's GPUs and cores (the controller's are above)
            machine_info["tbench"]["xdist_workers"] = dict(sorted(state.workers.items()))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Remember tbench items that measured nothing (skipped, or broken before a result), so that a run
    used as a baseline can say which of its items are absent and why."""
    report = yield
    state = item.config.stash.get(STATE, None)
    if state is None or _case_of(item) is None:
        return report
    if report.when == "teardown":
        if xdist_session.is_worker(
            item.config
        ):  # every phase is done: the item's results go to the controller
            xdist_session.attach_results(report, item, state)
        return report
    if not (report.skipped or report.failed):
        return report
    nodeid = xdist_session.plain_nodeid(item)
    measured = any(result.nodeid == nodeid for result in state.results)
    if report.skipped or not measured:
        state.not_measured_item(nodeid, "skipped" if report.skipped else "errored")
    return report


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: Any, output_json: dict[str, Any]) -> None:
    state = config.stash.get(STATE, None)
    output_json["tbench"] = {"not_measured": state.not_measured if state is not None else []}
    ab_run = state.settled_ab_run() if state is not None else None
    if ab_run is not None:  # the items' verdicts in output_json are the same objects, settled by now
        output_json["tbench"]["ab_run"] = ab_run.as_json()
    if state is not None and state.run_json is None:
        state.run_json = output_json


class SaveGuard:
    """Outside pytest-benchmark's sessionfinish, which saves the run: from there a SIGTERM waits until the
    run is saved (signals.py). A plugin object of its own: the module's own sessionfinish must run inside,
    before the terminal summary."""

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Generator[None, None, None]:
        state = session.config.stash.get(STATE, None)
        if state is not None:
            state.restore_sigterm()
            state.restore_sigterm = defer_sigterm()
        return (yield)


def pytest_sessionfinish(session: pytest.Session) -> None:
    # After pytest-benchmark saved the run (its sessionfinish wrapper saves before ours run); before the
    # terminal summary, which shows the outcome and a store failure's warning.
    state = session.config.stash.get(STATE, None)
    if state is None or xdist_session.is_worker(session.config):
        return
    ab_run = state.settled_ab_run()
    if ab_run is not None:
        _end_ab_run(session, ab_run)
    if state.config.output.store is None:
        return
    from pytest_tbench.plugin.store_session import (
        store_session_run,  # SQLAlchemy only for sessions that give a store
    )

    state.store_line, failed = store_session_run(session.config, state.run_json, state.config.output.store)
    if failed and state.config.output.store_required and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _end_ab_run(session: pytest.Session, ab_run: RunVerdict) -> None:
    """The A/B run's decision as the session's outcome: items pass at their end (the run decides over all of
    them), so a regression, or an undecided item under --tbench-ab-undecided fail, fails the session here."""
    if ab_run.failed and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    if ab_run.undecided and ab_run.undecided_mode == "warn":
        # Warned here, inside pytest's warning capture for sessionfinish: the warnings summary shows it.
        warnings.warn(
            f"--tbench-ab: {len(ab_run.undecided)} item(s) the run cannot tell: "
            + ", ".join(ab_run.undecided)
            + " (the A/B table says what would decide each; --tbench-ab-undecided fail fails the run on "
            "them, pass keeps this quiet)",
            pytest.PytestWarning,
            stacklevel=1,
        )


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None:
        return
    if state.config.notes:
        terminalreporter.write_sep("-", "tbench CONFIG NOTES")
        for note in state.config.notes:
            terminalreporter.write_line(note)
    if state.results:
        for title, table in summary_tables(state.results):
            terminalreporter.write_sep("-", title)
            terminalreporter.write_line(table)
        terminalreporter.write_line(LEGEND)
    profiled = profile_lines((r.nodeid, r.extra_info) for r in state.results)
    if profiled:
        terminalreporter.write_sep("-", "tbench PROFILE (--tbench-profile: rounds after the measured ones)")
        for line in profiled:
            terminalreporter.write_line(line)
    if state.ab is not None:
        from pytest_tbench.judge.sides_code import code_lines
        from pytest_tbench.show.ab_summary import ab_table, ab_title

        ab_text = ab_table((r.case.id, r.extra_info) for r in state.results)
        code = code_lines((r.case.id, r.extra_info) for r in state.results)  # also without verdicts
        if ab_text is not None or code:
            terminalreporter.write_sep("-", ab_title(r.extra_info for r in state.results))
            for line in [ab_text, *code] if ab_text is not None else code:
                terminalreporter.write_line(line)
    if state.gate is not None:
        terminalreporter.write_sep("-", f"tbench REGRESSION GATE vs {state.gate.label}")
        for reason in state.gate.skipped:
            terminalreporter.write_line(f"saved run skipped: {reason}", yellow=True)
        terminalreporter.write_line(render(state.gate.finish()))
    if state.config.output.report:
        from pytest_tbench.plugin.report import (
            write_session_report,  # matplotlib only when a report is asked for
        )

        terminalreporter.write_sep("-", "tbench REPORT")
        terminalreporter.write_line(write_session_report(config, state.run_json, state.config.output.report))
    if state.store_line is not None:
        terminalreporter.write_sep("-", "tbench STORE")
        terminalreporter.write_line(state.store_line)
    ab_run = state.settled_ab_run()
    if ab_run is not None:  # last: the run's decision in one line, where a CI log's reader looks
        from pytest_tbench.show.ab_summary import ab_failures

        terminalreporter.write_sep("-", "tbench A/B RUN")
        for line in ab_failures(((r.nodeid, r.extra_info) for r in state.results), ab_run):
            terminalreporter.write_line(line)
        terminalreporter.write_line(ab_run.line(), bold=True, red=ab_run.failed, green=not ab_run.failed)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is not None:
        state.models.release_all()
        if state.ab is not None:
            state.ab.close()
        state.restore_sigterm()  # last: a SIGTERM held during the save ends the process here
