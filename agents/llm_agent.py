"""LLM agents: a backend, a prompt builder, memory and tools, acting as a :class:`Policy`.

An :class:`LLMAgent` turns each observation into a chat prompt (the tokenizer's chat template
with the env's ``system_prompt`` and ``tools``), generates with its backend, and returns the raw
completion as the action. Around that:

* **Slots.** The agent keeps one conversation per *slot* (one env of a lockstep batch).
  ``act_batch(observations, infos)`` takes one entry per active slot: the slot is
  ``slots[i]`` when given, else ``infos[i]["slot"]`` (what :func:`llm_trainer.algorithms.
  rollout.collect` sets), else ``i``. Each call is one batched generation. A slot starts a new
  episode after ``reset(slot=k)`` (``reset()`` resets every slot), at its first observation, or
  when ``info["turn"] == 0`` (an env's reset info). Slots whose episode ended are simply left
  out of later calls.
* **Roles.** The first observation of an episode is the task (a user message); later ones are
  tool results when ``info["role"] == "tool"`` and user messages otherwise (e.g. the env's
  invalid-action message). With ``task_template`` set, the task is put through it (``{task}``
  stands for it): how a model trained with an instruction in the task's turn (NAT's positive
  instruction) is always prompted.
* **Memory.** The episode's conversation is fitted into ``max_prompt_tokens`` (oldest turns
  dropped first; system prompt, task and latest turn kept; see
  :class:`~llm_trainer.agents.memory.ConversationMemory`). With ``memory_path`` set, a
  :class:`~llm_trainer.agents.memory.LongTermMemory` persists finished episodes
  (:meth:`LLMAgent.end_episode`) and, with ``use_memory_examples``, the most relevant past
  successes are added to the system prompt as examples. With ``knowledge_path`` and
  ``use_knowledge_examples``, so are the most related solved problems of a knowledge graph
  (:class:`~llm_trainer.agents.memory.KnowledgeExamples`), with their solutions.
* **Agent-side tools.** The agent may carry its own :class:`~llm_trainer.envs.tools.
  ToolRegistry` (``memory_tool=True`` adds ``memory_search``). When the model calls one of them,
  the agent runs it, appends the result as a tool message and generates again, within the same
  ``act`` and without an env step (at most ``max_agent_tool_calls`` times).
* **Token faithfulness.** Every generation is kept as a :class:`~llm_trainer.core.records.
  Generation` (prompt ids, completion ids, raw log-probs): :meth:`LLMAgent.episode_generations`,
  :meth:`LLMAgent.last_generation`, and the exact prompts in :meth:`LLMAgent.episode_prompts`.
* **Errors.** A backend failure in a batch is retried slot by slot, so one bad prompt does not
  lose its siblings' generations; the failures then raise
  :class:`~llm_trainer.core.errors.BatchActError`, which carries the siblings' actions.
* **Seeds.** Each generation call is seeded from ``sampling.seed``, the slots' reset seeds and
  their step counts: the same seeds and the same observations give the same actions (exactly on
  the transformers backend; see the vLLM backend's notes).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from llm_trainer.agents.backends import Backend, ChatPrompt, SamplingConfig, make_backend
from llm_trainer.agents.backends import parse_backend_spec as _parse_backend_spec
from llm_trainer.agents.backends.base import derive_seed
from llm_trainer.agents.memory import (
    ConversationMemory,
    KnowledgeExamples,
    LongTermMemory,
    format_solved_examples,
    memory_examples,
    memory_search_tool,
)
from llm_trainer.core.errors import BackendError, BatchActError, ConfigError, suggest
from llm_trainer.core.knowledge.text import SUMMARY_CHARS, summarize_messages
from llm_trainer.core.records import FrozenDict, Generation, ToolCall, to_plain
from llm_trainer.core.rundir import atomic_directory, atomic_write
from llm_trainer.core.usage import TokenUsage
from llm_trainer.envs.tools import Tool, ToolRegistry, parse_action

CONFIG_FILE = "llm_agent.json"
MEMORY_FILE = "memory.sqlite"
MODEL_DIR = "model"
FORMAT_VERSION = 1
#: Where the task goes in :attr:`LLMAgentConfig.task_template`.
TASK_PLACEHOLDER = "{task}"


#: The agent's default sampling: greedy, so evaluations are reproducible.
GREEDY = SamplingConfig(temperature=0.0)


@dataclass(frozen=True, slots=True)
class LLMAgentConfig:
    """Everything that defines an LLM agent (saved as JSON by :meth:`LLMAgent.save`).

    >>> LLMAgentConfig(backend="transformers:/models/tiny").sampling.temperature
    0.0
    >>> LLMAgentConfig(backend="transformers:/m", n_examples=0)
    Traceback (most recent call last):
    ...
    llm_trainer.core.errors.ConfigError: LLMAgentConfig.n_examples must be an int >= 1, got 0
    """

    backend: str
    """Backend spec: ``transformers:DIR``, ``vllm:DIR`` or ``openai:BASE_URL#MODEL``."""
    backend_options: Mapping[str, Any] = field(default_factory=dict)
    """Keyword options of the backend (e.g. ``{"dtype": "bfloat16"}``, ``{"kv_cache_gib": 2}``,
    ``{"api_key_env": "MY_KEY"}``)."""
    sampling: SamplingConfig = GREEDY
    """How each action is sampled (greedy by default; ``n`` must be 1: one action per step)."""
    max_prompt_tokens: int | None = None
    """Token budget of the prompt; ``None`` is the model's context minus ``max_new_tokens``."""
    system_prompt: str | None = None
    """Replaces the env's ``info["system_prompt"]``; ``None`` keeps the env's."""
    memory_path: str | None = None
    """SQLite file of the long-term memory; ``None`` turns long-term memory off."""
    record_episodes: bool = True
    """Write each finished episode to the long-term memory (:meth:`LLMAgent.end_episode`)."""
    use_memory_examples: bool = False
    """Add the most relevant past successes to the system prompt (needs ``memory_path``)."""
    n_examples: int = 2
    """How many past successes to add at most (from each source of examples)."""
    memory_tool: bool = False
    """Give the model a ``memory_search`` tool over the long-term memory."""
    knowledge_path: str | None = None
    """A knowledge graph file (:mod:`llm_trainer.core.knowledge`) to read solved problems from;
    ``None``: none."""
    use_knowledge_examples: bool = False
    """Add the graph's solved problems most related to the task (BM25 over their statements),
    with their best solutions, to the system prompt (needs ``knowledge_path``). A graph that
    holds the very episodes being measured shows the agent their solutions: benchmark with a
    graph of other tasks."""
    max_agent_tool_calls: int = 3
    """Agent-side tool calls allowed per action (each costs one more generation)."""
    task_template: str | None = None
    """How the task (an episode's first observation) is put to the model: ``{task}`` stands
    for it, e.g. ``"{task}\n\nSolve it correctly."`` (a NAT-trained model's positive
    instruction); ``None`` puts the task as it is. Later observations are not changed, and
    memory and knowledge examples are found with the task itself."""

    def __post_init__(self) -> None:
        if not isinstance(self.backend, str):
            raise ConfigError(f"LLMAgentConfig.backend must be a str, got {self.backend!r}")
        _parse_backend_spec(self.backend)
        if not isinstance(self.backend_options, Mapping):
            raise ConfigError(
                "LLMAgentConfig.backend_options must be a mapping, "
                f"got {type(self.backend_options).__name__}"
            )
        object.__setattr__(self, "backend_options", FrozenDict(self.backend_options))
        if not isinstance(self.sampling, SamplingConfig):
            raise ConfigError(
                f"LLMAgentConfig.sampling must be a SamplingConfig, got {self.sampling!r}"
            )
        if self.sampling.n != 1:
            raise ConfigError(
                f"LLMAgentConfig.sampling.n must be 1 (one action per step), got "
                f"{self.sampling.n}; sample groups through the backend directly"
            )
        for name in ("n_examples", "max_agent_tool_calls"):
            _check_int(name, getattr(self, name), minimum=1 if name == "n_examples" else 0)
        if self.max_prompt_tokens is not None:
            _check_int("max_prompt_tokens", self.max_prompt_tokens, minimum=16)
        for name in ("system_prompt", "memory_path", "knowledge_path", "task_template"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"LLMAgentConfig.{name} must be a str or None, got {value!r}")
        check_task_template(self.task_template, "LLMAgentConfig.task_template")
        for name in (
            "record_episodes",
            "use_memory_examples",
            "memory_tool",
            "use_knowledge_examples",
        ):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(
                    f"LLMAgentConfig.{name} must be a bool, got {getattr(self, name)!r}"
                )
        for name in ("use_memory_examples", "memory_tool"):
            if getattr(self, name) and self.memory_path is None:
                raise ConfigError(f"LLMAgentConfig.{name} needs memory_path (a SQLite file)")
        if self.use_knowledge_examples and self.knowledge_path is None:
            raise ConfigError(
                "LLMAgentConfig.use_knowledge_examples needs knowledge_path "
                "(a knowledge graph file)"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the inverse of :meth:`from_dict`)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["sampling"] = self.sampling.to_dict()
        data["backend_options"] = dict(self.backend_options)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LLMAgentConfig:
        """Build from a dict, rejecting unknown fields with an error that names them."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ConfigError(
                f"unknown LLMAgentConfig field(s) {unknown}{suggest(unknown[0], known)}; "
                f"known: {', '.join(known)}"
            )
        values = dict(data)
        if isinstance(values.get("sampling"), Mapping):
            values["sampling"] = SamplingConfig.from_dict(values["sampling"])
        return cls(**values)


def check_task_template(template: str | None, name: str) -> None:
    """Raise :class:`ConfigError` (naming ``name``) for a task template without ``{task}``."""
    if template is not None and TASK_PLACEHOLDER not in template:
        raise ConfigError(
            f"{name} must contain {TASK_PLACEHOLDER} (where the task goes), got {template!r}"
        )


def render_task(template: str | None, task: str) -> str:
    """``task`` put through ``template``: every ``{task}`` replaced by it (no other braces are
    read, so a template may hold JSON); ``None`` leaves the task as it is.

    >>> render_task("[Correct] {task}", "What is 2 + 2?")
    '[Correct] What is 2 + 2?'
    >>> render_task(None, "What is 2 + 2?")
    'What is 2 + 2?'
    """
    return task if template is None else template.replace(TASK_PLACEHOLDER, task)


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"LLMAgentConfig.{name} must be an int >= {minimum}, got {value!r}")


@dataclass(slots=True)
class _Slot:
    """One env slot's episode."""

    seed: int | None = None
    fresh: bool = True
    conversation: ConversationMemory | None = None
    tools: tuple[Mapping[str, Any], ...] = ()
    env_tool_names: frozenset[str] = frozenset()
    task: str = ""
    generations: list[Generation] = field(default_factory=list)
    prompts: list[ChatPrompt] = field(default_factory=list)


def _add_usage(a: TokenUsage, b: TokenUsage) -> TokenUsage:
    return TokenUsage(a.prompt_tokens + b.prompt_tokens, a.completion_tokens + b.completion_tokens)


class LLMAgent:
    """A language model acting in envs: ``act(observation, info) -> completion``.

    Args:
        config: What the agent is (see :class:`LLMAgentConfig`).
        backend: A ready backend (e.g. a :class:`~llm_trainer.agents.backends.
            transformers_backend.TransformersBackend` around a model being trained); built from
            ``config.backend`` when omitted.
        memory: A ready long-term memory; opened from ``config.memory_path`` when omitted.
        tools: The agent's own tools (run without an env step).

    >>> import tempfile, llm_trainer
    >>> from llm_trainer.agents.tinylm import create_tiny_model
    >>> model_dir = create_tiny_model(tempfile.mkdtemp())
    >>> agent = LLMAgent(LLMAgentConfig(backend=f"transformers:{model_dir}",
    ...                                 sampling=SamplingConfig(temperature=0, max_new_tokens=8)))
    >>> env = llm_trainer.make("LLMTrainer/Calculator-v0")
    >>> observation, info = env.reset(seed=0)
    >>> agent.reset(seed=0)
    >>> action = agent.act(observation, info)
    >>> agent.last_generation().text == action, agent.last_usage.completion_tokens
    (True, 8)
    """

    def __init__(
        self,
        config: LLMAgentConfig,
        *,
        backend: Backend | None = None,
        memory: LongTermMemory | None = None,
        tools: ToolRegistry | Iterable[Tool] | None = None,
    ) -> None:
        if not isinstance(config, LLMAgentConfig):
            raise TypeError(f"config must be an LLMAgentConfig, got {type(config).__name__}")
        self.config = config
        self.backend = (
            backend if backend is not None else make_backend(config.backend, config.backend_options)
        )
        if memory is None and config.memory_path is not None:
            memory = LongTermMemory(config.memory_path)
        self.memory = memory
        self.knowledge = (
            KnowledgeExamples(config.knowledge_path)
            if config.knowledge_path is not None and config.use_knowledge_examples
            else None
        )
        """The knowledge graph's solved problems, when ``use_knowledge_examples``."""
        self.tools = tools if isinstance(tools, ToolRegistry) else ToolRegistry(tools or ())
        if config.memory_tool:
            assert memory is not None  # the config requires memory_path
            self.tools.register(memory_search_tool(memory))
        self._slots: dict[int, _Slot] = {}
        self._default_seed: int | None = None
        self._calls = 0
        self._budget: int | None = None
        self.last_usage: TokenUsage | None = None
        """Tokens of the latest ``act``/``act_batch`` call (all its slots together)."""
        self.usage = TokenUsage(0, 0)
        """Tokens of every call since the agent was built."""

    # -- the Policy protocol -------------------------------------------------------------------

    def reset(self, *, seed: int | None = None, slot: int | None = None) -> None:
        """Start a new episode in ``slot`` (every slot when ``None``), seeded with ``seed``."""
        if slot is None:
            self._slots = {}
            self._default_seed = seed
            return
        self._slots[slot] = _Slot(seed=seed)

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        """The next action for one env (slot ``info.get("slot", 0)``).

        Raises:
            BackendError: when the backend fails (naming it).
        """
        slot = int(info.get("slot", 0))
        try:
            return self.act_batch([observation], [info], slots=[slot])[0]
        except BatchActError as exc:
            raise exc.errors[slot] from None

    def act_batch(
        self,
        observations: Sequence[str],
        infos: Sequence[Mapping[str, Any]],
        *,
        slots: Sequence[int] | None = None,
    ) -> list[str]:
        """One action per active slot, from one batched generation.

        Raises:
            ValueError: for mismatched lengths or a slot named twice.
            BatchActError: when some slots' generations failed; ``exc.actions`` holds the
                others' actions (``None`` for the failed ones), ``exc.errors`` the failures.
        """
        if len(observations) != len(infos):
            raise ValueError(f"{len(observations)} observations but {len(infos)} infos")
        if slots is None:
            if infos and all("slot" in info for info in infos):
                slots = [int(info["slot"]) for info in infos]
            else:
                slots = list(range(len(observations)))
        slots = list(slots)
        if len(slots) != len(observations):
            raise ValueError(f"{len(slots)} slots for {len(observations)} observations")
        if len(set(slots)) != len(slots):
            raise ValueError(f"a slot may act once per call, got slots {slots}")
        checkpoints = {
            s: self._observe(s, o, i) for s, o, i in zip(slots, observations, infos, strict=True)
        }
        actions: dict[int, str] = {}
        errors: dict[int, BackendError] = {}
        usage = TokenUsage(0, 0)
        pending = list(slots)
        for round_ in range(self.config.max_agent_tool_calls + 1):
            results = self._generate(pending)
            next_round = []
            for slot in pending:
                result = results[slot]
                if isinstance(result, BackendError):
                    errors[slot] = result
                    self._rollback(slot, checkpoints[slot])
                    continue
                state = self._slots[slot]
                state.generations.append(result)
                usage = _add_usage(
                    usage, TokenUsage(len(result.prompt_token_ids), len(result.token_ids))
                )
                assert state.conversation is not None
                state.conversation.add("assistant", result.text)
                call = self._agent_tool_call(state, result.text)
                if call is not None and round_ < self.config.max_agent_tool_calls:
                    state.conversation.add("tool", self.tools.call(call).content)
                    next_round.append(slot)
                else:
                    actions[slot] = result.text
            pending = next_round
            if not pending:
                break
        self.last_usage = usage
        self.usage = _add_usage(self.usage, usage)
        if errors:
            raise BatchActError(
                f"{self.backend.spec}: generation failed for slot(s) {sorted(errors)}: "
                f"{next(iter(errors.values()))}",
                actions=[actions.get(s) for s in slots],
                errors=errors,
            )
        return [actions[s] for s in slots]

    # -- episodes and records ------------------------------------------------------------------

    def end_episode(
        self,
        info: Mapping[str, Any],
        *,
        reward: float = 0.0,
        slot: int = 0,
        env_id: str = "",
    ) -> None:
        """Close ``slot``'s episode; with long-term memory (and ``record_episodes``), remember
        its task, outcome (``info["success"]``) and a summary of what the agent did."""
        state = self._slots.get(slot)
        if state is None or state.conversation is None:
            return
        if self.memory is not None and self.config.record_episodes:
            turns = state.conversation.turns()
            summary = summarize_messages(m for turn in turns for m in turn)
            last_action = next(
                (
                    str(m["content"])
                    for turn in reversed(turns)
                    for m in turn
                    if m["role"] == "assistant"
                ),
                "",
            )
            self.memory.add(
                state.task,
                success=bool(info.get("success", False)),
                reward=float(reward),
                outcome=last_action[:SUMMARY_CHARS],
                summary=summary,
                env_id=env_id,
            )
        state.fresh = True

    def episode_generations(self, slot: int = 0) -> list[Generation]:
        """Every generation of ``slot``'s current episode, in order (agent-tool rounds too)."""
        state = self._slots.get(slot)
        return list(state.generations) if state else []

    def episode_prompts(self, slot: int = 0) -> list[ChatPrompt]:
        """The exact chat prompt (messages after the token budget, tools) of each generation."""
        state = self._slots.get(slot)
        return list(state.prompts) if state else []

    def last_generation(self, slot: int = 0) -> Generation | None:
        """The generation behind ``slot``'s latest action, or ``None``."""
        state = self._slots.get(slot)
        return state.generations[-1] if state and state.generations else None

    def messages(self, slot: int = 0) -> list[dict[str, Any]]:
        """``slot``'s whole conversation this episode (before any token-budget trimming)."""
        state = self._slots.get(slot)
        if state is None or state.conversation is None:
            return []
        return [dict(m) for m in state.conversation.messages]

    def tools_for(self, slot: int = 0) -> list[dict[str, Any]]:
        """The tool specs the model sees in ``slot`` (the env's and the agent's own)."""
        state = self._slots.get(slot)
        return [to_plain(t) for t in state.tools] if state else []

    # -- save / load ---------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write the agent to a directory: config JSON, model (or adapter) and memory.

        Written into a temporary sibling directory and renamed into place, so ``path`` is
        either the old agent or the complete new one, never half of one. The agent's own tools
        are code and are not saved (``memory_tool`` is re-created from the config).
        """

        def write(tmp: Path) -> None:
            spec = _parse_backend_spec(self.config.backend)
            backend = self.config.backend
            if spec.kind != "openai":
                self.backend.save_model(tmp / MODEL_DIR)
                backend = f"{spec.kind}:{MODEL_DIR}"
            memory_path = None
            if self.memory is not None:
                self.memory.copy_to(tmp / MEMORY_FILE)
                memory_path = MEMORY_FILE
            # a knowledge graph is a shared file, not a part of the agent: it stays where it is
            knowledge_path = self.config.knowledge_path
            if knowledge_path is not None:
                knowledge_path = str(Path(knowledge_path).resolve())
            config = replace(
                self.config,
                backend=backend,
                memory_path=memory_path,
                knowledge_path=knowledge_path,
            )
            (tmp / CONFIG_FILE).write_bytes(_agent_document(config))

        return atomic_directory(Path(path).resolve(), write)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        backend: Backend | str | None = None,
        backend_options: Mapping[str, Any] | None = None,
        tools: ToolRegistry | Iterable[Tool] | None = None,
    ) -> LLMAgent:
        """Load an agent written by :meth:`save`.

        Args:
            path: The agent directory.
            backend: A ready backend, or another backend kind for the saved model
                (``"vllm"`` serves a saved transformers agent's model with vLLM).
            backend_options: Replace the saved backend options.
            tools: The agent's own tools (code is not saved).

        Raises:
            ConfigError: when ``path`` is not a saved agent or its config is invalid.
        """
        path = Path(path).resolve()
        config_file = path / CONFIG_FILE
        if not config_file.is_file():
            raise ConfigError(f"{str(path)!r} is not a saved agent (no {CONFIG_FILE})")
        try:
            document = json.loads(config_file.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{config_file}: invalid JSON ({exc})") from exc
        if document.get("format") != FORMAT_VERSION:
            raise ConfigError(
                f"{config_file}: unsupported format {document.get('format')!r} "
                f"(this version reads {FORMAT_VERSION})"
            )
        data = dict(document["config"])
        spec = _parse_backend_spec(data["backend"])
        target = spec.target
        if spec.kind != "openai" and not Path(target).is_absolute():
            target = str(path / target)
        kind = spec.kind
        if isinstance(backend, str):
            if spec.kind == "openai" or backend == "openai":
                raise ConfigError("only local backends (transformers, vllm) can be swapped")
            kind = _parse_backend_spec(f"{backend}:{target}").kind
        data["backend"] = f"{kind}:{target}"
        if data.get("memory_path") and not Path(data["memory_path"]).is_absolute():
            data["memory_path"] = str(path / data["memory_path"])
        if backend_options is not None:
            data["backend_options"] = dict(backend_options)
        config = LLMAgentConfig.from_dict(data)
        ready = backend if isinstance(backend, Backend) else None
        return cls(config, backend=ready, tools=tools)

    def close(self) -> None:
        """Release the backend (the model, the engine or the HTTP client)."""
        self.backend.close()

    # -- internals -----------------------------------------------------------------------------

    def _observe(self, slot: int, observation: str, info: Mapping[str, Any]) -> tuple[int, int]:
        """Add the observation to ``slot``'s conversation. Returns a checkpoint for
        :meth:`_rollback`: the message and generation counts before it (messages -1 when the
        observation started the episode)."""
        state = self._slots.get(slot)
        if state is None:
            state = self._slots[slot] = _Slot(seed=self._default_seed)
        if state.fresh or state.conversation is None or info.get("turn") == 0:
            self._start_episode(state, observation, info)
            return -1, 0
        before = len(state.conversation.messages), len(state.generations)
        role = "tool" if info.get("role") == "tool" else "user"
        state.conversation.add(role, observation)
        return before

    def _start_episode(self, state: _Slot, task: str, info: Mapping[str, Any]) -> None:
        system = self.config.system_prompt
        if system is None:
            system = str(info.get("system_prompt") or "")
        examples: dict[str, str] = {}  # task -> solution: one example per task, memory first
        if self.memory is not None and self.config.use_memory_examples:
            hits = self.memory.search(task, self.config.n_examples, only_success=True)
            for solved, solution in memory_examples(hits):
                examples.setdefault(solved, solution)
        if self.knowledge is not None:
            for solved, solution in self.knowledge.search(task, self.config.n_examples):
                examples.setdefault(solved, solution)
        if examples:
            block = format_solved_examples(examples.items())
            system = f"{system}\n\n{block}" if system else block
        env_tools = tuple(to_plain(t) for t in (info.get("tools") or ()))
        env_names = frozenset(str(t.get("function", {}).get("name", "")) for t in env_tools)
        clash = env_names & set(self.tools.names)
        if clash:
            raise ConfigError(
                f"the agent's own tool(s) {sorted(clash)} have the names of env tools; rename them"
            )
        own = tuple(to_plain(spec) for spec in self.tools.specs)
        # like Trajectory.messages: a system message even when empty, so the agent's prompts
        # are rendered exactly as its SFT data was
        # the task put through the template (NAT's positive instruction), as in training
        prompt = render_task(self.config.task_template, task)
        state.conversation = ConversationMemory(system, prompt)
        state.tools = env_tools + own
        state.env_tool_names = env_names
        state.task = task
        state.generations = []
        state.prompts = []
        state.fresh = False

    def _rollback(self, slot: int, checkpoint: tuple[int, int]) -> None:
        """Undo a failed call's changes to ``slot``: the caller may retry the same step."""
        state = self._slots[slot]
        messages, generations = checkpoint
        del state.generations[generations:]
        del state.prompts[generations:]
        if messages < 0:
            state.fresh, state.conversation = True, None
        elif state.conversation is not None:
            del state.conversation.messages[messages:]

    def _agent_tool_call(self, state: _Slot, text: str) -> ToolCall | None:
        if not len(self.tools):
            return None
        action = parse_action(text)
        if isinstance(action, ToolCall) and action.name in self.tools:
            return action
        return None

    def _prompt_budget(self) -> int:
        if self._budget is None:
            max_new = self.config.sampling.max_new_tokens
            context = self.backend.max_context
            budget = self.config.max_prompt_tokens
            if budget is None:
                budget = (context - max_new) if context is not None else 4096
            if budget < 16 or (context is not None and budget + max_new > context):
                raise ConfigError(
                    f"LLMAgentConfig.max_prompt_tokens ({self.config.max_prompt_tokens}) plus "
                    f"sampling.max_new_tokens ({max_new}) must fit the model's context of "
                    f"{context} tokens"
                )
            self._budget = budget
        return self._budget

    def _chat_prompt(self, slot: int) -> ChatPrompt:
        state = self._slots[slot]
        assert state.conversation is not None
        tools = state.tools

        def length(messages: list[dict[str, Any]]) -> int:
            return self.backend.count_tokens(ChatPrompt(tuple(messages), tools))

        window = state.conversation.window(self._prompt_budget(), length)
        return ChatPrompt(tuple(window), tools)

    def _call_seed(self, slots: Sequence[int]) -> int | None:
        base = self.config.sampling.seed
        if base is None:
            return None
        self._calls += 1
        parts = tuple(
            (self._slots[s].seed, len(self._slots[s].generations))
            if self._slots[s].seed is not None
            else ("call", self._calls)
            for s in slots
        )
        return derive_seed(base, parts)

    def _generate(self, slots: list[int]) -> dict[int, Generation | BackendError]:
        """One batched generation for ``slots``; on failure, slot by slot."""
        results: dict[int, Generation | BackendError] = {}
        prompts: dict[int, ChatPrompt] = {}
        for slot in slots:
            try:
                prompts[slot] = self._chat_prompt(slot)
            except BackendError as exc:
                results[slot] = exc
        ready = [s for s in slots if s in prompts]
        if not ready:
            return results
        try:
            generated = self._chat([prompts[s] for s in ready], self._call_seed(ready))
            results.update(zip(ready, generated, strict=True))
        except BackendError as exc:
            if len(ready) == 1:
                results[ready[0]] = exc
            else:
                for slot in ready:
                    try:
                        results[slot] = self._chat([prompts[slot]], self._call_seed([slot]))[0]
                    except BackendError as single:
                        results[slot] = single
        for slot in ready:
            if isinstance(results[slot], Generation):
                self._slots[slot].prompts.append(prompts[slot])
        return results

    def _chat(self, prompts: list[ChatPrompt], seed: int | None) -> list[Generation]:
        params = replace(self.config.sampling, seed=seed)
        out = self.backend.chat(prompts, params)
        if len(out) != len(prompts) or any(not samples for samples in out):
            raise BackendError(
                f"{self.backend.spec}: returned {len(out)} results for {len(prompts)} prompts"
            )
        return [samples[0] for samples in out]


_SHARED_BACKENDS: dict[str, Backend] = {}


def shared_backend(spec: str, options: Mapping[str, Any] | None = None) -> Backend:
    """One backend per spec and options for the whole process, built on first use.

    The CLI and the benchmark runner build one agent per env; sharing the backend loads a model
    (or starts a vLLM engine) once. Backends are stateless between calls, so sharing is safe.
    """
    key = json.dumps([spec, dict(options or {})], sort_keys=True, default=str)
    if key not in _SHARED_BACKENDS:
        _SHARED_BACKENDS[key] = make_backend(spec, options)
    return _SHARED_BACKENDS[key]


def close_shared_backends() -> None:
    """Close and forget every backend built by :func:`shared_backend`."""
    while _SHARED_BACKENDS:
        _, backend = _SHARED_BACKENDS.popitem()
        backend.close()


def is_saved_agent(path: str | Path) -> bool:
    """Whether ``path`` is a directory written by :meth:`LLMAgent.save` (or a model directory
    made an agent by :func:`save_agent_config`)."""
    with contextlib.suppress(OSError):
        return (Path(path) / CONFIG_FILE).is_file()
    return False


def saved_model_dir(agent_dir: str | Path) -> Path | None:
    """The local model directory the agent saved in ``agent_dir`` runs (its backend's target,
    relative to the agent directory unless absolute); ``None`` for a remote backend or an
    unreadable agent file."""
    path = Path(agent_dir)
    try:
        document = json.loads((path / CONFIG_FILE).read_text())
        spec = _parse_backend_spec(str(document["config"]["backend"]))
    except (OSError, ValueError, KeyError, TypeError, ConfigError):
        return None
    if spec.kind == "openai":
        return None
    target = Path(spec.target)
    return target if target.is_absolute() else path / target


def save_agent_config(model_dir: str | Path, config: LLMAgentConfig) -> Path:
    """Make the model directory ``model_dir`` a saved agent too: write ``config`` there, its
    local backend pointing at the directory itself (``transformers:.``), so that
    :meth:`LLMAgent.load` and an agent spec naming the directory (``llm-trainer evaluate
    --agent DIR``, benchmarks) run the model with ``config``'s prompting (its
    ``task_template``, ``system_prompt``...). The model's files stay as they are.

    Raises:
        ConfigError: for a remote backend or a memory file (a model directory holds neither).
    """
    spec = _parse_backend_spec(config.backend)
    if spec.kind == "openai" or config.memory_path is not None:
        raise ConfigError(
            "save_agent_config: only a local backend without memory runs a model directory "
            f"in place (got backend {config.backend!r}, memory_path {config.memory_path!r})"
        )
    config = replace(config, backend=f"{spec.kind}:.")
    return atomic_write(Path(model_dir) / CONFIG_FILE, _agent_document(config))


def _agent_document(config: LLMAgentConfig) -> bytes:
    """The agent file (``llm_agent.json``) of ``config``."""
    return (
        json.dumps({"format": FORMAT_VERSION, "config": config.to_dict()}, indent=2) + "\n"
    ).encode()


def save_agent_pointer(path: str | Path, config: LLMAgentConfig) -> Path:
    """Save ``config`` as an agent directory without a copy of the model (only its agent
    file: a local backend names the model directory by its absolute path), written
    atomically; :meth:`LLMAgent.load` and an agent spec naming ``path`` run it. Returns the
    directory."""

    def write(tmp: Path) -> None:
        (tmp / CONFIG_FILE).write_bytes(_agent_document(config))

    return atomic_directory(Path(path), write)


def saved_task_template(model_dir: str | Path) -> str | None:
    """The ``task_template`` of the agent saved in ``model_dir`` (``None`` when there is no
    agent file or it has no template): what a model trained for one (NAT) must be prompted
    with, whichever way it is loaded.

    Raises:
        ConfigError: for an unreadable agent file.
    """
    path = Path(model_dir) / CONFIG_FILE
    if not path.is_file():
        return None
    try:
        config = json.loads(path.read_text()).get("config", {})
    except (json.JSONDecodeError, AttributeError) as exc:
        raise ConfigError(f"{path}: invalid agent file ({exc})") from None
    template = config.get("task_template") if isinstance(config, Mapping) else None
    check_task_template(template, f"{path}: task_template")
    return template if isinstance(template, str) else None


__all__ = [
    "CONFIG_FILE",
    "TASK_PLACEHOLDER",
    "LLMAgent",
    "LLMAgentConfig",
    "check_task_template",
    "close_shared_backends",
    "is_saved_agent",
    "render_task",
    "save_agent_config",
    "save_agent_pointer",
    "saved_model_dir",
    "saved_task_template",
    "shared_backend",
]
