"""Layout of a compound job's DAG for its SVG picture: nodes in columns by depth."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from wmproxy.services.monitor import JobRow

NODE_WIDTH = 170
NODE_HEIGHT = 44
COLUMN_GAP = 70
ROW_GAP = 18
MARGIN = 12

#: Fill colour of a node by state (the legend of the monitor's pages uses the same).
STATE_COLOURS = {
    "Submitted": "#d0d7de", "Waiting": "#fff3b0", "Ready": "#ffe08a", "Scheduled": "#ffd166",
    "Running": "#8ecae6", "Done": "#95d5b2", "Aborted": "#f4978e", "Cancelled": "#c9c9c9", "Cleared": "#e9ecef",
}


@dataclass(frozen=True)
class PlacedNode:
    job_id: str
    label: str
    state: str
    colour: str
    x: int
    y: int


@dataclass(frozen=True)
class Arrow:
    """From the right edge of the node depended on to the left edge of the dependent node."""

    x1: int
    y1: int
    x2: int
    y2: int


@dataclass(frozen=True)
class DagPicture:
    width: int
    height: int
    nodes: list[PlacedNode]
    arrows: list[Arrow]
    node_width: int = NODE_WIDTH
    node_height: int = NODE_HEIGHT


def depths(ids: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    """Column of each node: 0 without dependencies, else 1 + the deepest node it depends on
    (a cycle, which registration refuses, is cut at its first node in ``ids``' order).

    Kahn's topological order, without recursion: a chain is as deep as it is long (up to
    ``[jobs] max_nodes``), and a recursion per node ended in a RecursionError past about 500
    (a 500 page and 110 KB of traceback logged per view)."""
    needs: dict[str, list[str]] = {i: [] for i in ids}
    dependents: dict[str, list[str]] = {i: [] for i in ids}
    for node, depends_on in edges:
        if node in needs and depends_on in needs:
            needs[node].append(depends_on)
            dependents[depends_on].append(node)
    waiting = {node: len(needed) for node, needed in needs.items()}
    ready = deque(node for node in ids if not waiting[node])
    result: dict[str, int] = {}
    cursor = 0  # ids before it have their column
    while len(result) < len(needs):
        if not ready:  # the nodes left wait on a cycle: cut it at the first of them
            while ids[cursor] in result:
                cursor += 1
            ready.append(ids[cursor])
        while ready:
            node = ready.popleft()
            if node in result:  # a cycle's cut node, ready again once the cycle was placed
                continue
            result[node] = max((result[d] + 1 for d in needs[node] if d in result), default=0)
            for dependent in dependents[node]:
                waiting[dependent] -= 1
                if not waiting[dependent]:
                    ready.append(dependent)
    return result


def layout(nodes: list[JobRow], edges: list[tuple[str, str]]) -> DagPicture:
    """Place ``nodes`` (a compound job's) in columns by :func:`depths`, rows in name order."""
    ids = [n.job_id for n in nodes]
    column = depths(ids, edges)
    rows: dict[int, int] = {}
    placed: dict[str, PlacedNode] = {}
    for node in sorted(nodes, key=lambda n: (column[n.job_id], n.name or n.job_id)):
        col = column[node.job_id]
        row = rows.get(col, 0)
        rows[col] = row + 1
        placed[node.job_id] = PlacedNode(
            node.job_id, node.name or node.job_id.rsplit("/", 1)[-1], node.state,
            STATE_COLOURS.get(node.state, "#ffffff"),
            MARGIN + col * (NODE_WIDTH + COLUMN_GAP), MARGIN + row * (NODE_HEIGHT + ROW_GAP))
    half = NODE_HEIGHT // 2
    arrows = [Arrow(placed[b].x + NODE_WIDTH, placed[b].y + half, placed[a].x, placed[a].y + half)
              for a, b in edges if a in placed and b in placed]
    columns = max(column.values(), default=0) + 1
    height_rows = max(rows.values(), default=1)
    return DagPicture(2 * MARGIN + columns * NODE_WIDTH + (columns - 1) * COLUMN_GAP,
                      2 * MARGIN + height_rows * NODE_HEIGHT + (height_rows - 1) * ROW_GAP,
                      list(placed.values()), arrows)
