"""The ``llm-trainer`` command line.

``llm-trainer envs`` lists the registered environments; ``llm-trainer evaluate`` runs an agent
on held-out seeds; ``llm-trainer quickstart`` is the main job of ``scripts/run.sh``;
``llm-trainer bench`` runs an agent on a benchmark suite, ``llm-trainer arena`` plays a round robin
of agents in a two-player game (rated, with intervals), ``llm-trainer leaderboard`` builds
the board from result files, ``llm-trainer analyze`` mines the failure modes of a run or of
results and ``llm-trainer synthesize`` makes filtered synthetic trajectories from a task spec.
Commands with ``--json`` end with their summary as one JSON object on the last line.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from llm_trainer.core.errors import UserError

app = typer.Typer(
    name="llm-trainer",
    help="Train and evaluate LLM agents on Gymnasium-style text environments.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output (CI logs, `scripts/run.sh | tee`) gets a wide table instead of 80 columns.
console = Console(width=None if sys.stdout.isatty() else 150)
err_console = Console(stderr=True)
JsonFlag = Annotated[bool, typer.Option("--json", help="End with a one-line JSON summary.")]


def _fail(exc: Exception) -> None:
    """Print an expected error as one line (no traceback) and exit with status 2."""
    from rich.markup import escape  # a message's [brackets] are text ('llm-trainer[ray]')

    message = " ".join(str(exc).split()) or type(exc).__name__
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(2)


@app.command()
def envs(
    tag: Annotated[str | None, typer.Option(help="Only envs with this tag.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """List the registered environments."""
    from llm_trainer.envs.registration import registry

    specs = [s for s in registry().values() if tag is None or tag in s.tags]
    table = Table(title="llm-trainer environments")
    for column in ("id", "description", "tools", "difficulties", "max steps"):
        table.add_column(column, overflow="fold")
    for s in specs:
        table.add_row(
            s.id,
            s.description,
            ", ".join(s.capabilities.tools),
            ", ".join(map(str, s.capabilities.difficulties)),
            str(s.max_episode_steps),
        )
    console.print(table)
    if as_json:
        print(json.dumps({"envs": [s.id for s in specs]}))


def _evaluate_rows(
    agent: str, env_ids: list[str], episodes: int, seed: int, difficulty: int | None
) -> list[dict[str, Any]]:
    from llm_trainer.agents.factory import make_agent
    from llm_trainer.algorithms.rollout import evaluate

    rows = []
    for env_id in env_ids:
        summary, _ = evaluate(
            env_id,
            lambda env: make_agent(agent, env, seed=seed),
            range(seed, seed + episodes),
            difficulty=difficulty,
        )
        rows.append({"agent": agent, **summary.as_dict()})
    return rows


def _print_rows(rows: list[dict[str, Any]], title: str) -> None:
    table = Table(title=title)
    columns = (
        "agent",
        "env_id",
        "episodes",
        "success",
        "tool_correct",
        "format_ok",
        "exec_ok",
        "answer_correct",
        "mean_reward",
        "mean_steps",
        "errors",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("agent", "env_id") else "right")
    for row in rows:
        table.add_row(
            *(f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c]) for c in columns)
        )
    console.print(table)


@app.command()
def evaluate(
    agent: Annotated[
        str,
        typer.Option(
            help="Agent spec: oracle, random, python:module:factory, sb3:PATH.zip, "
            "transformers:DIR, vllm:DIR, openai:URL#model, or a saved agent directory."
        ),
    ] = "oracle",
    env: Annotated[str, typer.Option(help="Env id, or 'all'.")] = "all",
    episodes: Annotated[int, typer.Option(min=1, help="Episodes (one per seed).")] = 100,
    seed: Annotated[int, typer.Option(help="First seed; seeds are seed..seed+episodes-1.")] = 0,
    difficulty: Annotated[int | None, typer.Option(help="Difficulty (default: the env's).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Evaluate an agent on held-out seeds and print the tool-use metrics."""
    from llm_trainer.envs.registration import single_agent_ids, spec

    try:
        env_ids = single_agent_ids() if env == "all" else [spec(env).id]
        start = time.perf_counter()
        rows = _evaluate_rows(agent, env_ids, episodes, seed, difficulty)
    except UserError as exc:
        _fail(exc)
        return
    _print_rows(rows, f"{agent} on {len(env_ids)} env(s), {episodes} episodes each")
    if as_json:
        print(
            json.dumps(
                {
                    "agent": agent,
                    "results": rows,
                    "wall_seconds": round(time.perf_counter() - start, 3),
                }
            )
        )


_METRIC_ROWS = (
    ("success", "success"),
    ("tool accuracy", "tool_accuracy"),
    ("format correctness", "format_correctness"),
    ("execution success", "execution_success"),
    ("answer correctness", "answer_correctness"),
)


def _print_before_after(summary: dict[str, Any], title: str) -> None:
    table = Table(title=title)
    if summary.get("after") is not None:
        for column in ("metric", "before", "after"):
            table.add_column(column, justify="left" if column == "metric" else "right")
        before = summary.get("before") or {}
        for label, key in _METRIC_ROWS:
            start = f"{before[key]:.1%}" if key in before else "-"
            table.add_row(label, start, f"{summary['after'][key]:.1%}")
        start = f"{before['mean_reward']:+.3f}" if "mean_reward" in before else "-"
        table.add_row("mean env reward", start, f"{summary['after']['mean_reward']:+.3f}")
    else:  # no policy to evaluate (e.g. a reward model): the algorithm's own metrics
        for column in ("metric", "value"):
            table.add_column(column, justify="left" if column == "metric" else "right")
        for key, value in summary.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                table.add_row(key, f"{value:.4g}")
    console.print(table)
    console.print(f"run directory: {summary['run_dir']}")
    if summary.get("learning_curve"):
        console.print(f"learning curve: {summary['learning_curve']}")
    if summary.get("model_dir"):
        console.print(f"trained model: {summary['model_dir']}")
    console.print(f"wall time: {summary['wall_seconds']:.0f} s")


def _run_training(config: Any, as_json: bool, title: str) -> dict[str, Any] | None:
    from llm_trainer.algorithms.experiment import run_experiment
    from llm_trainer.core.processes import launched

    try:
        summary = run_experiment(config, log=lambda m: console.print(f"[dim]{m}[/]"))
    except UserError as exc:
        _fail(exc)
        return None
    if not launched().is_main:  # under torchrun: the main process reports the one run
        return summary
    _print_before_after(summary, title)
    if as_json:
        print(json.dumps(summary))
    return summary


@app.command()
def train(
    config: Annotated[Path, typer.Option("--config", "-c", help="Experiment YAML file.")],
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a field: --set train.learning_rate=3e-3"),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Train an agent from a YAML experiment config (configs/*.yaml): any registered
    algorithm, or your own (algorithm: package.module:Class or file.py:Class)."""
    from llm_trainer.algorithms.config import load_experiment

    try:
        experiment = load_experiment(config, overrides or ())
    except UserError as exc:
        _fail(exc)
        return
    _run_training(experiment, as_json, f"{experiment.name}: held-out {experiment.eval.env_id}")


@app.command()
def quickstart(
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="Override a field of the quickstart config."),
    ] = None,
    ppo: Annotated[
        bool,
        typer.Option(
            "--ppo",
            help="Add 400 demonstrations of Calculator-v0 difficulty 2 (symbolic form) to the "
            "SFT data, then continue the SFT agent with PPO on that form "
            "(--set applies to the SFT phase; --ppo-set to the PPO phase).",
        ),
    ] = False,
    ppo_overrides: Annotated[
        list[str] | None,
        typer.Option("--ppo-set", help="Override a field of the PPO phase's config (with --ppo)."),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """The main job: build the tiny model, teach it the calculator (SFT on oracle
    demonstrations), and compare held-out success before and after."""
    from dataclasses import replace

    from llm_trainer.algorithms.config import (
        override_experiment,
        quickstart_config,
        quickstart_ppo_config,
        quickstart_ppo_warm_start,
    )

    try:
        if ppo_overrides and not ppo:
            raise UserError("--ppo-set configures the PPO phase: add --ppo (or drop --ppo-set)")
        base = quickstart_ppo_warm_start() if ppo else quickstart_config()
        experiment = override_experiment(base, overrides or ())
        rl = override_experiment(
            quickstart_ppo_config(output_dir=experiment.output_dir), ppo_overrides or ()
        )
    except UserError as exc:
        _fail(exc)
        return
    title = "Calculator-v0, held-out episodes: before and after SFT"
    warm_start = _run_training(experiment, as_json and not ppo, title)
    if warm_start is None or not ppo:
        return
    rl = replace(rl, model=replace(rl.model, path=str(warm_start["model_dir"])))
    title = f"Calculator-v0 difficulty {rl.settings.difficulty}: before and after PPO"
    summary = _run_training(rl, False, title)
    if summary is not None and as_json:
        summary = {
            **summary,
            "warm_start": warm_start,
            "wall_seconds": round(warm_start["wall_seconds"] + summary["wall_seconds"], 2),
        }
        print(json.dumps(summary))


@app.command()
def algorithms(as_json: JsonFlag = False) -> None:
    """List the registered algorithms (built-in and installed plug-ins) with their settings."""
    from rich.markup import escape

    from llm_trainer.algorithms.registry import describe_algorithms

    try:
        described = describe_algorithms()
    except UserError as exc:
        _fail(exc)
        return
    for algo in described:
        table = Table(
            title=f"{algo['name']}: {algo['description']}",
            caption=f"{algo['reference']} ({algo['source']}); reads "
            f"{', '.join(algo['sections'])} and {algo['name']}",
            title_justify="left",
        )
        for column in ("setting", "type", "default", "help"):
            table.add_column(column, overflow="fold")
        for f in algo["fields"]:
            table.add_row(
                *(
                    escape(text)
                    for text in (
                        f"{algo['name']}.{f['name']}",
                        f["type"],
                        repr(f["default"]),
                        f["help"],
                    )
                )
            )
        if not algo["fields"]:
            table.add_row("(none)", "", "", "")
        console.print(table)
    if as_json:
        print(json.dumps({"algorithms": described}, default=str))


_AGENT_HELP = (
    "Agent spec: oracle, random, python:module:factory, sb3:PATH.zip, kuhn:NAME, "
    "transformers:DIR, vllm:DIR, openai:URL#model, or a saved agent directory."
)


@app.command()
def bench(
    suite: Annotated[str, typer.Option(help="Suite id from registry.yaml.")] = "tooluse-v0",
    agent: Annotated[str, typer.Option(help=_AGENT_HELP)] = "oracle",
    name: Annotated[str | None, typer.Option(help="Name on the board (default: the spec).")] = None,
    out: Annotated[
        Path | None, typer.Option(help="Result file (default: results/SUITE/NAME.json).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="Worker processes (default: min(2, cores)).")
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Discard an existing or interrupted result.")
    ] = False,
    compare: Annotated[
        Path | None,
        typer.Option(help="Baseline result file: exit 1 if this result is significantly worse."),
    ] = None,
    metrics: Annotated[
        str | None, typer.Option(help="Comma-separated metrics checked by --compare.")
    ] = None,
    alpha: Annotated[float, typer.Option(help="Level of --compare (Holm-adjusted).")] = 0.05,
    tolerance: Annotated[
        float, typer.Option(min=0.0, help="Differences up to this never count as regressions.")
    ] = 0.0,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress", help="Progress bar on stderr (default: on a tty)."
        ),
    ] = None,
    knowledge: Annotated[
        Path | None,
        typer.Option(
            help="Knowledge graph file: record the agent and every problem attempted/solved."
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Play the episodes as Ray tasks on this cluster (local, auto, HOST:PORT; "
            "pip install 'llm-trainer[ray]'): the same records.",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run an agent on a benchmark suite (parallel, resumable) and write its result file."""
    from llm_trainer.benchmarks.compare import compare_results
    from llm_trainer.benchmarks.results import load_result
    from llm_trainer.benchmarks.runner import BenchConfig, default_workers, run_bench

    try:
        config = BenchConfig(
            suite=suite,
            agent=agent,
            name=name,
            out=out,
            workers=workers or default_workers(),
            fresh=fresh,
            progress=progress,
            knowledge_path=knowledge,
            ray_address=ray,
        )
        baseline = load_result(compare) if compare is not None else None
        run = run_bench(config)
        report = None
        if baseline is not None:
            chosen = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
            report = compare_results(
                baseline, run.result, metrics=chosen, alpha=alpha, tolerance=tolerance
            )
    except UserError as exc:
        _fail(exc)
        return
    except KeyboardInterrupt:
        console.print(
            "[yellow]interrupted:[/] finished episodes are kept; run the same command again to "
            "resume"
        )
        raise typer.Exit(130) from None
    summary = run.result.summary
    table = Table(title=f"{run.result.agent} on {run.result.suite.id} ({summary['episodes']} "
                  f"episodes, {summary['errors']} errors): mean [95% CI]")  # fmt: skip
    for column in ("metric", "mean [95% CI]", "seed std", "noise floor"):
        table.add_column(column, justify="left" if column == "metric" else "right")
    for key, m in summary["metrics"].items():
        table.add_row(
            key,
            f"{m['mean']:.4g} [{m['ci_low']:.4g}, {m['ci_high']:.4g}]",
            f"{m['seed_std']:.3g}",
            f"{m['noise_floor']:.3g}",
        )
    console.print(table)
    how = "reused (already finished)" if run.reused else f"{run.episodes_played} played"
    if run.episodes_resumed:
        how += f", {run.episodes_resumed} resumed"
    console.print(f"{run.path}: {how}, {run.wall_seconds:.1f} s", highlight=False)
    if report is not None:
        for check in report.checks:
            style = "bold red" if check.regressed else "green"
            label = "REGRESSION" if check.regressed else "ok"
            console.print(f"[{style}]{label}[/] {check.describe()}", highlight=False)
    if as_json:
        payload: dict[str, Any] = {
            "suite": run.result.suite.id,
            "suite_hash": run.result.suite.hash,
            "agent": run.result.agent,
            "result_file": str(run.path),
            "episodes": summary["episodes"],
            "errors": summary["errors"],
            "episodes_played": run.episodes_played,
            "episodes_resumed": run.episodes_resumed,
            "reused": run.reused,
            "metrics": summary["metrics"],
            "by_env": summary["by_env"],
            "by_difficulty": summary["by_difficulty"],
            "wall_seconds": round(run.wall_seconds, 3),
        }
        if report is not None:
            payload["comparison"] = report.as_dict()
        print(json.dumps(payload))
    if report is not None and report.regressions:
        raise typer.Exit(1)


@app.command()
def arena(
    entrant: Annotated[
        list[str],
        typer.Option(
            help="An entrant (repeat, at least two): an agent spec as for bench (random, "
            "kuhn:equilibrium, kuhn:always_bet, kuhn:random, transformers:DIR, a saved agent "
            "directory...), or NAME=SPEC to name it on the board."
        ),
    ],
    suite: Annotated[
        str, typer.Option(help="Arena suite id from registry.yaml.")
    ] = "kuhn-arena-v0",
    out: Annotated[
        Path | None, typer.Option(help="Result file (default: results/SUITE/arena.json).")
    ] = None,
    num_envs: Annotated[
        int, typer.Option(min=1, help="Envs played in lockstep (results do not depend on it).")
    ] = 16,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Replace a result of another configuration.")
    ] = False,
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress", help="Progress bar on stderr (default: on a tty)."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Play a round robin of agents in a two-player game and rate them (95% intervals)."""
    from llm_trainer.benchmarks.arena import ArenaConfig, run_arena

    try:
        config = ArenaConfig(
            suite=suite,
            entrants=tuple(entrant),
            out=out,
            fresh=fresh,
            num_envs=num_envs,
            progress=progress,
        )
        run = run_arena(config)
    except UserError as exc:
        _fail(exc)
        return
    summary = run.result.summary
    rows = sorted(summary["entrants"].items(), key=lambda item: -item[1]["rating"])
    score = run.result.suite.score_key or "return"
    table = Table(
        title=f"{run.result.suite.id}: {summary['matches']} matches, {summary['episodes']} "
        f"episodes, {summary['errors']} errors; rating [95% CI]"
    )
    for column in ("entrant", "rating [95% CI]", "games", "W-D-L", "win rate", f"{score}/episode"):
        table.add_column(column, justify="left" if column == "entrant" else "right")
    for name, e in rows:
        table.add_row(
            name,
            f"{e['rating']:.1f} [{e['ci_low']:.1f}, {e['ci_high']:.1f}]",
            str(e["games"]),
            f"{e['wins']}-{e['draws']}-{e['losses']}",
            f"{e['score_rate']:.3f}",
            f"{e['score_per_episode']:+.3f}",
        )
    console.print(table)
    how = "reused (already finished)" if run.reused else "played"
    console.print(f"{run.path}: {how}, {run.wall_seconds:.1f} s", highlight=False)
    if as_json:
        print(
            json.dumps(
                {
                    "suite": run.result.suite.id,
                    "suite_hash": run.result.suite.hash,
                    "result_file": str(run.path),
                    "reused": run.reused,
                    **summary,
                    "wall_seconds": round(run.wall_seconds, 3),
                }
            )
        )


@app.command()
def leaderboard(
    files: Annotated[
        list[Path] | None, typer.Argument(help="Result files (default: results/**/*.json).")
    ] = None,
    out_dir: Annotated[Path, typer.Option(help="Where the board is written.")] = Path(
        "results/leaderboard"
    ),
    metric: Annotated[str, typer.Option(help="The metric that ranks entries.")] = "success",
    as_json: JsonFlag = False,
) -> None:
    """Build the leaderboard (markdown, HTML, PNG) from stored result files only."""
    from llm_trainer.benchmarks.leaderboard import (
        LeaderboardConfig,
        arena_header,
        arena_row,
        format_interval,
        write_leaderboard,
    )
    from llm_trainer.benchmarks.results import metric as get_metric

    start = time.perf_counter()
    paths = files or sorted(Path("results").glob("**/*.json"))
    try:
        written = write_leaderboard(paths, out_dir, LeaderboardConfig(ranking_metric=metric))
    except UserError as exc:
        _fail(exc)
        return
    wall = time.perf_counter() - start
    for board in written.boards:
        table = Table(title=f"{board.suite.id}: ranked by {metric}, mean [95% CI]")
        shown = [m for m in board.columns if m.name != "reward"][:7]
        for column in ("rank", "agent", *(m.label for m in shown)):
            table.add_column(column, justify="left" if column == "agent" else "right")
        for entry in board.entries:
            table.add_row(
                entry.rank,
                entry.name,
                *(format_interval(get_metric(m.name), entry.metrics[m.name]) for m in shown),
            )
        console.print(table)
    for arena_board in written.arenas:
        pct = round(arena_board.confidence * 100)
        table = Table(title=f"{arena_board.suite.id} (arena): rating [{pct}% CI]")
        for column in arena_header(arena_board):
            table.add_column(column, justify="left" if column == "entrant" else "right")
        for rank, row in zip(arena_board.ranks, arena_board.rows, strict=True):
            table.add_row(*arena_row(rank, row))
        console.print(table)
    console.print(
        f"wrote {written.markdown}, {written.html}, {written.png} in {wall:.2f} s",
        highlight=False,
    )
    if as_json:
        print(
            json.dumps(
                {
                    "out_dir": str(out_dir),
                    "files": {
                        "markdown": str(written.markdown),
                        "html": str(written.html),
                        "png": str(written.png),
                    },
                    "boards": [b.as_dict() for b in written.boards],
                    "arenas": [a.as_dict() for a in written.arenas],
                    "wall_seconds": round(wall, 3),
                }
            )
        )


@app.command()
def analyze(
    path: Annotated[
        Path,
        typer.Argument(
            help="A run directory (its trajectories.db), a benchmark result file "
            "(results/SUITE/AGENT.json) or a folder of result files."
        ),
    ],
    dataset: Annotated[
        str | None, typer.Option(help="Only this dataset of a run (its name or id).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="Folder for failure_modes.png and .json (default: beside PATH)."),
    ] = None,
    examples: Annotated[int, typer.Option(min=0, help="Examples kept per failure mode.")] = 3,
    windows: Annotated[int, typer.Option(min=1, help="Windows of the trend over episodes.")] = 5,
    as_json: JsonFlag = False,
) -> None:
    """Mine failure modes: print the table, write the chart (PNG) and the report (JSON)."""
    from llm_trainer.analysis.failure_modes import (
        comparison_table,
        plot_failure_modes,
        reports_to_json,
    )
    from llm_trainer.analysis.sources import analyze_path
    from llm_trainer.benchmarks.results import write_json_atomic

    try:
        found = analyze_path(path, dataset=dataset, out=out, examples=examples, windows=windows)
        reports = found.reports
        if len(reports) > 1:
            print(comparison_table(reports), end="\n\n")
        for report in reports:
            print(report.table(), end="\n\n")
        try:
            chart = plot_failure_modes(reports, found.chart)
        except ModuleNotFoundError as exc:
            raise UserError(
                f"the chart needs {exc.name} (pip install 'llm-trainer[bench]')"
            ) from None
        write_json_atomic(found.report, reports_to_json(reports))
    except UserError as exc:
        _fail(exc)
        return
    console.print(f"wrote {chart} and {found.report}", highlight=False)
    if as_json:
        print(
            json.dumps(
                {
                    "source": found.source,
                    "chart": str(chart),
                    "report": str(found.report),
                    "reports": [
                        {
                            "name": r.name,
                            "episodes": r.episodes,
                            "failures": r.failures,
                            "counts": dict(r.counts),
                        }
                        for r in reports
                    ],
                }
            )
        )


@app.command()
def synthesize(
    spec: Annotated[
        Path,
        typer.Argument(help="A task spec, YAML or JSON (e.g. configs/synthesis_tooluse.yaml)."),
    ],
    out: Annotated[
        Path,
        typer.Option(
            help="Run directory: trajectories.db (kept and rejected datasets, annotated), "
            "synthetic.jsonl (the kept trajectories) and synthesis.json (the summary)."
        ),
    ],
    as_json: JsonFlag = False,
) -> None:
    """Synthesize trajectories: generate (oracle, templates, teacher, any LLM), keep what the
    quality filters pass, augment, and store everything with its decision and lineage."""
    from llm_trainer.core.errors import BackendError
    from llm_trainer.core.rundir import atomic_write
    from llm_trainer.core.store import TrajectoryStore
    from llm_trainer.data.synthesis import synthesize as run_synthesis

    try:
        store = TrajectoryStore(out / "trajectories.db")
        result = run_synthesis(
            spec, store=store, log=lambda line: console.print(line, highlight=False)
        )
    except (UserError, BackendError) as exc:
        _fail(exc)
        return
    summary: dict[str, Any] = {"spec": str(spec), "store": str(store.path), **result.stats()}
    if result.kept_dataset is not None:
        summary["jsonl"] = str(store.export_jsonl(result.kept_dataset, out / "synthetic.jsonl"))
    atomic_write(out / "synthesis.json", (json.dumps(summary, indent=2) + "\n").encode())
    table = Table(title=f"synthesis: {summary['kept']} of {summary['candidates']} kept")
    for column in ("generator", "candidates", "kept"):
        table.add_column(column, overflow="fold")
    for generator, row in summary["by_generator"].items():
        table.add_row(generator, str(row["candidates"]), str(row["kept"]))
    console.print(table)
    console.print(
        f"rejected by filter: {summary['rejected_by_filter'] or 'none'}; datasets "
        f"{result.kept_dataset} (kept), {result.rejected_dataset} (rejected) in {store.path}",
        highlight=False,
    )
    if as_json:
        print(json.dumps(summary))


@app.command()
def research(
    goal: Annotated[
        str | None,
        typer.Option(
            help="The research goal. A question about optimizers (SGD, momentum, Adam), halving "
            "an MLP's hidden size or weight decay is checked against the harness's reference; "
            "other text for reproducibility only. Default: goals drawn from that family."
        ),
    ] = None,
    sprints: Annotated[int, typer.Option(min=1, help="Sprints (finished ones are skipped).")] = 1,
    out: Annotated[
        Path, typer.Option(help="Results folder: sprint_NNN/ and knowledge.sqlite (memory).")
    ] = Path("results"),
    seed: Annotated[int, typer.Option(help="The run's seed (each sprint derives its own).")] = 0,
    agent: Annotated[
        list[str] | None,
        typer.Option(
            "--agent",
            help="ROLE=SPEC for one role (researcher, architect, coder, validator) or SPEC for "
            "all: tiny (default; the untrained embedded model), scripted (known-good texts), "
            "or any agent spec (transformers:DIR, openai:URL#model, a saved agent...).",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(min=0.1, help="Seconds per run of the experiment.")
    ] = 120.0,
    min_isolation: Annotated[
        str, typer.Option(help="The sandbox's minimum level, L0-L4 (L0: no isolation).")
    ] = "L3",
    progress: Annotated[
        bool | None,
        typer.Option(
            "--progress/--no-progress", help="Progress bar on stderr (default: on a tty)."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run research sprints (seed 004): researcher, architect, coder and validator discuss,
    plan, run experiment.py in the sandbox and validate; writes OUT/sprint_NNN/ and resumes."""
    from llm_trainer.algorithms.research import ResearchConfig, parse_agent_specs, run_research

    try:
        config = ResearchConfig(
            goal=goal,
            sprints=sprints,
            out=out,
            seed=seed,
            agents=parse_agent_specs(agent or ()),
            timeout_s=timeout,
            min_isolation=min_isolation,
            progress=progress,
        )
        run = run_research(config, log=lambda line: console.print(line, highlight=False))
    except UserError as exc:
        _fail(exc)
        return
    except KeyboardInterrupt:
        console.print(
            "[yellow]interrupted:[/] finished sprints are kept; run the same command again to "
            "resume"
        )
        raise typer.Exit(130) from None
    summary = run.as_dict()
    table = Table(title=f"research sprints in {run.out} ({summary['successes']} succeeded)")
    for column in ("sprint", "goal", "executed", "reproduced", "conclusion", "success", "rewards"):
        table.add_column(column, overflow="fold")
    for row in summary["sprints"]:
        rewards = " ".join(f"{r[0]}={v:+g}" for r, v in row["rewards"].items())
        table.add_row(
            row["sprint_id"] + (" (kept)" if row["reused"] else ""),
            row["goal_kind"] or "free text",
            str(row["execution_success"]),
            str(row["reproduced"]),
            str(row["conclusion"]),
            str(row["success"]),
            rewards,
        )
    console.print(table)
    if as_json:
        print(json.dumps(summary))


kg_app = typer.Typer(
    help="The knowledge graph: counts, related solved problems, GraphML/PNG/HTML export.",
    no_args_is_help=True,
)
app.add_typer(kg_app, name="kg")


@kg_app.callback()
def kg(
    ctx: typer.Context,
    path: Annotated[Path, typer.Option("--path", help="The knowledge graph file (SQLite).")],
) -> None:
    """The knowledge graph in FILE (written by train and bench with a knowledge path)."""
    ctx.obj = path


def _open_graph(ctx: typer.Context) -> Any:
    """The graph of ``kg --path`` (an existing file: reading never creates one)."""
    from llm_trainer.core.knowledge import KnowledgeGraph

    path = Path(ctx.obj)
    if not path.is_file():
        raise UserError(f"no knowledge graph at {path}")
    return KnowledgeGraph(path)


@kg_app.command("stats")
def kg_stats(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Nodes and edges by kind."""
    try:
        counts = _open_graph(ctx).counts()
    except UserError as exc:
        _fail(exc)
        return
    table = Table(title=f"knowledge graph {ctx.obj}")
    for column in ("nodes", "count", "edges", " count"):
        table.add_column(column, justify="right" if "count" in column else "left")
    nodes, edges = list(counts.nodes.items()), list(counts.edges.items())
    for i in range(max(len(nodes), len(edges))):
        node = nodes[i] if i < len(nodes) else ("", "")
        edge = edges[i] if i < len(edges) else ("", "")
        table.add_row(node[0], str(node[1]), edge[0], str(edge[1]))
    table.add_row(
        "total", str(sum(counts.nodes.values())), "total", str(sum(counts.edges.values()))
    )
    console.print(table)
    if as_json:
        print(json.dumps({"nodes": counts.nodes, "edges": counts.edges}))


@kg_app.command("query")
def kg_query(
    ctx: typer.Context,
    text: Annotated[str, typer.Argument(help="A task: its related solved problems are listed.")],
    k: Annotated[int, typer.Option("-k", min=1, help="How many problems.")] = 5,
    unsolved: Annotated[bool, typer.Option("--unsolved", help="Unsolved problems too.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """The problems most related to TEXT (BM25 over statements), with their solutions."""
    try:
        hits = _open_graph(ctx).related_problems(text, k, solved=not unsolved)
    except UserError as exc:
        _fail(exc)
        return
    table = Table(title=f"problems related to {text!r}")
    for column in ("score", "problem", "statement", "best solution", "solutions"):
        table.add_column(column, overflow="fold", justify="right" if column == "score" else "left")
    rows = []
    for hit in hits:
        best = hit.solutions[0].attrs.get("text", "") if hit.solutions else ""
        rows.append(
            {
                "id": hit.problem.id,
                "score": round(hit.score, 4),
                "statement": hit.problem.attrs.get("statement", ""),
                "env_id": hit.problem.attrs.get("env_id"),
                "difficulty": hit.problem.attrs.get("difficulty"),
                "solutions": [s.attrs.get("text", "") for s in hit.solutions],
            }
        )
        table.add_row(
            f"{hit.score:.3f}", hit.problem.id, rows[-1]["statement"], best, str(len(hit.solutions))
        )
    console.print(table)
    if not hits:
        console.print("no related problem (none shares a word with the query)")
    if as_json:
        print(json.dumps({"query": text, "problems": rows}))


@kg_app.command("export")
def kg_export(
    ctx: typer.Context,
    fmt: Annotated[
        str, typer.Option("--format", help="graphml (the whole graph), png or html (a picture).")
    ] = "graphml",
    out: Annotated[
        Path | None, typer.Option(help="Output file (default: beside the graph, FORMAT suffix).")
    ] = None,
    around: Annotated[
        str | None,
        typer.Option(help="Only the neighbourhood of this node (an id, or a unique prefix)."),
    ] = None,
    depth: Annotated[int, typer.Option(min=0, help="Edges from --around.")] = 2,
    as_json: JsonFlag = False,
) -> None:
    """Write the graph (or a node's neighbourhood) as GraphML, a PNG or a self-contained HTML
    page."""
    from llm_trainer.core.knowledge import export

    try:
        if fmt not in export.EXPORT_FORMATS:
            raise UserError(f"--format: {fmt!r} is not one of {', '.join(export.EXPORT_FORMATS)}")
        graph = _open_graph(ctx)
        center = graph.find(around) if around is not None else None
        view = export.neighbourhood(graph.graph(), center, depth)
        target = out or Path(ctx.obj).with_suffix(f".{fmt}")
        title = f"{center} (depth {depth})" if center else str(ctx.obj)
        if fmt == "graphml":
            written = export.write_graphml(view, target)
        elif fmt == "png":
            written = export.write_png(view, target, title)
        else:
            written = export.write_html(view, target, title)
    except UserError as exc:
        _fail(exc)
        return
    console.print(
        f"wrote {written}: {len(view)} nodes, {view.number_of_edges()} edges", highlight=False
    )
    if as_json:
        print(
            json.dumps({"file": str(written), "nodes": len(view), "edges": view.number_of_edges()})
        )


@app.command()
def serve(
    env: Annotated[
        str, typer.Option(help="The env id to serve (multi-agent ids in PettingZoo's AEC shape).")
    ],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port (0: a free one).")] = 8000,
    kwargs: Annotated[
        str, typer.Option(help="Env arguments as a JSON object, e.g. '{\"difficulty\": 2}'.")
    ] = "{}",
    max_sessions: Annotated[int, typer.Option(min=1, help="Sessions open at once.")] = 64,
    session_timeout: Annotated[
        float, typer.Option(help="Seconds after which an idle HTTP session is closed.")
    ] = 600.0,
    log_level: Annotated[str, typer.Option(help="uvicorn's log level.")] = "warning",
) -> None:
    """Serve an env over HTTP and WebSocket in the OpenEnv shape (/reset, /step, /state, /ws)."""
    try:
        from llm_trainer.serve.server import ServeConfig
        from llm_trainer.serve.server import serve as run_server
    except ImportError as exc:
        _fail(UserError(f"{exc}; install the serve extra: pip install 'llm-trainer[serve]'"))
        return

    def ready(url: str) -> None:
        ws = "ws" + url.removeprefix("http")
        print(f"serving {env} at {url} (WebSocket: {ws}/ws); Ctrl-C stops", flush=True)

    try:
        env_kwargs = json.loads(kwargs)
        if not isinstance(env_kwargs, dict):
            raise UserError(f"--kwargs must be a JSON object, got {kwargs!r}")
        config = ServeConfig(
            env, env_kwargs, max_sessions=max_sessions, session_timeout_s=session_timeout
        )
        run_server(config, host, port, log_level=log_level, on_ready=ready)
    except json.JSONDecodeError as exc:
        _fail(UserError(f"--kwargs is not valid JSON: {exc}"))
    except UserError as exc:
        _fail(exc)


runs_app = typer.Typer(
    help="The runs index: list, show, compare and reproduce runs; sum their usage.",
    no_args_is_help=True,
)
app.add_typer(runs_app, name="runs")


@runs_app.callback()
def runs(
    ctx: typer.Context,
    index: Annotated[
        Path | None,
        typer.Option(
            "--index",
            help="The runs index (default: $LLM_TRAINER_RUNS_INDEX, else runs/index.sqlite; "
            "every `train` run registers in OUTPUT_DIR/index.sqlite).",
        ),
    ] = None,
) -> None:
    """The runs index (SQLite) that every `llm-trainer train` run registers in."""
    from llm_trainer.experiments.index import default_index_path

    ctx.obj = index or default_index_path("runs")


def _open_index(ctx: typer.Context) -> Any:
    """The index of ``runs --index`` (an existing file: reading never creates one), with runs
    whose process died marked failed."""
    import contextlib
    import sqlite3

    from llm_trainer.experiments.index import ExperimentManager

    index = ExperimentManager(Path(ctx.obj), must_exist=True)
    with contextlib.suppress(sqlite3.Error):  # a read-only index: listed as it is
        index.reap()
    return index


@runs_app.command("list")
def runs_list(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option(help="Only runs of this name.")] = None,
    status: Annotated[
        str | None, typer.Option(help="Only runs in this status (running, finished, failed...).")
    ] = None,
    algorithm: Annotated[str | None, typer.Option(help="Only runs of this algorithm.")] = None,
    sweep: Annotated[str | None, typer.Option(help="Only the trials of this sweep id.")] = None,
    cycle: Annotated[str | None, typer.Option(help="Only the runs of this cycle id.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, newest first.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """List runs, newest first."""
    from llm_trainer.experiments.report import record_dict, runs_table

    try:
        index = _open_index(ctx)
        records = index.runs(
            name=name, status=status, algorithm=algorithm, sweep_id=sweep, cycle_id=cycle,
            limit=limit,
        )  # fmt: skip
    except UserError as exc:
        _fail(exc)
        return
    console.print(runs_table(records, f"{len(records)} runs in {index.path}"))
    if as_json:
        print(json.dumps({"runs": [record_dict(r) for r in records]}, default=str))


@runs_app.command("show")
def runs_show(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="A run id (or its run directory).")],
    config: Annotated[bool, typer.Option("--config", help="Print its config (YAML) too.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """One run: its record, metrics with intervals, usage (and config)."""
    import yaml

    from llm_trainer.experiments.report import record_dict, run_tables

    try:
        record = _open_index(ctx).find(run)
    except UserError as exc:
        _fail(exc)
        return
    for table in run_tables(record):
        console.print(table)
    if config:
        console.print(yaml.safe_dump(record.config, sort_keys=False), highlight=False)
    if as_json:
        print(json.dumps(record_dict(record), default=str))


@runs_app.command("compare")
def runs_compare(
    ctx: typer.Context,
    run: Annotated[list[str], typer.Argument(help="Two or more run ids (or run directories).")],
    as_json: JsonFlag = False,
) -> None:
    """Runs side by side: their metrics (with intervals) and the config fields that differ."""
    from llm_trainer.experiments.report import compare_tables, config_differences, record_dict

    try:
        if len(run) < 2:
            raise UserError("runs compare needs at least two runs")
        index = _open_index(ctx)
        records = [index.find(r) for r in run]
    except UserError as exc:
        _fail(exc)
        return
    for table in compare_tables(records):
        console.print(table)
    if as_json:
        payload = {
            "runs": [record_dict(r) for r in records],
            "config_differences": dict(config_differences(records)),
        }
        print(json.dumps(payload, default=str))


@runs_app.command("reproduce")
def runs_reproduce(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="A run id (or its run directory).")],
    output_dir: Annotated[
        Path | None, typer.Option(help="Where the new run goes (default: beside the index).")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Train a run again from its stored config and seed (a new run directory) and check that
    its held-out rates match within the noise floor; exit 1 when they do not."""
    from llm_trainer.experiments.report import reproduction_table
    from llm_trainer.experiments.reproduce import reproduce_run

    try:
        reproduction = reproduce_run(
            _open_index(ctx),
            run,
            output_dir=output_dir,
            log=lambda m: console.print(f"[dim]{m}[/]", highlight=False),
        )
    except UserError as exc:
        _fail(exc)
        return
    console.print(reproduction_table(reproduction))
    style = "green" if reproduction.matches else "bold red"
    console.print(f"[{style}]{reproduction.verdict()}[/]", highlight=False)
    if as_json:
        print(json.dumps(reproduction.as_dict()))
    if not reproduction.matches:
        raise typer.Exit(1)


@runs_app.command("usage")
def runs_usage(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Option(help="Only runs of this name.")] = None,
    sweep: Annotated[str | None, typer.Option(help="Only the trials of this sweep id.")] = None,
    cycle: Annotated[str | None, typer.Option(help="Only the runs of this cycle id.")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Seconds, CPU- and GPU-seconds, tokens and money of the runs, summed."""
    from llm_trainer.experiments.report import usage_table

    try:
        index = _open_index(ctx)
        records = index.runs(name=name, sweep_id=sweep, cycle_id=cycle)
    except UserError as exc:
        _fail(exc)
        return
    from llm_trainer.experiments.cost import RunUsage

    total = RunUsage.total(r.usage for r in records)
    console.print(usage_table(total, f"usage of {len(records)} runs in {index.path}"))
    if as_json:
        print(json.dumps({"runs": len(records), **total.as_dict()}))


@app.command()
def sweep(
    config: Annotated[Path, typer.Option("--config", "-c", help="The base experiment YAML.")],
    grid: Annotated[
        list[str] | None,
        typer.Option(help="A field and its values: --grid train.learning_rate=1e-3,2e-3."),
    ] = None,
    ranges: Annotated[
        list[str] | None,
        typer.Option(
            "--range",
            help="A field and a range (with --random or --optuna): uniform(lo,hi), "
            "loguniform(lo,hi) or int(lo,hi).",
        ),
    ] = None,
    random_trials: Annotated[
        int | None, typer.Option("--random", min=1, help="Draw N random points.")
    ] = None,
    optuna_trials: Annotated[
        int | None, typer.Option("--optuna", min=1, help="N trials chosen by Optuna (TPE).")
    ] = None,
    parallel: Annotated[int, typer.Option(min=1, help="Trials at once.")] = 1,
    cpus_per_trial: Annotated[
        int | None, typer.Option(min=1, help="CPU cores per trial (default: shared out).")
    ] = None,
    gpus_per_trial: Annotated[
        int | None, typer.Option(min=0, help="GPUs per trial (default: 1 if enough, else 0).")
    ] = None,
    objective: Annotated[
        str, typer.Option(help="The metric that ranks trials (success, final_loss...).")
    ] = "success",
    direction: Annotated[
        str | None, typer.Option(help="maximize or minimize (default: minimize losses).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the random draws and of Optuna.")] = 0,
    name: Annotated[
        str | None, typer.Option(help="The sweep's name (default: the config's).")
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", help="Override a field of the base config.")
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="run the trials as Ray tasks on this cluster: local (started here), auto or "
            "HOST:PORT",
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Sweep config fields (grid, random or Optuna), trials in parallel, each an indexed run;
    the same command again resumes the sweep."""
    from llm_trainer.experiments.report import sweep_table
    from llm_trainer.experiments.sweep import (
        ConfigManager,
        Mode,
        Sweep,
        SweepConfig,
        parse_parameter,
    )

    try:
        if random_trials is not None and optuna_trials is not None:
            raise UserError("choose one search: --random N or --optuna N")
        mode: Mode = "optuna" if optuna_trials else "random" if random_trials else "grid"
        spec = SweepConfig(
            parameters=tuple(parse_parameter(p) for p in [*(grid or ()), *(ranges or ())]),
            mode=mode,
            trials=optuna_trials or random_trials,
            parallel=parallel,
            cpus_per_trial=cpus_per_trial,
            gpus_per_trial=gpus_per_trial,
            objective=objective,
            direction=direction,  # type: ignore[arg-type]  # checked by SweepConfig
            seed=seed,
            name=name,
            ray_address=ray,
        )
        result = Sweep(
            ConfigManager(config, overrides or ()),
            spec,
            log=lambda m: console.print(f"[dim]{m}[/]", highlight=False),
        ).run()
    except UserError as exc:
        _fail(exc)
        return
    except KeyboardInterrupt:
        console.print("[yellow]interrupted:[/] finished trials are kept; run the same command "
                      "again to resume")  # fmt: skip
        raise typer.Exit(130) from None
    console.print(sweep_table(result))
    best = result.best
    if best is not None:
        console.print(f"best: trial {best.trial} (run {best.run_id}): {result.objective} = "
                      f"{best.objective:.4g}; {best.run_dir}", highlight=False)  # fmt: skip
    if as_json:
        print(json.dumps(result.as_dict(), default=str))


@app.command()
def cycle(
    config: Annotated[Path, typer.Option("--config", "-c", help="The cycle YAML file.")],
    overrides: Annotated[
        list[str] | None,
        typer.Option(
            "--set", help="Override a field: --set rounds=3, --set stages.LABEL.train.max_steps=5"
        ),
    ] = None,
    fresh: Annotated[
        bool, typer.Option(help="Discard this cycle's folder and start over (not resume).")
    ] = False,
    ray: Annotated[
        str | None,
        typer.Option(
            help="Play the benchmark episodes as Ray tasks on this cluster: local (started "
            "here), auto or HOST:PORT (sets benchmark.ray_address)."
        ),
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """Run the whole cycle: rounds of registered stages (train, search, evolve...) over a
    population, each round benchmarked on the same episodes, with lineage in the knowledge
    graph; the same command again resumes it."""
    from rich.markup import escape
    from rich.table import Table

    from llm_trainer.experiments.cycle import Cycle, load_cycle

    try:
        extra = [f"benchmark.ray_address={ray}"] if ray else []
        spec = load_cycle(config, [*(overrides or ()), *extra])
        report = Cycle(
            spec, fresh=fresh, log=lambda m: console.print(f"[dim]{escape(m)}[/]", highlight=False)
        ).run()
    except UserError as exc:
        _fail(exc)
        return
    except KeyboardInterrupt:
        console.print("[yellow]interrupted:[/] finished stages are kept; run the same command "
                      "again to resume")  # fmt: skip
        raise typer.Exit(130) from None
    level = f"{report['confidence']:.0%}"
    table = Table(title=f"cycle {report['cycle']}: {report['suite']}")
    for column in ("round", "stages", f"success [{level}]", "vs round 0", "p", "top failures"):
        table.add_column(
            column, justify="left" if column in ("stages", "top failures") else "right"
        )
    for r in report["rounds"]:
        first = r.get("vs_round_0")
        s = r["success"]
        table.add_row(
            str(r["round"]),
            ", ".join(r["stages"]) or "-",
            f"{s['mean']:.3f} [{s['ci_low']:.3f}, {s['ci_high']:.3f}]",
            "-" if first is None else
            f"{first['difference']:+.3f} [{first['ci_low']:+.3f}, {first['ci_high']:+.3f}]",
            "-" if first is None else f"{first['p_value']:.2g}",
            ", ".join(f"{m} {n}" for m, n in list(r["failure_modes"].items())[:2]) or "-",
        )  # fmt: skip
    console.print(table)
    console.print(report["verdict"], highlight=False)
    console.print(f"table: {report['table']}  plot: {report['plot']}", highlight=False)
    if as_json:
        print(json.dumps(report, default=str))


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
