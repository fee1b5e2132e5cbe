"""Self-play on Kuhn poker with a role-conditioned baseline (SPIRAL): ``algorithm: selfplay``.

One model plays **both seats** of ``LLMTrainer/KuhnPoker-v0`` (SPIRAL, Liu et al. 2025, arXiv
2506.24119). Read it top to bottom; each iteration:

1. **Rollout.** ``selfplay.episodes_per_iteration`` hands through the
   :class:`~llm_trainer.agents.coordinator.MultiAgentCoordinator`, one
   :class:`~llm_trainer.agents.llm_agent.LLMAgent` (one batch per round) in both seats, each
   step recording the prompt tokens, the sampled tokens and their log-probs. With
   ``opponents: pool``, a share of the hands is played against a frozen past snapshot of the
   model instead (only the learner's seat is training data).
2. **Role-conditioned advantages (RAE).** A player's return ``G`` (its chips, less 0.1 per
   invalid action) gets ``A = G - b_role``, with ``b_role`` an exponential running mean of
   that seat's past returns (:class:`RoleBaseline`). The seats are not symmetric (Kuhn's
   value is -1/18 for ``player_0``): one shared baseline would push the first seat down and
   the second up whatever they played. Every token the player generated in the hand gets ``A``.
3. **Update.** The clipped policy-gradient objective of PPO
   (:func:`~llm_trainer.algorithms.ppo.core.ppo_losses`, without a value function) over the
   sampled completion tokens (:func:`~llm_trainer.algorithms.ppo.core.pack_episode`); the
   log-probs are recomputed with PPO's chunked gather-logsumexp
   (:func:`~llm_trainer.algorithms.ppo.core.token_logprobs`) at the sampling temperature. With
   ``update_epochs: 1`` this is REINFORCE with the RAE baseline; more epochs reuse the batch
   with the ratio clipped.
4. **Measurement.** Kuhn poker is solved, so the policy is measured exactly:
   :func:`read_strategy` prompts the model with each of the 12 information sets (exactly the
   prompt the agent sees in play) and scores the two legal moves' completions
   (``<answer>bet</answer>`` ...), which gives a
   :class:`~llm_trainer.envs.multiagent.kuhn_solver.Strategy`, and its
   :func:`~llm_trainer.envs.multiagent.kuhn_solver.exploitability` is logged every iteration
   (the sampled policy and the greedy one). Every ``eval_every`` iterations the model also
   plays ``eval_episodes`` hands in each seat against each fixed scripted opponent (random,
   always_bet, equilibrium): win rate and mean chips.

A tiny model built from scratch never writes a legal move, so it cannot learn from reward:
``format_warmup_steps`` first fits it, by supervised steps on the 12 information-set prompts,
to a strategy that knows nothing of the game (``warmup_strategy``; by default ``jittered``, an
arbitrary probability per information set, which makes the model read its card and the
betting): the model then answers in the format. A model that already follows the format needs
no warm-up (0).

What to expect from the tiny model (measured, README "Self-play"): self-play lowers the exact
exploitability from the warm start's ~0.47-0.51 to 1/3 within a few iterations, and the chips
against random and always_bet rise, but it gets there by betting and calling with every card
(a pure strategy, exploitability 1/3) and stays: the gradient shared by all cards (bet and call
pay with a K) outweighs the card-specific one (fold a J), and once the policy is pure there is
no exploration left to undo it. Kuhn's mixed equilibrium is not reached on this budget.

Logged per iteration to ``metrics.jsonl`` and TensorBoard (``rollout/*``, ``selfplay/*``,
``eval/*``); the run ends with ``final_model`` and ``selfplay_curve.png`` (exploitability and
chips against the fixed opponents over iterations) in the run directory, and the summary
reports exploitability and win rates before and after self-play.

>>> baseline = RoleBaseline(momentum=0.5)
>>> [baseline.advantage("player_0", g) for g in (2.0, -1.0, 1.0)]  # baselines 0, 1, 0
[2.0, -2.0, 1.0]
>>> baseline.values
{'player_0': 0.5}
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from llm_trainer.algorithms.base import (
    Algorithm,
    AlgorithmContext,
    AlgorithmResult,
    TrainResult,
    merged,
)
from llm_trainer.algorithms.config import NonNegativeInt, PositiveInt
from llm_trainer.core.config import POSITIVE, PROBABILITY, Range, check_ranges
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.seeding import derive_seed, preserved_global_rngs
from llm_trainer.envs.multiagent.kuhn import AGENTS, CARDS, KuhnPokerEnv, legal_moves, to_move
from llm_trainer.envs.multiagent.kuhn_solver import (
    INFO_SETS,
    SCRIPTED_STRATEGIES,
    InfoSet,
    Strategy,
    StrategyPolicy,
    aggressive_move,
    expected_value,
    exploitability,
    passive_move,
)
from llm_trainer.envs.tools.parser import ANSWER_CLOSE, ANSWER_OPEN

if TYPE_CHECKING:
    from llm_trainer.agents.coordinator import MultiAgentEpisode
    from llm_trainer.algorithms.config import TrainConfig
    from llm_trainer.core.rundir import RunDir
    from llm_trainer.core.trajectory import Trajectory

#: The scripted opponents the model is measured against (``kuhn_solver.SCRIPTED_STRATEGIES``).
FIXED_OPPONENTS: tuple[str, ...] = ("random", "always_bet", "equilibrium")

CHECKPOINT_PREFIX = "iteration-"


@dataclass(frozen=True)
class SelfPlaySettings:
    """Self-play of one model in both seats of Kuhn poker, with SPIRAL's role-conditioned
    baseline (``algorithm: selfplay``). ``train.max_steps`` counts iterations (one batch of
    hands, then ``update_epochs`` passes over it); ``train.learning_rate``, ``batch_size``
    (rows per micro-batch), ``lr_scheduler``, ``warmup_steps``, ``max_grad_norm``,
    ``weight_decay``, ``lora``, ``threads`` and ``save_steps`` (iterations between saved
    policies) apply as in PPO."""

    env_id: str = "LLMTrainer/KuhnPoker-v0"
    """The game: a registered Kuhn poker id (its exploitability is computed exactly)."""
    episodes_per_iteration: PositiveInt = 64
    """Hands played (in lockstep) per iteration; each gives one trajectory per seat."""
    first_seed: NonNegativeInt = 500_000
    """Training hands use deal seeds from here on (held-out hands use ``eval.first_seed``)."""
    temperature: Annotated[float, POSITIVE] = 1.0
    """Sampling temperature of the hands played; the policy trained and measured (strategy,
    exploitability, games against the fixed opponents) is this tempered distribution."""
    max_new_tokens: PositiveInt = 16
    """Generation budget per move (``<answer>check</answer>`` is 7 tokens of the tiny model)."""
    baseline_momentum: Annotated[float, Range(ge=0, lt=1)] = 0.95
    """RAE: each seat's baseline moves ``b <- m * b + (1 - m) * G`` after each of its returns
    (SPIRAL's 0.95); 0 uses the previous return alone."""
    update_epochs: PositiveInt = 1
    """Passes over each iteration's hands: 1 is REINFORCE with the baseline (the ratio is
    1); more passes clip the ratio as PPO does."""
    clip_range: Annotated[float, POSITIVE] = 0.2
    """Policy ratio clipping (from the second epoch on)."""
    entropy_coef: Annotated[float, Range(ge=0)] = 0.0
    """Weight of an entropy bonus over the generated tokens (0: none, and the entropy is not
    computed). It keeps a mixed strategy from collapsing before the model tells its cards
    apart (see the README's measurements)."""
    opponents: Literal["latest", "pool"] = "latest"
    """``latest``: the current model in both seats (pure self-play, as SPIRAL); ``pool``: a
    share (``pool_fraction``) of each iteration's hands is played against a frozen snapshot
    drawn from the last ``pool_size`` ones (taken every ``pool_every`` iterations), half with
    the learner in each seat; only the learner's seat is trained on."""
    pool_size: PositiveInt = 4
    """Past snapshots kept (``opponents: pool``)."""
    pool_every: PositiveInt = 5
    """Iterations between snapshots (``opponents: pool``; the first is the starting model)."""
    pool_fraction: Annotated[float, PROBABILITY] = 0.5
    """Share of the hands played against the pool (``opponents: pool``)."""
    format_warmup_steps: NonNegativeInt = 0
    """Supervised steps before self-play that fit the model to ``warmup_strategy`` on the 12
    information-set prompts (needed by a model that does not yet answer in the format, such
    as the tiny model built from scratch); 0: none."""
    warmup_strategy: Literal["jittered", "random", "always_bet", "equilibrium"] = "jittered"
    """The strategy the warm-up fits. ``jittered`` (:func:`jittered_strategy`, seeded by the
    run's seed): each information set its own probability, drawn uniformly in [0.2, 0.8], so
    the model must read its card and the betting to fit it, yet learns nothing about which
    move is good. ``random`` (1/2 everywhere) can be fitted without reading the card, and a
    tiny model then stays blind to it; ``always_bet`` and ``equilibrium`` are the scripted
    players of ``kuhn_solver``."""
    warmup_learning_rate: Annotated[float, Range(gt=0, le=1)] = 5e-3
    """AdamW learning rate of the warm-up (5e-3 fits the tiny model in 60-80 steps)."""
    eval_episodes: NonNegativeInt = 100
    """Hands per seat against each fixed opponent at each measurement (0: none; the exact
    exploitability is computed anyway)."""
    eval_every: NonNegativeInt = 5
    """Iterations between games against the fixed opponents (0: before and after only)."""
    eval_opponents: tuple[str, ...] = FIXED_OPPONENTS
    """The fixed scripted opponents (names of ``kuhn_solver.SCRIPTED_STRATEGIES``)."""

    def __post_init__(self) -> None:
        check_ranges(self, "selfplay")
        check_kuhn_env(self.env_id, "selfplay.env_id")
        unknown = [name for name in self.eval_opponents if name not in SCRIPTED_STRATEGIES]
        if unknown:
            raise ConfigError(
                f"selfplay.eval_opponents: unknown {unknown}; choose from "
                f"{sorted(SCRIPTED_STRATEGIES)}"
            )


def check_kuhn_env(env_id: str, field_name: str) -> None:
    """Raise :class:`ConfigError` unless ``env_id`` is a registered Kuhn poker env."""
    from llm_trainer.core.errors import UnknownEnvError
    from llm_trainer.envs.registration import spec

    try:
        cls = spec(env_id).load()
    except UnknownEnvError as exc:
        raise ConfigError(f"{field_name}: {exc}") from None
    if not (isinstance(cls, type) and issubclass(cls, KuhnPokerEnv)):
        raise ConfigError(
            f"{field_name}: self-play measures exploitability exactly, which needs Kuhn poker "
            f"(LLMTrainer/KuhnPoker-v0); {env_id} is a {cls.__name__}"
        )


# -- 2. the role-conditioned baseline (RAE) ------------------------------------------------------


@dataclass
class RoleBaseline:
    """SPIRAL's role-conditioned advantage estimation: one running mean of returns per role.

    :meth:`advantage` returns ``G - b_role`` with the baseline *before* this return (so a
    return never lowers its own advantage), then moves it: ``b_role <- m * b_role +
    (1 - m) * G``. Baselines start at ``initial`` (0: the chips of a zero-sum game).

    >>> rae = RoleBaseline(momentum=0.9)
    >>> rae.advantage("player_1", 1.0), rae.advantage("player_1", 1.0)
    (1.0, 0.9)
    >>> rae.advantage("player_0", -2.0), round(rae.values["player_1"], 2)
    (-2.0, 0.19)
    """

    momentum: float = 0.95
    initial: float = 0.0
    values: dict[str, float] = field(default_factory=dict)
    """The current baseline of each role that has had a return."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")

    def value(self, role: str) -> float:
        """The baseline of ``role`` now."""
        return self.values.get(role, self.initial)

    def advantage(self, role: str, ret: float) -> float:
        """``ret - b_role``, then the baseline takes ``ret`` in."""
        baseline = self.value(role)
        self.values[role] = self.momentum * baseline + (1.0 - self.momentum) * ret
        return ret - baseline

    def advantages(self, returns: Iterable[tuple[str, float]]) -> list[float]:
        """:meth:`advantage` of each ``(role, return)``, in order."""
        return [self.advantage(role, ret) for role, ret in returns]


# -- 4. the model's strategy, read exactly at the 12 information sets ----------------------------


def answer(move: str) -> str:
    """The canonical completion that plays ``move``: ``<answer>MOVE</answer>``."""
    return f"{ANSWER_OPEN}{move}{ANSWER_CLOSE}"


def information_set_messages(
    system_prompt: str | None = None,
) -> dict[InfoSet, tuple[dict[str, str], ...]]:
    """The chat an :class:`~llm_trainer.agents.llm_agent.LLMAgent` holds when it must move at
    each information set of Kuhn poker, its own earlier move written canonically.

    The observations come from the env itself (the other player's card is never shown before
    the end, so any deal with the player's card gives the same text). ``system_prompt``
    replaces the env's, as the agent's config does (``None`` keeps the env's rules).

    >>> chat = information_set_messages("")[("Q", ("check", "bet"))]
    >>> [m["role"] for m in chat], chat[2]["content"]
    (['system', 'user', 'assistant', 'user'], '<answer>check</answer>')
    >>> print(chat[3]["content"])
    You are player_0 (you act first). Your card: Q.
    Betting so far: player_0 checks, player_1 bets. Pot: 3 chips.
    Your move; legal moves: call, fold. Reply <answer>MOVE</answer>,
    e.g. <answer>call</answer>.
    """
    env = KuhnPokerEnv()
    chats: dict[InfoSet, tuple[dict[str, str], ...]] = {}
    for card, history in INFO_SETS:
        seat = to_move(history)
        agent = AGENTS[seat]
        other = next(c for c in CARDS if c != card)
        env.reset(options={"deal": (card, other) if seat == 0 else (other, card)})
        system = system_prompt
        if system is None:
            system = str(env.infos[agent]["system_prompt"])
        messages = [{"role": "system", "content": system}]
        for turn, move in enumerate(history):
            if to_move(history[:turn]) == seat:  # its own earlier move: seen, then answered
                messages.append({"role": "user", "content": str(env.observe(agent))})
                messages.append({"role": "assistant", "content": answer(move)})
            env.step(answer(move))
        messages.append({"role": "user", "content": str(env.observe(agent))})
        chats[(card, history)] = tuple(messages)
    env.close()
    return chats


@dataclass(frozen=True)
class StrategyReadout:
    """The model's play at the 12 information sets, read by :func:`read_strategy`.

    Attributes:
        strategy: P(aggressive move) given that the model writes one of the two legal moves
            (canonically), at the sampling temperature: the policy it plays.
        greedy: The more probable of the two moves, with probability 1 (ties: passive).
        legal_mass: P(the aggressive completion) + P(the passive one) at each information set:
            how much of the model's probability the two canonical legal answers hold (the rest
            is other text, which the env plays as check or fold with a -0.1 penalty).
    """

    strategy: Strategy
    greedy: Strategy
    legal_mass: Mapping[InfoSet, float]

    @property
    def mean_legal_mass(self) -> float:
        """``legal_mass`` averaged over the 12 information sets."""
        return sum(self.legal_mass.values()) / len(self.legal_mass)

    def exploitability(self, *, greedy: bool = False) -> float:
        """Exploitability of the strategy in self-play (both seats), exactly."""
        s = self.greedy if greedy else self.strategy
        return exploitability((s, s))


def completion_ids(tokenizer: Any, move: str) -> list[int]:
    """The token ids of the canonical completion of ``move`` (what the model samples when it
    plays it: the agent stops at ``</answer>``)."""
    ids: list[int] = tokenizer(answer(move), add_special_tokens=False)["input_ids"]
    return ids


def information_set_rows(
    tokenizer: Any, system_prompt: str | None = None
) -> list[tuple[InfoSet, str, list[int], int]]:
    """For each information set and each of its two legal moves: ``(info set, move, prompt
    + completion token ids, prompt length)``, the prompt rendered by the chat template
    exactly as the agent renders it."""
    from llm_trainer.agents.backends.base import ChatPrompt, render_chat

    rows = []
    for info_set, messages in information_set_messages(system_prompt).items():
        prompt = render_chat(tokenizer, ChatPrompt(messages))
        for move in legal_moves(info_set[1]):
            rows.append((info_set, move, prompt + completion_ids(tokenizer, move), len(prompt)))
    return rows


def _padded(rows: Sequence[Sequence[int]], pad: int, device: Any) -> tuple[Any, Any]:
    """Right-padded ``(tokens, attention)`` tensors of ``rows``."""
    import torch

    width = max(len(r) for r in rows)
    tokens = torch.full((len(rows), width), pad, dtype=torch.long)
    attention = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = torch.tensor(list(row), dtype=torch.long)
        attention[i, : len(row)] = 1
    return tokens.to(device), attention.to(device)


def _completion_logprobs(
    model: Any,
    tokenizer: Any,
    rows: Sequence[tuple[Sequence[int], int]],
    *,
    temperature: float,
    batch_size: int = 32,
) -> list[Any]:
    """Summed log-prob of each row's completion (the tokens after its prompt length), at
    ``temperature``, as tensors (with grad when grad is enabled)."""
    from llm_trainer.algorithms.ppo.core import token_logprobs

    device = next(model.parameters()).device
    pad = int(tokenizer.pad_token_id or 0)
    sums = []
    for start in range(0, len(rows), batch_size):
        part = rows[start : start + batch_size]
        tokens, attention = _padded([r[0] for r in part], pad, device)
        logits = model(input_ids=tokens, attention_mask=attention).logits
        logp, _ = token_logprobs(logits, tokens[:, 1:], temperature=temperature)
        for i, (ids, prompt_length) in enumerate(part):
            # position t predicts token t + 1: the completion's tokens are prompt_length..end
            sums.append(logp[i, prompt_length - 1 : len(ids) - 1].sum())
    return sums


def read_strategy(
    model: Any,
    tokenizer: Any,
    *,
    system_prompt: str | None = None,
    temperature: float = 1.0,
) -> StrategyReadout:
    """The model's strategy at the 12 information sets of Kuhn poker, exactly.

    At each information set the model is given the prompt its agent sees in play
    (:func:`information_set_messages`) and scored on the two legal moves' canonical
    completions at ``temperature`` (the probability of sampling exactly those tokens):
    ``P(aggressive) = p_a / (p_a + p_p)``. Another spelling of a move (a lower-case
    variant, the tag spelled byte by byte) is not counted: :attr:`StrategyReadout.legal_mass`
    says how much probability the canonical answers hold.
    """
    import torch

    rows = information_set_rows(tokenizer, system_prompt)
    was_training = bool(getattr(model, "training", False))
    model.eval()
    try:
        with torch.no_grad():
            scores = _completion_logprobs(
                model, tokenizer, [(ids, n) for _, _, ids, n in rows], temperature=temperature
            )
    finally:
        if was_training:
            model.train()
    logp: dict[tuple[InfoSet, str], float] = {
        (info_set, move): float(score)
        for (info_set, move, _, _), score in zip(rows, scores, strict=True)
    }
    probs: dict[InfoSet, float] = {}
    greedy: dict[InfoSet, float] = {}
    mass: dict[InfoSet, float] = {}
    for info_set in INFO_SETS:
        history = info_set[1]
        high = logp[(info_set, aggressive_move(history))]
        low = logp[(info_set, passive_move(history))]
        probs[info_set] = 1.0 / (1.0 + math.exp(min(700.0, low - high)))  # a stable sigmoid
        greedy[info_set] = 1.0 if high > low else 0.0
        mass[info_set] = math.exp(high) + math.exp(low)
    return StrategyReadout(Strategy(probs), Strategy(greedy), mass)


def jittered_strategy(seed: int, low: float = 0.2, high: float = 0.8) -> Strategy:
    """A strategy with an independent probability at each information set, drawn uniformly in
    ``[low, high]`` from ``seed``: an arbitrary, card-dependent starting point that knows
    nothing of the game (like a random initialisation of a tabular policy).

    >>> s = jittered_strategy(0)
    >>> all(0.2 <= p <= 0.8 for p in s.values()), s == jittered_strategy(0) != jittered_strategy(1)
    (True, True)
    """
    import numpy as np

    rng = np.random.default_rng(derive_seed(seed, "jittered-strategy"))
    return Strategy({s: float(rng.uniform(low, high)) for s in INFO_SETS})


def warmup_target(name: str, seed: int) -> Strategy:
    """The strategy ``selfplay.warmup_strategy`` names (``jittered`` drawn from ``seed``)."""
    return jittered_strategy(seed) if name == "jittered" else SCRIPTED_STRATEGIES[name]()


def format_warmup(
    model: Any,
    tokenizer: Any,
    target: Strategy,
    *,
    steps: int,
    learning_rate: float,
    system_prompt: str | None = None,
    temperature: float = 1.0,
) -> list[float]:
    """Fit ``model`` to play ``target`` at the 12 information-set prompts, by supervised
    steps (full batch, AdamW): the loss is each information set's cross-entropy between the
    target's two moves and the model's canonical completions, averaged. Returns the loss of
    each step. Deterministic (no sampling): a model that follows the format afterwards, with
    the target's probabilities (``random``: 1/2 each) and nothing else about the game."""
    import torch

    rows = [
        (info_set, move, ids, n)
        for info_set, move, ids, n in information_set_rows(tokenizer, system_prompt)
        if target.move_probs(info_set[0], info_set[1])[move] > 0
    ]
    weights = [target.move_probs(s[0], s[1])[move] for s, move, _, _ in rows]
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=learning_rate, weight_decay=0.0)
    losses: list[float] = []
    model.train()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        scores = _completion_logprobs(
            model, tokenizer, [(ids, n) for _, _, ids, n in rows], temperature=temperature
        )
        loss = -sum(w * s for w, s in zip(weights, scores, strict=True)) / len(INFO_SETS)
        assert isinstance(loss, torch.Tensor)
        loss.backward()  # type: ignore[no-untyped-call]  # unannotated in torch
        optimizer.step()
        losses.append(float(loss.detach()))
    return losses


# -- the trainer -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One seat's side of one hand: training data for the update."""

    role: str
    trajectory: Trajectory
    ret: float
    advantage: float = 0.0


class SelfPlayTrainer:
    """Self-play training of ``model`` on Kuhn poker (see the module docstring).

    Args:
        model: A causal LM (wrapped with LoRA when ``train.lora``).
        tokenizer: Its tokenizer (with a chat template).
        train: Optimisation (``max_steps`` iterations; see :class:`SelfPlaySettings`).
        settings: The self-play settings.
        run: The run directory (metrics, TensorBoard, saved policies).
        seed: Seeds sampling, the pool draws and the evaluation games.
        system_prompt: The agent's system prompt (``None`` keeps the env's rules).
        eval_first_seed: Deal seeds of the games against the fixed opponents (the same hands
            at every measurement, so measurements differ by the policy only).
        eval_batch: Envs stepped in lockstep in those games.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        train: TrainConfig,
        settings: SelfPlaySettings,
        run: RunDir,
        *,
        seed: int = 0,
        system_prompt: str | None = None,
        eval_first_seed: int = 1_000_000,
        eval_batch: int = 200,
    ) -> None:
        import torch

        from llm_trainer.algorithms.hf import apply_lora, lr_scheduler, precision_kwargs

        if train.grad_accum != 1:
            raise ConfigError(
                "train.grad_accum: self-play accumulates exactly over each iteration's hands "
                "(train.batch_size sets the micro-batches); leave grad_accum at 1"
            )
        self.train_config, self.settings, self.run = train, settings, run
        self.tokenizer, self.seed, self.system_prompt = tokenizer, seed, system_prompt
        self.eval_first_seed, self.eval_batch = eval_first_seed, eval_batch
        with preserved_global_rngs():
            self.model = apply_lora(model, train.lora)
        self.device = next(self.model.parameters()).device
        precision = precision_kwargs(train.precision)
        on_gpu = self.device.type == "cuda"
        self.autocast_dtype = (
            torch.bfloat16
            if on_gpu and precision["bf16"]
            else torch.float16
            if on_gpu and precision["fp16"]
            else None
        )
        self.parameters = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            self.parameters,
            lr=train.learning_rate,
            betas=(0.9, train.adam_beta2),
            weight_decay=train.weight_decay,
        )
        self.scheduler = lr_scheduler(
            train, self.optimizer, train.max_steps * settings.update_epochs
        )
        self.baseline = RoleBaseline(settings.baseline_momentum)
        self.pool: list[dict[str, Any]] = []
        """Frozen snapshots (state dicts on the CPU) of the past policy (``opponents: pool``)."""
        self._opponent_model: Any = None
        self.iteration = 0
        self.losses: list[tuple[int, float]] = []
        self.tokens_trained = 0

    # -- 1. rollout ---------------------------------------------------------------------------

    def _agent(self, model: Any, seed: int) -> Any:
        from llm_trainer.algorithms.evaluation import model_agent

        return model_agent(
            model,
            self.tokenizer,
            system_prompt=self.system_prompt,
            max_new_tokens=self.settings.max_new_tokens,
            temperature=self.settings.temperature,
            seed=seed,
        )

    def _play(
        self,
        policies: Mapping[str, Any],
        seeds: Sequence[int],
        trainable: Iterable[str],
        num_envs: int,
    ) -> list[MultiAgentEpisode]:
        from llm_trainer.agents.coordinator import play_multiagent

        return play_multiagent(
            self.settings.env_id, policies, seeds, trainable=trainable, num_envs=num_envs
        )

    def rollout(self, iteration: int) -> list[Sample]:
        """This iteration's hands: the learner's seats, in order (episode, then seat)."""
        s = self.settings
        first = s.first_seed + iteration * s.episodes_per_iteration
        seeds = list(range(first, first + s.episodes_per_iteration))
        learner = self._agent(self.model, derive_seed(self.seed, "selfplay-rollout", iteration))
        n_pool = round(len(seeds) * s.pool_fraction) if s.opponents == "pool" and self.pool else 0
        self_seeds, pool_seeds = seeds[: len(seeds) - n_pool], seeds[len(seeds) - n_pool :]
        episodes: list[MultiAgentEpisode] = []
        self.model.eval()
        try:
            if self_seeds:  # one policy object in both seats: one batch per round
                episodes += self._play(
                    dict.fromkeys(AGENTS, learner), self_seeds, AGENTS, len(self_seeds)
                )
            if pool_seeds:
                opponent = self._pool_opponent(iteration)
                half = len(pool_seeds) // 2
                for seat, part in ((0, pool_seeds[:half]), (1, pool_seeds[half:])):
                    if part:
                        policies = {AGENTS[seat]: learner, AGENTS[1 - seat]: opponent}
                        episodes += self._play(policies, part, {AGENTS[seat]}, len(part))
        finally:
            self.model.train()
        return [
            Sample(agent, episode.trajectories[agent], float(episode.returns[agent]))
            for episode in episodes
            if episode.error is None
            for agent in AGENTS
            if agent in episode.trainable and episode.trajectories[agent].steps
        ]

    def _pool_opponent(self, iteration: int) -> Any:
        """An agent on a frozen snapshot drawn from the pool (seeded by the iteration)."""
        import numpy as np

        rng = np.random.default_rng(derive_seed(self.seed, "selfplay-pool", iteration))
        snapshot = self.pool[int(rng.integers(len(self.pool)))]
        if self._opponent_model is None:
            with preserved_global_rngs():
                self._opponent_model = copy.deepcopy(self.model).eval().requires_grad_(False)
        self._opponent_model.load_state_dict(snapshot)
        seed = derive_seed(self.seed, "selfplay-opponent", iteration)
        return self._agent(self._opponent_model, seed)

    def _snapshot(self) -> None:
        state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
        self.pool = [*self.pool, state][-self.settings.pool_size :]

    # -- 2-3. advantages and update ---------------------------------------------------------

    def _forward_logprobs(
        self, tokens: Any, attention: Any, *, entropy: bool = False
    ) -> tuple[Any, Any]:
        """Log-probs of tokens 1..T-1 at the sampling temperature and, if asked, the entropy
        at each position, ``[batch, T-1]`` fp32."""
        import contextlib

        import torch

        from llm_trainer.algorithms.ppo.core import token_logprobs

        autocast = (
            torch.autocast(self.device.type, dtype=self.autocast_dtype)
            if self.autocast_dtype is not None
            else contextlib.nullcontext()
        )
        with autocast:
            logits = self.model(input_ids=tokens, attention_mask=attention).logits
        return token_logprobs(
            logits, tokens[:, 1:], temperature=self.settings.temperature, entropy=entropy
        )

    def update(self, samples: Sequence[Sample]) -> dict[str, float]:
        """RAE advantages for ``samples`` (in order), then the clipped policy-gradient update
        over their generated tokens. Returns the update's metrics."""
        import torch

        from llm_trainer.algorithms.ppo.core import pack_episode, ppo_losses

        s, cfg = self.settings, self.train_config
        samples = [
            dataclasses.replace(sample, advantage=self.baseline.advantage(sample.role, sample.ret))
            for sample in samples
        ]
        rows, advantages = [], []
        for sample in samples:
            for row in pack_episode(sample.trajectory, [0.0] * len(sample.trajectory.steps)):
                rows.append(row)
                advantages.append(sample.advantage)
        if not rows:
            raise RuntimeError("no hand of this iteration gave training data (all failed)")
        pad = int(self.tokenizer.pad_token_id or 0)
        micro = cfg.batch_size
        batches = []
        for start in range(0, len(rows), micro):
            part = rows[start : start + micro]
            tokens, attention = _padded([r.tokens for r in part], pad, self.device)
            width = tokens.shape[1]
            mask = torch.tensor(
                [list(r.action_mask) + [0] * (width - len(r.tokens)) for r in part],
                dtype=torch.float32,
                device=self.device,
            )[:, 1:]
            adv = torch.tensor(advantages[start : start + micro], device=self.device)[:, None]
            batches.append({"tokens": tokens, "attention": attention, "mask": mask, "adv": adv})
        n_tokens = float(sum(float(b["mask"].sum()) for b in batches))
        self.model.train()
        stats: dict[str, float] = {"policy_loss": 0.0, "clip_fraction": 0.0, "approx_kl": 0.0}
        grad_norms = []
        for epoch in range(s.update_epochs):
            self.optimizer.zero_grad(set_to_none=True)
            for b in batches:
                new, entropy = self._forward_logprobs(
                    b["tokens"], b["attention"], entropy=s.entropy_coef > 0
                )
                if epoch == 0:
                    # the sampling policy's log-probs: these weights, by the same code (the
                    # recorded ones are at temperature 1 and from padded generation batches),
                    # so the first epoch's ratio is exactly 1 (REINFORCE)
                    b["old"] = new.detach() * b["mask"]
                zeros = torch.zeros_like(new)
                losses = ppo_losses(
                    new,
                    b["old"],
                    b["adv"].expand_as(new) * b["mask"],
                    zeros,
                    zeros,
                    zeros,
                    b["mask"],
                    clip_range=s.clip_range,
                    entropy=entropy,
                    clip_range_value=0.0,
                    vf_coef=0.0,
                    ent_coef=s.entropy_coef,
                    denominator=n_tokens,
                )
                losses.total.backward()  # type: ignore[no-untyped-call]  # unannotated in torch
                share = float(b["mask"].sum()) / n_tokens / s.update_epochs
                stats["policy_loss"] += float(losses.policy.detach()) / s.update_epochs
                stats["clip_fraction"] += float(losses.clip_fraction) * share
                stats["approx_kl"] += float(losses.approx_kl) * share
                if losses.entropy is not None:
                    stats["entropy"] = (
                        stats.get("entropy", 0.0) + float(losses.entropy) / s.update_epochs
                    )
            grad_norm = torch.nn.utils.clip_grad_norm_(self.parameters, cfg.max_grad_norm)
            grad_norms.append(float(grad_norm))
            self.optimizer.step()
            self.scheduler.step()
        self.tokens_trained += int(n_tokens) * s.update_epochs
        all_adv = [sample.advantage for sample in samples]
        metrics = {f"selfplay/{k}": v for k, v in stats.items()}
        metrics.update(
            {
                "selfplay/grad_norm": sum(grad_norms) / len(grad_norms),
                "selfplay/advantage_mean": sum(all_adv) / len(all_adv),
                "selfplay/advantage_abs": sum(abs(a) for a in all_adv) / len(all_adv),
                "selfplay/trained_tokens": n_tokens,
                "learning_rate": float(self.scheduler.get_last_lr()[0]),
                "loss": stats["policy_loss"],
            }
        )
        for role in AGENTS:
            metrics[f"selfplay/baseline_{role}"] = self.baseline.value(role)
        return metrics

    # -- 4. measurement ---------------------------------------------------------------------

    def read_strategy(self) -> StrategyReadout:
        """The current policy's strategy at the 12 information sets (see :func:`read_strategy`)."""
        return read_strategy(
            self.model,
            self.tokenizer,
            system_prompt=self.system_prompt,
            temperature=self.settings.temperature,
        )

    def measure(self, *, games: bool) -> dict[str, float]:
        """``eval/*``: the exact exploitability of the policy (sampled and greedy), its legal
        mass, its exact chips against each fixed opponent, and with ``games``, win rate and
        mean chips over ``eval_episodes`` hands per seat against each fixed opponent."""
        readout = self.read_strategy()
        strategy = readout.strategy
        metrics = {
            "eval/exploitability": readout.exploitability(),
            "eval/exploitability_greedy": readout.exploitability(greedy=True),
            "eval/legal_mass": readout.mean_legal_mass,
            "eval/value_player_0": expected_value(strategy, strategy),
        }
        for name in self.settings.eval_opponents:
            opponent = SCRIPTED_STRATEGIES[name]()
            exact = (expected_value(strategy, opponent) - expected_value(opponent, strategy)) / 2
            metrics[f"eval/vs_{name}/exact_chips"] = exact
        if games and self.settings.eval_episodes:
            metrics.update(self.play_fixed_opponents())
        for info_set, p in strategy.items():
            card, history = info_set
            metrics[f"strategy/{card}{'/' if history else ''}{','.join(history)}"] = p
        return metrics

    def play_fixed_opponents(self) -> dict[str, float]:
        """Win rate and mean chips of the model (sampling, as in training) against each fixed
        opponent, ``eval_episodes`` hands in each seat, on the same deals every time."""
        n = self.settings.eval_episodes
        seeds = list(range(self.eval_first_seed, self.eval_first_seed + n))
        metrics: dict[str, float] = {}
        self.model.eval()
        try:
            for name in self.settings.eval_opponents:
                wins = chips = 0.0
                for seat in (0, 1):
                    me, other = AGENTS[seat], AGENTS[1 - seat]
                    agent = self._agent(self.model, derive_seed(self.seed, "selfplay-eval", seat))
                    scripted = StrategyPolicy(
                        SCRIPTED_STRATEGIES[name](),
                        seed=derive_seed(self.seed, "selfplay-opponent", name, seat),
                    )
                    episodes = self._play(
                        {me: agent, other: scripted}, seeds, (), min(n, self.eval_batch)
                    )
                    seat_chips = [float(e.final_infos[me].get("chips", 0)) for e in episodes]
                    seat_wins = sum(c > 0 for c in seat_chips)
                    metrics[f"eval/vs_{name}/chips_{me}"] = sum(seat_chips) / n
                    wins += seat_wins
                    chips += sum(seat_chips)
                metrics[f"eval/vs_{name}/win_rate"] = wins / (2 * n)
                metrics[f"eval/vs_{name}/chips"] = chips / (2 * n)
        finally:
            self.model.train()
        return metrics

    # -- the loop -----------------------------------------------------------------------------

    def step(self, iteration: int) -> dict[str, float]:
        """One iteration: rollout, RAE advantages, update. Returns its metrics."""
        s = self.settings
        if s.opponents == "pool" and iteration % s.pool_every == 0:
            self._snapshot()
        t0 = time.perf_counter()
        samples = self.rollout(iteration)
        t1 = time.perf_counter()
        metrics = self.update(samples)
        t2 = time.perf_counter()
        by_role = {role: [x for x in samples if x.role == role] for role in AGENTS}
        for role, mine in by_role.items():
            if mine:
                metrics[f"rollout/return_{role}"] = sum(x.ret for x in mine) / len(mine)
        n = max(1, len(samples))
        metrics.update(
            {
                "rollout/samples": float(len(samples)),
                "rollout/errors": float(s.episodes_per_iteration - _hands(samples)),
                "rollout/format_ok": sum(x.trajectory.metrics["format_ok"] for x in samples) / n,
                "rollout/moves": sum(len(x.trajectory.steps) for x in samples) / n,
                "time/rollout_seconds": t1 - t0,
                "time/update_seconds": t2 - t1,
            }
        )
        return metrics

    def train(self) -> tuple[TrainResult, dict[str, float], dict[str, float]]:
        """Measure, run ``train.max_steps`` iterations (measuring after each), measure.

        Returns the training result and the measurements before and after.
        """
        from torch.utils.tensorboard import SummaryWriter

        from llm_trainer.algorithms.hf import per_second, torch_threads

        writer = SummaryWriter(log_dir=str(self.run.tensorboard))
        total = self.train_config.max_steps
        start = time.perf_counter()
        eval_seconds = 0.0

        def log(step: int, metrics: dict[str, float]) -> None:
            self.run.log_metrics(step, metrics)
            for key, value in metrics.items():
                writer.add_scalar(key, value, step)

        try:
            with preserved_global_rngs(), torch_threads(self.train_config.threads):
                before = self.measure(games=True)
                log(0, before)
                after = before
                for iteration in range(total):
                    metrics = self.step(iteration)
                    self.iteration = iteration + 1
                    every = self.settings.eval_every
                    games = self.iteration == total or bool(every and self.iteration % every == 0)
                    measured = time.perf_counter()
                    after = self.measure(games=games)
                    eval_seconds += time.perf_counter() - measured
                    metrics.update(after)
                    metrics["time/eval_seconds"] = time.perf_counter() - measured
                    self.losses.append((self.iteration, metrics["loss"]))
                    log(self.iteration, metrics)
                    saving = self.train_config.save_steps
                    if saving and self.iteration % saving == 0 and self.iteration < total:
                        self.save(self.run.checkpoints / f"{CHECKPOINT_PREFIX}{self.iteration}")
        finally:
            writer.close()
        seconds = time.perf_counter() - start
        result = TrainResult(
            steps=self.iteration,
            losses=tuple(self.losses),
            seconds=seconds,
            tokens_per_second=per_second(self.tokens_trained, seconds - eval_seconds),
            resumed_from=None,
        )
        return result, before, after

    def save(self, path: Path) -> Path:
        """Write the policy (LoRA adapters merged) and tokenizer to ``path`` atomically."""
        from llm_trainer.core.rundir import atomic_directory

        model = merged(copy.deepcopy(self.model)) if self.train_config.lora.enabled else self.model

        def write(tmp: Path) -> None:
            model.save_pretrained(tmp)
            self.tokenizer.save_pretrained(tmp)

        return atomic_directory(path, write)


def _hands(samples: Sequence[Sample]) -> int:
    """The number of distinct hands (reset seeds) among ``samples``."""
    return len({x.trajectory.seed for x in samples})


# -- the plot ----------------------------------------------------------------------------------


def plot_selfplay_curve(
    metrics: Sequence[Mapping[str, Any]], path: str | Path, *, title: str = "self-play"
) -> Path | None:
    """Exploitability (sampled and greedy policy) and mean chips against each fixed opponent
    over iterations, from ``metrics.jsonl`` records; ``None`` when there is nothing to draw."""
    points = [p for p in metrics if p.get("eval/exploitability") is not None]
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_expl, ax_chips) = plt.subplots(1, 2, figsize=(10, 4), dpi=120)
    steps = [p["step"] for p in points]
    ax_expl.plot(steps, [p["eval/exploitability"] for p in points], label="sampled policy")
    greedy = [p.get("eval/exploitability_greedy") for p in points]
    if all(g is not None for g in greedy):
        ax_expl.plot(steps, greedy, alpha=0.6, label="greedy policy")
    ax_expl.axhline(11 / 24, color="grey", linestyle=":", label="uniform random (11/24)")
    ax_expl.axhline(0.0, color="black", linewidth=0.5)
    ax_expl.set_xlabel("iteration")
    ax_expl.set_ylabel("exploitability (chips per hand)")
    ax_expl.set_title("exploitability (exact)")
    ax_expl.legend(fontsize=8)
    names = sorted({k.split("/")[1][3:] for p in points for k in p if k.endswith("/exact_chips")})
    for name in names:
        key = f"eval/vs_{name}/exact_chips"
        pts = [(p["step"], p[key]) for p in points if p.get(key) is not None]
        [line] = ax_chips.plot(*zip(*pts, strict=True), label=f"vs {name} (exact)")
        key = f"eval/vs_{name}/chips"
        played = [(p["step"], p[key]) for p in points if p.get(key) is not None]
        if played:
            ax_chips.plot(
                *zip(*played, strict=True), "o", color=line.get_color(), markersize=3, alpha=0.6
            )
    ax_chips.axhline(0.0, color="black", linewidth=0.5)
    ax_chips.set_xlabel("iteration")
    ax_chips.set_ylabel("mean chips per hand (both seats)")
    ax_chips.set_title("against fixed opponents (dots: played hands)")
    ax_chips.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    tmp = out.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    import os

    os.replace(tmp, out)
    return out


# -- the algorithm -----------------------------------------------------------------------------


class SelfPlayAlgorithm(Algorithm):
    """Self-play of one model in both seats of Kuhn poker with SPIRAL's role-conditioned
    baseline; exploitability (exact) and games against fixed opponents over training."""

    name = "selfplay"
    config_class = SelfPlaySettings
    # The held-out evaluation of run_experiment plays a single-agent env (``eval.env_id``):
    # meaningless for a poker player. This algorithm measures its policy itself (exactly, and
    # against the fixed opponents) and saves ``final_model``.
    produces_policy = False

    def run(self, context: AlgorithmContext) -> AlgorithmResult:
        s: SelfPlaySettings = self.config
        experiment = context.experiment
        if context.resume:
            raise ConfigError("resume: self-play runs do not resume; start a new run")
        model, tokenizer = context.load_model()
        metrics: dict[str, Any] = {}
        if s.format_warmup_steps:
            untrained = read_strategy(
                model, tokenizer, system_prompt=context.system_prompt, temperature=s.temperature
            )
            with preserved_global_rngs():
                losses = format_warmup(
                    model,
                    tokenizer,
                    warmup_target(s.warmup_strategy, context.seed),
                    steps=s.format_warmup_steps,
                    learning_rate=s.warmup_learning_rate,
                    system_prompt=context.system_prompt,
                    temperature=s.temperature,
                )
            metrics["exploitability_untrained"] = untrained.exploitability()
            metrics["legal_mass_untrained"] = untrained.mean_legal_mass
            metrics["warmup_final_loss"] = losses[-1]
            context.log(
                f"format warm-up: {len(losses)} steps towards {s.warmup_strategy}, loss "
                f"{losses[0]:.3f} -> {losses[-1]:.3f}"
            )
        context.log(
            f"self-play: {experiment.train.max_steps} iterations of {s.episodes_per_iteration} "
            f"hands of {s.env_id}, one model in both seats (opponents: {s.opponents})"
        )
        trainer = SelfPlayTrainer(
            model,
            tokenizer,
            experiment.train,
            s,
            context.run,
            seed=context.seed,
            system_prompt=context.system_prompt,
            eval_first_seed=experiment.eval.first_seed,
            eval_batch=experiment.eval.batch_size,
        )
        training, before, after = trainer.train()
        final = trainer.save(context.run.path / "final_model")
        png = plot_selfplay_curve(
            context.run.metrics(),
            context.run.path / "selfplay_curve.png",
            title=f"{experiment.name}: self-play on {s.env_id}",
        )
        for key in ("exploitability", "exploitability_greedy", "legal_mass"):
            metrics[f"{key}_before"] = before[f"eval/{key}"]
            metrics[f"{key}_after"] = after[f"eval/{key}"]
        for name in s.eval_opponents:
            for key in ("win_rate", "chips", "exact_chips"):
                if f"eval/vs_{name}/{key}" in after:
                    metrics[f"vs_{name}_{key}_before"] = before.get(f"eval/vs_{name}/{key}")
                    metrics[f"vs_{name}_{key}_after"] = after[f"eval/vs_{name}/{key}"]
        context.log(
            f"exploitability {metrics['exploitability_before']:.3f} -> "
            f"{metrics['exploitability_after']:.3f} (uniform random: {11 / 24:.3f}, Nash: 0)"
        )
        artifacts = {"final_model": str(final)}
        if png is not None:
            artifacts["selfplay_curve"] = str(png)
        return AlgorithmResult(training=training, metrics=metrics, artifacts=artifacts)
