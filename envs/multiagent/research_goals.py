"""The research goals of ``LLMTrainer/ResearchSprint-v0``: questions whose answer the harness can
check by running code.

A goal is a yes/no question about a small training problem that runs in CPU milliseconds
(:mod:`llm_trainer.envs.multiagent.research_experiments`), stated precisely enough that any
faithful implementation measures the same answer:

=================  ===========================================================================
kind               question
=================  ===========================================================================
``optimizer``      does optimizer A (SGD, momentum or Adam, with a learning rate) reach a lower
                   final training loss than optimizer B on least squares within N steps?
``hidden_size``    does halving the hidden size of a one-hidden-layer tanh MLP (fitting a
                   random teacher) raise its final training loss by more than x?
``weight_decay``   does L2 weight decay lambda raise the final training loss of gradient
                   descent on least squares by more than x?
=================  ===========================================================================

Goals are drawn from a generator (:func:`draw_goal`), or read from a user's free text
(:func:`goal_from_text`: a text that names a kind becomes that kind's question, anything else
stays free text, checked for reproducibility only). The true answer (:func:`reference`) is
the harness's own run of the reference experiment on :data:`REFERENCE_SEEDS`; a goal is only
drawn when that answer is *robust*: the same on every reference seed, with a margin (losses
at least 30% apart; a relative increase at least twice the threshold, or below half of it),
so an implementation with other seeds measures the same answer.

>>> import numpy as np
>>> goal = draw_goal(np.random.default_rng(0))
>>> goal.kind in GOAL_KINDS, goal.checkable, reference(goal).robust
(True, True, True)
>>> goal_from_text("Does Adam reach a lower loss than SGD?", np.random.default_rng(0)).kind
'optimizer'
>>> goal_from_text("Compare AdamW vs. Lion on a small transformer", np.random.default_rng(0)).kind
"""

from __future__ import annotations

import functools
import inspect
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from llm_trainer.core.records import FrozenDict, to_plain
from llm_trainer.envs.multiagent import research_experiments
from llm_trainer.envs.multiagent.research_experiments import OPTIMIZERS, run

#: The kinds of checkable goals.
GOAL_KINDS: tuple[str, ...] = ("optimizer", "hidden_size", "weight_decay")
#: Seeds of the harness's reference runs (never the seeds an episode runs the code with).
REFERENCE_SEEDS: tuple[int, ...] = tuple(range(10_000, 10_016))
#: Two losses are robustly ordered when they differ by at least this share of the larger.
LOSS_MARGIN = 0.3
#: A relative increase is robustly above (below) a threshold x beyond 2 x (below x / 2).
THRESHOLD_FACTOR = 2.0
#: Draws tried before a kind's fallback goal (:data:`FALLBACKS`, robust by test).
MAX_DRAWS = 24

# The parameter grids the goals are drawn from.
_LEARNING_RATES: Mapping[str, tuple[float, ...]] = {
    "sgd": (0.01, 0.1),
    "momentum": (0.01, 0.05),
    "adam": (0.01, 0.1),
}
_REGRESSION = {"n": 128, "noise": 0.1}
_DIMS = (5, 10, 20)
_STEPS = (20, 50, 100)
_TEACHER = {"trials": 5, "n": 64, "d": 8, "teacher": 32, "noise": 0.01, "lr": 0.02, "steps": 150}
_HIDDEN = (4, 8, 16)
_THRESHOLDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
_WEIGHT_DECAYS = (0.01, 0.03, 0.1, 0.3)
_GD_LRS = (0.05, 0.1)

#: A robust goal of each kind, used when :data:`MAX_DRAWS` draws found none.
FALLBACKS: Mapping[str, Mapping[str, Any]] = FrozenDict(
    {
        "optimizer": FrozenDict(
            {
                "kind": "optimizer",
                **_REGRESSION,
                "d": 10,
                "steps": 50,
                "a": ("adam", 0.1),
                "b": ("sgd", 0.01),
            }
        ),
        "hidden_size": FrozenDict(
            {"kind": "hidden_size", **_TEACHER, "hidden": 8, "threshold": 0.05}
        ),
        "weight_decay": FrozenDict(
            {
                "kind": "weight_decay",
                **_REGRESSION,
                "d": 10,
                "lr": 0.1,
                "steps": 100,
                "weight_decay": 0.3,
                "threshold": 0.5,
            }
        ),
    }
)


@dataclass(frozen=True, slots=True)
class ResearchGoal:
    """A sprint's research goal.

    Attributes:
        question: The research question the team is given.
        kind: One of :data:`GOAL_KINDS`; ``None`` for free text the harness cannot answer
            itself (then only reproducibility is checked).
        params: The reference experiment's parameters (``kind`` included; empty for free text).
        text: The user's own words, when the goal came from text (``--goal``); else ``""``.
    """

    question: str
    kind: str | None = None
    params: Mapping[str, Any] = field(default_factory=FrozenDict)
    text: str = ""

    @property
    def checkable(self) -> bool:
        """Whether the harness knows the true answer (a family goal)."""
        return self.kind is not None

    @property
    def checking(self) -> str:
        """How a sprint on it is judged: ``reference`` or ``reproducibility-only``."""
        return "reference" if self.checkable else "reproducibility-only"

    def as_dict(self) -> dict[str, Any]:
        """The goal as JSON data (what ``info["goal"]`` and the sprint summary hold)."""
        return {
            "question": self.question,
            "kind": self.kind,
            "params": to_plain(self.params),
            "text": self.text,
            "checking": self.checking,
        }


@dataclass(frozen=True, slots=True)
class ReferenceAnswer:
    """The harness's own answer to a goal.

    Attributes:
        answer: The answer on the first reference seed.
        robust: Whether every reference seed gives it, with the margin (module docstring).
        results: The reference experiment's result on each of :data:`REFERENCE_SEEDS`.
    """

    answer: bool
    robust: bool
    results: tuple[Mapping[str, Any], ...]


def _freeze(params: Mapping[str, Any]) -> FrozenDict:
    return FrozenDict(
        {k: tuple(v) if isinstance(v, list | tuple) else v for k, v in params.items()}
    )


def _pick(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def _optimizer_name(name: str, lr: float) -> str:
    if name == "sgd":
        return f"SGD (lr={lr:g})"
    if name == "momentum":
        return f"SGD with heavy-ball momentum 0.9 (lr={lr:g})"
    return f"Adam (lr={lr:g}, betas 0.9/0.999, eps 1e-8, bias-corrected)"


def _regression_setup(params: Mapping[str, Any]) -> str:
    return (
        f"a least-squares linear regression problem: X has n={params['n']} rows and "
        f"d={params['d']} features, X and the true weights are drawn from a standard normal, "
        f"y = X w_true + {params['noise']:g} * standard normal noise; the weights start at zero, "
        "the loss is mean((X w - y)^2) / 2 and every step uses the full-batch gradient"
    )


def question(params: Mapping[str, Any]) -> str:
    """The research question of a family goal, stated precisely enough to implement."""
    kind = params["kind"]
    if kind == "optimizer":
        (name_a, lr_a), (name_b, lr_b) = params["a"], params["b"]
        return (
            f"On {_regression_setup(params)}: does {_optimizer_name(name_a, lr_a)} reach a "
            f"lower final training loss than {_optimizer_name(name_b, lr_b)} within "
            f"{params['steps']} steps? (answer: true if A's final loss is lower)"
        )
    if kind == "hidden_size":
        hidden = params["hidden"]
        return (
            f"On regression problems from random teacher networks (X has n={params['n']} rows "
            f"and d={params['d']} inputs, standard normal; y = tanh(X A) b + {params['noise']:g}"
            f" * standard normal noise, with A of shape d x {params['teacher']} standard normal "
            f"and b ~ N(0, 1/{params['teacher']})), train a one-hidden-layer tanh MLP (weights "
            "~ N(0, 1/fan_in), zero biases) with full-batch Adam (lr="
            f"{params['lr']:g}) for {params['steps']} steps on mean((f(X) - y)^2) / 2; the final "
            f"loss is the mean over {params['trials']} independent trials (each with its own "
            f"teacher, data and initialisation). Does halving the hidden size from {hidden} to "
            f"{hidden // 2} raise the final training loss by more than "
            f"{params['threshold']:.0%}? (answer: true if (loss_half - loss_full) / loss_full > "
            f"{params['threshold']:g})"
        )
    if kind == "weight_decay":
        return (
            f"On {_regression_setup(params)}, trained with gradient descent (lr={params['lr']:g}"
            f") for {params['steps']} steps: does adding L2 weight decay "
            f"{params['weight_decay']:g} (the gradient gains weight_decay * w) raise the final "
            f"training loss (without the penalty term) by more than {params['threshold']:.0%}? "
            f"(answer: true if (loss_decay - loss_plain) / loss_plain > "
            f"{params['threshold']:g})"
        )
    raise ValueError(f"unknown goal kind {kind!r}; kinds: {', '.join(GOAL_KINDS)}")


def family_goal(params: Mapping[str, Any], text: str = "") -> ResearchGoal:
    """The goal of the reference experiment ``params`` (``kind`` included)."""
    frozen = _freeze(params)
    return ResearchGoal(question(frozen), str(frozen["kind"]), frozen, text)


# -- the reference answer ---------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _measure(key: str) -> tuple[Mapping[str, Any], ...]:
    """The reference experiment on every reference seed (cached: the threshold of a goal
    does not change what is measured, so it is left out of ``key`` by the caller)."""
    params = json.loads(key)
    return tuple(FrozenDict(run(params, seed)) for seed in REFERENCE_SEEDS)


def reference(goal: ResearchGoal) -> ReferenceAnswer:
    """The harness's answer to a family goal, from its own runs on :data:`REFERENCE_SEEDS`.

    Raises:
        ValueError: for a free-text goal (it has no reference).
    """
    if goal.kind is None:
        raise ValueError("a free-text goal has no reference answer")
    params = dict(to_plain(goal.params))
    threshold = params.pop("threshold", None)
    measured = _measure(json.dumps({**params, "threshold": 0.0}, sort_keys=True))
    if goal.kind == "optimizer":
        answers = [bool(r["loss_a"] < r["loss_b"]) for r in measured]
        margin = all(
            np.isfinite([r["loss_a"], r["loss_b"]]).all()
            and abs(r["loss_a"] - r["loss_b"]) >= LOSS_MARGIN * max(r["loss_a"], r["loss_b"])
            for r in measured
        )
        results = measured
    else:
        assert threshold is not None, "every threshold goal has a threshold"
        increases = [float(r["relative_increase"]) for r in measured]
        answers = [x > threshold for x in increases]
        margin = all(
            np.isfinite(x)
            and (x > THRESHOLD_FACTOR * threshold or x < threshold / THRESHOLD_FACTOR)
            for x in increases
        )
        results = tuple(
            FrozenDict({**r, "answer": a}) for r, a in zip(measured, answers, strict=True)
        )
    robust = margin and len(set(answers)) == 1
    return ReferenceAnswer(answers[0], bool(robust), results)


# -- drawing goals ----------------------------------------------------------------------------


def _draw_params(
    kind: str, rng: np.random.Generator, fixed: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Parameters of ``kind`` drawn from its grid; ``fixed`` ones are kept."""
    fixed = dict(fixed or {})
    if kind == "optimizer":
        names = fixed.pop("names", None)
        if names is None:
            picked = rng.choice(len(OPTIMIZERS), size=2, replace=False)
            names = (OPTIMIZERS[int(picked[0])], OPTIMIZERS[int(picked[1])])
        params: dict[str, Any] = {
            "kind": kind,
            **_REGRESSION,
            "d": _pick(rng, _DIMS),
            "steps": _pick(rng, _STEPS),
            "a": (names[0], _pick(rng, _LEARNING_RATES[names[0]])),
            "b": (names[1], _pick(rng, _LEARNING_RATES[names[1]])),
        }
    elif kind == "hidden_size":
        params = {
            "kind": kind,
            **_TEACHER,
            "hidden": _pick(rng, _HIDDEN),
            "threshold": _pick(rng, _THRESHOLDS),
        }
    elif kind == "weight_decay":
        params = {
            "kind": kind,
            **_REGRESSION,
            "d": _pick(rng, _DIMS),
            "lr": _pick(rng, _GD_LRS),
            "steps": _pick(rng, _STEPS[1:]),
            "weight_decay": _pick(rng, _WEIGHT_DECAYS),
            "threshold": _pick(rng, _THRESHOLDS),
        }
    else:
        raise ValueError(f"unknown goal kind {kind!r}; kinds: {', '.join(GOAL_KINDS)}")
    params.update(fixed)
    return params


def _robust_goal(
    kind: str, rng: np.random.Generator, fixed: Mapping[str, Any] | None, text: str
) -> ResearchGoal | None:
    """A robust goal of ``kind`` within :data:`MAX_DRAWS` draws, or ``None``."""
    for _ in range(MAX_DRAWS):
        goal = family_goal(_draw_params(kind, rng, fixed), text)
        if reference(goal).robust:
            return goal
    return None


def draw_goal(rng: np.random.Generator, kinds: Sequence[str] = GOAL_KINDS) -> ResearchGoal:
    """A robust goal of one of ``kinds`` (uniformly), all randomness from ``rng``.

    Raises:
        ValueError: for an empty or unknown ``kinds``.
    """
    unknown = [k for k in kinds if k not in GOAL_KINDS]
    if not kinds or unknown:
        raise ValueError(
            f"goal kinds must be a non-empty subset of {', '.join(GOAL_KINDS)}, got {list(kinds)}"
        )
    kind = _pick(rng, tuple(kinds))
    goal = _robust_goal(kind, rng, None, "")
    return goal if goal is not None else family_goal(FALLBACKS[kind])


_OPTIMIZER_WORDS = re.compile(r"\b(sgd|momentum|adam)\b")
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)\s*%")


def match_kind(text: str) -> tuple[str, dict[str, Any]] | None:
    """The goal kind ``text`` asks about and what it fixes, or ``None``.

    >>> match_kind("Is Adam better than SGD with momentum?")
    ('optimizer', {'names': ('adam', 'momentum')})
    >>> match_kind("Test if reducing hidden dimension by 50% impacts final loss")
    ('hidden_size', {})
    >>> match_kind("Does weight decay raise the training loss by more than 50%?")
    ('weight_decay', {'threshold': 0.5})
    """
    lowered = " ".join(text.casefold().split())
    names = list(dict.fromkeys(_OPTIMIZER_WORDS.findall(lowered)))
    if "sgd with momentum" in lowered or "sgd + momentum" in lowered:
        names = [n for n in names if n != "sgd"]
    if len(names) >= 2:
        return "optimizer", {"names": (names[0], names[1])}
    percents = [float(p) / 100 for p in _PERCENT.findall(lowered)]
    if "weight decay" in lowered or "weight-decay" in lowered or "l2 penalty" in lowered:
        return "weight_decay", {"threshold": percents[0]} if percents else {}
    sizes = ("hidden size", "hidden dimension", "hidden width", "hidden units", "width")
    shrink = ("halv", "half", "50%", "reduc", "smaller", "shrink")
    if any(s in lowered for s in sizes) and any(s in lowered for s in shrink):
        # "by 50%" names the halving; a second percentage is the threshold
        thresholds = [p for p in percents if p != 0.5] if "50%" in lowered else percents
        return "hidden_size", {"threshold": thresholds[0]} if thresholds else {}
    return None


def goal_from_text(text: str, rng: np.random.Generator) -> ResearchGoal:
    """The goal a user's text asks for: a family goal when it names a kind
    (:func:`match_kind`) and a robust question of that kind exists with what the text fixes;
    otherwise free text, checked for reproducibility only.

    Raises:
        ValueError: for an empty text.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("a research goal must be a non-empty text")
    text = text.strip()
    matched = match_kind(text)
    if matched is not None:
        goal = _robust_goal(matched[0], rng, matched[1], text)
        if goal is not None:
            return goal
    return ResearchGoal(question=text, text=text)


# -- the known-good experiment ------------------------------------------------------------------


@functools.cache
def _reference_source() -> str:
    """The reference module's source with a short module docstring (its own one is about the
    harness, not about the experiment)."""
    source = inspect.getsource(research_experiments)
    body = source.split('"""', 2)[2]
    head = '"""experiment.py: a research sprint\'s experiment (LLMTrainer/ResearchSprint-v0)."""'
    return head + body


def experiment_source(goal: ResearchGoal) -> str:
    """A known-good ``experiment.py`` for ``goal``: the reference experiment's source and the
    goal's parameters; for a free-text goal, the fallback optimizer comparison (a reproducible
    experiment, though not about the goal)."""
    params = to_plain(goal.params if goal.kind is not None else FALLBACKS["optimizer"])
    return (
        f"{_reference_source().rstrip()}\n\n\n"
        f"PARAMS = json.loads({json.dumps(json.dumps(params, sort_keys=True))})\n\n"
        'if __name__ == "__main__":\n'
        "    main(PARAMS)\n"
    )
