"""`sparring league RUN_DIR`: a self-play run's league as a ratings table, and its ratings over training as a plot."""

from __future__ import annotations

import math
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from sparring.agents.selfplay.league import LEARNER_SUFFIX, League, Player, payoff_score, role_kind

_LINESTYLE = {"main": "-", "main_exploiter": "--", "league_exploiter": ":"}
_SNAPSHOT_MARKERS = "os^Dv"


def report(league: League, plot: Path, console: Console | None = None) -> None:
    """Print the league as a table, plot its ratings over training to ``plot`` (PNG), and say where."""
    table = league_table(league)
    if console is None:
        console = Console()
        if not console.is_terminal:  # a pipe or log file gets whole rows, not rows folded into 80 columns
            console = Console(width=console.measure(table, options=console.options.update_width(10_000)).maximum)
    console.print(table)
    plot_ratings(league, plot)
    console.print(f"ratings plot: {plot}", soft_wrap=True)


def league_table(league: League) -> Table:
    """Learners, scripted members and the snapshots in the window that have played, ranked by Elo; below them, apart
    and unranked, those that have not played yet (a snapshot's Elo is only the learner's at the time it was taken).
    A scripted member's step is "—"; the anchor's role says so."""
    rated: list[tuple[float, list[str], str | None]] = []
    for key, learner in league.learners.items():
        group, _, role = key.partition("/")
        rated.append((learner.rating, [key + LEARNER_SUFFIX, group, role, "—", f"{learner.rating:.1f}",
                                       str(learner.games), "", _openskill(league, key)], "bold"))
    unplayed: list[list[str]] = []
    for player in [*league.scripted.values(), *sorted(league.players.values(), key=lambda p: -p.step)]:
        scripted = player.member is not None
        role = f"{player.role} (anchor)" if league.anchored(player) else player.role
        cells = [player.id, player.group, role, "—" if scripted else str(player.step), f"{player.rating:.1f}",
                 str(player.games), _learner_record(league, player), _openskill(league, player.id)]
        if player.games:
            rated.append((player.rating, cells, None))
        else:
            unplayed.append(cells)
    show_openskill = bool(league.openskill)
    table = Table(title="League (Learner %: the main learners' score against the snapshot)",
                  caption="below the line: players that have not played yet (unranked)" if unplayed else None,
                  box=box.SIMPLE_HEAD)
    table.add_column("#", justify="right")
    for name in ["Player", "Group", "Role"]:
        table.add_column(name, overflow="fold")
    for name in ["Step", "Elo", "Games", "Learner %", *(["OpenSkill"] if show_openskill else [])]:
        table.add_column(name, justify="right")
    width = 8 if show_openskill else 7
    for rank, (_, cells, style) in enumerate(sorted(rated, key=lambda row: -row[0]), start=1):
        table.add_row(str(rank), *cells[:width], style=style)
    if unplayed:
        table.add_section()
        for cells in unplayed:
            table.add_row("—", *cells[:width], style="dim")
    return table


def plot_ratings(league: League, path: Path) -> None:
    """Write :func:`ratings_figure` to ``path`` (PNG)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ratings_figure(league).savefig(path, dpi=100)


def ratings_figure(league: League):
    """Elo over training steps: a bold line per learner (a colour each), a thin one per scripted member, and each
    group's snapshots as grey markers (their ratings as games moved them), with a legend naming them."""
    from matplotlib.figure import Figure  # a Figure without pyplot renders with Agg: no display, no global state

    groups = {p.id: p.group for p in [*league.retired.values(), *league.players.values()]}
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for i, group in enumerate(sorted(set(groups.values()))):
        rows = [r for r in league.history if groups.get(r["player"]) == group]
        ax.scatter([r["step"] for r in rows], [r["rating"] for r in rows], s=14, alpha=0.45, color="0.55",
                   marker=_SNAPSHOT_MARKERS[i % len(_SNAPSHOT_MARKERS)], linewidths=0,
                   label=f"{group} snapshots", zorder=1)
    for i, key in enumerate(league.learners):
        rows = [r for r in league.history if r["player"] == key + LEARNER_SUFFIX]
        ax.plot([r["step"] for r in rows], [r["rating"] for r in rows], color=f"C{i}", linewidth=2.2,
                linestyle=_LINESTYLE[role_kind(key.partition("/")[2])], label=key + LEARNER_SUFFIX, zorder=2)
    for i, player in enumerate(league.scripted.values()):
        rows = [r for r in league.history if r["player"] == player.id]
        if rows:
            ax.plot([r["step"] for r in rows], [r["rating"] for r in rows], color=f"C{len(league.learners) + i}",
                    linewidth=1.0, label=player.id, zorder=2)
    if not league.history:
        ax.text(0.5, 0.5, "no rated games yet", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlabel("learner step")
    ax.set_ylabel("Elo")
    ax.set_title("League ratings")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    return fig


def _learner_record(league: League, player: Player) -> str:
    """The main learners' score against ``player``: its own group's learner in a symmetric game, the
    learners of the other sides in a game with sides (a side never plays its own snapshots there)."""
    records = [league.payoff[key][player.id] for key in league.learners
               if key.partition("/")[2] == "main" and player.id in league.payoff.get(key, {})]
    total = payoff_score([sum(column) for column in zip(*records)] if records else (0, 0, 0))
    return "—" if math.isnan(total) else f"{total:.0%}"


def _openskill(league: League, participant: str) -> str:
    rating = league.openskill.get(participant)
    return f"{rating['mu']:.1f}±{rating['sigma']:.1f}" if rating else ""
