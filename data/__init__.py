"""Data strategies: where tool-use training trajectories come from, besides env rollouts.

Three strategies, all producing :class:`~llm_trainer.core.trajectory.Trajectory` records in the
envs' own format (system prompt and tools as the env's ``info`` gives them, real tool outputs,
the env's metrics):

* :mod:`~llm_trainer.data.templates` (``source="template"``): at least 50 canonical
  question -> tool call -> answer examples per tool, paraphrased deterministically;
* :mod:`~llm_trainer.data.teacher` (``source="teacher"``): Toolformer-style
  self-supervision, keeping the tool calls that lower a model's loss on the answer;
* :mod:`~llm_trainer.data.toolbench` (``source="toolbench"``): ToolBench-format JSON
  files, with a synthetic fallback (``source="toolbench:synthetic"``).

:mod:`~llm_trainer.data.synthesis` (``source="synthetic:<generator>"``) runs them, the oracle
and any LLM backend from a task specification (:mod:`~llm_trainer.data.taskspec`), keeps what
the quality filters pass, augments it and stores everything with its filter decision and
lineage.

:func:`validate_trajectory` checks any trajectory against the env contract (every action parses,
tool calls reproduce their results, the answer is right), replaying it through the real env when
the task is known. Importing this package does not import torch.
"""

from llm_trainer.data.base import (
    MULTITOOL_ENV_ID,
    TOOL_ENV_IDS,
    TOOL_NAMES,
    DataFormatError,
    Example,
    answer_is_grounded,
    env_id_for_tools,
    replay_task,
    validate_trajectory,
)
from llm_trainer.data.synthesis import (
    FILTERS,
    Candidate,
    FilterDecision,
    SynthesisResult,
    Synthesized,
    answer_verified,
    deduplicate,
    length_bounds,
    paraphrase_question,
    parses,
    reexecutes,
    reorder_independent_calls,
    synthesize,
)
from llm_trainer.data.taskspec import (
    AugmentSpec,
    FilterSpec,
    GeneratorSpec,
    TaskEntry,
    TaskSpec,
    load_task_spec,
)
from llm_trainer.data.teacher import (
    CandidateScore,
    CausalLMScorer,
    PlainExample,
    TeacherConfig,
    TeacherResult,
    TeacherStats,
    plain_examples,
    propose_calls,
    teacher_filter,
    teacher_trajectories,
)
from llm_trainer.data.templates import (
    CANONICAL,
    TemplateConfig,
    canonical_examples,
    paraphrase,
    template_examples,
    template_tasks,
    template_trajectories,
)
from llm_trainer.data.toolbench import (
    EXAMPLE_PATH,
    RecordError,
    ToolBenchConfig,
    ToolBenchResult,
    convert_toolbench,
    load_toolbench,
    read_toolbench,
    synthetic_trajectories,
    to_toolbench,
)

__all__ = [
    "CANONICAL",
    "EXAMPLE_PATH",
    "FILTERS",
    "MULTITOOL_ENV_ID",
    "TOOL_ENV_IDS",
    "TOOL_NAMES",
    "AugmentSpec",
    "Candidate",
    "CandidateScore",
    "CausalLMScorer",
    "DataFormatError",
    "Example",
    "FilterDecision",
    "FilterSpec",
    "GeneratorSpec",
    "PlainExample",
    "RecordError",
    "SynthesisResult",
    "Synthesized",
    "TaskEntry",
    "TaskSpec",
    "TeacherConfig",
    "TeacherResult",
    "TeacherStats",
    "TemplateConfig",
    "ToolBenchConfig",
    "ToolBenchResult",
    "answer_is_grounded",
    "answer_verified",
    "canonical_examples",
    "convert_toolbench",
    "deduplicate",
    "env_id_for_tools",
    "length_bounds",
    "load_task_spec",
    "load_toolbench",
    "paraphrase",
    "paraphrase_question",
    "parses",
    "plain_examples",
    "propose_calls",
    "read_toolbench",
    "reexecutes",
    "reorder_independent_calls",
    "replay_task",
    "synthesize",
    "synthetic_trajectories",
    "teacher_filter",
    "teacher_trajectories",
    "template_examples",
    "template_tasks",
    "template_trajectories",
    "to_toolbench",
    "validate_trajectory",
]
