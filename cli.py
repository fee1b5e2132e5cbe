"""The ``llm-trainer`` command line.

``llm-trainer envs`` lists the registered environments; ``llm-trainer evaluate`` runs an agent
on held-out seeds; ``llm-trainer quickstart`` is the main job of ``scripts/run.sh``.
Commands with ``--json`` end with their summary as one JSON object on the last line.
"""

from __future__ import annotations

import json
import sys
import time
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
JsonFlag = Annotated[bool, typer.Option("--json", help="End with a one-line JSON summary.")]


def _fail(exc: Exception) -> None:
    console.print(f"[bold red]error:[/] {exc}", highlight=False)
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
    agent: Annotated[str, typer.Option(help="Agent spec: oracle or random.")] = "oracle",
    env: Annotated[str, typer.Option(help="Env id, or 'all'.")] = "all",
    episodes: Annotated[int, typer.Option(min=1, help="Episodes (one per seed).")] = 100,
    seed: Annotated[int, typer.Option(help="First seed; seeds are seed..seed+episodes-1.")] = 0,
    difficulty: Annotated[int | None, typer.Option(help="Difficulty (default: the env's).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Evaluate an agent on held-out seeds and print the tool-use metrics."""
    from llm_trainer.envs.registration import registry, spec

    try:
        env_ids = list(registry()) if env == "all" else [spec(env).id]
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


@app.command()
def quickstart(
    episodes: Annotated[int, typer.Option(min=1, help="Episodes per env and agent.")] = 100,
    seed: Annotated[int, typer.Option(help="First held-out seed.")] = 10_000,
    as_json: JsonFlag = False,
) -> None:
    """The main job: list the envs, then evaluate the oracle and random agents on each."""
    from llm_trainer.envs.registration import registry

    start = time.perf_counter()
    envs(tag=None, as_json=False)
    env_ids = list(registry())
    rows = []
    for agent in ("oracle", "random"):
        rows += _evaluate_rows(agent, env_ids, episodes, seed, None)
    _print_rows(rows, f"Baselines on held-out seeds {seed}..{seed + episodes - 1}")
    wall = time.perf_counter() - start
    console.print(f"done in {wall:.1f} s")
    if as_json:
        oracle = [r for r in rows if r["agent"] == "oracle"]
        print(
            json.dumps(
                {
                    "success": sum(r["success"] for r in oracle) / len(oracle),
                    "tool_accuracy": sum(r["tool_correct"] for r in oracle) / len(oracle),
                    "format_correctness": sum(r["format_ok"] for r in oracle) / len(oracle),
                    "execution_success": sum(r["exec_ok"] for r in oracle) / len(oracle),
                    "answer_correctness": sum(r["answer_correct"] for r in oracle) / len(oracle),
                    "results": rows,
                    "wall_seconds": round(wall, 3),
                }
            )
        )


def main() -> None:  # pragma: no cover - console entry point
    sys.exit(app())


if __name__ == "__main__":  # pragma: no cover
    main()
