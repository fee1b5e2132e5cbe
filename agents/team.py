"""A MALT team as one policy: generator -> verifier -> refiner on every observation, optionally
``votes`` chains with a majority vote over the final answers, saved and loaded as one agent.

MALT (Motwani et al., arXiv 2412.01928; seed 002) answers with three roles in sequence and, at
inference, may sample several chains and keep the majority answer (the paper's majority@3). A
:class:`MALTTeam` does that in *any* single-agent text env (``Reasoning-v0``, ``Knapsack-v0``,
the leaderboard's suites), so ``llm-trainer bench --agent runs/x/team`` scores a trained team
like any other agent; :meth:`MALTTeam.policies` hands the same role policies to the
:class:`~llm_trainer.agents.coordinator.MultiAgentCoordinator` for ``LLMTrainer/MALT-v0``.

* **What each role sees**: exactly what ``MALT-v0`` shows it (:func:`~llm_trainer.envs.
  multiagent.malt.render_view` and the env's role system prompts), with the env's observation
  as the question. On a later turn of a multi-turn env the question is the first observation
  followed by the env's latest message (its feedback), and every role starts afresh.
* **Batching**: one ``act_batch`` call per role for all observations and chains of a call.
* **Votes**: with ``votes > 1`` the refiners' ``<answer>`` blocks are compared after
  normalising case and spaces; the most frequent wins (a tie: the earliest chain) and the team
  answers ``<answer>WINNER</answer>``; no readable answer: the first chain's refiner text.
  Chains differ only by sampling, so their role agents need a temperature above 0.
* **Seeds**: each chain's roles are reset with ``derive_seed(seed, "malt-team", turn, chain,
  role)`` where ``seed`` is the slot's reset seed, so an episode depends only on its seed.
* **Saving** (:meth:`MALTTeam.save`): ``malt_team.json`` and one saved
  :class:`~llm_trainer.agents.llm_agent.LLMAgent` per distinct role agent (roles that share
  an agent share its directory), or, for a team of LoRA adapters on one base
  (:meth:`MALTTeam.from_adapters`), the base model, one peft adapter per role and the agent
  settings; :meth:`MALTTeam.load` and agent specs naming the directory load either.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_trainer.agents.policy import Policy, act_on_slots, resets_slots
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.rundir import atomic_directory
from llm_trainer.core.seeding import derive_seed

__all__ = [
    "TEAM_FILE",
    "AdapterRole",
    "MALTTeam",
    "TeamChain",
    "is_saved_team",
    "majority",
    "write_adapter_team",
]

#: The file that marks a saved team directory.
TEAM_FILE = "malt_team.json"
FORMAT_VERSION = 1
#: The roles, in the order they act (``LLMTrainer/MALT-v0``'s agents).
ROLES: tuple[str, str, str] = ("generator", "verifier", "refiner")
_FEEDBACK_HEADING = "Feedback on the team's previous answer:"


@dataclass(frozen=True, slots=True)
class TeamChain:
    """One generator -> verifier -> refiner chain.

    Attributes:
        question: What the roles were asked.
        solution: The generator's text (``""``: invalid or failed).
        critique: The verifier's text.
        final: The refiner's text.
        answer: The refiner's ``<answer>`` (``None``: not exactly one block).
        errors: Failures of the roles' policies, ``"role: error"``.
    """

    question: str
    solution: str
    critique: str
    final: str
    answer: str | None
    errors: tuple[str, ...] = ()


def _normalise(answer: str) -> str:
    return " ".join(answer.split()).casefold()


def majority(answers: Sequence[str | None]) -> int | None:
    """The index of the winning answer: the most frequent after normalising case and spaces,
    the earliest among equals; ``None`` when no answer is readable.

    >>> majority(["12", None, " 13", "13 "])
    2
    >>> majority(["Ava", "ava", "Leo"]), majority([None, None])
    (0, None)
    """
    counts = Counter(_normalise(a) for a in answers if a is not None)
    if not counts:
        return None
    best = max(counts.values())
    for index, answer in enumerate(answers):
        if answer is not None and counts[_normalise(answer)] == best:
            return index
    return None  # pragma: no cover - a counted answer is always found


class AdapterRole:
    """A role's LLM agent on a peft model shared by the team: it switches the model to the
    role's adapter before each generation (one base model in memory for every role)."""

    def __init__(self, agent: Any, adapter: str) -> None:
        self.agent = agent
        self.adapter = adapter
        model = getattr(agent.backend, "model", None)
        if model is None or not hasattr(model, "set_adapter"):
            raise ConfigError(
                f"AdapterRole {adapter!r}: the agent's backend has no peft model "
                "(adapters need the transformers backend)"
            )
        self._model = model

    def reset(self, *, seed: int | None = None, slot: int | None = None) -> None:
        self.agent.reset(seed=seed, slot=slot)

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        self._model.set_adapter(self.adapter)
        return str(self.agent.act(observation, info))

    def act_batch(
        self,
        observations: Sequence[str],
        infos: Sequence[Mapping[str, Any]],
        *,
        slots: Sequence[int] | None = None,
    ) -> list[str]:
        self._model.set_adapter(self.adapter)
        return list(self.agent.act_batch(observations, infos, slots=slots))

    def last_generation(self, slot: int = 0) -> Any:
        return self.agent.last_generation(slot)

    def episode_generations(self, slot: int = 0) -> Any:
        return self.agent.episode_generations(slot)

    def episode_prompts(self, slot: int = 0) -> Any:
        return self.agent.episode_prompts(slot)

    @property
    def last_usage(self) -> Any:
        return self.agent.last_usage

    @property
    def backend(self) -> Any:
        return self.agent.backend


class MALTTeam:
    """Generator, verifier and refiner policies acting as one policy (see the module docstring).

    Args:
        roles: A policy per role (``generator``, ``verifier``, ``refiner``); one policy may
            play several roles.
        votes: Chains per observation; above 1, the majority of the refiners' answers.
        seed: The seed of slots reset without one.
        max_text_length: A role text longer than this is invalid (MALT-v0's limit), like an
            empty one: the next role sees ``(none)``.

    >>> from llm_trainer.agents.baselines import RandomAgent
    >>> team = MALTTeam(dict.fromkeys(ROLES, RandomAgent(0)))
    >>> team.reset(seed=3)
    >>> isinstance(team.act("What is 2 + 2?", {"turn": 0}), str)
    True
    >>> [c.question for c in team.last_chains()]
    ['What is 2 + 2?']
    """

    def __init__(
        self,
        roles: Mapping[str, Policy],
        *,
        votes: int = 1,
        seed: int = 0,
        max_text_length: int | None = None,
    ) -> None:
        from llm_trainer.envs.spaces import MAX_TEXT_LENGTH

        missing = [r for r in ROLES if r not in roles]
        unknown = [r for r in roles if r not in ROLES]
        if missing or unknown:
            raise ConfigError(
                f"MALTTeam needs exactly the roles {', '.join(ROLES)}"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {', '.join(map(str, unknown))}" if unknown else "")
            )
        for role, policy in roles.items():
            if not isinstance(policy, Policy):
                raise ConfigError(
                    f"MALTTeam: the {role}'s {type(policy).__name__} is not a Policy "
                    "(reset(seed=...), act(...), act_batch(...))"
                )
        if isinstance(votes, bool) or not isinstance(votes, int) or votes < 1:
            raise ConfigError(f"MALTTeam: votes must be an int >= 1, got {votes!r}")
        self.roles: dict[str, Policy] = {r: roles[r] for r in ROLES}
        self.votes = votes
        self.seed = seed
        self.max_text_length = max_text_length or MAX_TEXT_LENGTH
        self._default_seed: int | None = None
        self._slots: dict[int, _TeamSlot] = {}
        self._last: dict[int, list[TeamChain]] = {}
        self._closers: list[Any] = []
        self._adapters: dict[str, Any] | None = None

    # -- the Policy protocol -------------------------------------------------------------------

    def policies(self) -> dict[str, Policy]:
        """The role policies by MALT-v0 agent name (for the multi-agent coordinator)."""
        return dict(self.roles)

    def reset(self, *, seed: int | None = None, slot: int | None = None) -> None:
        """Start a new episode in ``slot`` (every slot when ``None``), seeded with ``seed``."""
        if slot is None:
            self._slots, self._last = {}, {}
            self._default_seed = seed
            return
        self._slots[slot] = _TeamSlot(seed)

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        slot = int(info.get("slot", 0))
        return self.act_batch([observation], [info], slots=[slot])[0]

    def act_batch(
        self,
        observations: Sequence[str],
        infos: Sequence[Mapping[str, Any]],
        *,
        slots: Sequence[int] | None = None,
    ) -> list[str]:
        """The team's answer for each observation: ``votes`` chains each, one batched call per
        role for all of them."""
        if len(observations) != len(infos):
            raise ValueError(f"{len(observations)} observations but {len(infos)} infos")
        if slots is None:
            if infos and all("slot" in info for info in infos):
                slots = [int(info["slot"]) for info in infos]
            else:
                slots = list(range(len(observations)))
        slots = list(slots)
        if len(slots) != len(observations) or len(set(slots)) != len(slots):
            raise ValueError(f"slots {slots} do not name each of {len(observations)} rows once")
        questions, seeds = [], []
        for slot, observation, info in zip(slots, observations, infos, strict=True):
            state = self._slots.get(slot)
            if state is None or info.get("turn") == 0 or state.question is None:
                seed = state.seed if state is not None else None
                state = self._slots[slot] = _TeamSlot(seed, question=str(observation))
                question = state.question
            else:
                question = f"{state.question}\n\n{_FEEDBACK_HEADING}\n{observation}"
            seed = state.seed if state.seed is not None else self._default_seed
            seed = self.seed if seed is None else seed
            seeds.append(derive_seed(seed, "malt-team", state.turns))
            state.turns += 1
            questions.append(str(question))
        chains = self.solve(questions, seeds)
        answers = []
        for slot, per_question in zip(slots, chains, strict=True):
            self._last[slot] = per_question
            answers.append(self._answer(per_question))
        return answers

    def last_chains(self, slot: int = 0) -> list[TeamChain]:
        """The chains of ``slot``'s latest action."""
        return list(self._last.get(slot, ()))

    # -- the chains ----------------------------------------------------------------------------

    def solve(self, questions: Sequence[str], seeds: Sequence[int]) -> list[list[TeamChain]]:
        """``votes`` chains per question (row ``q * votes + c`` of every role's batch)."""
        from llm_trainer.envs.multiagent.malt import (
            SYSTEM_PROMPTS,
            MALTRound,
            read_final_answer,
            render_view,
        )

        if not questions:
            return []
        rows = [(q, c) for q in range(len(questions)) for c in range(self.votes)]
        texts: dict[str, list[str]] = {}
        errors: list[list[str]] = [[] for _ in rows]
        for role in ROLES:
            policy = self.roles[role]
            observations, infos = [], []
            for slot, (q, _) in enumerate(rows):
                solution = texts["generator"][slot] if "generator" in texts else None
                critique = texts["verifier"][slot] if "verifier" in texts else None
                observations.append(render_view(role, questions[q], MALTRound(solution, critique)))
                infos.append(
                    {
                        "system_prompt": SYSTEM_PROMPTS[role],
                        "tools": (),
                        "turn": 0,
                        "role": "user",
                        "agent": role,
                        "slot": slot,
                    }
                )
            if resets_slots(policy):  # each chain its own seed
                for slot, (q, c) in enumerate(rows):
                    policy.reset(seed=derive_seed(seeds[q], c, role), slot=slot)  # type: ignore[call-arg]
            else:  # one episode at a time: one seed for the call
                policy.reset(seed=derive_seed(seeds[0], 0, role))
            actions, failures = act_on_slots(policy, observations, infos, range(len(rows)))
            role_texts = []
            for slot, action in enumerate(actions):
                if slot in failures:
                    errors[slot].append(f"{role}: {failures[slot]}")
                text = action or ""
                if not text.strip() or len(text) > self.max_text_length:
                    text = ""
                role_texts.append(text)
            texts[role] = role_texts
        chains: list[list[TeamChain]] = [[] for _ in questions]
        for slot, (q, _) in enumerate(rows):
            final = texts["refiner"][slot]
            answer, _reason = read_final_answer(final)
            chains[q].append(
                TeamChain(
                    questions[q],
                    texts["generator"][slot],
                    texts["verifier"][slot],
                    final,
                    answer,
                    tuple(errors[slot]),
                )
            )
        return chains

    def _answer(self, chains: Sequence[TeamChain]) -> str:
        from llm_trainer.envs.tools.parser import ANSWER_CLOSE, ANSWER_OPEN

        if len(chains) == 1:
            return chains[0].final
        winner = majority([c.answer for c in chains])
        if winner is None:
            return chains[0].final
        return f"{ANSWER_OPEN}{chains[winner].answer}{ANSWER_CLOSE}"

    # -- save / load ---------------------------------------------------------------------------

    @classmethod
    def from_adapters(
        cls,
        base: str | Path,
        adapters: Mapping[str, str | Path],
        *,
        agent: Mapping[str, Any] | None = None,
        votes: int = 1,
        seed: int = 0,
    ) -> MALTTeam:
        """A team of LoRA adapters (peft directories, one per role) on one base model
        (a local Hugging Face directory), sharing one transformers backend.

        Args:
            base: The base model directory.
            adapters: A peft adapter directory per role.
            agent: :class:`~llm_trainer.agents.llm_agent.LLMAgentConfig` fields for every role
                (sampling...); the backend is always the shared one.
            votes: See :class:`MALTTeam`.
            seed: See :class:`MALTTeam`.
        """
        from peft import PeftModel
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from llm_trainer.agents.backends.transformers_backend import TransformersBackend
        from llm_trainer.agents.llm_agent import LLMAgent, LLMAgentConfig

        missing = [r for r in ROLES if r not in adapters]
        if missing:
            raise ConfigError(f"MALTTeam.from_adapters: no adapter for {', '.join(missing)}")
        base = Path(base)
        try:
            model = AutoModelForCausalLM.from_pretrained(str(base))
            tokenizer = AutoTokenizer.from_pretrained(str(base))
            peft_model = PeftModel.from_pretrained(
                model, str(adapters[ROLES[0]]), adapter_name=ROLES[0]
            )
            for role in ROLES[1:]:
                peft_model.load_adapter(str(adapters[role]), adapter_name=role)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"MALTTeam: cannot load the adapter team ({exc})") from exc
        peft_model.eval()
        backend = TransformersBackend(peft_model, tokenizer, spec=f"transformers:{base}+lora")
        fields = dict(agent or {})
        fields["backend"] = f"transformers:{base}"
        config = LLMAgentConfig.from_dict(fields)
        roles: dict[str, Policy] = {
            role: AdapterRole(LLMAgent(config, backend=backend), role) for role in ROLES
        }
        team = cls(roles, votes=votes, seed=seed)
        team._adapters = {
            "base": base,
            "adapters": {r: Path(adapters[r]) for r in ROLES},
            "agent": config.to_dict(),
        }
        team._closers.append(backend)
        return team

    def save(self, path: str | Path) -> Path:
        """Write the team to a directory (see the module docstring); atomic like
        :meth:`LLMAgent.save <llm_trainer.agents.llm_agent.LLMAgent.save>`.

        Raises:
            ConfigError: when a role's policy cannot be saved (it has no ``save``).
        """

        def fill(tmp: Path) -> dict[str, Any]:
            if self._adapters is not None:
                shutil.copytree(self._adapters["base"], tmp / "base")
                for role, adapter in self._adapters["adapters"].items():
                    shutil.copytree(adapter, tmp / "adapters" / role)
                return {"lora": _lora_document(self._adapters["agent"])}
            saved: dict[int, str] = {}
            names: dict[str, str] = {}
            for role, policy in self.roles.items():
                if id(policy) not in saved:
                    save = getattr(policy, "save", None)
                    if not callable(save):
                        raise ConfigError(
                            f"MALTTeam.save: the {role}'s {type(policy).__name__} cannot be "
                            "saved (only LLM agents can)"
                        )
                    save(tmp / role)
                    saved[id(policy)] = role
                names[role] = saved[id(policy)]
            return {"roles": names}

        return _write_team(path, self.votes, fill)

    @classmethod
    def load(cls, path: str | Path, *, votes: int | None = None, seed: int = 0) -> MALTTeam:
        """Load a team written by :meth:`save` (``votes`` replaces the saved count).

        Raises:
            ConfigError: when ``path`` is not a saved team or a part of it is missing.
        """
        from llm_trainer.agents.llm_agent import LLMAgent

        path = Path(path).resolve()
        file = path / TEAM_FILE
        if not file.is_file():
            raise ConfigError(f"{str(path)!r} is not a saved MALT team (no {TEAM_FILE})")
        try:
            document = json.loads(file.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{file}: invalid JSON ({exc})") from exc
        if not isinstance(document, dict) or document.get("format") != FORMAT_VERSION:
            raise ConfigError(f"{file}: unsupported format (this version reads {FORMAT_VERSION})")
        votes = int(document.get("votes", 1)) if votes is None else votes
        if "lora" in document:
            lora = document["lora"]
            return cls.from_adapters(
                path / lora["base"],
                {r: path / lora["adapters"][r] for r in ROLES},
                agent=lora.get("agent"),
                votes=votes,
                seed=seed,
            )
        names = document.get("roles")
        if not isinstance(names, dict) or any(r not in names for r in ROLES):
            raise ConfigError(f"{file}: 'roles' must name a directory for each of {ROLES}")
        agents: dict[str, LLMAgent] = {}
        for name in dict.fromkeys(names[r] for r in ROLES):
            agents[name] = LLMAgent.load(path / name)
        team = cls({r: agents[names[r]] for r in ROLES}, votes=votes, seed=seed)
        team._closers.extend(agents.values())
        return team

    def close(self) -> None:
        """Release the role agents' backends (those the team loaded)."""
        while self._closers:
            self._closers.pop().close()


@dataclass(slots=True)
class _TeamSlot:
    seed: int | None
    question: str | None = None
    turns: int = 0


def _lora_document(agent: Mapping[str, Any]) -> dict[str, Any]:
    settings = dict(agent)
    settings.pop("backend", None)  # always the shared base
    return {"base": "base", "adapters": {r: f"adapters/{r}" for r in ROLES}, "agent": settings}


def _write_team(path: str | Path, votes: int, fill: Any) -> Path:
    """Fill a temporary sibling of ``path`` (``fill(tmp)`` returns the document's parts), write
    ``malt_team.json`` and rename it into place: ``path`` is the old team or the new one."""

    def write(tmp: Path) -> None:
        document = {"format": FORMAT_VERSION, "votes": votes, **fill(tmp)}
        (tmp / TEAM_FILE).write_text(json.dumps(document, indent=2) + "\n")

    return atomic_directory(Path(path).resolve(), write)


def write_adapter_team(
    path: str | Path,
    base: Any,
    tokenizer: Any,
    adapters: Mapping[str, Any],
    *,
    agent: Mapping[str, Any] | None = None,
    votes: int = 1,
) -> Path:
    """Save a team of LoRA adapters without loading it: ``base`` (a transformers model, saved
    once with ``tokenizer``), one peft model per role (each saves only its adapter) and the
    role agents' settings (:class:`~llm_trainer.agents.llm_agent.LLMAgentConfig` fields)."""
    missing = [r for r in ROLES if r not in adapters]
    if missing:
        raise ConfigError(f"write_adapter_team: no adapter for {', '.join(missing)}")

    def fill(tmp: Path) -> dict[str, Any]:
        base.save_pretrained(tmp / "base")
        tokenizer.save_pretrained(tmp / "base")
        for role in ROLES:
            adapters[role].save_pretrained(tmp / "adapters" / role)
        return {"lora": _lora_document(agent or {})}

    return _write_team(path, votes, fill)


def is_saved_team(path: str | Path) -> bool:
    """Whether ``path`` is a directory written by :meth:`MALTTeam.save`."""
    return (Path(path) / TEAM_FILE).is_file()
