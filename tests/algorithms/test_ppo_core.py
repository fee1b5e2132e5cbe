"""PPO's math against hand-computed examples: episode packing, GAE over generated tokens, the
clipped losses, and the mask that keeps env tokens out of the gradient."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from llm_trainer.algorithms.config import RewardConfig  # noqa: E402
from llm_trainer.algorithms.ppo.core import gae, pack_episode, ppo_losses  # noqa: E402
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
        new, old, adv, values, old_values, returns, entropy, mask,
        clip_range=0.2, clip_range_value=0.2, vf_coef=0.5, ent_coef=0.01,
    )  # fmt: skip
    # token 0: ratio 2 -> clipped to 1.2 with A=1: max(-2, -1.2) = -1.2; token 1: ratio 1: +2
    assert float(out.policy) == pytest.approx((-1.2 + 2.0) / 2)
    # values: token 0 unclipped (0.5-1)^2=0.25, clipped 0.2 -> (0.2-1)^2=0.64 -> 0.64;
    # token 1: (1-0)^2 = 1 both ways
    assert float(out.value) == pytest.approx(0.5 * (0.64 + 1.0) / 2)
    assert float(out.entropy) == pytest.approx(2.0)
    assert float(out.clip_fraction) == pytest.approx(0.5)
    expected = (-1.2 + 2.0) / 2 + 0.5 * 0.5 * 0.82 - 0.01 * 2.0
    assert float(out.total) == pytest.approx(expected)


def test_env_tokens_never_receive_gradient() -> None:
    [row] = pack_episode(_episode(), [0.0, 1.0])
    mask = torch.tensor([row.action_mask], dtype=torch.float32)
    n = mask.shape[1]
    new = torch.randn(1, n, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    values = torch.zeros(1, n, requires_grad=True)
    entropy = torch.rand(1, n, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    out = ppo_losses(
        new, torch.zeros(1, n), torch.ones(1, n), values, torch.zeros(1, n), torch.ones(1, n),
        entropy, mask, clip_range=0.2, clip_range_value=0.0, vf_coef=0.5, ent_coef=0.1,
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
    whole = ppo_losses(new, old, adv, vals, vals, ret, ent, mask, **kw)  # type: ignore[arg-type]
    tokens = float(mask.sum())
    parts = [
        ppo_losses(*(x[s] for x in (new, old, adv, vals, vals, ret, ent, mask)), **kw,  # type: ignore[arg-type]
                   denominator=tokens)
        for s in (slice(0, 1), slice(1, 4))
    ]  # fmt: skip
    assert float(sum(p.total for p in parts)) == pytest.approx(float(whole.total), rel=1e-5)


def test_reward_shaping_terms() -> None:
    t = _episode()
    assert step_rewards(t, RewardConfig()) == [0.0, 1.0]
    shaped = RewardConfig(format_bonus=0.1, tool_bonus=0.2, execution_bonus=0.05, step_penalty=0.01)
    assert step_rewards(t, shaped) == pytest.approx([-0.01, 1.0 - 0.01 + 0.35])
    assert episode_return(t, shaped) == pytest.approx(1.33)
    # only the terms the episode earned are paid
    wrong_tool = {"format_ok": True, "tool_correct": False, "exec_ok": True}
    assert shaped_rewards([-0.1, 0.0], wrong_tool, shaped) == pytest.approx([-0.11, 0.14])
    # a reward model's score is weighted and added at the end, in place of the env reward too
    rm = RewardConfig(env_weight=0.0, reward_model_path="rm", reward_model_weight=2.0)
    assert shaped_rewards([0.0, 1.0], {}, rm, reward_model_score=0.25) == [0.0, 0.5]
    with pytest.raises(ValueError, match="reward model's score"):
        shaped_rewards([0.0], {}, rm)


def test_reward_config_rejects_nothing_to_learn_from() -> None:
    from llm_trainer.core.errors import ConfigError

    with pytest.raises(ConfigError, match="nothing to learn from"):
        RewardConfig(env_weight=0.0)
    with pytest.raises(ConfigError, match="reward_model_path"):
        RewardConfig(reward_model_weight=1.0)
