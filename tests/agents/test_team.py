"""MALTTeam: three role policies answering as one, with a majority vote, saved and loaded."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

import llm_trainer
from llm_trainer.agents.factory import make_agent
from llm_trainer.agents.team import ROLES, MALTTeam, is_saved_team, majority
from llm_trainer.algorithms.rollout import play_episodes
from llm_trainer.core.errors import ConfigError
from llm_trainer.envs.multiagent.malt import SYSTEM_PROMPTS, MALTRound, render_view


class Role:
    """A scripted role that records what it saw; the refiner answers from a list by chain."""

    def __init__(self, name: str, answers: Sequence[str] = ("<answer>7</answer>",)) -> None:
        self.name = name
        self.answers = list(answers)
        self.calls: list[tuple[list[str], list[Mapping[str, Any]]]] = []
        self.resets: list[tuple[int | None, int | None]] = []

    def reset(self, *, seed: int | None = None, slot: int | None = None) -> None:
        self.resets.append((seed, slot))

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        return self.act_batch([observation], [info])[0]

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        self.calls.append((list(observations), list(infos)))
        if self.name == "refiner":
            return [self.answers[i % len(self.answers)] for i in range(len(observations))]
        return [f"{self.name} {i}" for i in range(len(observations))]


def _team(votes: int = 1, answers: Sequence[str] = ("<answer>7</answer>",)) -> MALTTeam:
    return MALTTeam(
        {"generator": Role("generator"), "verifier": Role("verifier"),
         "refiner": Role("refiner", answers)},
        votes=votes,
    )  # fmt: skip


def test_each_role_sees_what_malt_v0_shows_it_in_one_batched_call_per_role() -> None:
    team = _team(votes=2)
    team.reset(seed=1)
    actions = team.act_batch(["Q0", "Q1"], [{"turn": 0}, {"turn": 0}])
    assert actions == ["<answer>7</answer>"] * 2
    roles = team.policies()
    for role in ROLES:
        [(observations, infos)] = roles[role].calls  # type: ignore[attr-defined]
        assert len(observations) == 4  # 2 questions x 2 chains, one call
        assert all(i["system_prompt"] == SYSTEM_PROMPTS[role] for i in infos)
    [(refiner_views, _)] = roles["refiner"].calls  # type: ignore[attr-defined]
    assert refiner_views[3] == render_view("refiner", "Q1", MALTRound("generator 3", "verifier 3"))
    # the env's own observations render the same way
    env = llm_trainer.make_multiagent("LLMTrainer/MALT-v0")
    env.reset(seed=0)
    env.step("generator 0")
    env.step("verifier 0")
    question = env.unwrapped.task.statement
    assert env.observe("refiner") == render_view(
        "refiner", question, MALTRound("generator 0", "verifier 0")
    )


def test_majority_vote_over_the_refiners_answers_and_ties_go_to_the_earliest_chain() -> None:
    team = _team(
        votes=3, answers=("<answer>5</answer>", "<answer> 12</answer>", "<answer>12 </answer>")
    )
    assert team.act("Q", {"turn": 0}) == "<answer>12</answer>"
    assert [c.answer for c in team.last_chains()] == ["5", "12", "12"]
    tie = _team(votes=2, answers=("<answer>Ava</answer>", "<answer>Leo</answer>"))
    assert tie.act("Q", {"turn": 0}) == "<answer>Ava</answer>"
    unreadable = _team(votes=3, answers=("no answer",))
    assert unreadable.act("Q", {"turn": 0}) == "no answer"  # the first chain's text
    assert majority(["a", None, "b", "B"]) == 2


def test_seeds_depend_on_the_slot_seed_and_chain_and_later_turns_keep_the_question() -> None:
    team = _team(votes=2)
    team.reset(seed=5, slot=0)
    team.act_batch(["Q"], [{"turn": 0, "slot": 0}])
    first = list(team.policies()["generator"].resets)  # type: ignore[attr-defined]
    again = _team(votes=2)
    again.reset(seed=5, slot=0)
    again.act_batch(["Q"], [{"turn": 0, "slot": 0}])
    assert again.policies()["generator"].resets == first  # type: ignore[attr-defined]
    assert len({seed for seed, _ in first}) == 2  # each chain its own seed
    team.act_batch(["wrong, try again"], [{"turn": 1, "slot": 0}])
    [chain, _] = team.last_chains(0)
    assert chain.question.startswith("Q\n\n")
    assert chain.question.endswith("wrong, try again")


def test_a_team_plays_a_single_agent_env_through_the_episode_engine() -> None:
    env = llm_trainer.make("LLMTrainer/Reasoning-v0")
    env.reset(seed=0)
    answer = env.unwrapped.task.answer  # type: ignore[attr-defined]
    team = _team(answers=(f"<answer>{answer}</answer>",))
    [played] = play_episodes([env], team, [0])
    trajectory = played.trajectory
    assert trajectory.success
    assert trajectory.total_reward > 0


def test_bad_teams_are_refused_with_what_was_wrong(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="missing refiner"):
        MALTTeam({"generator": Role("g"), "verifier": Role("v")})
    with pytest.raises(ConfigError, match="votes"):
        _team(votes=0)
    with pytest.raises(ConfigError, match="cannot be saved"):
        _team().save(tmp_path / "team")
    assert not (tmp_path / "team").exists()
    with pytest.raises(ConfigError, match="not a saved MALT team"):
        MALTTeam.load(tmp_path)


def test_a_team_sharing_one_agent_saves_it_once_and_loads_as_a_saved_agent(
    tmp_path: Path,
) -> None:
    pytest.importorskip("transformers")
    from llm_trainer.agents.llm_agent import LLMAgent
    from llm_trainer.agents.tinylm import TinyLMConfig
    from llm_trainer.algorithms.config import ModelConfig
    from llm_trainer.algorithms.evaluation import model_agent
    from llm_trainer.algorithms.models import load_model

    model, tokenizer = load_model(
        ModelConfig(tiny=TinyLMConfig(n_layers=1, hidden_size=64, n_heads=2,
                                      intermediate_size=128)),
        tmp_path / "tiny",
        seed=0,
    )  # fmt: skip
    agent = model_agent(model, tokenizer, max_new_tokens=8, temperature=0.7)
    path = MALTTeam(dict.fromkeys(ROLES, agent), votes=3).save(tmp_path / "team")
    assert is_saved_team(path)
    assert sorted(p.name for p in path.iterdir()) == ["generator", "malt_team.json"]
    env = llm_trainer.make("LLMTrainer/Reasoning-v0")
    loaded = make_agent(str(path), env, seed=0)
    assert isinstance(loaded, MALTTeam)
    assert loaded.votes == 3
    assert len({id(p) for p in loaded.policies().values()}) == 1
    assert isinstance(loaded.roles["refiner"], LLMAgent)
    assert loaded.roles["refiner"].config.sampling.temperature == 0.7
    [a] = play_episodes([env], loaded, [3])
    [b] = play_episodes([env], MALTTeam.load(path), [3])
    assert (
        a.trajectory.steps[0].action == b.trajectory.steps[0].action
    )  # deterministic from the seed
    loaded.close()
