"""Held-out evaluation of an in-memory model, and the policy that drives it.

:class:`ModelPolicy` turns a ``transformers`` causal LM and its tokenizer into a batched policy
(one ``generate`` call per lockstep step, prompts built with the tokenizer's chat template, the
env's tools included). It is what trainers use to evaluate the model they are training and to
sample from it; it records, per env slot, the exact prompt and completion token ids and the
log-probs of the sampled tokens (:meth:`ModelPolicy.last_generation`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from llm_trainer.algorithms.rollout import collect
from llm_trainer.core.records import METRIC_KEYS, to_plain
from llm_trainer.core.trajectory import Trajectory

STOP_STRINGS = ("</tool_call>", "</answer>")


@dataclass(frozen=True, slots=True)
class SampledCompletion:
    """One generated completion with its tokens (the token-faithful record of an action)."""

    text: str
    prompt_token_ids: tuple[int, ...]
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]
    finish_reason: str


class ModelPolicy:
    """A batched policy over an in-memory causal LM (greedy when ``temperature`` is 0).

    Args:
        model: A ``transformers`` causal LM (possibly a peft model).
        tokenizer: Its tokenizer, with a chat template.
        system_prompt: Replaces the env's system prompt (``None`` keeps it).
        max_new_tokens: Generation budget per action.
        temperature: 0 for greedy decoding.
        top_p: Nucleus sampling mass.
        seed: Seeds sampling (a private torch generator; the global RNG is untouched).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        system_prompt: str | None = None,
        max_new_tokens: int = 96,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
    ) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.system_prompt = system_prompt
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self._seed = seed
        self._calls = 0
        self._conversations: dict[int, list[dict[str, str]]] = {}
        self._last: dict[int, SampledCompletion] = {}
        self._stop_ids = self._single_token_stops()

    def _single_token_stops(self) -> list[int] | None:
        """EOS plus the closing tags when each is one token (as in the tiny tokenizer)."""
        ids = [self.tokenizer.eos_token_id]
        for stop in STOP_STRINGS:
            encoded = self.tokenizer.encode(stop, add_special_tokens=False)
            if len(encoded) != 1:
                return None  # fall back to stop strings
            ids.append(encoded[0])
        return ids

    def reset(self, *, seed: int | None = None, slot: int = 0) -> None:
        self._conversations[slot] = []
        self._last.pop(slot, None)

    def act(self, observation: str, info: Mapping[str, Any]) -> str:
        return self.act_batch([observation], [{**info, "slot": info.get("slot", 0)}])[0]

    def last_generation(self, slot: int) -> SampledCompletion | None:
        return self._last.get(slot)

    def act_batch(
        self, observations: Sequence[str], infos: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        prompts = []
        slots = []
        for i, (observation, info) in enumerate(zip(observations, infos, strict=True)):
            slot = int(info.get("slot", i))
            conversation = self._conversations.setdefault(slot, [])
            if not conversation:
                system = (
                    self.system_prompt
                    if self.system_prompt is not None
                    else str(info.get("system_prompt", ""))
                )
                conversation += [
                    {"role": "system", "content": system},
                    {"role": "user", "content": observation},
                ]
            else:
                conversation.append({"role": str(info.get("role", "user")), "content": observation})
            prompts.append(
                self.tokenizer.apply_chat_template(
                    conversation,
                    tools=to_plain(info.get("tools")) or None,
                    add_generation_prompt=True,
                    tokenize=False,
                )
            )
            slots.append(slot)
        completions = self.generate(prompts)
        for slot, completion in zip(slots, completions, strict=True):
            self._conversations[slot].append({"role": "assistant", "content": completion.text})
            self._last[slot] = completion
        return [c.text for c in completions]

    def generate(self, prompts: Sequence[str]) -> list[SampledCompletion]:
        """One batched generation (left padding); returns text, tokens and log-probs."""
        import torch

        tok = self.tokenizer
        enc = tok(
            list(prompts),
            return_tensors="pt",
            padding=True,
            add_special_tokens=False,
            padding_side="left",
        )
        device = next(self.model.parameters()).device
        enc = {k: v.to(device) for k, v in enc.items()}
        sampling = self.temperature > 0
        kwargs: dict[str, Any] = {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": sampling,
            "pad_token_id": tok.pad_token_id,
            "return_dict_in_generate": True,
            "output_logits": True,
        }
        if sampling:
            kwargs.update(temperature=self.temperature, top_p=self.top_p, top_k=0)
        if self._stop_ids is not None:
            kwargs["eos_token_id"] = self._stop_ids
        else:
            kwargs.update(
                eos_token_id=tok.eos_token_id, stop_strings=list(STOP_STRINGS), tokenizer=tok
            )
        self._calls += 1
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(self._seed * 1_000_003 + self._calls)
            out = self.model.generate(**enc, **kwargs)
        prompt_len = enc["input_ids"].shape[1]
        sequences = out.sequences[:, prompt_len:]
        # log-probs of the sampled tokens under the model's raw (unprocessed) distribution
        logits = torch.stack(out.logits, dim=1).float()
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, sequences.unsqueeze(-1))[..., 0]
        stop_ids = set(self._stop_ids or [tok.eos_token_id])
        results = []
        for row in range(sequences.shape[0]):
            ids = sequences[row].tolist()
            n = len(ids)
            finish = "length"
            for j, token in enumerate(ids):
                if token in stop_ids or token == tok.pad_token_id:
                    n = j + 1 if token != tok.pad_token_id else j
                    finish = "stop" if token != tok.eos_token_id else "eos"
                    break
            kept = ids[:n]
            text = tok.decode(kept, skip_special_tokens=True)
            prompt_ids = enc["input_ids"][row][enc["attention_mask"][row].bool()].tolist()
            results.append(
                SampledCompletion(
                    text, tuple(prompt_ids), tuple(kept), tuple(logprobs[row, :n].tolist()), finish
                )
            )
        return results


def evaluate_model(
    model: Any,
    tokenizer: Any,
    env_id: str,
    seeds: Sequence[int],
    *,
    difficulty: int | None = None,
    system_prompt: str | None = None,
    max_new_tokens: int = 96,
    batch_size: int = 200,
) -> tuple[dict[str, float], list[Trajectory]]:
    """Greedy held-out evaluation: the env's metrics averaged over one episode per seed."""
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        trajectories = collect(
            env_id,
            lambda envs: ModelPolicy(
                model, tokenizer, system_prompt=system_prompt, max_new_tokens=max_new_tokens
            ),
            seeds,
            num_envs=batch_size,
            difficulty=difficulty,
            source="policy:model",
        )
    finally:
        if was_training:
            model.train()
    return summarize_trajectories(trajectories), trajectories


def summarize_trajectories(trajectories: Sequence[Trajectory]) -> dict[str, float]:
    """Mean env metrics, reward and steps, plus the issue's metric names."""
    n = max(1, len(trajectories))
    rates = {k: sum(t.metrics[k] for t in trajectories) / n for k in METRIC_KEYS}
    return {
        "success": rates["success"],
        "tool_accuracy": rates["tool_correct"],
        "format_correctness": rates["format_ok"],
        "execution_success": rates["exec_ok"],
        "answer_correctness": rates["answer_correct"],
        "mean_reward": sum(t.total_reward for t in trajectories) / n,
        "mean_steps": sum(len(t.steps) for t in trajectories) / n,
        "errors": float(sum(t.error is not None for t in trajectories)),
    }
