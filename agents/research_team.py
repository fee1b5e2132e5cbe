"""A scripted research team for ``LLMTrainer/ResearchSprint-v0``: fixed, known-good texts that
prove the env end to end on a CPU in seconds.

Each role reads only its ``info`` (the goal as data, the phase, the latest execution), never
the env's internals or the reference answer: the researcher states a hypothesis, the architect
a plan, the coder ships the reference experiment of the goal's kind with the goal's parameters
(:func:`~llm_trainer.envs.multiagent.research_goals.experiment_source`), and the validator
concludes what the execution printed (``inconclusive`` when it failed). On a goal of the family
the team succeeds every sprint; on free text its experiment runs and reproduces, though it is
not about the goal.

>>> import llm_trainer
>>> env = llm_trainer.make_multiagent("LLMTrainer/ResearchSprint-v0", min_isolation="L0")
>>> team = scripted_research_team()
>>> env.reset(seed=0)
>>> for agent in env.agent_iter():
...     observation, reward, terminated, truncated, info = env.last()
...     env.step(None if terminated else team[agent].act(observation, info))
>>> env.unwrapped.get_state().outcome.success
True
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from llm_trainer.core.records import to_plain

#: The roles of the team (``LLMTrainer/ResearchSprint-v0``'s agents).
ROLES: tuple[str, ...] = ("researcher", "architect", "coder", "validator")

_HYPOTHESES = {
    "optimizer": "the first optimizer reaches a lower final training loss than the second "
    "within the step budget",
    "hidden_size": "halving the hidden size raises the final training loss by more than the "
    "threshold",
    "weight_decay": "the weight decay raises the final training loss by more than the threshold",
    None: "the experiment gives the same answer on every seed",
}
_DISCUSSION = {
    "architect": "Design: generate the data exactly as the goal states, train both settings on "
    "the same data, compare the final training losses, and report them with the answer.",
    "coder": "Implementation: numpy only, full-batch updates, one RESULT line; all randomness "
    "from a numpy Generator seeded with --seed.",
    "validator": "Check: the code follows the goal's setup, the RESULT holds both losses, and "
    "the answer follows from them; re-runs with other seeds must agree.",
}


class ScriptedResearchRole:
    """One scripted role of the research team (see the module docstring).

    Args:
        role: ``researcher``, ``architect``, ``coder`` or ``validator``.
    """

    def __init__(self, role: str) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {list(ROLES)}, got {role!r}")
        self.role = role

    def reset(self, *, seed: int | None = None) -> None:
        """Nothing to reset: the role reads the sprint from ``info``."""

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        goal = to_plain(info.get("goal") or {})
        phase = info.get("phase")
        kind = goal.get("kind")
        if self.role == "researcher":
            return f"HYPOTHESIS: {_HYPOTHESES.get(kind, _HYPOTHESES[None])}."
        if self.role == "architect":
            if phase == "action_plan":
                params = json.dumps(goal.get("params") or {}, sort_keys=True)
                return (
                    "PLAN: implement the goal's experiment with these parameters: "
                    f"{params}; report every measured loss and the answer on one RESULT line."
                )
            return _DISCUSSION["architect"]
        if self.role == "coder":
            if phase == "implementation":
                return f"experiment.py:\n```python\n{self._code(goal)}```\n"
            return _DISCUSSION["coder"]
        if phase == "validation":
            execution = info.get("execution") or {}
            answer = execution.get("answer") if execution.get("ok") else None
            if isinstance(answer, bool):
                verdict = "yes" if answer else "no"
            elif isinstance(answer, int | float):
                verdict = f"{answer:g}"
            else:
                verdict = "inconclusive"
            return (
                "The code follows the goal's setup and its RESULT answers the question.\n"
                f"CONCLUSION: {verdict}"
            )
        return _DISCUSSION["validator"]

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        return [self.act(o, i) for o, i in zip(observations, infos, strict=True)]

    @staticmethod
    def _code(goal: Mapping[str, Any]) -> str:
        from llm_trainer.envs.multiagent.research_goals import (
            ResearchGoal,
            experiment_source,
            family_goal,
        )

        if goal.get("kind"):
            return experiment_source(family_goal(goal["params"]))
        return experiment_source(ResearchGoal(question=str(goal.get("question", ""))))


def scripted_research_team() -> dict[str, ScriptedResearchRole]:
    """A scripted policy for every role, by agent name."""
    return {role: ScriptedResearchRole(role) for role in ROLES}
