"""Build an experiment's training trajectories from its ``data`` section.

:func:`build_training_data` is the one place a ``data.strategy`` becomes trajectories: oracle
demonstrations collected in the env, template trajectories, teacher-mode trajectories
(Toolformer-style, needs the model), ToolBench records or a synthesis task spec's kept
trajectories.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from llm_trainer.core.errors import ConfigError, UserError

if TYPE_CHECKING:
    from llm_trainer.algorithms.config import DataConfig, DataExtra, DataPhase
    from llm_trainer.core.store import TrajectoryStore
    from llm_trainer.core.trajectory import Trajectory
    from llm_trainer.data.templates import ToolName


def _tools_of(env_id: str) -> tuple[ToolName, ...]:
    from llm_trainer.algorithms.config import TOOLS_OF_ENV

    if env_id not in TOOLS_OF_ENV:
        raise ConfigError(
            f"data.env_id: the template and teacher strategies cover {sorted(TOOLS_OF_ENV)}, "
            f"not {env_id!r}"
        )
    return cast("tuple[ToolName, ...]", TOOLS_OF_ENV[env_id])


def build_training_data(
    data: DataConfig,
    *,
    seed: int = 0,
    log: Callable[[str], None] = print,
    model: Any = None,
    tokenizer: Any = None,
    store: TrajectoryStore | None = None,
) -> list[Trajectory]:
    """Training trajectories from ``data.strategy`` (the seed's three strategies, oracle
    demonstrations collected in the env, or the kept trajectories of a synthesis task spec,
    stored in ``store`` with their filter decisions and lineage when given).

    Raises:
        UserError: when teacher mode keeps no tool call, a ToolBench file has no usable
            record, or a synthesis keeps nothing.
    """
    if data.strategy == "synthetic":
        from llm_trainer.data.synthesis import synthesize

        assert data.synthesis_spec is not None  # DataConfig requires it
        log(f"synthesizing trajectories from {data.synthesis_spec}")
        result = synthesize(data.synthesis_spec, store=store, log=log)
        if not result.kept:
            raise UserError(
                f"data.synthesis_spec: {data.synthesis_spec} kept no trajectory "
                f"(rejected by filter: {result.stats()['rejected_by_filter']})"
            )
        return result.trajectories
    return _build(data, seed=seed, log=log, model=model, tokenizer=tokenizer)


def repeat_matching(
    trajectories: list[Trajectory],
    repeat: Mapping[str, int],
    *,
    log: Callable[[str], None] = print,
) -> list[Trajectory]:
    """``trajectories`` with each one whose task matches a pattern of ``repeat`` (``{regex:
    k}``, the first matching pattern counts) ``k`` times, its copies right after it.

    >>> from llm_trainer.core.trajectory import Trajectory
    >>> ts = [Trajectory("e", i, 1, "", (), p, ()) for i, p in enumerate(["Add 1", "Sub 2"])]
    >>> [t.prompt for t in repeat_matching(ts, {"^Sub": 3}, log=lambda _: None)]
    ['Add 1', 'Sub 2', 'Sub 2', 'Sub 2']
    """
    if not repeat:
        return trajectories
    patterns = [(re.compile(pattern), times) for pattern, times in repeat.items()]
    out: list[Trajectory] = []
    counts = dict.fromkeys(repeat, 0)
    for t in trajectories:
        match = next(((p, k) for p, k in patterns if p.search(t.prompt)), None)
        if match is not None:
            counts[match[0].pattern] += 1
        out.extend([t] * (match[1] if match else 1))
    log(
        "data.repeat: "
        + ", ".join(f"{counts[p]} x {k} for {p!r}" for p, k in repeat.items())
        + f" ({len(trajectories)} -> {len(out)} trajectories)"
    )
    return out


def phase_order(
    trajectories: Sequence[Trajectory],
    repeat: Mapping[str, int],
    phases: Sequence[DataPhase],
    rows: int,
    *,
    seed: int,
    log: Callable[[str], None] = print,
) -> list[Trajectory]:
    """``rows`` training rows in the order they are trained on, for a data schedule: the rows
    before the first phase's ``after * rows`` are drawn with ``repeat`` (``{regex: k}``, as
    :func:`repeat_matching`), each phase's with its own ``repeat``; within a phase, in shuffled
    passes over its data (seeded by ``seed`` and the phase).

    >>> from llm_trainer.algorithms.config import DataPhase
    >>> from llm_trainer.core.trajectory import Trajectory
    >>> ts = [Trajectory("e", i, 1, "", (), p, ()) for i, p in enumerate(["Add", "Sub"])]
    >>> order = phase_order(ts, {}, [DataPhase(0.5, {"Sub": 3})], 8, seed=0, log=lambda _: None)
    >>> [t.prompt for t in order[:4]].count("Sub"), [t.prompt for t in order[4:]].count("Sub")
    (2, 3)
    """
    import numpy as np

    from llm_trainer.core.seeding import derive_seed

    if not trajectories:
        raise UserError("data.phases: there is no training data to draw from")
    starts = [0, *(min(rows, round(p.after * rows)) for p in phases)]
    ends = [*starts[1:], rows]
    balances = [repeat, *(p.repeat for p in phases)]
    order: list[Trajectory] = []
    for k, (start, end, balance) in enumerate(zip(starts, ends, balances, strict=True)):
        pool = repeat_matching(list(trajectories), balance, log=lambda _: None)
        rng = np.random.default_rng(derive_seed(seed, "data.phases", k))
        drawn: list[Trajectory] = []
        while len(drawn) < end - start:
            drawn.extend(pool[i] for i in rng.permutation(len(pool)))
        order.extend(drawn[: end - start])
        log(f"data.phases: rows {start}-{end - 1} drawn with repeat {dict(balance)}")
    return order


def _extra_demonstrations(
    env_id: str, extra: DataExtra, log: Callable[[str], None]
) -> list[Trajectory]:
    """``extra.episodes`` oracle demonstrations at ``extra.difficulty`` whose task matches
    ``extra.match``, from consecutive seeds starting at ``extra.first_seed``."""
    from llm_trainer.algorithms.rollout import oracle_trajectories

    pattern = re.compile(extra.match) if extra.match is not None else None
    kept: list[Trajectory] = []
    seed = extra.first_seed
    drawn_limit = 100 * extra.episodes
    while len(kept) < extra.episodes:
        if seed - extra.first_seed >= drawn_limit:
            raise UserError(
                f"data.extra: only {len(kept)} of {seed - extra.first_seed} tasks at difficulty "
                f"{extra.difficulty} match {extra.match!r} (wanted {extra.episodes})"
            )
        chunk = max(64, 2 * (extra.episodes - len(kept)))
        for t in oracle_trajectories(
            env_id, range(seed, seed + chunk), difficulty=extra.difficulty
        ):
            if len(kept) < extra.episodes and (pattern is None or pattern.search(t.prompt)):
                kept.append(t)
        seed += chunk
    what = f" matching the regex {extra.match}" if pattern is not None else ""
    log(f"data.extra: {len(kept)} oracle demonstrations at difficulty {extra.difficulty}{what}")
    return kept


def _build(
    data: DataConfig,
    *,
    seed: int,
    log: Callable[[str], None],
    model: Any,
    tokenizer: Any,
) -> list[Trajectory]:
    from llm_trainer import data as strategies
    from llm_trainer.algorithms.rollout import oracle_trajectories

    seeds = range(data.first_seed, data.first_seed + data.episodes)
    if data.strategy == "oracle":
        log(
            f"collecting {data.episodes} oracle demonstrations in {data.env_id} "
            f"(difficulty {data.difficulty})"
        )
        out = oracle_trajectories(data.env_id, seeds, difficulty=data.difficulty)
        for extra in data.extra:
            out.extend(_extra_demonstrations(data.env_id, extra, log))
        return out
    if data.strategy == "templates":
        tools = _tools_of(data.env_id)
        log(f"generating {data.episodes} template trajectories for {', '.join(tools)}")
        per_tool = -(-data.episodes // len(tools))
        out = [
            t
            for i, tool in enumerate(tools)
            for t in strategies.template_trajectories(tool, per_tool, data.first_seed + i)
        ]
        return out[: data.episodes]
    if data.strategy == "teacher":
        tools = _tools_of(data.env_id)
        per_tool = -(-data.episodes // len(tools))
        questions = [
            q
            for i, tool in enumerate(tools)
            for q in strategies.plain_examples(tool, per_tool, data.first_seed + i)
        ]
        result = strategies.teacher_trajectories(
            model,
            tokenizer,
            questions,
            strategies.TeacherConfig(threshold=data.teacher_threshold, seed=seed, tools=tools),
        )
        log(f"teacher mode: {result.stats.as_dict()}")
        if not result.trajectories:
            raise UserError(
                f"data.teacher_threshold: teacher mode kept no tool calls at "
                f"{data.teacher_threshold} (an untrained model gains little from tool results; "
                "lower the threshold or start from a trained model.path)"
            )
        return list(result.trajectories)
    log(f"loading ToolBench data from {data.toolbench_path or '(synthetic fallback)'}")
    trajectories = strategies.load_toolbench(data.toolbench_path)
    if not trajectories:
        raise UserError(f"data.toolbench_path: {data.toolbench_path} holds no usable record")
    return trajectories
