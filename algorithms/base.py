"""The algorithm plug-in API: a config dataclass, ``run(context) -> result``, and a registry.

An algorithm is a class with a ``name``, a ``config_class`` (a frozen dataclass: its settings,
the YAML section of the same name) and one method, :meth:`Algorithm.run`, which gets an
:class:`AlgorithmContext` and returns an :class:`AlgorithmResult`. The built-ins (``sft``,
``dpo``, ``ppo``, ``grpo``, ``reward_model``, ``malt``, ``selfplay``, ``nat``,
``search_distill``, ``evolution``, ``expert_iteration``) are found exactly as a user's
algorithm is (see :mod:`llm_trainer.algorithms.registry`), and
:func:`~llm_trainer.algorithms.experiment.run_experiment` never names one.

A complete algorithm (rejection sampling from a trained policy, kept when the env verifies
it; ``examples/best_of_n.py`` is a fuller one, written outside the package, and
:mod:`llm_trainer.algorithms.expert_iteration` a learning one)::

    @dataclass(frozen=True)
    class BestOfNConfig:
        samples: int = 4
        \"\"\"Episodes sampled per task.\"\"\"

    class BestOfN(Algorithm):
        \"\"\"Keep the env-verified successes among n samples per task.\"\"\"

        name = "best_of_n"
        config_class = BestOfNConfig
        produces_policy = False

        def run(self, context: AlgorithmContext) -> AlgorithmResult:
            model, tokenizer = context.load_model()
            agent = context.agent(model, tokenizer, temperature=1.0)
            seeds = [s for s in range(100) for _ in range(self.config.samples)]
            episodes = context.collect(agent, "LLMTrainer/Calculator-v0", seeds)
            wins = [t for t in episodes if t.success]
            version = context.store_dataset("best_of_n", wins)
            return AlgorithmResult(metrics={"kept": len(wins)}, dataset_version=version)

The context gives an algorithm what every algorithm needs and nothing that couples it to
another: the run directory, the seed, the experiment's shared sections (``model``, ``data``,
``train``, ``reward``, ``eval``), a model loader, an env factory, the one episode engine
(:meth:`AlgorithmContext.collect`), the trajectory store, the knowledge graph
(:attr:`AlgorithmContext.knowledge`), held-out evaluation and a logger.

**Several processes** (``torchrun``/``accelerate launch`` of ``llm-trainer train``): every
process runs :meth:`Algorithm.run` with its own context, and TRL trains data-parallel. Only an
algorithm whose ``multi_process`` is true is run so. The context then keeps the run one run:
:meth:`AlgorithmContext.training_data` and :meth:`AlgorithmContext.collect` run on the main
process and hand every process the same trajectories; only the main process writes the
trajectory store, the knowledge graph (``None`` in the others) and the run directory (the
others get a :meth:`~llm_trainer.core.rundir.RunDir.follow` view of it). ``context.processes``
says which process this is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from llm_trainer.core.errors import ConfigError, UserError
from llm_trainer.core.processes import Processes

if TYPE_CHECKING:
    import gymnasium as gym

    from llm_trainer.agents.policy import Policy
    from llm_trainer.algorithms.config import ExperimentConfig
    from llm_trainer.core.knowledge import KnowledgeGraph
    from llm_trainer.core.rundir import RunDir
    from llm_trainer.core.store import DatasetInfo, Provenance, TrajectoryStore
    from llm_trainer.core.trajectory import Trajectory
    from llm_trainer.distributed import Executor

Log = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class NoSettings:
    """The settings of an algorithm that has none of its own."""


@dataclass(frozen=True, slots=True)
class TrainResult:
    """What a training loop did (every trainer returns one).

    Attributes:
        steps: Optimizer steps (PPO: iterations) done.
        losses: ``(step, loss)`` at every logging step.
        seconds: Wall time of training, held-out evaluations during it included.
        tokens_per_second: Training tokens per second, evaluations excluded.
        resumed_from: The checkpoint the run continued, if any.
    """

    steps: int
    losses: tuple[tuple[int, float], ...]
    seconds: float
    tokens_per_second: float
    resumed_from: str | None


@dataclass(frozen=True)
class AlgorithmResult:
    """What :meth:`Algorithm.run` returns.

    Attributes:
        model: The trained policy (a causal LM); ``run_experiment`` evaluates it on the
            held-out episodes and saves it as ``final_model``. ``None`` when the algorithm
            makes no policy (``produces_policy = False``).
        tokenizer: Its tokenizer (default: the one :meth:`AlgorithmContext.load_model` gave).
        training: The training loop's result, when there was one.
        metrics: Anything else for the summary (e.g. ``ranking_accuracy_after``).
        dataset_version: The trajectory-store version of the data trained on.
        artifacts: Files or folders the run wrote, by name (e.g. ``{"reward_model": path}``).
        task_template: How the trained policy must be prompted: each task put through it
            (``{task}`` stands for the task; see ``LLMAgentConfig.task_template``), e.g. NAT's
            positive instruction. ``run_experiment`` evaluates the policy with it and makes
            ``final_model`` a saved agent that carries it. ``None``: the task as it is.
    """

    model: Any = None
    tokenizer: Any = None
    training: TrainResult | None = None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    dataset_version: str | None = None
    artifacts: Mapping[str, str] = field(default_factory=dict)
    task_template: str | None = None


class Algorithm:
    """Base class of every algorithm: subclass it, set the class attributes, write :meth:`run`.

    Class attributes:
        name: The registered name, and the key of the settings section in experiment YAML.
        config_class: A dataclass of the algorithm's own settings (default: none).
        produces_policy: Whether :meth:`run` returns a trained policy to evaluate and save.
        sections: The experiment's shared sections it reads besides ``model``, ``train`` and
            ``eval`` (``"data"``, ``"reward"``, ``"ray"``): setting another one to a non-default
            value is an error, since it would do nothing.
        multi_process: Whether it trains in several processes under a launcher (``torchrun``,
            ``accelerate launch``: every process runs :meth:`run`, the trainer is data-parallel
            and the work that must happen once goes through the context; see the module
            docstring). ``False``: a run with ``WORLD_SIZE`` > 1 is refused.
        data_phases: Whether it draws its batches by ``data.phases`` (:meth:`AlgorithmContext.
            phased_data`); an experiment that sets them for another algorithm is refused.
    """

    name: ClassVar[str] = ""
    config_class: ClassVar[type[Any]] = NoSettings
    produces_policy: ClassVar[bool] = True
    sections: ClassVar[tuple[str, ...]] = ()
    multi_process: ClassVar[bool] = False
    data_phases: ClassVar[bool] = False

    def __init__(self, config: Any = None) -> None:
        if config is None:
            config = self.config_class()
        if not isinstance(config, self.config_class):
            raise ConfigError(
                f"algorithm {self.name!r} takes a {self.config_class.__name__}, "
                f"got {type(config).__name__}"
            )
        self.config = config

    def run(self, context: AlgorithmContext) -> AlgorithmResult:
        """Do the work (train, search, generate data...) and return what came out."""
        raise NotImplementedError(f"{type(self).__name__}.run")

    @classmethod
    def describe(cls) -> str:
        """The first paragraph of the class docstring, on one line."""
        return " ".join((cls.__doc__ or "").strip().split("\n\n", 1)[0].split())


def check_algorithm_class(cls: Any, where: str) -> type[Algorithm]:
    """``cls`` if it is a usable algorithm class, else a :class:`ConfigError` saying what it
    lacks (``where`` names the reference it came from)."""
    if not isinstance(cls, type):
        raise ConfigError(f"{where} is a {type(cls).__name__}, not an algorithm class")
    missing = [
        attr
        for attr in ("name", "config_class", "run")
        if not getattr(cls, attr, None) and attr != "config_class"
    ]
    if missing:
        raise ConfigError(
            f"{where} ({cls.__name__}) is not an algorithm: it lacks {missing} (subclass "
            "llm_trainer.algorithms.base.Algorithm and set name, config_class and run)"
        )
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise ConfigError(
            f"{where}: algorithm name {name!r} must be an identifier "
            "(it is also the YAML section of its settings)"
        )
    config_class = getattr(cls, "config_class", NoSettings)
    if not dataclasses.is_dataclass(config_class):
        raise ConfigError(f"{where}: config_class {config_class!r} is not a dataclass")
    return cls


def merged(model: Any) -> Any:
    """``model`` with LoRA adapters merged into its weights (a plain model that any backend
    loads without peft); other models as they are."""
    return model.merge_and_unload() if hasattr(model, "merge_and_unload") else model


class AlgorithmContext:
    """What :meth:`Algorithm.run` gets: the run, its settings, and shared services.

    Args:
        experiment: The experiment config (shared sections and the algorithm's settings).
        run: The run directory.
        log: Where progress lines go.
        processes: This process's place in a multi-process run (default: the only process).
    """

    def __init__(
        self,
        experiment: ExperimentConfig,
        run: RunDir,
        *,
        log: Log = print,
        processes: Processes | None = None,
    ) -> None:
        self.experiment = experiment
        self.run = run
        self.log = log
        self.processes = processes if processes is not None else Processes()
        """Which process of the run this is (``is_main``, ``rank``, ``world_size``)."""
        self.seed = experiment.seed
        self.resume = experiment.resume
        self._store: TrajectoryStore | None = None
        self._tokenizer: Any = None
        self._knowledge: KnowledgeGraph | None = None
        self._starting_model: str | None = None
        self._stored: list[str] = []
        self._executor: Executor | None = None
        self._played_here: str | None = None

    # -- shared sections --------------------------------------------------------------------

    @property
    def system_prompt(self) -> str | None:
        """The agent's system prompt (``model.system_prompt``: ``None`` keeps the env's)."""
        return self.experiment.model.system_prompt

    @property
    def model_dir(self) -> Path:
        """The directory the starting model is loaded from (the tiny model is built into the
        run directory)."""
        model = self.experiment.model
        return self.run.path / "init_model" if model.path == "tiny" else Path(model.path)

    # -- services ----------------------------------------------------------------------------

    def load_model(self) -> tuple[Any, Any]:
        """The starting model and its tokenizer, on ``train.device``.

        The tiny model is built from scratch into ``run/init_model`` (seeded with the
        experiment's seed); any other ``model.path`` is a local Hugging Face directory.
        """
        from llm_trainer.algorithms.models import load_model

        model, tokenizer = load_model(
            self.experiment.model, self.model_dir, seed=self.seed, device=self.device
        )
        self._tokenizer = tokenizer
        return model, tokenizer

    @property
    def device(self) -> str:
        """Where models train: ``train.device`` with ``auto`` resolved (``cuda`` when there
        is a GPU, else ``cpu``)."""
        from llm_trainer.algorithms.models import resolve_device

        return resolve_device(self.experiment.train.device)

    def make_env(self, env_id: str, **kwargs: Any) -> gym.Env[Any, Any]:
        """A registered env (``llm_trainer.make``); close it when done."""
        from llm_trainer.envs.registration import make

        return make(env_id, **kwargs)

    def agent(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        temperature: float = 0.0,
        max_new_tokens: int | None = None,
        seed: int | None = None,
        task_template: str | None = None,
    ) -> Any:
        """An :class:`~llm_trainer.agents.llm_agent.LLMAgent` acting with ``model`` in this
        process (greedy at temperature 0), with the experiment's system prompt (and each task
        put through ``task_template`` when given)."""
        from llm_trainer.algorithms.evaluation import model_agent

        return model_agent(
            model,
            tokenizer if tokenizer is not None else self._tokenizer,
            system_prompt=self.system_prompt,
            max_new_tokens=max_new_tokens or self.experiment.eval.max_new_tokens,
            temperature=temperature,
            seed=self.seed if seed is None else seed,
            task_template=task_template,
        )

    def collect(
        self,
        policy: Policy,
        env_id: str,
        seeds: Sequence[int],
        *,
        difficulty: int | None = None,
        num_envs: int | None = None,
        source: str = "policy",
        env_kwargs: Mapping[str, Any] | None = None,
    ) -> list[Trajectory]:
        """One episode per seed through the episode engine (lockstep, batched generation,
        token-faithful records; a failed episode carries its ``error``), in seed order.

        With the experiment's ``ray: {address: ...}`` set (and ``"ray"`` in the algorithm's
        ``sections``), an LLM agent from :meth:`agent` is shipped to the cluster and the
        episodes are played there in chunks of at most ``num_envs`` seeds (see
        :mod:`llm_trainer.algorithms.remote_rollout`: the run directory must be on storage
        every node reads); another policy is played here, with one log line.

        In a multi-process run the main process plays them and every process gets its
        episodes (every process must call it)."""
        from llm_trainer.algorithms.rollout import collect

        batch = num_envs or self.experiment.eval.batch_size

        def play() -> list[Trajectory]:
            executor = self._rollout_executor(policy)
            if executor is not None:
                from llm_trainer.algorithms.remote_rollout import collect_on

                return collect_on(
                    executor,
                    policy,
                    self.run.path,
                    env_id,
                    seeds,
                    num_envs=batch,
                    difficulty=difficulty,
                    env_kwargs=env_kwargs,
                    source=source,
                )
            return collect(
                env_id,
                lambda envs: policy,
                seeds,
                num_envs=batch,
                difficulty=difficulty,
                env_kwargs=env_kwargs,
                source=source,
            )

        return self.processes.on_main(play)

    def _rollout_executor(self, policy: Policy) -> Executor | None:
        """The Ray executor :meth:`collect` plays ``policy`` on, or ``None``: no
        ``ray.address``, or a policy that cannot be shipped (logged once)."""
        if self.experiment.ray.address is None:
            return None
        from llm_trainer.algorithms.remote_rollout import unshippable

        why = unshippable(policy)
        if why is not None:
            if self._played_here is None:
                self._played_here = why
                self.log(f"ray.address: {why}, so its episodes are played here, not on Ray")
            return None
        if self._executor is None:
            from llm_trainer.distributed import ray_executor

            self._executor = ray_executor(self.experiment.ray)
        return self._executor

    def close(self) -> None:
        """Release what the context holds (its connection to a Ray cluster; idempotent)."""
        if self._executor is not None:
            self._executor.close()
            self._executor = None

    def collect_tasks(
        self,
        policy: Policy,
        tasks: Sequence[Trajectory],
        *,
        repeats: int = 1,
        source: str = "policy",
    ) -> list[Trajectory]:
        """``repeats`` episodes of each task of ``tasks`` (the env, seed and difficulty of each
        trajectory) through :meth:`collect`, grouped by env and difficulty: the model's own
        attempts at the tasks of some data (DPO's on-policy pairs, NAT's policy negatives)."""
        by_env: dict[tuple[str, int], list[int]] = {}
        for t in tasks:
            by_env.setdefault((t.env_id, t.difficulty), []).append(t.seed)
        sampled: list[Trajectory] = []
        for (env_id, difficulty), seeds in sorted(by_env.items()):
            repeated = [s for s in seeds for _ in range(repeats)]
            sampled += self.collect(
                policy, env_id, repeated, difficulty=difficulty or None, source=source
            )
        return sampled

    def evaluate(
        self,
        model: Any,
        tokenizer: Any = None,
        *,
        episodes: int | None = None,
        task_template: str | None = None,
    ) -> dict[str, float]:
        """Greedy held-out evaluation (the ``eval`` section): success, tool accuracy, format
        correctness, execution success, answer correctness, mean reward and steps (each task
        put through ``task_template`` when given)."""
        from llm_trainer.algorithms.evaluation import evaluate_model

        ev = self.experiment.eval
        metrics, _ = evaluate_model(
            model,
            tokenizer if tokenizer is not None else self._tokenizer,
            ev.env_id,
            range(ev.first_seed, ev.first_seed + (ev.episodes if episodes is None else episodes)),
            difficulty=ev.difficulty,
            env_kwargs=ev.env_kwargs,
            system_prompt=self.system_prompt,
            max_new_tokens=ev.max_new_tokens,
            batch_size=ev.batch_size,
            task_template=task_template,
        )
        return metrics

    @property
    def store(self) -> TrajectoryStore:
        """The run's trajectory store (``trajectories.db``). In a multi-process run only the
        main process writes it (:meth:`store_dataset` and :meth:`training_data` see to that)."""
        from llm_trainer.core.store import TrajectoryStore

        if self._store is None:
            self._store = TrajectoryStore(self.run.path / "trajectories.db")
        return self._store

    @property
    def knowledge(self) -> KnowledgeGraph | None:
        """The knowledge graph (``knowledge_path``), ``None`` when it is off. The run records
        its experiment, models, datasets and scores there; an algorithm may record more (and
        read what other runs recorded). In a multi-process run it is the main process's:
        ``None`` in the others."""
        path = self.experiment.knowledge_path
        if path is None or not self.processes.is_main:
            return None
        if self._knowledge is None:
            from llm_trainer.core.knowledge import KnowledgeGraph

            self._knowledge = KnowledgeGraph(path)
        return self._knowledge

    @property
    def experiment_id(self) -> str:
        """This run's experiment node id in the knowledge graph (named by its run directory)."""
        from llm_trainer.core.knowledge import Experiment

        return Experiment(self.experiment.name, run_dir=str(self.run.path.resolve())).node_id

    @property
    def datasets_stored(self) -> tuple[str, ...]:
        """The versions of the datasets this run stored, in order."""
        return tuple(self._stored)

    def starting_model_id(self) -> str | None:
        """The starting model's node id (the digest of :attr:`model_dir`), recorded in the
        knowledge graph with an edge from the experiment on first use; ``None`` when the graph
        is off or the model does not exist yet (the tiny model before :meth:`load_model`)."""
        knowledge = self.knowledge
        if knowledge is None or not (self.model_dir / "config.json").is_file():
            return None
        if self._starting_model is None:
            from llm_trainer.core.knowledge import Derivation, Experiment
            from llm_trainer.core.knowledge.recording import model_record

            tiny = self.experiment.model.path == "tiny"
            with knowledge.batch() as batch:
                model = batch.add(model_record(self.model_dir, "tiny" if tiny else "given"))
                experiment = batch.add(
                    Experiment(self.experiment.name, run_dir=str(self.run.path.resolve()))
                )
                batch.add_edge(experiment, "derived_from", model, Derivation("starts from"))
            self._starting_model = model
        return self._starting_model

    def _acting_model(self, trajectories: Sequence[Trajectory]) -> bool:
        """Whether a model acted in these trajectories (policy rollouts, teacher mode), rather
        than an oracle, templates or a file."""
        return any(t.source.startswith("policy") or t.source == "teacher" for t in trajectories)

    def _agent_of(self, trajectories: Sequence[Trajectory]) -> str:
        """``Provenance.agent``: the trajectories' sources (``oracle``, ``template``,
        ``toolbench``...), and the run's starting model when a model acted (``policy:dpo from
        runs/x/final_model``; the policy may have trained since within the run)."""
        sources = ",".join(sorted({t.source for t in trajectories}))
        if self._acting_model(trajectories):
            return f"{sources} from {self.experiment.model.path}"
        return sources

    def _parents(self, trajectories: Sequence[Trajectory]) -> tuple[str, ...]:
        """``Provenance.parents`` of new data: for data a model made, the data that model
        learnt from: what the starting model and the models it derives from were trained on
        (read from the knowledge graph), and the datasets this run stored before; none for
        demonstrations (oracle, templates, ToolBench)."""
        if not self._acting_model(trajectories):
            return ()
        parents: dict[str, None] = {}
        knowledge, start = self.knowledge, self.starting_model_id()
        if knowledge is not None and start is not None:
            lineage = knowledge.lineage(start)
            for model in (lineage.model, *lineage.ancestors):
                for dataset in knowledge.parents(model.id, "trained_on"):
                    parents[str(dataset.attrs["version"])] = None
        parents.update(dict.fromkeys(self._stored))
        return tuple(parents)

    def store_dataset(
        self,
        name: str,
        trajectories: Sequence[Trajectory],
        provenance: Provenance | None = None,
        *,
        parents: Sequence[str] | None = None,
    ) -> str:
        """Store ``trajectories`` as a versioned dataset ``<experiment name>-<name>``;
        returns its version (content hash).

        The provenance says which envs and what acted; its ``parents`` (when ``provenance``
        has none) are ``parents``, or by default, for data a model made, the datasets that
        model learnt from (see :meth:`_parents`). With the knowledge graph on, the dataset is
        recorded there with ``derived_from`` edges to its parents and to the experiment.

        In a multi-process run only the main process stores and records it; the others return
        the same version (computed, not stored).

        Raises:
            UserError: for no trajectories.
        """
        from dataclasses import replace

        from llm_trainer.core.store import Provenance, content_hash

        trajectories = list(trajectories)
        if not self.processes.is_main:
            if not trajectories:
                raise UserError(f"dataset {f'{self.experiment.name}-{name}'!r} is empty")
            version = content_hash(trajectories)
            if version not in self._stored:
                self._stored.append(version)
            return version
        lineage = tuple(parents) if parents is not None else self._parents(trajectories)
        if provenance is None:
            provenance = Provenance(
                env_ids=tuple(sorted({t.env_id for t in trajectories})),
                agent=self._agent_of(trajectories),
                strategy=name,
            )
        if not provenance.parents and lineage:
            provenance = replace(provenance, parents=lineage)
        info = self.store.add(f"{self.experiment.name}-{name}", trajectories, provenance)
        if info.id not in self._stored:
            self._stored.append(info.id)
        self._record_dataset(info)
        return info.id

    def _record_dataset(self, info: DatasetInfo) -> None:
        knowledge = self.knowledge
        if knowledge is None:
            return
        from llm_trainer.core.knowledge import Dataset, Derivation, Experiment

        p = info.provenance
        with knowledge.batch() as batch:
            dataset = batch.add(
                Dataset(
                    info.id,
                    name=info.name,
                    size=info.size,
                    strategy=p.strategy,
                    agent=p.agent,
                    env_ids=p.env_ids,
                    store=str(self.store.path.resolve()),
                )
            )
            experiment = batch.add(
                Experiment(self.experiment.name, run_dir=str(self.run.path.resolve()))
            )
            batch.add_edge(dataset, "derived_from", experiment, Derivation("made in"))
            for parent in p.parents:
                batch.add_edge(
                    dataset, "derived_from", batch.add(Dataset(parent)), Derivation("parent data")
                )

    def training_data(self, model: Any = None, tokenizer: Any = None) -> tuple[list[Any], str]:
        """The ``data`` section's trajectories (built with its strategy: oracle demonstrations,
        templates, teacher mode, ToolBench), stored and versioned with their provenance.
        Returns them, with ``data.repeat`` applied (the store keeps each once; the provenance
        records the setting), and the dataset version. ``model`` and ``tokenizer`` serve
        teacher mode.

        In a multi-process run the main process builds and stores them and every process gets
        the same ones (every process must call it)."""
        from llm_trainer.data.build import repeat_matching

        trajectories, version = self.processes.on_main(
            lambda: self._build_training_data(model, tokenizer)
        )
        return repeat_matching(trajectories, self.experiment.data.repeat, log=self.log), version

    def phased_data(self, trajectories: Sequence[Any]) -> list[Any] | None:
        """With ``data.phases``: the training rows in the order they are trained on, one per
        sequence of every optimizer step (``train.max_steps`` x ``batch_size`` x ``grad_accum``
        x processes; :func:`~llm_trainer.data.build.phase_order` on the trajectories as built,
        before ``data.repeat``). None without phases."""
        from llm_trainer.data.build import phase_order

        data, train = self.experiment.data, self.experiment.train
        if not data.phases:
            return None
        distinct = list({id(t): t for t in trajectories}.values())  # data.repeat's copies once
        rows = train.max_steps * train.batch_size * train.grad_accum * self.processes.world_size
        return phase_order(distinct, data.repeat, data.phases, rows, seed=self.seed, log=self.log)

    def _build_training_data(self, model: Any, tokenizer: Any) -> tuple[list[Any], str]:
        """The ``data`` section's trajectories, stored; and their version."""
        from llm_trainer.core.config import to_dict
        from llm_trainer.core.store import Provenance
        from llm_trainer.data.build import build_training_data

        data = self.experiment.data
        trajectories = build_training_data(
            data, seed=self.seed, log=self.log, model=model, tokenizer=tokenizer, store=self.store
        )
        version = self.store_dataset(
            "train",
            trajectories,
            Provenance(
                env_ids=(data.env_id,),
                seeds=(data.first_seed, data.first_seed + data.episodes - 1),
                agent=self._agent_of(trajectories),
                strategy=data.strategy,
                config=to_dict(data),
                parents=self._parents(trajectories),
            ),
        )
        self.log(f"training data: {len(trajectories)} trajectories, version {version}")
        return trajectories, version

    def trainer_options(
        self, tokenizer: Any = None, *, task_template: str | None = None
    ) -> dict[str, Any]:
        """The keyword arguments every trainer of a run takes: ``seed``, ``system_prompt``,
        ``evaluate`` (held-out, bound to ``tokenizer`` and ``task_template``) and
        ``eval_every``."""
        return {
            "seed": self.seed,
            "system_prompt": self.system_prompt,
            "evaluate": self.evaluator(tokenizer, task_template=task_template),
            "eval_every": self.experiment.eval.every_steps,
        }

    def evaluator(
        self, tokenizer: Any = None, *, task_template: str | None = None
    ) -> Callable[[Any], Mapping[str, float]]:
        """``evaluate`` bound to a tokenizer (and a task template): what trainers call every
        ``eval.every_steps``."""
        return lambda model: self.evaluate(model, tokenizer, task_template=task_template)
