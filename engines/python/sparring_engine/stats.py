"""Game statistics for the trainer's TensorBoard: ML-Agents' ``StatsRecorder``, for a Python game."""

from __future__ import annotations

import math

from sparring.protos.sparring.v1 import bridge_pb2 as pb
from sparring.protos.wire import STAT_AGGREGATIONS


class StatsRecorder:
    """What the game measured (coins collected, level reached), sent to the trainer with the next step.

    A game keeps one as its ``stats`` attribute and records as it plays; :func:`run` sends what was
    recorded with each Observations. The trainer logs a key's values under that name, each summary
    period aggregated as the key says:

        stats.record_stat("Arena/Coins collected", 3, "sum")
        stats.record_stat("Arena/Level", level, "most_recent")
    """

    def __init__(self) -> None:
        self._stats: list[pb.GameStat] = []
        self._aggregations: dict[str, str] = {}

    def record_stat(self, key: str, value: float, aggregation: str = "average") -> None:
        """Record one value; ``aggregation`` is ``"average"``, ``"most_recent"``, ``"sum"`` or ``"histogram"``,
        the same for every value of a key."""
        code = STAT_AGGREGATIONS.get(aggregation)
        if code is None:
            raise ValueError(f"statistic {key!r}: aggregation {aggregation!r} is not one of {list(STAT_AGGREGATIONS)}")
        if not isinstance(key, str) or not key:
            raise ValueError(f"a statistic needs a name, got {key!r}")
        if not math.isfinite(value):
            raise ValueError(f"statistic {key!r}: {value} is not finite")
        first = self._aggregations.setdefault(key, aggregation)
        if first != aggregation:
            raise ValueError(f"statistic {key!r} is recorded with aggregation {first!r}, not {aggregation!r}")
        self._stats.append(pb.GameStat(key=key, value=float(value), aggregation=code))

    def drain(self) -> list[pb.GameStat]:
        """What was recorded since the last call, in order; then it is forgotten."""
        stats, self._stats = self._stats, []
        return stats
