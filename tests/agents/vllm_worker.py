"""Run the vLLM backend in a process of its own and write what it generated as JSON.

``python tests/agents/vllm_worker.py MODEL_DIR OUT.json`` (used by ``test_vllm.py``), or
``python tests/agents/vllm_worker.py weight-sync MODEL_DIR TARGET_DIR ADAPTER_DIR OUT.json``
(used by ``test_vllm_weight_sync.py``, see :func:`weight_sync_main`). vLLM
engine code belongs in a ``__main__``-guarded script: vLLM may start worker processes, and the
test process is better kept free of its global state (threads, signal handlers, logging).

It writes:

* ``greedy``: greedy generations for chat prompts built from every env's first observation
  (with the env's system prompt and tools), with their prompt token ids, for the parity check;
* ``seeded``: two runs of seeded sampling (n=2) and one with another seed;
* ``episodes``: an LLMAgent on this backend playing one episode of every env in lockstep
  (``act_batch``), with any error it raised.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any


def chat_prompts() -> list[Any]:
    import llm_trainer
    from llm_trainer.agents.backends import ChatPrompt
    from llm_trainer.core.records import to_plain

    prompts = []
    from llm_trainer.envs.registration import single_agent_ids

    for env_id in sorted(single_agent_ids()):
        env = llm_trainer.make(env_id)
        for seed in range(4):
            observation, info = env.reset(seed=seed)
            messages = (
                {"role": "system", "content": info["system_prompt"]},
                {"role": "user", "content": observation},
            )
            prompts.append(ChatPrompt(messages, tuple(to_plain(info["tools"]))))
    return prompts


def play_lockstep(agent: Any) -> dict[str, Any]:
    import llm_trainer
    from llm_trainer.envs.registration import single_agent_ids

    env_ids = sorted(single_agent_ids())
    envs = [llm_trainer.make(env_id) for env_id in env_ids]
    state = {}
    for slot, env in enumerate(envs):
        agent.reset(seed=slot, slot=slot)
        state[slot] = env.reset(seed=slot)
    steps = dict.fromkeys(range(len(envs)), 0)
    try:
        while state:
            active = sorted(state)
            actions = agent.act_batch(
                [state[i][0] for i in active], [{**state[i][1], "slot": i} for i in active]
            )
            for i, action in zip(active, actions, strict=True):
                observation, _, terminated, truncated, info = envs[i].step(action)
                steps[i] += 1
                if terminated or truncated:
                    del state[i]
                else:
                    state[i] = (observation, info)
    except Exception as exc:  # reported to the test, which fails with it
        return {"error": f"{type(exc).__name__}: {exc}", "steps": steps}
    generations = {i: len(agent.episode_generations(i)) for i in range(len(envs))}
    return {"error": None, "steps": steps, "generations": generations}


def main(model_dir: str, out: str) -> None:
    from llm_trainer.agents.backends import SamplingConfig
    from llm_trainer.agents.backends.vllm_backend import VLLMBackend
    from llm_trainer.agents.llm_agent import LLMAgent, LLMAgentConfig

    start = time.perf_counter()
    options = {"dtype": "float32", "in_process": True, "enforce_eager": True, "kv_cache_gib": 0.5}
    backend = VLLMBackend(model_dir, **options)  # type: ignore[arg-type]
    started = time.perf_counter() - start
    prompts = chat_prompts()
    greedy = backend.chat(prompts, SamplingConfig(temperature=0.0, max_new_tokens=40))
    # All 16 prompts x 2 samples: more prompt tokens than one engine step takes, which is what
    # crashed seeded sampling on a CPU while chunked prefill was on.
    sampled = SamplingConfig(temperature=1.0, max_new_tokens=16, n=2, seed=11)
    seeded = [backend.chat(prompts, sampled) for _ in range(2)]
    seeded.append(
        backend.chat(prompts[:3], SamplingConfig(temperature=1.0, max_new_tokens=16, seed=12))
    )
    config = LLMAgentConfig(
        backend=f"vllm:{model_dir}",
        backend_options=options,
        sampling=SamplingConfig(temperature=1.0, max_new_tokens=32, seed=0),
    )
    episodes = play_lockstep(LLMAgent(config, backend=backend))
    backend.close()
    result = {
        "startup_s": started,
        "max_context": backend.max_context,
        "greedy": [asdict(samples[0]) for samples in greedy],
        "seeded": [[[asdict(g) for g in samples] for samples in run] for run in seeded],
        "episodes": episodes,
    }
    Path(out).write_text(json.dumps(result))


def weight_sync_main(model_dir: str, target_dir: str, adapter_dir: str, out: str) -> None:
    """One weight-sync engine on ``model_dir``; greedy generations on 8 env prompts before any
    sync, after loading the full model ``target_dir``, after syncing the peft (LoRA) model
    ``adapter_dir`` (merged weights) and after loading ``model_dir``'s weights back; the errors
    of bad loads; sync times in ms."""
    import torch
    from peft import AutoPeftModelForCausalLM
    from transformers import AutoModelForCausalLM

    from llm_trainer.agents.backends import SamplingConfig
    from llm_trainer.agents.backends.vllm_backend import VLLMBackend

    backend = VLLMBackend(  # a separate engine process: weights travel serialized
        model_dir,
        dtype="float32",
        enforce_eager=True,
        kv_cache_gib=0.5,
        weight_sync=True,
    )
    prompts = chat_prompts()[::2]  # 8 prompts, 2 per env
    params = SamplingConfig(temperature=0.0, max_new_tokens=24)

    def greedy() -> list[dict[str, Any]]:
        return [asdict(samples[0]) for samples in backend.chat(prompts, params)]

    def timed(sync: Any, *args: Any) -> float:
        start = time.perf_counter()
        sync(*args)
        return 1000 * (time.perf_counter() - start)

    result: dict[str, Any] = {"before": greedy(), "sync_ms": {}, "errors": {}}
    target = AutoModelForCausalLM.from_pretrained(target_dir)
    result["sync_ms"]["full"] = timed(backend.load_weights, target.named_parameters())
    result["target"] = greedy()
    peft_model = AutoPeftModelForCausalLM.from_pretrained(adapter_dir)
    result["sync_ms"]["lora"] = timed(backend.sync_weights_from, peft_model)
    result["lora"] = greedy()
    errors = result["errors"]
    for name, call in {
        "unknown_name": lambda: backend.load_weights([("model.no_such.weight", torch.zeros(2))]),
        "partial": lambda: backend.load_weights([("model.norm.weight", target.model.norm.weight)]),
        "save_model": lambda: backend.save_model(Path(out).with_suffix(".saved")),
    }.items():
        try:
            call()
            errors[name] = None
        except Exception as exc:  # the test checks the type and the message
            errors[name] = f"{type(exc).__name__}: {exc}"
    original = AutoModelForCausalLM.from_pretrained(model_dir)
    result["sync_ms"]["restore"] = timed(backend.sync_weights_from, original)
    result["restored"] = greedy()
    result["weight_version"] = backend.weight_version
    backend.close()
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    if sys.argv[1] == "weight-sync":
        weight_sync_main(*sys.argv[2:6])
    else:
        main(sys.argv[1], sys.argv[2])
