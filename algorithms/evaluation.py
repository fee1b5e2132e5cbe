"""Held-out evaluation of an in-memory model (the one being trained).

:func:`evaluate_model` plays greedy episodes with an :class:`~llm_trainer.agents.llm_agent.
LLMAgent` on a :class:`~llm_trainer.agents.backends.transformers_backend.TransformersBackend`
wrapping the model: the same agent, prompts and batched decoding loop as everywhere else, so
a model is measured exactly as it will act.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llm_trainer.algorithms.rollout import collect
from llm_trainer.core.records import METRIC_KEYS
from llm_trainer.core.trajectory import Trajectory


def model_agent(
    model: Any,
    tokenizer: Any,
    *,
    system_prompt: str | None = None,
    max_new_tokens: int = 96,
    temperature: float = 0.0,
    seed: int = 0,
    task_template: str | None = None,
) -> Any:
    """An :class:`~llm_trainer.agents.llm_agent.LLMAgent` acting with ``model`` (greedy when
    ``temperature`` is 0); it records each step's prompt and sampled tokens and log-probs.
    ``task_template`` puts each task through it (see ``LLMAgentConfig.task_template``)."""
    from llm_trainer.agents.backends.base import SamplingConfig
    from llm_trainer.agents.backends.transformers_backend import TransformersBackend
    from llm_trainer.agents.llm_agent import LLMAgent, LLMAgentConfig

    config = LLMAgentConfig(
        backend="transformers:<in-memory model>",
        sampling=SamplingConfig(temperature=temperature, max_new_tokens=max_new_tokens, seed=seed),
        system_prompt=system_prompt,
        record_episodes=False,
        task_template=task_template,
    )
    return LLMAgent(config, backend=TransformersBackend(model, tokenizer))


def evaluate_model(
    model: Any,
    tokenizer: Any,
    env_id: str,
    seeds: Sequence[int],
    *,
    difficulty: int | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    system_prompt: str | None = None,
    max_new_tokens: int = 96,
    batch_size: int = 200,
    task_template: str | None = None,
) -> tuple[dict[str, float], list[Trajectory]]:
    """Greedy held-out evaluation: the env's metrics averaged over one episode per seed (each
    task put through ``task_template`` when given; ``env_kwargs``: extra env constructor
    arguments)."""
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        agent = model_agent(
            model,
            tokenizer,
            system_prompt=system_prompt,
            max_new_tokens=max_new_tokens,
            task_template=task_template,
        )
        trajectories = collect(
            env_id,
            lambda envs: agent,
            seeds,
            num_envs=batch_size,
            difficulty=difficulty,
            env_kwargs=env_kwargs,
            source="policy:model",
        )
    finally:
        if was_training:
            model.train()
    return summarize_trajectories(trajectories), trajectories


def summarize_trajectories(trajectories: Sequence[Trajectory]) -> dict[str, float]:
    """Mean env metrics, reward and steps, plus the issue's metric names."""
    n = max(1, len(trajectories))
    rates = {k: sum(t.metrics[k] for t in trajectories) / n for k in METRIC_KEYS}
    return {
        "success": rates["success"],
        "tool_accuracy": rates["tool_correct"],
        "format_correctness": rates["format_ok"],
        "execution_success": rates["exec_ok"],
        "answer_correctness": rates["answer_correct"],
        "mean_reward": sum(t.total_reward for t in trajectories) / n,
        "mean_steps": sum(len(t.steps) for t in trajectories) / n,
        "errors": float(sum(t.error is not None for t in trajectories)),
    }
