"""history.changepoints.detect: the steps in one metric's series (seeded synthetic series, as the bench's)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pytest_tbench.history.changepoints import detect, fit_noise


def series(
    seed: int, n: int = 60, noise: float = 0.015, steps: tuple[tuple[int, float], ...] = ()
) -> np.ndarray:
    """A level of 1.0, Gaussian noise of sd ``noise``; each step multiplies the level from its index on."""
    level = np.ones(n)
    for index, ratio in steps:
        level[index:] *= ratio
    return level + noise * np.random.default_rng(seed).standard_normal(n)


def test_a_clear_step_is_found_at_its_index_with_an_interval_around_its_ratio() -> None:
    steps = detect(series(1, steps=((40, 1.06),)))
    assert len(steps) == 1
    step = steps[0]
    assert step.index == 40
    assert step.ratio_low < 1.06 < step.ratio_high
    assert step.ratio_low < step.ratio < step.ratio_high
    assert step.ratio == pytest.approx(step.after / step.before)
    assert step.before == pytest.approx(1.0, abs=0.01)
    assert step.after == pytest.approx(1.06, abs=0.01)
    assert step.p_value < 1e-6
    assert step.regression  # a time that went up


@pytest.mark.parametrize("seed", range(10))
def test_a_flat_series_has_no_step(seed: int) -> None:
    assert detect(series(seed)) == []


def test_short_series_give_no_steps() -> None:
    assert detect([]) == []
    assert detect([1.0]) == []
    assert detect([1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0]) == []  # 7 points: too few to judge
    assert detect([5.0] * 30) == []  # constant


def test_a_drop_has_a_ratio_below_one_and_its_direction_decides_regression() -> None:
    values = series(2, steps=((30, 0.94),))
    (time_step,) = detect(values)
    assert time_step.index == 30
    assert time_step.ratio_high < 1.0
    assert not time_step.regression  # a time that went down: better
    (throughput_step,) = detect(values, higher_is_better=True)
    assert throughput_step.regression  # a throughput that went down: worse


def test_two_steps_are_both_found() -> None:
    steps = detect(series(3, steps=((20, 1.06), (40, 1 / 1.06))))
    assert [s.index for s in steps] == [20, 40]
    assert steps[0].ratio > 1.0 > steps[1].ratio


@pytest.mark.parametrize("where", [30, 0, 59])
def test_an_outlier_alone_is_not_a_step(where: int) -> None:
    values = series(4)
    values[where] *= 1.2
    assert detect(values) == []


def test_without_the_outlier_filter_a_spike_can_pass_for_a_step() -> None:
    values = series(4)
    values[30:32] *= 1.2  # two points: too short to hold a running median, long enough for a t test
    assert detect(values) == []
    assert detect(values, outlier_sigmas=None, min_size=2, max_spell=0) != []
    # Without the filter, the spell rule alone still drops a level that came back 2 points later.
    assert detect(values, outlier_sigmas=None, min_size=2) == []


def test_exact_levels_give_an_exact_ratio() -> None:
    # Memory in bytes: no noise within a level.
    (step,) = detect([1000.0] * 20 + [1100.0] * 20)
    assert (step.index, step.ratio, step.ratio_low, step.ratio_high, step.p_value) == (20, 1.1, 1.1, 1.1, 0.0)


def test_a_change_below_min_change_is_not_reported() -> None:
    values = series(5, noise=0.001, steps=((30, 1.005),))
    (step,) = detect(values, min_change=0.0)
    assert step.ratio == pytest.approx(1.005, abs=0.001)
    assert detect(values) == []  # the default: 1%


def test_bad_input_says_what_is_wrong() -> None:
    values = list(series(6))
    values[12] = float("nan")
    with pytest.raises(ValueError, match=r"finite.*\[12\]"):
        detect(values)
    with pytest.raises(ValueError, match="alpha"):
        detect(series(6), alpha=1.5)
    with pytest.raises(ValueError, match="min_size"):
        detect(series(6), min_size=1)
    with pytest.raises(ValueError, match="max_spell"):
        detect(series(6), max_spell=-1)


def ar1(seed: int, phi: float, n: int = 60, sd: float = 0.015) -> np.ndarray:
    """A level of 1.0 with AR(1) noise of marginal sd ``sd``, started from its stationary distribution."""
    z = np.random.default_rng(seed).standard_normal(n)
    e = np.empty(n)
    e[0] = z[0]
    for t in range(1, n):
        e[t] = phi * e[t - 1] + math.sqrt(1 - phi**2) * z[t]
    return 1.0 + sd * e


def test_the_noise_fit_sees_autocorrelation_that_neighbour_differences_hide() -> None:
    # 40 series of 60 points: the moment fit is unbiased for a given segmentation, within its spread.
    phis = [fit_noise(ar1(seed, 0.8), [30]).phi for seed in range(40)]
    assert 0.7 < float(np.mean(phis)) < 0.9
    sds = [math.sqrt(fit_noise(ar1(seed, 0.8), []).variance) for seed in range(40)]
    assert 0.011 < float(np.mean(sds)) < 0.017  # the marginal 0.015, where neighbour differences say 0.007
    iid = fit_noise(series(1), [])
    assert iid.phi < 0.3


def test_autocorrelated_noise_is_not_a_step() -> None:
    # The old detector (independent points assumed) found steps in 9 of these 20.
    alarms = sum(bool(detect(ar1(seed, 0.5))) for seed in range(20))
    assert alarms <= 1


def test_a_step_in_autocorrelated_noise_is_still_found() -> None:
    found = 0
    for seed in range(20):
        values = ar1(seed, 0.5)
        values[40:] *= 1.06
        found += any(abs(s.index - 40) <= 3 and s.regression for s in detect(values))
    assert found >= 17


def test_slow_spells_are_not_steps() -> None:
    values = series(7)
    values[20:23] *= 1.10  # three slow sessions in a row
    values[45:48] *= 1.06
    assert detect(values) == []
    assert detect(values, max_spell=0, outlier_sigmas=None) != []  # without the spell rule: two levels
    # Three sessions at +5% (3.3 sd): the old detector reported 11 of these 20 as two steps.
    spells = [series(seed) for seed in range(20)]
    for values in spells:
        values[20:23] *= 1.05
    assert sum(bool(detect(v)) for v in spells) <= 1


def test_a_new_level_in_the_last_points_is_reported_once_it_holds_min_size_points() -> None:
    values = series(9, n=43)
    values[40:] *= 1.08
    (step,) = detect(values)
    assert step.index == 40
    assert detect(values[:42]) == []  # two points of it: not yet


@pytest.mark.parametrize("seed", range(6))
def test_a_history_shaped_like_the_34_real_sessions_has_its_one_step_at_the_commit(seed: int) -> None:
    # benches/history_sessions.sh (README, "On real sessions"): 34 sessions, session medians with a CV of
    # 5-9% at a constant level, +27.5% from session 20 on (index 19); tbench trend found that step alone.
    values = 1.0 + 0.07 * np.random.default_rng(seed).standard_normal(34)
    values[19:] *= 1.275
    (step,) = detect(values)
    assert step.index == 19 and step.regression and 1.15 < step.ratio < 1.40


def test_the_residual_moments_in_closed_form_match_the_matrix_products() -> None:
    from pytest_tbench.history.changepoints import Noise, _residual_moments

    def by_matrices(n: int, starts: np.ndarray, phi: float) -> tuple[float, float]:
        lengths = np.diff(np.append(starts, n))
        means = np.repeat(np.eye(len(starts)), lengths, axis=0) / lengths  # n x segments
        projection = np.eye(n) - means @ np.repeat(np.eye(len(starts)), lengths, axis=0).T
        c = projection @ Noise(1.0, phi).correlation(n) @ projection
        return float(np.trace(c)), float(np.trace(c, 1))

    for n, breaks, phi in ((20, [], 0.0), (30, [10], 0.5), (41, [3, 20, 37], 0.9), (12, [6], 0.97)):
        starts = np.array([0, *breaks])
        assert _residual_moments(n, starts, phi) == pytest.approx(by_matrices(n, starts, phi), abs=1e-9)


def test_a_spell_cut_off_by_either_end_is_not_a_step_and_a_fresh_level_is() -> None:
    # Three slow sessions just before the newest, which is back at the old level: a spell that has ended.
    ended = series(7)
    ended[56:59] *= 1.10
    assert detect(ended) == []
    assert detect(ended, max_spell=0) != []  # no spell rule: a new level (the filter took the newest)
    fresh = series(7)
    fresh[57:] *= 1.10  # the same three sessions, the newest among them: reported the night it shows
    (step,) = detect(fresh)
    assert step.index == 57 and step.regression
    first = series(8)
    first[:3] *= 1.10  # the first three runs slow: a spell, or a level nothing before them says was new
    assert detect(first) == []


def test_the_search_correction_is_between_the_single_place_p_and_bonferroni() -> None:
    from pytest_tbench.history.changepoints import Noise, neighbour_correlations, searched_p

    for length, phi in ((60, 0.0), (40, 0.5), (25, 0.9)):
        # The contrasts' correlations in closed form against the n x n matrix products.
        k = np.arange(3, length - 2)
        contrasts = np.array([np.r_[-np.ones(j) / j, np.ones(length - j) / (length - j)] for j in k])
        cov = contrasts @ Noise(1.0, phi).correlation(length) @ contrasts.T
        sd = np.sqrt(np.diag(cov))
        expected = np.diag(cov, 1) / (sd[:-1] * sd[1:])
        assert neighbour_correlations(length, 3, phi) == pytest.approx(expected, abs=1e-9)
        places = length - 5
        for p in (1e-6, 1e-4, 1e-3):
            assert p < searched_p(p, length, 3, phi) < places * p
    # Neighbours are more alike under autocorrelation: fewer effectively different places.
    assert searched_p(1e-4, 60, 3, 0.5) < searched_p(1e-4, 60, 3, 0.0)
