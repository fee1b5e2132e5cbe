"""The reference experiments of ``LLMTrainer/ResearchSprint-v0``: small numpy training problems
that run in CPU milliseconds.

This module is self-contained on purpose (numpy and the standard library only, no import of
``llm_trainer``): the harness imports it to compute the true answer of a research goal
(:mod:`llm_trainer.envs.multiagent.research_goals`), and the scripted coder ships its source,
followed by the goal's parameters, as ``experiment.py``, so the trusted reference and the
known-good experiment are one text.

Every experiment follows the env's contract: ``python experiment.py --seed SEED`` draws all of
its randomness from ``SEED`` and prints one line ``RESULT {json}`` with the measured
quantities and ``answer``, the boolean the goal asks for.

>>> params = {"kind": "optimizer", "n": 64, "d": 5, "noise": 0.1, "steps": 50,
...           "a": ["adam", 0.1], "b": ["sgd", 0.01]}
>>> result = run(params, seed=0)
>>> result["answer"], result["loss_a"] < result["loss_b"]
(True, True)
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[np.float64]

#: The optimizers the goals compare (full-batch updates).
OPTIMIZERS = ("sgd", "momentum", "adam")
MOMENTUM = 0.9
ADAM_BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


class Optimizer:
    """One optimizer's state for a list of parameter arrays, updated in place.

    ``sgd``: ``p -= lr * g``; ``momentum``: heavy ball, ``v = 0.9 v + g; p -= lr * v``;
    ``adam``: Kingma & Ba (2015) with betas (0.9, 0.999), eps 1e-8 and bias correction.
    """

    def __init__(self, name: str, lr: float, params: Sequence[Array]) -> None:
        if name not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
        self.name, self.lr, self.t = name, lr, 0
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, params: Sequence[Array], grads: Sequence[Array]) -> None:
        self.t += 1
        for p, g, m, v in zip(params, grads, self.m, self.v, strict=True):
            if self.name == "sgd":
                p -= self.lr * g
            elif self.name == "momentum":
                m *= MOMENTUM
                m += g
                p -= self.lr * m
            else:
                b1, b2 = ADAM_BETAS
                m *= b1
                m += (1 - b1) * g
                v *= b2
                v += (1 - b2) * g * g
                m_hat = m / (1 - b1**self.t)
                v_hat = v / (1 - b2**self.t)
                p -= self.lr * m_hat / (np.sqrt(v_hat) + ADAM_EPS)


def regression_data(rng: np.random.Generator, n: int, d: int, noise: float) -> tuple[Array, Array]:
    """``x`` (n, d) and the true weights from a standard normal; ``y = x w + noise * N(0, 1)``."""
    x = rng.standard_normal((n, d))
    w_true = rng.standard_normal(d)
    y = x @ w_true + noise * rng.standard_normal(n)
    return x, y


def train_linear(
    x: Array, y: Array, optimizer: str, lr: float, steps: int, weight_decay: float = 0.0
) -> float:
    """Full-batch training of linear least squares from zero weights; the final training loss
    ``mean((x w - y)^2) / 2`` (without the weight-decay term, which only adds ``wd * w`` to
    the gradient)."""
    n, d = x.shape
    w = np.zeros(d)
    opt = Optimizer(optimizer, lr, [w])
    for _ in range(steps):
        grad = x.T @ (x @ w - y) / n + weight_decay * w
        opt.step([w], [grad])
    return float(0.5 * np.mean((x @ w - y) ** 2))


def teacher_data(
    rng: np.random.Generator, trials: int, n: int, d: int, width: int, noise: float
) -> tuple[Array, Array]:
    """``trials`` independent data sets from random teacher networks: ``x`` (trials, n, d)
    standard normal, ``y = tanh(x A) b + noise * N(0, 1)`` with, per trial, ``A`` (d, width)
    standard normal and ``b ~ N(0, 1 / width)``."""
    x = rng.standard_normal((trials, n, d))
    a = rng.standard_normal((trials, d, width))
    b = rng.standard_normal((trials, width, 1)) / math.sqrt(width)
    y = (np.tanh(x @ a) @ b)[..., 0] + noise * rng.standard_normal((trials, n))
    return x, y


def train_mlp(
    x: Array, y: Array, hidden: int, lr: float, steps: int, rng: np.random.Generator
) -> float:
    """One-hidden-layer tanh MLPs (weights ``N(0, 1 / fan_in)``, zero biases), one per trial
    of ``x`` (trials, n, d) and ``y`` (trials, n), each trained with full-batch Adam on
    ``mean((f(x) - y)^2) / 2``; the final training loss, averaged over the trials (the trials
    are trained at once: Adam is elementwise, so this is the same as one by one)."""
    trials, n, d = x.shape
    w1 = rng.standard_normal((trials, d, hidden)) / math.sqrt(d)
    b1 = np.zeros((trials, 1, hidden))
    w2 = rng.standard_normal((trials, hidden, 1)) / math.sqrt(hidden)
    b2 = np.zeros((trials, 1, 1))
    params = [w1, b1, w2, b2]
    opt = Optimizer("adam", lr, params)
    targets = y[..., None]
    for _ in range(steps):
        h = np.tanh(x @ w1 + b1)
        err = (h @ w2 + b2 - targets) / n
        dh = (err @ w2.transpose(0, 2, 1)) * (1 - h * h)
        grads = [
            x.transpose(0, 2, 1) @ dh,
            dh.sum(1, keepdims=True),
            h.transpose(0, 2, 1) @ err,
            err.sum(1, keepdims=True),
        ]
        opt.step(params, grads)
    h = np.tanh(x @ w1 + b1)
    return float(0.5 * np.mean((h @ w2 + b2 - targets) ** 2))


def run(params: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """Run the experiment ``params`` describes with all randomness from ``seed``; the result
    (the measured losses and ``answer``)."""
    rng = np.random.default_rng(seed)
    kind = params["kind"]
    if kind == "optimizer":
        x, y = regression_data(rng, params["n"], params["d"], params["noise"])
        (name_a, lr_a), (name_b, lr_b) = params["a"], params["b"]
        loss_a = train_linear(x, y, name_a, lr_a, params["steps"])
        loss_b = train_linear(x, y, name_b, lr_b, params["steps"])
        return {"loss_a": loss_a, "loss_b": loss_b, "answer": bool(loss_a < loss_b)}
    if kind == "hidden_size":
        x, y = teacher_data(
            rng, params["trials"], params["n"], params["d"], params["teacher"], params["noise"]
        )
        full_rng, half_rng = rng.spawn(2)
        hidden, lr, steps = params["hidden"], params["lr"], params["steps"]
        loss_full = train_mlp(x, y, hidden, lr, steps, full_rng)
        loss_half = train_mlp(x, y, hidden // 2, lr, steps, half_rng)
        increase = (loss_half - loss_full) / loss_full
        return {
            "loss_full": loss_full,
            "loss_half": loss_half,
            "relative_increase": increase,
            "answer": bool(increase > params["threshold"]),
        }
    if kind == "weight_decay":
        x, y = regression_data(rng, params["n"], params["d"], params["noise"])
        lr, steps = params["lr"], params["steps"]
        loss_plain = train_linear(x, y, "sgd", lr, steps)
        loss_decay = train_linear(x, y, "sgd", lr, steps, weight_decay=params["weight_decay"])
        increase = (loss_decay - loss_plain) / loss_plain
        return {
            "loss_plain": loss_plain,
            "loss_decay": loss_decay,
            "relative_increase": increase,
            "answer": bool(increase > params["threshold"]),
        }
    raise ValueError(f"unknown experiment kind {kind!r}")


def main(params: Mapping[str, Any], argv: Sequence[str] | None = None) -> None:
    """The experiment's entry point: ``--seed SEED``, then one ``RESULT {json}`` line."""
    parser = argparse.ArgumentParser(description="A research sprint's experiment.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of all randomness.")
    args = parser.parse_args(argv)
    print("RESULT " + json.dumps(run(params, args.seed)))
