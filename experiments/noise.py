"""The noise floor of a held-out rate: how far two evaluations of one model may differ by chance.

A run's headline metrics (``success``, ``tool_accuracy``...) are rates: the mean over
``eval.episodes`` held-out episodes of a 0/1 outcome, so the run's ``(rate, episodes)`` gives
its episodes' outcomes back (``round(rate * episodes)`` ones). :func:`rate_interval` is the
percentile bootstrap 95% interval of such a rate (:func:`~llm_trainer.benchmarks.stats.
bootstrap_ci`), the interval a run records beside each rate.

:func:`rate_noise_floor` is the half-width of the 95% bootstrap interval of the *difference*
between two independent evaluations of ``episodes`` episodes that both succeed like the
recorded run: two results closer than that could come from the same model measured twice on
other draws of the episodes. The outcomes get one pseudo-success and one pseudo-failure
(Agresti and Caffo, 2000, "Simple and effective confidence intervals for proportions and
differences of proportions"), so that a rate of 0 or 1 (every tiny-budget run succeeds
never) does not give a floor of zero, which would call any change at all a regression.

>>> round(rate_noise_floor(0.5, 200), 2)
0.1
>>> rate_noise_floor(0.0, 4) > 0.2
True
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from llm_trainer.benchmarks.stats import Interval

#: Bootstrap resamples of an interval or a noise floor (as the benchmarks use).
RESAMPLES = 2000


def episode_outcomes(rate: float, episodes: int) -> npt.NDArray[np.float64]:
    """The 0/1 outcomes behind ``rate`` over ``episodes`` episodes (ones first).

    Raises:
        ValueError: when ``episodes`` is not positive or ``rate`` is not a multiple of
            ``1 / episodes`` in [0, 1] (then it is no rate over that many episodes).

    >>> episode_outcomes(0.25, 4).tolist()
    [1.0, 0.0, 0.0, 0.0]
    """
    import numpy as np

    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    wins = round(rate * episodes)
    if not 0 <= wins <= episodes or abs(wins / episodes - rate) > 1e-6:
        raise ValueError(f"{rate!r} is not a rate over {episodes} episodes")
    out = np.zeros(episodes, dtype=np.float64)
    out[:wins] = 1.0
    return out


def rate_interval(rate: float, episodes: int, *, seed: int = 0) -> Interval:
    """The percentile bootstrap 95% interval of a rate over ``episodes`` episodes.

    >>> print(rate_interval(0.5, 100))
    0.500 [0.400, 0.600]
    """
    from llm_trainer.benchmarks.stats import bootstrap_ci

    return bootstrap_ci(episode_outcomes(rate, episodes), n_resamples=RESAMPLES, seed=seed)


def rate_noise_floor(
    rate: float, episodes: int, *, confidence: float = 0.95, seed: int = 0
) -> float:
    """Half-width of the bootstrap interval of the difference of two independent evaluations
    like this one (see the module docstring)."""
    import numpy as np

    from llm_trainer.benchmarks.stats import resample_counts

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    outcomes = np.concatenate([episode_outcomes(rate, episodes), [1.0, 0.0]])
    rng = np.random.default_rng(seed)
    n = outcomes.size
    first = resample_counts(n, RESAMPLES, rng) @ outcomes / n
    second = resample_counts(n, RESAMPLES, rng) @ outcomes / n
    return float(np.quantile(np.abs(first - second), confidence))
