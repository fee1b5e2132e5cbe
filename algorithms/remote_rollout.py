"""Policy rollouts as Ray tasks: :meth:`AlgorithmContext.collect
<llm_trainer.algorithms.base.AlgorithmContext.collect>` with an experiment's ``ray: {address:
...}`` section.

The episodes are cut into chunks of consecutive seeds (at most ``num_envs`` each: one lockstep
batch's worth) and each chunk is one item of a :class:`~llm_trainer.distributed.Executor`'s
``map``: a worker rebuilds the policy and plays its chunk through the same engine
(:func:`~llm_trainer.algorithms.rollout.collect`), and the trajectories come back in the order
of the seeds. A chunk whose worker died is re-run (the executor's retries).

**Shipping the policy.** Once per ``collect`` call the driver saves the agent with
:meth:`~llm_trainer.agents.llm_agent.LLMAgent.save` (the model and tokenizer, and the agent's
config: sampling with its seed, system prompt, task template) into a temporary directory under
the run directory, removed when the call returns; each worker loads it with
:meth:`~llm_trainer.agents.llm_agent.LLMAgent.load` (once per worker process and call). So the
run directory must be on storage every node of the cluster reads at the same path (one machine,
or a shared file system). The workers load the model on their CPU, in the dtype it was saved in.

**What can be shipped**: an :class:`~llm_trainer.agents.llm_agent.LLMAgent` (what
``context.agent(model, tokenizer, ...)`` builds) without a long-term memory (episodes recorded
on a worker would be lost) and without agent-side tools (code, not saved). Any other policy
(a scripted agent, an agent with memory or tools) is played in this process as without Ray,
with one log line saying so.

**Same results?** Greedy policies give the same trajectories as the local path (the actions
depend only on each slot's own prompts). Sampled ones are seeded per episode, but the
transformers backend draws a whole batch from one generator seeded by all the batch's slots,
so the sampled tokens depend on which episodes share a batch: on Ray, where each chunk is its
own batch, they differ from the local path's (they are still reproducible: the chunks do not
depend on the cluster's size).
"""

from __future__ import annotations

import math
import shutil
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_trainer.core.records import FrozenDict
from llm_trainer.core.trajectory import Trajectory
from llm_trainer.distributed import Executor

#: The folder of the run directory that holds the policies shipped to the workers.
SHIPPED_DIR = "rollout_policies"


@dataclass(frozen=True)
class RolloutChunk:
    """One unit of work: play ``seeds`` with the agent saved at ``agent_dir``."""

    agent_dir: str
    env_id: str
    seeds: tuple[int, ...]
    num_envs: int
    difficulty: int | None = None
    env_kwargs: Mapping[str, Any] | None = None
    source: str = "policy"


def unshippable(policy: Any) -> str | None:
    """Why ``policy`` cannot be rebuilt on a worker, or ``None`` when it can."""
    from llm_trainer.agents.llm_agent import LLMAgent

    if not isinstance(policy, LLMAgent):
        return f"a {type(policy).__name__} is not an LLM agent"
    if policy.memory is not None:
        return "the agent has a long-term memory"
    if len(policy.tools):
        return "the agent has its own tools (code)"
    return None


def split_seeds(seeds: Sequence[int], size: int) -> list[tuple[int, ...]]:
    """``seeds`` cut into runs of consecutive seeds of at most ``size``, as even as can be.

    >>> split_seeds(range(10), 4)
    [(0, 1, 2, 3), (4, 5, 6), (7, 8, 9)]
    """
    seeds = list(seeds)
    chunks = max(1, math.ceil(len(seeds) / max(1, size)))
    step, extra = divmod(len(seeds), chunks)
    out, start = [], 0
    for c in range(chunks if seeds else 0):
        end = start + step + (c < extra)
        out.append(tuple(seeds[start:end]))
        start = end
    return out


def collect_on(
    executor: Executor,
    policy: Any,
    run_path: Path,
    env_id: str,
    seeds: Sequence[int],
    *,
    num_envs: int,
    difficulty: int | None = None,
    env_kwargs: Mapping[str, Any] | None = None,
    source: str = "policy",
) -> list[Trajectory]:
    """One episode per seed, played by ``executor``'s workers (see the module docstring);
    the trajectories in the order of ``seeds``. ``policy`` must pass :func:`unshippable`."""
    if not seeds:
        return []
    root = run_path / SHIPPED_DIR
    agent_dir = root / uuid.uuid4().hex
    try:
        policy.save(agent_dir)
        chunks = [
            RolloutChunk(
                str(agent_dir.resolve()),
                env_id,
                part,
                num_envs,
                difficulty,
                None if env_kwargs is None else FrozenDict(env_kwargs),
                source,
            )
            for part in split_seeds(seeds, num_envs)
        ]
        played = executor.map(play_chunk, chunks)
    finally:
        shutil.rmtree(agent_dir, ignore_errors=True)
        if root.is_dir() and not any(root.iterdir()):
            root.rmdir()
    return [t for part in played for t in part]


#: The agent a worker process loaded last: ``(directory, agent)`` (one per ``collect`` call).
_LOADED: list[tuple[str, Any]] = []


def _agent(directory: str) -> Any:
    from llm_trainer.agents.llm_agent import LLMAgent

    if _LOADED and _LOADED[0][0] == directory:
        return _LOADED[0][1]
    while _LOADED:
        _LOADED.pop()[1].close()
    agent = LLMAgent.load(directory)
    _LOADED.append((directory, agent))
    return agent


def play_chunk(chunk: RolloutChunk) -> list[Trajectory]:
    """Play a chunk's seeds (runs in a worker): the trajectories in seed order."""
    from llm_trainer.algorithms.rollout import collect

    agent = _agent(chunk.agent_dir)
    factory: Callable[[Any], Any] = lambda envs: agent  # noqa: E731 - bound to this chunk
    return collect(
        chunk.env_id,
        factory,
        list(chunk.seeds),
        num_envs=chunk.num_envs,
        difficulty=chunk.difficulty,
        env_kwargs=chunk.env_kwargs,
        source=chunk.source,
    )
