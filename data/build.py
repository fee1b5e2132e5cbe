"""Build an experiment's training trajectories from its ``data`` section.

:func:`build_training_data` is the one place a ``data.strategy`` becomes trajectories: oracle
demonstrations collected in the env, template trajectories, teacher-mode trajectories
(Toolformer-style, needs the model) or ToolBench records.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from llm_trainer.core.errors import ConfigError, UserError

if TYPE_CHECKING:
    from llm_trainer.algorithms.config import DataConfig
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
) -> list[Trajectory]:
    """Training trajectories from ``data.strategy`` (the seed's three strategies, plus oracle
    demonstrations collected in the env).

    Raises:
        UserError: when teacher mode keeps no tool call, or a ToolBench file has no usable
            record.
    """
    from llm_trainer import data as strategies
    from llm_trainer.algorithms.rollout import oracle_trajectories

    seeds = range(data.first_seed, data.first_seed + data.episodes)
    if data.strategy == "oracle":
        log(
            f"collecting {data.episodes} oracle demonstrations in {data.env_id} "
            f"(difficulty {data.difficulty})"
        )
        return oracle_trajectories(data.env_id, seeds, difficulty=data.difficulty)
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
