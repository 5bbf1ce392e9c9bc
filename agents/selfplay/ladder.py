"""A difficulty ladder: snapshots of a league chosen so that each tier beats the one below at a chosen rate.

A game wants Easy, Normal and Hard NPCs a known step apart, not one unbeatable one. The ladder is built from
the top down: the run's final policy is the hardest tier; below each tier, among the snapshots taken before it,
the one it should beat at the middle of the band is estimated from Elo (:func:`elo_expected`), then fresh games
between the two decide: a snapshot beaten more often than the band's middle is too weak, so a later one is
tried, and the other way round, until one falls near the middle or none is left between; the one measured
nearest the middle is taken if it is inside the band by a standard error of its games. A tier chosen at the
band's edge would often fall outside it when checked again. Measured rates decide; Elo only says where to
look first, and training time orders the search (a snapshot's Elo moves only while it is drawn as an
opponent, so early ones can be rated above later, stronger ones). Once chosen, every pair of neighbouring
tiers plays fresh games again, and those rates are the ladder's (a pair the check finds outside the band is
reported as such, not hidden).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from sparring.agents.selfplay.league import elo_expected


class LadderError(ValueError):
    """The ladder asked for cannot be built from the snapshots the run has; the message says which pair fell short."""


@dataclass(frozen=True)
class Candidate:
    """A policy a tier may be: a league snapshot (``id`` its player id) or the run's final policy."""

    id: str
    step: int
    rating: float  # Elo


@dataclass
class Measurement:
    """Fresh games of ``upper`` against ``lower``: upper's mean score (draws half) over ``games``."""

    upper: str
    lower: str
    score: float
    games: int

    @property
    def standard_error(self) -> float:
        """Of the score (at most: draws, scored a half, only lower it)."""
        return float(np.sqrt(self.score * (1 - self.score) / self.games))


Measure = Callable[[Candidate, Candidate, int], Measurement]
"""``measure(upper, lower, seed)``: play fresh games between two candidates, seeded by ``seed``."""


@dataclass
class Ladder:
    """Tiers weakest first, with the checked rate of each tier against the one below (``checks[k - 1]`` is tier
    k+1 against tier k), and every measurement made while choosing them."""

    band: tuple[float, float]
    tiers: list[Candidate]
    checks: list[Measurement]
    tried: list[Measurement] = field(default_factory=list)

    @property
    def ordered(self) -> bool:
        """Every tier beats the one below (checked rate above one half)."""
        return all(check.score > 0.5 for check in self.checks)

    @property
    def in_band(self) -> list[bool]:
        """Per neighbouring pair, whether its checked rate lies in the band."""
        low, high = self.band
        return [low <= check.score <= high for check in self.checks]


def check_band(band: Sequence[float]) -> tuple[float, float]:
    """``band`` as (low, high), refused unless one half < low <= high < 1: each tier must beat the one below."""
    low, high = (float(x) for x in band)
    if not 0.5 < low <= high < 1.0:
        raise LadderError(f"band {low:g}-{high:g}: give 0.5 < low <= high < 1 (each tier must beat the one below, "
                          "and a tier that always wins leaves no tier between)")
    return low, high


def build_ladder(candidates: Sequence[Candidate], measure: Measure, band: Sequence[float] = (0.65, 0.75),
                 tiers: int | None = None, seed: int = 0) -> Ladder:
    """Choose tiers among ``candidates`` (the last by step is the top tier) and check them with fresh games.

    ``tiers``: how many (all the band allows, from the top down, if None; at least two). Raises
    :class:`LadderError` when fewer can be found, naming the pair and rate where the search stopped.
    """
    band = check_band(band)
    if tiers is not None and tiers < 2:
        raise LadderError(f"--tiers {tiers}: a ladder has at least two tiers")
    ordered = sorted(candidates, key=lambda c: c.step)
    if tiers is not None and tiers > len(ordered):
        raise LadderError(f"{tiers} tiers need {tiers} policies; the run has {len(ordered)} (its kept snapshots and "
                          "its final policy)")
    seeds = np.random.default_rng(seed)
    tried: list[Measurement] = []

    def fresh(upper: Candidate, lower: Candidate) -> Measurement:
        found = measure(upper, lower, int(seeds.integers(2**31)))
        tried.append(found)
        return found

    chosen = [len(ordered) - 1]
    stop = ""
    while tiers is None or len(chosen) < tiers:
        below, stop = _step_down(ordered, chosen[-1], band, fresh)
        if below is None:
            break
        chosen.append(below)
    if len(chosen) < (tiers or 2):
        found = ", ".join(ordered[i].id for i in chosen)
        raise LadderError(f"{tiers or 2} tiers a {band[0]:.0%}-{band[1]:.0%} step apart cannot be found among "
                          f"{len(ordered)} policies; from the strongest down, {len(chosen)} found ({found}), "
                          f"then {stop}")
    ladder = [ordered[i] for i in reversed(chosen)]
    checks = [fresh(upper, lower) for lower, upper in zip(ladder, ladder[1:])]
    return Ladder(band, ladder, checks, tried)


def _step_down(ordered: list[Candidate], top: int, band: tuple[float, float],
               fresh: Callable[[Candidate, Candidate], Measurement]) -> tuple[int | None, str]:
    """The index of a candidate below ``ordered[top]`` that it beats at a rate in the band, or None and why not.

    Candidates are ordered by training step; each try is the one left whose Elo-expected score is nearest the
    band's middle (the middle one left, where Elo cannot tell), and its measured rate narrows the search to the
    later ones (rate above the middle: weaker than wanted) or the earlier ones. The search ends at a rate within
    an eighth of the band's width of its middle, or when no candidate is left; the best taken is one measured
    inside the band by at least a standard error of its games at each edge. A tier measured just inside the band
    falls outside it about as often as not when checked again: tic-tac-toe's snapshots 20k steps apart offered
    a pair measured inside, then checked at 0.751 and 0.752 in two runs against a band top of 0.75."""
    upper = ordered[top]
    low, high = band
    target = (low + high) / 2
    lo, hi = 0, top - 1
    too_weak: Measurement | None = None  # the latest snapshot found too weak, and the earliest too strong
    too_strong: Measurement | None = None
    best: tuple[float, int] | None = None  # (distance from the middle, index) of the best in the band
    while lo <= hi:
        j = min(range(lo, hi + 1), key=lambda k: (round(abs(elo_expected(upper.rating, ordered[k].rating) - target), 3),
                                                  abs(k - (lo + hi) / 2)))
        found = fresh(upper, ordered[j])
        margin = found.standard_error
        if low + margin <= found.score <= high - margin and (best is None or abs(found.score - target) < best[0]):
            best = abs(found.score - target), j
            if best[0] <= (high - low) / 8:
                break
        if found.score > target:
            too_weak, lo = found, j + 1
        else:
            too_strong, hi = found, j - 1
    if best is not None:
        return best[1], ""
    if too_weak is None and too_strong is None:
        return None, f"{upper.id} is the earliest policy the run kept: none is weaker"
    if too_strong is not None and too_weak is None:
        return None, (f"{upper.id} beats even the weakest, {too_strong.lower}, only {_rate(too_strong)} "
                      f"({too_strong.games} games), below the band or within a standard error of its bottom")
    if too_strong is None:
        return None, (f"{upper.id} beats {too_weak.lower} {_rate(too_weak)} ({too_weak.games} games), above the "
                      "band or within a standard error of its top, and no later snapshot lies between them")
    return None, (f"{upper.id} beats {too_weak.lower} {_rate(too_weak)} and {too_strong.lower} "
                  f"{_rate(too_strong)} ({too_strong.games} games each), neither inside the band by a standard "
                  "error, and no snapshot taken between them (snapshots taken more often, a smaller save_steps, "
                  "would fill the gap; more --games narrow the error)")


def _rate(found: Measurement) -> str:
    """A measured rate with its standard error, as the refusals print it."""
    return f"{found.score:.1%} ± {found.standard_error:.1%}"
