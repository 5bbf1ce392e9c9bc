"""`sparring ladder RUN_DIR`'s report: the tiers of each ladder as a table, and their checked win rates as a plot."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from sparring.ladder import SideLadder


def report(ladders: list[SideLadder], plot: Path, console: Console | None = None) -> None:
    """Print each ladder as a table, plot them to ``plot`` (PNG), and say what was exported where."""
    console = console or Console(highlight=False, soft_wrap=True)
    for side_ladder in ladders:
        console.print(ladder_table(side_ladder))
        if side_ladder.files:
            folder = side_ladder.files[0][0].parent
            kinds = sorted(p.name.removeprefix("tier1") for p in folder.glob("tier1.*"))  # the sidecar too
            console.print(f"exported: {folder}/tier<k>{{{','.join(kinds)}}} for k = 1 (easiest) .. "
                          f"{len(side_ladder.files)}")
        for fmt, why in side_ladder.refused.items():
            console.print(f"not exported as {fmt}: {why}")
    plot.parent.mkdir(parents=True, exist_ok=True)
    ladder_figure(ladders).savefig(plot, dpi=100)
    console.print(f"ladder plot: {plot}")


def ladder_table(side_ladder: SideLadder) -> Table:
    """Tiers easiest first: the snapshot, its step and Elo, and its checked score against the tier below."""
    ladder = side_ladder.ladder
    low, high = ladder.band
    side = f", side {side_ladder.side}" if side_ladder.side else ""
    table = Table(title=f"Difficulty ladder of {side_ladder.group}{side} (band {low:.0%}-{high:.0%} against the "
                        f"tier below, draws half; actions {side_ladder.play})", box=box.SIMPLE_HEAD)
    table.add_column("Tier", justify="right")
    table.add_column("Player", overflow="fold")
    for name in ["Step", "Elo", "Beats tier below", "Games", "In band"]:
        table.add_column(name, justify="right")
    for k, tier in enumerate(ladder.tiers, start=1):
        cells = ["—", "", "—"]
        if k > 1:
            check = ladder.checks[k - 2]
            fits = ladder.in_band[k - 2]
            cells = [f"{check.score:.1%}", str(check.games), "yes" if fits else "[bold red]no[/bold red]"]
        table.add_row(str(k), tier.id, str(tier.step), f"{tier.rating:.0f}", *cells)
    return table


def ladder_figure(ladders: list[SideLadder]):
    """Per ladder, each tier's checked score against the tier below (bars, the band shaded), tiers labelled with
    their snapshots."""
    from matplotlib.figure import Figure  # Agg, no display, as in league_report

    fig = Figure(figsize=(8, 3.2 * len(ladders)), layout="constrained")
    for ax, side_ladder in zip(fig.subplots(len(ladders), 1, squeeze=False)[:, 0], ladders):
        ladder = side_ladder.ladder
        low, high = ladder.band
        ax.axhspan(low, high, color="C2", alpha=0.15, label=f"band {low:.0%}-{high:.0%}")
        ax.axhline(0.5, color="0.5", linewidth=0.8, linestyle="--", label="even")
        xs = list(range(2, len(ladder.tiers) + 1))
        colours = ["C0" if fits else "C3" for fits in ladder.in_band]
        ax.bar(xs, [c.score for c in ladder.checks], color=colours, width=0.6)
        for x, check in zip(xs, ladder.checks):
            ax.annotate(f"{check.score:.0%}", (x, check.score), ha="center", va="bottom", fontsize="small")
        ax.set_xticks(range(1, len(ladder.tiers) + 1),
                      [f"tier {k}\n{t.id}\nElo {t.rating:.0f}" for k, t in enumerate(ladder.tiers, start=1)],
                      fontsize="small")
        ax.set_xlim(0.5, len(ladder.tiers) + 0.5)
        ax.set_ylim(0, 1)
        ax.set_ylabel("score vs tier below")
        ax.set_title(f"{side_ladder.name}: each tier against the one below ({ladder.checks[0].games} fresh games each)")
        ax.legend(fontsize="small", loc="lower right")
    return fig
