"""Function synthesis with hidden tests, run in the sandbox: the ``code`` family
(:mod:`.family`, templates in :mod:`.tasks`, the in-sandbox harness in :mod:`.harness`) and
``CodeEnv`` (``LLMTrainer/Code-v0``).

The sandbox (:mod:`llm_trainer.sandbox`) is made on the first answer that needs a run, not by
importing this package or making the env.
"""

from llm_trainer.envs.problems.code.env import CodeEnv, CodeEvaluation
from llm_trainer.envs.problems.code.family import (
    CodeConfig,
    CodeFamily,
    CodeReport,
    extract_code,
    parse_error,
)
from llm_trainer.envs.problems.code.tasks import TEMPLATES, FunctionTask, Template

__all__ = [
    "TEMPLATES",
    "CodeConfig",
    "CodeEnv",
    "CodeEvaluation",
    "CodeFamily",
    "CodeReport",
    "FunctionTask",
    "Template",
    "extract_code",
    "parse_error",
]
