"""LLMAgent on the transformers backend with the tiny model: episodes of every env, lockstep
batches, token budgets, memory, agent-side tools, save/load, errors."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

import llm_trainer
from llm_trainer.agents import Policy
from llm_trainer.agents.backends import SamplingConfig
from llm_trainer.agents.backends.transformers_backend import TransformersBackend
from llm_trainer.agents.factory import make_agent
from llm_trainer.agents.llm_agent import LLMAgent, LLMAgentConfig, is_saved_agent
from llm_trainer.agents.memory import LongTermMemory
from llm_trainer.algorithms.rollout import run_episode
from llm_trainer.core.errors import BackendError, BatchActError, ConfigError
from tests.conftest import ENV_IDS


def agent_for(model_dir: Path, **config: Any) -> LLMAgent:
    sampling = config.pop("sampling", SamplingConfig(temperature=1.0, max_new_tokens=48, seed=0))
    return LLMAgent(
        LLMAgentConfig(backend=f"transformers:{model_dir}", sampling=sampling, **config)
    )


@pytest.fixture(scope="module")
def sharp_backend(sharp_model_dir: Path) -> TransformersBackend:
    return TransformersBackend.from_pretrained(sharp_model_dir)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_an_llm_agent_completes_episodes_of_every_env_whatever_it_generates(
    env_id: str, sharp_model_dir: Path, sharp_backend: TransformersBackend
) -> None:
    config = LLMAgentConfig(
        backend=f"transformers:{sharp_model_dir}",
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=40, seed=0),
    )
    agent = LLMAgent(config, backend=sharp_backend)
    assert isinstance(agent, Policy)
    env = llm_trainer.make(env_id)
    for seed in range(2):
        result = run_episode(env, agent, seed=seed)
        assert result.error is None, result.error
        assert result.steps == len(agent.episode_generations()) >= 1
        assert agent.last_usage is not None
        assert agent.last_usage.completion_tokens > 0


def lockstep(agent: LLMAgent, env_id: str, seeds: list[int]) -> dict[int, list[str]]:
    """Play one episode per seed, all envs in lockstep through act_batch; actions by seed."""
    envs = [llm_trainer.make(env_id) for _ in seeds]
    actions: dict[int, list[str]] = {s: [] for s in seeds}
    state = {}
    for slot, (env, seed) in enumerate(zip(envs, seeds, strict=True)):
        agent.reset(seed=seed, slot=slot)
        state[slot] = env.reset(seed=seed)
    while state:
        active = sorted(state)
        batch = agent.act_batch(
            [state[i][0] for i in active], [{**state[i][1], "slot": i} for i in active]
        )
        for i, action in zip(active, batch, strict=True):
            assert agent.last_generation(i) is not None
            assert agent.last_generation(i).text == action  # type: ignore[union-attr]
            actions[seeds[i]].append(action)
            observation, _, terminated, truncated, info = envs[i].step(action)
            if terminated or truncated:
                roles = [m["role"] for m in agent.messages(i)]
                assert roles[:2] == ["system", "user"]
                assert roles[2] == "assistant"
                assert len(agent.episode_prompts(i)) == len(agent.episode_generations(i))
                del state[i]
            else:
                state[i] = (observation, info)
    return actions


def test_lockstep_batches_act_like_separate_episodes(
    sharp_model_dir: Path, sharp_backend: TransformersBackend
) -> None:
    config = LLMAgentConfig(
        backend=f"transformers:{sharp_model_dir}",
        sampling=SamplingConfig(temperature=0.0, max_new_tokens=24),
    )
    seeds = [0, 1, 2]
    batched = lockstep(LLMAgent(config, backend=sharp_backend), "LLMTrainer/Weather-v0", seeds)
    for seed in seeds:  # greedy: each slot's episode is what the agent does alone
        alone = lockstep(LLMAgent(config, backend=sharp_backend), "LLMTrainer/Weather-v0", [seed])
        assert alone[seed] == batched[seed]


def test_sampled_episodes_repeat_with_the_same_seeds(
    sharp_model_dir: Path, sharp_backend: TransformersBackend
) -> None:
    config = LLMAgentConfig(
        backend=f"transformers:{sharp_model_dir}",
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=24, seed=5),
    )
    first = lockstep(LLMAgent(config, backend=sharp_backend), "LLMTrainer/Calculator-v0", [7, 8])
    again = lockstep(LLMAgent(config, backend=sharp_backend), "LLMTrainer/Calculator-v0", [7, 8])
    assert first == again
    assert first[7] != first[8]


def test_the_token_budget_is_respected_on_long_episodes(
    sharp_model_dir: Path, sharp_backend: TransformersBackend
) -> None:
    budget = 420
    config = LLMAgentConfig(
        backend=f"transformers:{sharp_model_dir}",
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=32, seed=1),
        max_prompt_tokens=budget,
    )
    agent = LLMAgent(config, backend=sharp_backend)
    env = llm_trainer.make("LLMTrainer/MultiTool-v0")  # 10 steps, long tool results
    for seed in range(1):
        result = run_episode(env, agent, seed=seed)
        assert result.error is None
        assert result.steps == 10
        lengths = [len(g.prompt_token_ids) for g in agent.episode_generations()]
        assert max(lengths) <= budget
        assert len(agent.messages()) > len(agent.episode_prompts()[-1].messages)  # trimmed
        # The system prompt and the task are always there.
        assert [m["role"] for m in agent.episode_prompts()[-1].messages[:2]] == ["system", "user"]


def test_config_errors_name_the_field(tiny_model_dir: Path) -> None:
    spec = f"transformers:{tiny_model_dir}"
    with pytest.raises(ConfigError, match=r"sampling\.n must be 1"):
        LLMAgentConfig(backend=spec, sampling=SamplingConfig(n=2))
    with pytest.raises(ConfigError, match="use_memory_examples needs memory_path"):
        LLMAgentConfig(backend=spec, use_memory_examples=True)
    with pytest.raises(ConfigError, match=r"unknown LLMAgentConfig field\(s\) \['n_example'\]"):
        LLMAgentConfig.from_dict({"backend": spec, "n_example": 3})
    agent = LLMAgent(LLMAgentConfig(backend=spec, max_prompt_tokens=1000))
    env = llm_trainer.make("LLMTrainer/Calculator-v0")
    with pytest.raises(ConfigError, match=r"max_prompt_tokens.*context of 1024"):
        agent.act(*env.reset(seed=0))


def test_finished_episodes_are_remembered_and_become_examples(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    memory_path = tmp_path / "memory.sqlite"
    agent = agent_for(
        tiny_model_dir,
        memory_path=str(memory_path),
        use_memory_examples=True,
        sampling=SamplingConfig(temperature=0.0, max_new_tokens=8),
    )
    env = llm_trainer.make("LLMTrainer/Calculator-v0")
    observation, info = env.reset(seed=0)
    agent.reset(seed=0)
    action = agent.act(observation, info)
    agent.end_episode({**info, "success": True}, reward=1.0, env_id="LLMTrainer/Calculator-v0")
    [record] = LongTermMemory(memory_path).records()
    assert (record.task, record.success, record.outcome) == (observation, True, action)
    # The next episode on a similar task gets the success as an example in its system prompt.
    agent.reset(seed=1)
    agent.act(observation, info)
    system = agent.messages()[0]["content"]
    assert "Solved examples:" in system
    assert f"Task: {observation}" in system
    # Off by default.
    plain = agent_for(tiny_model_dir, memory_path=str(memory_path))
    plain.act(observation, info)
    assert "Solved examples:" not in plain.messages()[0]["content"]


def overfit(model_dir: Path, prompt_ids: list[int], completion_ids: list[int]) -> None:
    """Train the model in ``model_dir`` until greedy decoding of ``prompt_ids`` gives
    ``completion_ids`` (a real, tiny fine-tune: the agent then really emits that text)."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir)
    ids = torch.tensor([prompt_ids + completion_ids])
    labels = ids.clone()
    labels[0, : len(prompt_ids)] = -100
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model trains faster on one thread (see the backend docs)
    try:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(300):
            loss = model(input_ids=ids, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if loss.item() < 0.01:
                break
    finally:
        torch.set_num_threads(threads)
    model.save_pretrained(model_dir)


def test_agent_side_tools_run_without_an_env_step(tmp_path: Path) -> None:
    from llm_trainer.agents.tinylm import TinyLMConfig, create_tiny_model

    model_dir = create_tiny_model(
        tmp_path / "model",
        TinyLMConfig(n_layers=1, hidden_size=64, n_heads=2, intermediate_size=128),
    )
    memory = LongTermMemory(tmp_path / "memory.sqlite")
    memory.add("Compute 6 * 7.", success=True, outcome="<answer>42</answer>")
    call = '<tool_call>{"name": "memory_search", "arguments": {"query": "6 * 7"}}</tool_call>'
    config = LLMAgentConfig(
        backend=f"transformers:{model_dir}",
        sampling=SamplingConfig(temperature=0.0, max_new_tokens=len(call) + 4),
        memory_path=str(tmp_path / "memory.sqlite"),
        memory_tool=True,
        max_agent_tool_calls=2,
    )
    env = llm_trainer.make("LLMTrainer/Calculator-v0")
    observation, info = env.reset(seed=0)
    # Teach the model to call the agent's tool on this exact prompt.
    probe = LLMAgent(config)
    probe.act(observation, info)
    prompt_ids = list(probe.episode_generations()[0].prompt_token_ids)
    tokenizer = probe.backend.tokenizer
    overfit(model_dir, prompt_ids, tokenizer.encode(call, add_special_tokens=False))

    agent = LLMAgent(config)
    action = agent.act(observation, info)
    generations = agent.episode_generations()
    assert generations[0].text == call
    assert generations[0].finish_reason == "stop"
    assert 2 <= len(generations) <= 3  # the tool ran, then the model went on (at most 2 calls)
    assert action == generations[-1].text
    tool_messages = [m for m in agent.messages() if m["role"] == "tool"]
    assert json.loads(tool_messages[0]["content"])[0]["outcome"] == "<answer>42</answer>"
    assert "memory_search" in [t["function"]["name"] for t in agent.tools_for()]
    assert info["turn"] == 0  # no env step was taken for the agent's tool


def test_save_and_load_round_trip_config_memory_and_model(
    tmp_path: Path, sharp_model_dir: Path
) -> None:
    memory_path = tmp_path / "work" / "memory.sqlite"
    agent = agent_for(
        sharp_model_dir,
        memory_path=str(memory_path),
        sampling=SamplingConfig(temperature=0.0, max_new_tokens=16),
        system_prompt="You are terse.",
    )
    env = llm_trainer.make("LLMTrainer/Search-v0")
    observation, info = env.reset(seed=4)
    agent.reset(seed=4)
    action = agent.act(observation, info)
    agent.end_episode({**info, "success": True})
    saved = agent.save(tmp_path / "agent")
    assert is_saved_agent(saved)
    assert (saved / "model" / "config.json").is_file()

    loaded = LLMAgent.load(saved)
    assert loaded.config.system_prompt == "You are terse."
    assert loaded.config.sampling == agent.config.sampling
    assert loaded.config.backend == f"transformers:{saved / 'model'}"
    assert loaded.memory is not None
    assert [r.task for r in loaded.memory.records()] == [observation]
    loaded.reset(seed=4)
    assert loaded.act(observation, info) == action
    assert loaded.episode_generations()[0] == agent.episode_generations()[0]

    # Saving again replaces the directory atomically; make_agent loads a saved agent by path.
    loaded.save(saved)
    assert sorted(p.name for p in saved.parent.iterdir()) == ["agent", "work"]
    again = make_agent(str(saved), env)
    assert isinstance(again, LLMAgent)
    assert again.config == loaded.config
    with pytest.raises(ConfigError, match="is not a saved agent"):
        LLMAgent.load(tmp_path / "work")


class ScriptedChatServer:
    """A real HTTP server on loopback speaking the chat-completions protocol with scripted
    replies, for the transport behaviours a model server cannot be made to show on demand
    (status codes, retries). Replies ``<answer>ok</answer>``; a request whose last message
    contains ``FAIL`` gets HTTP 400; the first ``flaky`` requests get HTTP 503."""

    def __init__(self, flaky: int = 0) -> None:
        self.requests: list[dict[str, Any]] = []
        self.flaky = flaky
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"auth": self.headers.get("Authorization"), **body})
                if len(server.requests) <= server.flaky:
                    self._reply(503, {"error": {"message": "overloaded"}})
                elif "FAIL" in str(body["messages"][-1]["content"]):
                    self._reply(400, {"error": {"message": "bad prompt"}})
                else:
                    message = {"role": "assistant", "content": "<answer>ok"}
                    choice = {"index": 0, "message": message, "finish_reason": "stop"}
                    self._reply(200, {"choices": [choice]})

            def do_GET(self) -> None:
                self._reply(404, {"error": {"message": "no such route"}})

            def _reply(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def scripted() -> Iterator[ScriptedChatServer]:
    server = ScriptedChatServer(flaky=2)
    yield server
    server.httpd.shutdown()


def test_http_backend_retries_then_batches_fail_per_slot(
    scripted: ScriptedChatServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SCRIPTED_KEY", "sk-test-123")
    config = LLMAgentConfig(
        backend=f"openai:{scripted.url}#scripted",
        backend_options={"api_key_env": "SCRIPTED_KEY", "backoff_s": 0.01, "max_concurrency": 1},
    )
    agent = LLMAgent(config)
    env = llm_trainer.make("LLMTrainer/Calculator-v0")
    observation, info = env.reset(seed=0)
    # Two 503s are retried; the closing tag that the server's stop handling removed is put back.
    assert agent.act(observation, info) == "<answer>ok</answer>"
    assert len(scripted.requests) == 3
    assert scripted.requests[-1]["auth"] == "Bearer sk-test-123"
    assert scripted.requests[-1]["tools"][0]["function"]["name"] == "calculator"
    assert "sk-test-123" not in repr(agent.backend)
    # One failing prompt in a batch: the others still get their actions.
    with pytest.raises(BatchActError, match=r"slot\(s\) \[1\].*HTTP 400: bad prompt") as caught:
        agent.act_batch(["task A", "FAIL here", "task C"], [info, info, info])
    assert caught.value.actions == ["<answer>ok</answer>", None, "<answer>ok</answer>"]
    assert set(caught.value.errors) == {1}
    # The failed slot is as before the call (a retry starts clean); its siblings went on.
    assert agent.messages(1) == []
    assert agent.episode_generations(1) == []
    assert [m["role"] for m in agent.messages(2)][-2:] == ["user", "assistant"]
    assert agent.act("task B", {**info, "slot": 1}) == "<answer>ok</answer>"
    with pytest.raises(BackendError, match=r"HTTP 400: bad prompt"):
        agent.act("FAIL again", info)


def test_http_errors_name_the_server_and_status() -> None:
    unreachable = LLMAgent(
        LLMAgentConfig(
            backend="openai:http://127.0.0.1:9/v1#m",
            backend_options={"max_retries": 1, "backoff_s": 0.01, "timeout_s": 2.0},
        )
    )
    env = llm_trainer.make("LLMTrainer/Calculator-v0")
    with pytest.raises(BackendError, match=r"http://127.0.0.1:9/v1.*after 2 attempt\(s\)"):
        unreachable.act(*env.reset(seed=0))


def test_an_agent_reads_related_solved_problems_from_the_knowledge_graph(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    from llm_trainer.agents.baselines import OracleAgent
    from llm_trainer.algorithms.rollout import EpisodeTask, play_episodes
    from llm_trainer.core.knowledge import Agent, KnowledgeGraph
    from llm_trainer.core.knowledge.recording import add_episode

    graph = KnowledgeGraph(tmp_path / "kg.sqlite")
    oracle = graph.add(Agent("oracle"))
    for env_id, seed in (("LLMTrainer/Calculator-v0", 5), ("LLMTrainer/Weather-v0", 0)):
        env = llm_trainer.make(env_id)
        [played] = play_episodes([env], OracleAgent(env), [EpisodeTask(seed)])
        with graph.batch() as batch:
            add_episode(batch, played.trajectory, agent=oracle, run="oracle runs")
    agent = agent_for(
        tiny_model_dir,
        knowledge_path=str(graph.path),
        use_knowledge_examples=True,
        sampling=SamplingConfig(temperature=0.0, max_new_tokens=4),
    )
    env = llm_trainer.make("LLMTrainer/Calculator-v0")
    observation, info = env.reset(seed=7)
    assert observation == "Compute 89 - 77."
    agent.reset(seed=7)
    agent.act(observation, info)
    [prompt] = agent.episode_prompts()
    assert prompt.messages[0] == {
        "role": "system",
        "content": info["system_prompt"] + "\n\nSolved examples:\nTask: Compute 7 * 81.\nSolution: "
        '<tool_call>{"name": "calculator", "arguments": {"expression": "7 * 81"}}</tool_call>'
        " -> 567 -> <answer>567</answer>",
    }
    assert prompt.messages[1] == {"role": "user", "content": observation}
    with pytest.raises(ConfigError, match="use_knowledge_examples needs knowledge_path"):
        LLMAgentConfig(backend=f"transformers:{tiny_model_dir}", use_knowledge_examples=True)
    saved = LLMAgent.load(agent.save(tmp_path / "agent"))  # the graph stays where it is
    assert saved.config.knowledge_path == str(graph.path.resolve())
