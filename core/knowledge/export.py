"""The knowledge graph as files: GraphML (the whole graph), and a picture of a neighbourhood as a
PNG (matplotlib) or a self-contained HTML page (an inline SVG: no script, no network).

Every file is written atomically (a temp file renamed into place).
"""

from __future__ import annotations

import html
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llm_trainer.core.errors import UserError
from llm_trainer.core.knowledge.schema import NODE_KINDS
from llm_trainer.core.rundir import atomic_write

if TYPE_CHECKING:
    import networkx as nx

ExportFormat = Literal["graphml", "png", "html"]
EXPORT_FORMATS: tuple[str, ...] = ("graphml", "png", "html")
#: The most nodes a picture shows (a larger one is unreadable; export GraphML instead).
MAX_PICTURE_NODES = 400

#: One colour per node kind (matplotlib's tab10), in :data:`NODE_KINDS` order.
KIND_COLOURS: Mapping[str, str] = dict(
    zip(
        NODE_KINDS,
        ("#1f77b4", "#2ca02c", "#ff7f0e", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"),
        strict=True,
    )
)


def neighbourhood(
    graph: nx.MultiDiGraph[str], around: str | None, depth: int = 2
) -> nx.MultiDiGraph[str]:
    """The nodes within ``depth`` edges of ``around`` (either direction) and the edges among
    them; the whole graph when ``around`` is ``None``."""
    import networkx as nx

    if around is None:
        return graph
    if around not in graph:
        raise UserError(f"no node {around!r} in the graph")
    if depth < 0:
        raise UserError(f"depth must be >= 0, got {depth}")
    near = nx.single_source_shortest_path_length(graph.to_undirected(as_view=True), around, depth)
    return graph.subgraph(near)


def _plain(value: Any) -> str | int | float | bool:
    """A GraphML attribute value: scalars as they are, anything else as JSON text."""
    if isinstance(value, str | int | float | bool):
        return value
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def flat_copy(graph: nx.MultiDiGraph[str]) -> nx.MultiDiGraph[str]:
    """A copy whose attributes GraphML can hold (lists and mappings as JSON text, no ``None``)."""
    import networkx as nx

    flat: nx.MultiDiGraph[str] = nx.MultiDiGraph()
    for node, data in graph.nodes(data=True):
        flat.add_node(node, **{k: _plain(v) for k, v in data.items() if v is not None})
    for source, target, key, data in graph.edges(keys=True, data=True):
        flat.add_edge(source, target, key)
        flat.edges[source, target, key].update(
            {("edge_key" if k == "key" else k): _plain(v) for k, v in data.items() if v is not None}
        )
    return flat


def write_graphml(graph: nx.MultiDiGraph[str], path: str | Path) -> Path:
    """The graph as GraphML (node and edge ids kept; ``kind`` and every attribute as data)."""
    import networkx as nx

    text = "\n".join(nx.generate_graphml(flat_copy(graph), encoding="utf-8", prettyprint=True))
    return atomic_write(Path(path), (text + "\n").encode())


def label(node: str, data: Mapping[str, Any], width: int = 28) -> str:
    """A short label: a problem's statement, a solution's text, an agent's or a dataset's name,
    a model's digest..."""
    kind = data.get("kind", "")
    text = {
        "problem": data.get("statement"),
        "solution": data.get("text"),
        "agent": data.get("name") or data.get("spec"),
        "model": f"model {data.get('digest', '')[:8]}",
        "dataset": data.get("name") or data.get("version"),
        "experiment": data.get("name"),
        "failure_mode": data.get("name"),
        "tool": data.get("name"),
    }.get(kind) or node
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _layout(graph: nx.MultiDiGraph[str]) -> dict[str, tuple[float, float]]:
    import networkx as nx

    if len(graph) > MAX_PICTURE_NODES:
        raise UserError(
            f"a picture of {len(graph)} nodes is unreadable (at most {MAX_PICTURE_NODES}): "
            "choose a neighbourhood (--around NODE --depth N) or export graphml"
        )
    if not len(graph):
        raise UserError("the graph is empty: nothing to draw")
    simple = nx.Graph(graph.to_undirected(as_view=True))
    k = 1.5 / math.sqrt(len(graph))  # spread a little more than networkx's default
    positions = nx.spring_layout(simple, seed=0, k=k)
    return {n: (float(p[0]), float(p[1])) for n, p in positions.items()}


def write_png(graph: nx.MultiDiGraph[str], path: str | Path, title: str = "") -> Path:
    """A drawing of the graph (at most :data:`MAX_PICTURE_NODES` nodes), coloured by kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import networkx as nx

    positions = _layout(graph)
    size = min(16.0, 6.0 + len(graph) / 15)
    fig, ax = plt.subplots(figsize=(size, size * 0.75), dpi=110)
    nx.draw_networkx_edges(
        graph, positions, ax=ax, edge_color="#999999", arrows=True, arrowsize=8, width=0.8
    )
    if graph.number_of_edges() <= 60:  # more labels only overlap (the HTML page has them all)
        edge_labels = {(s, t): str(d["kind"]) for s, t, d in graph.edges(data=True)}
        nx.draw_networkx_edge_labels(
            graph, positions, edge_labels=edge_labels, ax=ax, font_size=6, font_color="#555555"
        )
    kinds = [str(graph.nodes[n]["kind"]) for n in graph]
    nx.draw_networkx_nodes(
        graph, positions, ax=ax, node_color=[KIND_COLOURS[k] for k in kinds], node_size=220
    )
    nx.draw_networkx_labels(
        graph, positions, labels={n: label(n, d) for n, d in graph.nodes(data=True)},
        ax=ax, font_size=7, verticalalignment="bottom",
    )  # fmt: skip
    for kind in dict.fromkeys(kinds):
        ax.scatter([], [], color=KIND_COLOURS[kind], label=kind)
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    ax.set_title(title, fontsize=10)
    ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".png")
    os.fchmod(fd, 0o644)  # mkstemp makes the file private; a picture is for sharing
    os.close(fd)
    try:
        fig.savefig(tmp)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _tooltip(node: str, data: Mapping[str, Any]) -> str:
    lines = [node] + [f"{k}: {_plain(v)}" for k, v in data.items() if v is not None]
    return "\n".join(line if len(line) <= 300 else line[:299] + "…" for line in lines)


def write_html(graph: nx.MultiDiGraph[str], path: str | Path, title: str = "") -> Path:
    """A self-contained HTML page: the graph as an inline SVG (nodes coloured by kind, edges
    labelled with theirs, every attribute in a node's or edge's tooltip); no script, no
    network."""
    positions = _layout(graph)
    width, height, margin = 1100, 800, 60
    xs = [p[0] for p in positions.values()]
    ys = [p[1] for p in positions.values()]
    span_x = (max(xs) - min(xs)) or 1.0
    span_y = (max(ys) - min(ys)) or 1.0

    def at(node: str) -> tuple[float, float]:
        x, y = positions[node]
        return (
            margin + (x - min(xs)) / span_x * (width - 2 * margin),
            margin + (y - min(ys)) / span_y * (height - 2 * margin),
        )

    esc = html.escape
    parts = []
    for source, target, data in graph.edges(data=True):
        (x1, y1), (x2, y2) = at(source), at(target)
        tip = esc(_tooltip(f"{source} -{data['kind']}-> {target}", data))
        parts.append(
            f'<g class="edge"><title>{tip}</title><line x1="{x1:.1f}" y1="{y1:.1f}" '
            f'x2="{x2:.1f}" y2="{y2:.1f}" marker-end="url(#arrow)"/>'
            f'<text x="{(x1 + x2) / 2:.1f}" y="{(y1 + y2) / 2:.1f}">{esc(data["kind"])}</text></g>'
        )
    for node, data in graph.nodes(data=True):
        x, y = at(node)
        colour = KIND_COLOURS.get(str(data["kind"]), "#000000")
        parts.append(
            f'<g class="node"><title>{esc(_tooltip(node, data))}</title>'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="9" fill="{colour}"/>'
            f'<text x="{x + 12:.1f}" y="{y + 4:.1f}">{esc(label(node, data))}</text></g>'
        )
    kinds = dict.fromkeys(str(k) for _, k in graph.nodes(data="kind"))
    legend = " ".join(
        f'<span><i style="background:{KIND_COLOURS[k]}"></i>{esc(k)}</span>' for k in kinds
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title or "knowledge graph")}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1em; }}
.legend span {{ margin-right: 1em; }}
.legend i {{ display: inline-block; width: 10px; height: 10px; border-radius: 50%;
  margin-right: 4px; }}
svg {{ border: 1px solid #ddd; }}
.edge line {{ stroke: #999; stroke-width: 1; }}
.edge text {{ font-size: 9px; fill: #777; }}
.node text {{ font-size: 11px; }}
.node:hover circle {{ stroke: #000; stroke-width: 2; }}
</style></head>
<body><h1>{esc(title or "knowledge graph")}</h1>
<p class="legend">{legend}</p>
<p>{len(graph)} nodes, {graph.number_of_edges()} edges; hover over a node or an edge for its
attributes.</p>
<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"
  viewBox="0 0 {width} {height}">
<defs><marker id="arrow" viewBox="0 0 10 10" refX="19" refY="5" markerWidth="6"
  markerHeight="6" orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#999"/>
</marker></defs>
{chr(10).join(parts)}
</svg></body></html>
"""
    return atomic_write(Path(path), page.encode())
