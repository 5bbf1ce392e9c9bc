"""`sparring league RUN_DIR`: a self-play run's league as a ratings table, and its ratings over training as a plot."""

from __future__ import annotations

import math
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from sparring.agents.selfplay.league import LEARNER_SUFFIX, League, Player, payoff_score, role_kind

_LINESTYLE = {"main": "-", "main_exploiter": "--", "league_exploiter": ":"}


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
    """Learners and the snapshots in the window, best Elo first, with each main learner's record against them."""
    rows: list[tuple[float, list[str], str | None]] = []
    for key, learner in league.learners.items():
        group, _, role = key.partition("/")
        rows.append((learner.rating, [key + LEARNER_SUFFIX, group, role, "—", f"{learner.rating:.1f}",
                                      str(learner.games), "", _openskill(league, key)], "bold"))
    for player in league.players.values():
        rows.append((player.rating, [player.id, player.group, player.role, str(player.step), f"{player.rating:.1f}",
                                     str(player.games), _learner_record(league, player), _openskill(league, player.id)],
                     None))
    show_openskill = bool(league.openskill)
    table = Table(title="League (Learner %: the main learners' score against the snapshot)",
                  box=box.SIMPLE_HEAD)
    for name in ["Player", "Group", "Role"]:
        table.add_column(name, overflow="fold")
    for name in ["Step", "Elo", "Games", "Learner %", *(["OpenSkill"] if show_openskill else [])]:
        table.add_column(name, justify="right")
    for _, cells, style in sorted(rows, key=lambda row: -row[0]):
        table.add_row(*(cells if show_openskill else cells[:-1]), style=style)
    return table


def plot_ratings(league: League, path: Path) -> None:
    """Elo over training steps: a line per learner, markers for the snapshots (their ratings as games moved them)."""
    from matplotlib.figure import Figure  # a Figure without pyplot renders with Agg: no display, no global state

    groups = {p.id: p.group for p in [*league.retired.values(), *league.players.values()]}
    learners = {key.partition("/")[0] for key in league.learners}
    colors = {group: f"C{i}" for i, group in enumerate(sorted(learners | set(groups.values())))}
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.add_subplot()
    for key in league.learners:
        rows = [r for r in league.history if r["player"] == key + LEARNER_SUFFIX]
        group, _, role = key.partition("/")
        ax.plot([r["step"] for r in rows], [r["rating"] for r in rows], color=colors[group],
                linestyle=_LINESTYLE[role_kind(role)], label=key + LEARNER_SUFFIX)
    for group in sorted(set(groups.values())):
        rows = [r for r in league.history if groups.get(r["player"]) == group]
        ax.scatter([r["step"] for r in rows], [r["rating"] for r in rows], s=12, alpha=0.5, color=colors[group],
                   label=f"{group} snapshots")
    if not league.history:
        ax.text(0.5, 0.5, "no rated games yet", transform=ax.transAxes, ha="center", va="center")
    ax.set_xlabel("learner step")
    ax.set_ylabel("Elo")
    ax.set_title("League ratings")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


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
