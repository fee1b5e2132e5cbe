"""PPO's math against hand-computed examples: episode packing, GAE over generated tokens (and
across the rows of a split episode), the chunked log-probs and entropy against the plain
full-vocabulary log-softmax, the clipped losses, and the mask that keeps env tokens out of the
gradient."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from llm_trainer.algorithms.config import RewardConfig  # noqa: E402
from llm_trainer.algorithms.ppo.core import (  # noqa: E402
    TokenRow,
    episode_gae,
    gae,
    pack_episode,
    ppo_losses,
    token_logprobs,
)
from llm_trainer.algorithms.rewards import (  # noqa: E402
    episode_return,
    shaped_rewards,
    step_rewards,
)
from llm_trainer.core.trajectory import Step, Trajectory  # noqa: E402

OK = {"format_ok": True, "tool_correct": True, "exec_ok": True}


def _episode() -> Trajectory:
    """Two turns: prompt [1,2] -> call [3,4] -> tool result [5,6] -> answer [7]."""
    call = Step(
        "<tool_call>..</tool_call>", "12", "tool", 0.0, False, False, OK,
        prompt_token_ids=(1, 2), completion_token_ids=(3, 4), logprobs=(-0.1, -0.2),
    )  # fmt: skip
    answer = Step(
        "<answer>12</answer>", "", "user", 1.0, True, False, {**OK, "success": True},
        prompt_token_ids=(1, 2, 3, 4, 5, 6), completion_token_ids=(7,), logprobs=(-0.3,),
    )  # fmt: skip
    return Trajectory("LLMTrainer/Calculator-v0", 0, 1, "", (), "q", (call, answer))


def test_pack_episode_masks_env_tokens_and_places_rewards_on_last_generated_token() -> None:
    [row] = pack_episode(_episode(), [0.0, 1.0])
    assert row.tokens == (1, 2, 3, 4, 5, 6, 7)
    assert row.action_mask == (0, 0, 1, 1, 0, 0, 1)
    assert row.logprobs == (0.0, 0.0, -0.1, -0.2, 0.0, 0.0, -0.3)
    assert row.rewards == (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)


def test_pack_episode_starts_a_new_row_when_the_context_was_rewritten() -> None:
    t = _episode()
    rewritten = Step(
        "<answer>12</answer>", "", "user", 1.0, True, False, OK,
        prompt_token_ids=(9, 5, 6), completion_token_ids=(7,), logprobs=(-0.3,),
    )  # fmt: skip
    t2 = Trajectory(t.env_id, 0, 1, "", (), "q", (t.steps[0], rewritten))
    rows = pack_episode(t2, [0.0, 1.0])
    assert [r.tokens for r in rows] == [(1, 2, 3, 4), (9, 5, 6, 7)]
    assert [r.action_mask for r in rows] == [(0, 0, 1, 1), (0, 0, 0, 1)]


def test_pack_episode_rejects_steps_without_tokens() -> None:
    t = _episode()
    scripted = Trajectory(t.env_id, 0, 1, "", (), "q", (Step("a", "b", "user", 0.0, True, False),))
    with pytest.raises(ValueError, match="no recorded tokens"):
        pack_episode(scripted, [0.0])
    with pytest.raises(ValueError, match="rewards for an episode"):
        pack_episode(t, [0.0])


def test_gae_matches_a_hand_computed_example() -> None:
    # generated tokens at t=0,1,3 (t=2 is a tool result); gamma=0.9, lambda=0.8
    rewards = torch.tensor([[0.0, 0.5, 0.0, 1.0]])
    values = torch.tensor([[0.2, 0.4, 7.0, 0.6]])
    mask = torch.tensor([[1, 1, 0, 1]])
    adv, ret = gae(rewards, values, mask, gamma=0.9, lam=0.8)
    # by hand, over the generated tokens (0.2, 0.4, 0.6) with rewards (0, 0.5, 1):
    d3 = 1.0 - 0.6
    d1 = 0.5 + 0.9 * 0.6 - 0.4
    d0 = 0.0 + 0.9 * 0.4 - 0.2
    a3 = d3
    a1 = d1 + 0.9 * 0.8 * a3
    a0 = d0 + 0.9 * 0.8 * a1
    assert adv[0].tolist() == pytest.approx([a0, a1, 0.0, a3])
    assert ret[0].tolist() == pytest.approx([a0 + 0.2, a1 + 0.4, 0.0, a3 + 0.6])


def _rewritten_episode() -> Trajectory:
    """The episode of :func:`_episode` whose second prompt dropped the first turn's prompt (a
    memory that trims old turns): ``pack_episode`` gives it two rows."""
    t = _episode()
    rewritten = Step(
        "<answer>12</answer>", "", "user", 1.0, True, False, OK,
        prompt_token_ids=(9, 5, 6), completion_token_ids=(7,), logprobs=(-0.3,),
    )  # fmt: skip
    return Trajectory(t.env_id, 0, 1, "", (), "q", (t.steps[0], rewritten))


def _shifted(rows: Sequence[Sequence[float]]) -> list[torch.Tensor]:
    """Rows as the trainer feeds GAE: position t predicts token t+1 (the first dropped)."""
    return [torch.tensor(r[1:], dtype=torch.float32) for r in rows]


def test_an_episode_split_into_two_rows_gets_the_advantages_of_one_row() -> None:
    # generated tokens 3, 4 (turn 1) and 7 (turn 2), reward 1 on the last; gamma=0.9, lam=0.8;
    # the value of each generated token is the same in both packings: 0.2, 0.4, 0.6
    gamma, lam = 0.9, 0.8
    d2 = 1.0 - 0.6
    d1 = 0.0 + gamma * 0.6 - 0.4  # the value after token 4 is token 7's, in the next row
    d0 = 0.0 + gamma * 0.4 - 0.2
    a2 = d2
    a1 = d1 + gamma * lam * a2
    a0 = d0 + gamma * lam * a1
    expected_adv, expected_ret = [a0, a1, a2], [a0 + 0.2, a1 + 0.4, a2 + 0.6]

    [one] = pack_episode(_episode(), [0.0, 1.0])
    split = pack_episode(_rewritten_episode(), [0.0, 1.0])
    assert len(split) == 2

    def generated(rows: list[TokenRow], episodes: list[int]) -> tuple[list[float], list[float]]:
        """Advantages and returns at the generated tokens, in play order."""
        per_token = iter([0.2, 0.4, 0.6])
        values = [tuple(next(per_token) if m else 0.0 for m in r.action_mask) for r in rows]
        masks = _shifted([r.action_mask for r in rows])
        adv, ret = episode_gae(
            _shifted([r.rewards for r in rows]), _shifted(values), masks, episodes,
            gamma=gamma, lam=lam,
        )  # fmt: skip
        at = [k.bool() for k in masks]
        return (
            torch.cat([a[m] for a, m in zip(adv, at, strict=True)]).tolist(),
            torch.cat([r[m] for r, m in zip(ret, at, strict=True)]).tolist(),
        )

    for rows, episodes in (([one], [0]), (split, [0, 0])):
        adv, ret = generated(rows, episodes)
        assert adv == pytest.approx(expected_adv)
        assert ret == pytest.approx(expected_ret)
    # as two separate episodes (the old behaviour), the first row ended with a value of 0
    adv, _ = generated(split, [0, 1])
    assert adv[1] == pytest.approx(0.0 + gamma * 0.0 - 0.4)


def test_rows_of_an_episode_need_not_be_adjacent_for_episode_gae() -> None:
    gen = torch.Generator().manual_seed(0)
    rows = [torch.rand(5, generator=gen) for _ in range(3)]
    values = [torch.rand(5, generator=gen) for _ in range(3)]
    masks = [(torch.rand(5, generator=gen) > 0.3).float() for _ in range(3)]
    together = episode_gae(rows, values, masks, [7, 7, 3], gamma=0.95, lam=0.9)
    apart = episode_gae(
        [rows[0], rows[2], rows[1]], [values[0], values[2], values[1]],
        [masks[0], masks[2], masks[1]], [7, 3, 7], gamma=0.95, lam=0.9,
    )  # fmt: skip
    for a, b in ((0, 0), (1, 2), (2, 1)):
        assert torch.allclose(together[0][a], apart[0][b])
        assert torch.allclose(together[1][a], apart[1][b])
    with pytest.raises(ValueError, match="one of each per row"):
        episode_gae(rows, values, masks, [0, 0], gamma=1.0, lam=1.0)


def _plain(
    logits: torch.Tensor, targets: torch.Tensor, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The old path: a full fp32 log-softmax over the vocabulary, then a gather."""
    logp_all = torch.log_softmax(logits[:, : targets.shape[1]].float() / temperature, dim=-1)
    logp = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return logp, -(logp_all.exp() * logp_all).sum(-1)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_logprobs_equal_the_full_log_softmax_on_random_logits(temperature: float) -> None:
    gen = torch.Generator().manual_seed(0)
    logits = 4 * torch.randn(3, 17, 50, generator=gen, dtype=torch.float64).float()
    targets = torch.randint(0, 50, (3, 16), generator=gen)  # the last position predicts nothing
    want_logp, want_ent = _plain(logits, targets, temperature)
    # 3 x 50 values per position: chunks of 2 positions, and one chunk for everything
    for chunk_elements in (300, 1 << 24):
        logp, ent = token_logprobs(
            logits, targets, temperature=temperature, entropy=True, chunk_elements=chunk_elements
        )
        assert ent is not None
        assert logp.dtype == ent.dtype == torch.float32
        assert (logp - want_logp).abs().max() < 1e-5
        assert (ent - want_ent).abs().max() < 1e-5
    logp, ent = token_logprobs(logits, targets, temperature=temperature)
    assert ent is None
    assert (logp - want_logp).abs().max() < 1e-5


def test_chunked_logprobs_backpropagate_like_the_full_log_softmax() -> None:
    gen = torch.Generator().manual_seed(1)
    base = 3 * torch.randn(2, 9, 40, generator=gen)
    targets = torch.randint(0, 40, (2, 8), generator=gen)
    w_logp, w_ent = torch.randn(2, 8, generator=gen), torch.randn(2, 8, generator=gen)
    grads = []
    for chunked in (True, False):
        logits = base.clone().requires_grad_(True)
        if chunked:
            logp, ent = token_logprobs(
                logits, targets, temperature=0.8, entropy=True, chunk_elements=100
            )
        else:
            logp, ent = _plain(logits, targets, 0.8)
        assert ent is not None
        ((logp * w_logp).sum() + (ent * w_ent).sum()).backward()
        assert logits.grad is not None
        grads.append(logits.grad)
    assert (grads[0] - grads[1]).abs().max() < 1e-5
    assert torch.all(grads[0][:, -1] == 0)  # the position past the targets gets nothing


def test_chunked_logprobs_of_bf16_logits_are_fp32_and_keep_the_logits_dtype_in_backward() -> None:
    gen = torch.Generator().manual_seed(2)
    logits = (3 * torch.randn(2, 6, 30, generator=gen)).bfloat16().requires_grad_(True)
    targets = torch.randint(0, 30, (2, 5), generator=gen)
    logp, _ = token_logprobs(logits, targets, chunk_elements=60)
    want, _ = _plain(logits.detach(), targets, 1.0)
    assert logp.dtype == torch.float32
    assert (logp - want).abs().max() < 1e-5  # the same fp32 math on the same bf16 values
    logp.sum().backward()
    assert logits.grad is not None
    assert logits.grad.dtype == torch.bfloat16


def test_chunked_logprobs_reject_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="positions of logits"):
        token_logprobs(torch.zeros(1, 2, 5), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[batch, time\]"):
        token_logprobs(torch.zeros(1, 2, 5), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature"):
        token_logprobs(torch.zeros(1, 2, 5), torch.zeros(1, 1, dtype=torch.long), temperature=0)


def test_ppo_losses_match_a_hand_computed_example() -> None:
    new = torch.tensor([[math.log(0.5), math.log(0.9), 0.0]])
    old = torch.tensor([[math.log(0.25), math.log(0.9), 0.0]])
    adv = torch.tensor([[1.0, -2.0, 5.0]])
    values = torch.tensor([[0.5, 1.0, 3.0]])
    old_values = torch.tensor([[0.0, 1.0, 0.0]])
    returns = torch.tensor([[1.0, 0.0, 9.0]])
    entropy = torch.tensor([[1.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 0]])
    out = ppo_losses(
        new, old, adv, values, old_values, returns, mask, entropy=entropy,
        clip_range=0.2, clip_range_value=0.2, vf_coef=0.5, ent_coef=0.01,
    )  # fmt: skip
    # token 0: ratio 2 -> clipped to 1.2 with A=1: max(-2, -1.2) = -1.2; token 1: ratio 1: +2
    assert float(out.policy) == pytest.approx((-1.2 + 2.0) / 2)
    # values: token 0 unclipped (0.5-1)^2=0.25, clipped 0.2 -> (0.2-1)^2=0.64 -> 0.64;
    # token 1: (1-0)^2 = 1 both ways
    assert float(out.value) == pytest.approx(0.5 * (0.64 + 1.0) / 2)
    assert out.entropy is not None
    assert float(out.entropy) == pytest.approx(2.0)
    assert float(out.clip_fraction) == pytest.approx(0.5)
    expected = (-1.2 + 2.0) / 2 + 0.5 * 0.5 * 0.82 - 0.01 * 2.0
    assert float(out.total) == pytest.approx(expected)
    # without an entropy bonus the entropy is not needed: not reported, not in the total
    plain = ppo_losses(
        new, old, adv, values, old_values, returns, mask,
        clip_range=0.2, clip_range_value=0.2, vf_coef=0.5, ent_coef=0.0,
    )  # fmt: skip
    assert plain.entropy is None
    assert float(plain.total) == pytest.approx((-1.2 + 2.0) / 2 + 0.5 * 0.5 * 0.82)
    with pytest.raises(ValueError, match="needs the per-token entropy"):
        ppo_losses(
            new, old, adv, values, old_values, returns, mask,
            clip_range=0.2, clip_range_value=0.2, vf_coef=0.5, ent_coef=0.01,
        )  # fmt: skip


def test_env_tokens_never_receive_gradient() -> None:
    [row] = pack_episode(_episode(), [0.0, 1.0])
    mask = torch.tensor([row.action_mask], dtype=torch.float32)
    n = mask.shape[1]
    new = torch.randn(1, n, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    values = torch.zeros(1, n, requires_grad=True)
    entropy = torch.rand(1, n, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    out = ppo_losses(
        new, torch.zeros(1, n), torch.ones(1, n), values, torch.zeros(1, n), torch.ones(1, n),
        mask, entropy=entropy, clip_range=0.2, clip_range_value=0.0, vf_coef=0.5, ent_coef=0.1,
        ref_logprobs=torch.zeros(1, n), kl_coef=0.1,
    )  # fmt: skip
    out.total.backward()
    for grad in (new.grad, values.grad, entropy.grad):
        assert grad is not None
        env_positions = (mask == 0).nonzero()[:, 1].tolist()
        assert env_positions == [0, 1, 4, 5]
        assert torch.all(grad[0, env_positions] == 0)
        assert torch.all(grad[0, [2, 3, 6]] != 0)


def test_denominator_makes_accumulated_micro_batches_equal_one_batch() -> None:
    gen = torch.Generator().manual_seed(0)
    new = torch.randn(4, 5, generator=gen)
    old, adv = torch.randn(4, 5, generator=gen), torch.randn(4, 5, generator=gen)
    vals, ret = torch.randn(4, 5, generator=gen), torch.randn(4, 5, generator=gen)
    ent = torch.rand(4, 5, generator=gen)
    mask = (torch.rand(4, 5, generator=gen) > 0.3).float()
    kw = {"clip_range": 0.2, "clip_range_value": 0.2, "vf_coef": 0.5, "ent_coef": 0.01}
    whole = ppo_losses(new, old, adv, vals, vals, ret, mask, entropy=ent, **kw)  # type: ignore[arg-type]
    tokens = float(mask.sum())
    parts = [
        ppo_losses(*(x[s] for x in (new, old, adv, vals, vals, ret, mask)), entropy=ent[s], **kw,  # type: ignore[arg-type]
                   denominator=tokens)
        for s in (slice(0, 1), slice(1, 4))
    ]  # fmt: skip
    assert float(sum(p.total for p in parts)) == pytest.approx(float(whole.total), rel=1e-5)


def test_reward_shaping_terms(tmp_path: Path) -> None:
    t = _episode()
    assert step_rewards(t, RewardConfig()) == [0.0, 1.0]
    shaped = RewardConfig(format_bonus=0.1, tool_bonus=0.2, execution_bonus=0.05, step_penalty=0.01)
    assert step_rewards(t, shaped) == pytest.approx([-0.01, 1.0 - 0.01 + 0.35])
    assert episode_return(t, shaped) == pytest.approx(1.33)
    # only the terms the episode earned are paid
    wrong_tool = {"format_ok": True, "tool_correct": False, "exec_ok": True}
    assert shaped_rewards([-0.1, 0.0], wrong_tool, shaped) == pytest.approx([-0.11, 0.14])
    # a reward model's score is weighted and added at the end, in place of the env reward too
    # (the path must exist: RewardConfig checks it; no model is loaded here)
    rm = RewardConfig(env_weight=0.0, reward_model_path=str(tmp_path), reward_model_weight=2.0)
    assert shaped_rewards([0.0, 1.0], {}, rm, reward_model_score=0.25) == [0.0, 0.5]
    with pytest.raises(ValueError, match="reward model's score"):
        shaped_rewards([0.0], {}, rm)


def test_reward_config_rejects_nothing_to_learn_from() -> None:
    from llm_trainer.core.errors import ConfigError

    with pytest.raises(ConfigError, match="nothing to learn from"):
        RewardConfig(env_weight=0.0)
    with pytest.raises(ConfigError, match="reward_model_path"):
        RewardConfig(reward_model_weight=1.0)
