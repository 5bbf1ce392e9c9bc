"""`sparring doctor RUN_DIR`: read a run's curves the way an experienced RL engineer would, and name what is wrong.

Each check looks at the summaries in ``metrics.jsonl`` (and, for self-play, the
league) for one symptom from the usual debugging checklists (Schulman's "nuts and
bolts" of deep RL, Andy Jones' debugging notes): learning that never happened, an
entropy that collapsed early, a step size that moves the policy too far, a critic
that explains nothing, rewards or observations at scales networks train badly on,
an agent that learned to run out the clock, NaNs, a SAC temperature that fell to
nothing, game builds that crashed, a self-play league out of balance. A finding
says what was seen (the metric and the steps), why it matters and what to try.

The thresholds are rules of thumb, each stated where it is used, not laws: a
finding is a place to look. The return at the start of training is the first
summary's, so a run whose first summary comes late (``summary_freq`` a large part
of ``max_steps``) is judged against a policy that had already learned something.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sparring.agents.selfplay.league import League, payoff_score


@dataclass
class Finding:
    """One thing wrong with a run, in plain words."""

    check: str  # a short name: "no learning", "step size", ...
    behaviour: str | None  # None: the whole run (its game engines)
    seen: str  # what the curves show: metric, values, steps
    why: str  # why it matters
    fix: str  # what to try


@dataclass
class Curves:
    """One behaviour's summaries: the steps they were taken at and every metric, NaN where a summary lacks it."""

    steps: np.ndarray
    metrics: dict[str, np.ndarray] = field(default_factory=dict)
    non_finite: dict[str, tuple[int, float]] = field(default_factory=dict)  # key -> first (step, NaN or Inf) written

    def __getitem__(self, name: str) -> np.ndarray:
        return self.metrics.get(name, np.full(len(self.steps), np.nan))

    def has(self, name: str) -> bool:
        return name in self.metrics and bool(np.isfinite(self.metrics[name]).any())

    def where(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of the summaries that have a finite ``name``."""
        values = self[name]
        ok = np.isfinite(values)
        return self.steps[ok], values[ok]


@dataclass
class Run:
    """What the doctor reads of a run folder."""

    path: Path
    config: dict[str, Any]
    behaviours: dict[str, Curves]
    engines: Curves | None
    league: League | None

    @property
    def trainer(self) -> dict[str, Any]:
        return self.config["trainer"]

    def setting(self, behaviour: str, key: str) -> Any:
        """A hyperparameter as ``behaviour`` trained with it (its own override, else the run's)."""
        overrides = self.trainer.get("behaviours", {})
        own = overrides.get(behaviour, overrides.get(behaviour.split("?")[0], {}))
        return own.get(key, self.trainer["hyperparameters"].get(key))


def read_run(path: str | Path) -> Run:
    """Load ``configuration.yaml``, ``metrics.jsonl`` and (for self-play) ``league/league.json`` of a run folder."""
    path = Path(path)
    for needed in ("configuration.yaml", "metrics.jsonl"):
        if not (path / needed).is_file():
            raise FileNotFoundError(f"{path} has no {needed}: not a sparring run folder (results/<run-id>)")
    config = yaml.safe_load((path / "configuration.yaml").read_text())
    rows: dict[str | None, list[dict[str, Any]]] = {}
    for number, line in enumerate((path / "metrics.jsonl").read_text().splitlines(), start=1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path / 'metrics.jsonl'} line {number}: not JSON ({exc.msg})") from None
            rows.setdefault(row.get("behaviour"), []).append(row)
    curves = {name: _curves(summaries) for name, summaries in rows.items()}
    league = None
    if (path / "league" / "league.json").is_file():
        league = League.load(path / "league")
    engines = curves.pop(None, None)
    return Run(path, config, curves, engines, league)


def _curves(rows: list[dict[str, Any]]) -> Curves:
    keys = sorted({key for row in rows for key in row} - {"step", "behaviour"})
    steps = np.array([row["step"] for row in rows], np.int64)
    curves = Curves(steps, {key: np.array([_number(row.get(key)) for row in rows], np.float64) for key in keys})
    for row in rows:
        for key, value in row.items():
            if isinstance(value, float) and not math.isfinite(value):
                curves.non_finite.setdefault(key, (row["step"], value))
    return curves


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


# -- the checks ---------------------------------------------------------------------------

Check = Callable[[Run, str, Curves], Iterable[Finding]]

EARLY = 0.2  # "early in training": the first fifth of max_steps
LATE = 0.25  # "the end of training": the last quarter of the summaries


def _late(values: np.ndarray) -> np.ndarray:
    return values[-max(1, int(len(values) * LATE)):]


def _steps(steps: np.ndarray) -> str:
    return f"steps {steps[0]:,}" if len(steps) == 1 else f"steps {steps[0]:,}-{steps[-1]:,}"


def check_non_finite(run: Run, name: str, c: Curves) -> Iterable[Finding]:
    """A NaN or infinite loss, entropy, value or return: the network's numbers have broken down."""
    watched = [(step, key, value) for key, (step, value) in c.non_finite.items()
               if key.startswith("Losses/") or key.startswith("Environment/") or key in _WATCHED_FINITE]
    if watched:
        step, key, value = min(watched)
        yield Finding("NaN or Inf", name, f"{key} is {value} from step {step:,}",
                      "once a NaN reaches the weights every later update is NaN too; the policy is lost from there",
                      "lower learning_rate, turn on normalize_obs and normalize_reward, and check the game for NaN or "
                      "huge observations and rewards; resume from a checkpoint taken before that step")


_WATCHED_FINITE = ("Policy/Entropy", "Policy/Approx KL", "Policy/Extrinsic Value Estimate", "Policy/Reward Scale",
                   "Policy/Continuous Entropy Coeff", "Policy/Discrete Entropy Coeff")


def check_no_learning(run: Run, name: str, c: Curves) -> Iterable[Finding]:
    """The return at the end is within noise of the return at the start."""
    if run.trainer.get("self_play") is not None:
        return  # in self-play the return against itself stays near even; the league checks judge progress
    have = np.isfinite(c["Environment/Cumulative Reward"])
    steps, returns = c.steps[have], c["Environment/Cumulative Reward"][have]
    if len(returns) < 4:
        return
    spread, episodes = c["Diagnostics/Return Std"][have], c["Environment/Episodes"][have]
    start, end = returns[0], float(_late(returns).mean())
    # The standard error of the difference: the first summary's mean against the last quarter's mean of means.
    # Three of them (and 5% of the start's size) must separate the two.
    se = math.sqrt(_variance_of_mean(spread[:1], episodes[:1]) + _variance_of_mean(_late(spread), _late(episodes)))
    if end - start > max(3 * se, 0.05 * abs(start), 1e-6):
        return
    change = "fell below" if end < start - 3 * se else "is within the noise of"
    yield Finding(
        "no learning", name,
        f"the mean return over the last quarter ({_steps(_late(steps))}), {end:.3g}, {change} the first summary's "
        f"(step {steps[0]:,}), {start:.3g} ({se:.2g} standard error)",
        "the policy plays no better than it did at the start (close to random play), so the updates are not "
        "finding anything to follow",
        "check that rewards arrive (a reward that random play never reaches gives nothing to learn from: shape it, "
        "or add a curiosity signal), that actions reach the game, and that observations say what the agent needs; "
        "then try a lower learning_rate or more steps",
    )


def _variance_of_mean(stds: np.ndarray, episodes: np.ndarray) -> float:
    """The variance of the mean of several summaries' mean returns (each of ``episodes`` episodes, spread ``std``)."""
    known = np.isfinite(stds) & (episodes > 0)
    return float((stds[known] ** 2 / episodes[known]).sum()) / max(len(stds), 1) ** 2


def check_entropy_collapse(run: Run, name: str, c: Curves) -> Iterable[Finding]:
    """The policy became nearly deterministic in the first fifth of training (discrete actions: entropy >= 0)."""
    steps, entropy = c.where("Policy/Entropy")
    if len(entropy) < 3 or entropy[0] <= 0 or (entropy < 0).any() or run.trainer.get("algorithm") == "sac":
        return
    early = steps <= EARLY * run.trainer["max_steps"]
    collapsed = early & (entropy < 0.1 * entropy[0])
    if collapsed.any():
        at = int(steps[collapsed][0])
        yield Finding(
            "entropy collapse", name,
            f"Policy/Entropy fell from {entropy[0]:.3g} to {entropy[collapsed][0]:.3g} by step {at:,}, within the first "
            f"{EARLY:.0%} of training",
            "a policy that stops exploring this early stops finding better actions: it keeps whatever it did first",
            f"raise ent_coef (now {run.setting(name, 'ent_coef')}), or lower learning_rate",
        )


def check_step_size(run: Run, name: str, c: Curves) -> Iterable[Finding]:
    """Updates move the policy too far: approximate KL or clip fraction high (on average, or through the first half)."""
    _, kl = c.where("Policy/Approx KL")
    if not len(kl):
        return
    first_half = c.steps <= 0.5 * run.trainer["max_steps"]
    early_kl, early_clip = c["Policy/Approx KL"][first_half], c["Policy/Clip Fraction"][first_half]
    early_kl, early_clip = early_kl[np.isfinite(early_kl)], early_clip[np.isfinite(early_clip)]
    kl_mean = float(kl.mean())
    kl_median = float(np.median(early_kl)) if len(early_kl) else 0.0
    clip_median = float(np.median(early_clip)) if len(early_clip) else 0.0
    # PPO keeps each update within a trust region: healthy updates have an approximate KL of ~0.01-0.02 and clip
    # 5-20% of the samples. A step size too large shows as KL above that most of the time, or in spikes that
    # lift its mean; the first half is judged apart, before a decaying learning rate hides the problem.
    if kl_mean > 0.03 or kl_median > 0.03 or clip_median > 0.3:
        yield Finding(
            "step size", name,
            f"Policy/Approx KL averages {kl_mean:.3g} over the run (healthy: 0.01-0.02; largest summary "
            f"{kl.max():.3g}), median {kl_median:.3g} over the first half, where Policy/Clip Fraction's median is "
            f"{clip_median:.2f} (healthy: 0.05-0.2)",
            "each update moves the policy further than PPO's clipped objective keeps trustworthy, so updates "
            "overshoot and undo each other",
            f"lower learning_rate (now {run.setting(name, 'learning_rate')}) by 3-10x, or use fewer n_epochs "
            f"(now {run.setting(name, 'n_epochs')}) or larger batches",
        )


def check_value_function(run: Run, name: str, c: Curves) -> Iterable[Finding]:
    """The critic's loss grows by orders of magnitude, or it never explains the returns (explained variance <= 0)."""
    steps, loss = c.where("Losses/Value Loss")
    if len(loss) >= 3 and loss[0] > 0 and loss.max() > 1000 * loss[0] and loss[-1] > 100 * loss[0]:
        yield Finding(
            "value loss exploding", name,
            f"Losses/Value Loss grew from {loss[0]:.3g} (step {steps[0]:,}) to {loss[-1]:.3g} (step {steps[-1]:,})",
            "the critic's targets run away from it, so advantages are noise and the policy follows them",
            "turn on normalize_reward, lower learning_rate, or clip the value update (clip_range_vf)",
        )
    # Only summaries whose episodes differ in return: when every episode scores the same (a solved task),
    # there is nothing to explain and the statistic is noise around 0.
    varied = np.isfinite(c["Policy/Explained Variance"]) & (
        c["Diagnostics/Return Std"] > 1e-3 * np.maximum(np.abs(c["Environment/Cumulative Reward"]), 1.0))
    explained = c["Policy/Explained Variance"][varied]
    if len(explained) >= 4 and np.median(explained) <= 0 and explained[-1] <= 0:
        yield Finding(
            "critic explains nothing", name,
            f"Policy/Explained Variance has a median of {np.median(explained):.2f} over the run (last "
            f"{explained[-1]:.2f}, step {c.steps[varied][-1]:,})",
            "the value function predicts the returns no better than their mean, so the advantages PPO follows carry "
            "no information beyond the raw returns",
            "check that observations carry what predicts reward (a reward that depends on nothing the agent sees "
            "cannot be predicted or learned); turn on normalize_reward and normalize_obs; give the critic more "
            "capacity (hidden_sizes)",
        )


def check_reward_scale(run: Run, name: str, c: Curves) -> Iterable[Finding]:
    """Returns (what the critic must predict) far larger than ~100, without reward normalisation."""
    if run.setting(name, "normalize_reward"):
        return
    gamma = run.setting(name, "gamma") or 0.99
    horizon = 1.0 / max(1.0 - gamma, 1e-6)
    per_step, length = c["Diagnostics/Reward Per Step"], c["Environment/Episode Length"]
    episode_scale = np.nanmax(per_step * np.minimum(length, horizon), initial=0.0)
    value_scale = np.nanmax(np.abs(c["Policy/Extrinsic Value Estimate"]), initial=0.0)
    scale = max(float(episode_scale), float(value_scale))
    if scale > 1000:
        yield Finding(
            "reward scale", name,
            f"discounted returns reach about {scale:.3g} (rewards of {np.nanmax(per_step, initial=0):.3g} per decision"
            f" on average, gamma {gamma}) and normalize_reward is off",
            "value targets that large give value-loss gradients that swamp the policy's under one gradient-norm clip, "
            "and Adam's steps are tuned for targets near unit scale; the policy barely moves",
            "set normalize_reward: true (or divide the game's rewards so returns are of order 1-10)",
        )


def check_observation_scale(run: Run, name: str, c: Curves) -> Iterable[Finding]:
    """Observations of large magnitude fed to the network unnormalised."""
    if run.setting(name, "normalize_obs"):
        return
    steps, rms = c.where("Diagnostics/Observation Max RMS")
    if len(rms) and rms.max() > 10:
        yield Finding(
            "observation scale", name,
            f"the largest observation component has a root-mean-square of {rms.max():.3g} (step "
            f"{steps[np.argmax(rms)]:,}) and normalize_obs is off",
            "inputs that large saturate tanh units and make the first layer's gradients dominate; the network "
            "learns slowly or not at all",
            "set normalize_obs: true (the statistics are folded into the exported policy), or scale the "
            "observations in the game to about [-1, 1]",
        )


def check_stalling(run: Run, name: str, c: Curves) -> Iterable[Finding]:
    """Episodes now run to the time limit, while episodes that ended on their own earned reward faster."""
    steps, truncated = c.where("Diagnostics/Truncated Fraction")
    if len(truncated) < 4 or truncated[0] > 0.5 or _late(truncated).mean() < 0.9:
        return
    best_ended = np.nanmax(c["Diagnostics/Best Terminated Reward Per Step"], initial=-math.inf)
    limited = float(np.nanmean(_late(c["Diagnostics/Truncated Reward Per Step"])))
    if best_ended > limited + 0.5 * abs(limited) + 1e-9:
        yield Finding(
            "stalling", name,
            f"{_late(truncated).mean():.0%} of episodes reach the time limit in the last quarter "
            f"({_steps(_late(steps))}), against {truncated[0]:.0%} at first; they earn {limited:.3g} per decision, "
            f"while episodes that ended on their own earned up to {best_ended:.3g}",
            "the agent has learned to run out the clock: the reward pays it to stay in the episode more than to "
            "finish it (a reward for time alive, or a penalty for ending it)",
            "remove per-step rewards for surviving (or make them small next to finishing), add a small time "
            "penalty, or end the episode when the agent stops making progress",
        )


def check_sac_temperature(run: Run, name: str, c: Curves) -> Iterable[Finding]:
    """SAC's entropy coefficient fell to nothing: exploration stops."""
    key = next((k for k in ("Policy/Continuous Entropy Coeff", "Policy/Discrete Entropy Coeff") if c.has(k)), None)
    if key is None:
        return
    steps, coef = c.where(key)
    initial = run.setting(name, "init_entcoef") or 1.0
    low = coef < 1e-3 * initial
    if low.any():
        yield Finding(
            "temperature collapse", name,
            f"{key} fell from {initial:.3g} to {coef[low][0]:.2g} by step {steps[low][0]:,}",
            "with no entropy bonus SAC stops exploring, and the critics' overestimation is no longer held back",
            "set target_entropy higher (less negative), lower learning_rate, or fix the temperature "
            "(learn_entcoef: false with init_entcoef 0.05-0.2)",
        )


def check_self_play_balance(run: Run, name: str, c: Curves) -> Iterable[Finding]:
    """The learner's record against its newest snapshots far from even, or its Elo flat through the run."""
    league = run.league
    if league is None:
        return
    key = f"{name}/main"
    newest = sorted((p for p in league.players.values() if p.group == name and p.role == "main"),
                    key=lambda p: p.step)[-3:]
    records = [league.payoff.get(key, {}).get(p.id, [0, 0, 0]) for p in newest]
    total = [sum(column) for column in zip(*records)] if records else [0, 0, 0]
    score, games = payoff_score(total), sum(total)
    if games >= 20 and not 0.2 <= score <= 0.8:
        yield Finding(
            "self-play imbalance", name,
            f"the learner scores {score:.0%} in {games} games against its {len(newest)} newest snapshots",
            "against recent versions of itself a steadily improving learner scores a little over half; far above, "
            "its opponents are too weak to teach it; far below, it is getting worse (forgetting)",
            "change save_steps (snapshots further apart or closer), swap_steps, window or "
            "play_against_latest_model_ratio" if score > 0.8 else
            "lower learning_rate, raise ent_coef, or keep more snapshots (window) so it meets old weaknesses",
        )
    steps, elo = c.where("Self-play/ELO")
    if len(elo) >= 4 and elo.max() - elo.min() < 20:
        yield Finding(
            "flat Elo", name,
            f"Self-play/ELO stayed between {elo.min():.0f} and {elo.max():.0f} ({_steps(steps)})",
            "the learner beats its past snapshots no more often than they beat it: it is not improving",
            "check that games end with a reward whose sign says who won; raise ent_coef or lower learning_rate",
        )


CHECKS: tuple[Check, ...] = (
    check_non_finite, check_no_learning, check_entropy_collapse, check_step_size, check_value_function,
    check_reward_scale, check_observation_scale, check_stalling, check_sac_temperature, check_self_play_balance,
)


def check_engines(run: Run) -> Iterable[Finding]:
    """Game builds that crashed, hung or misbehaved, and the agents their episodes lost."""
    if run.engines is None:
        return
    last = {key: float(values[np.isfinite(values)][-1]) for key, values in run.engines.metrics.items()
            if np.isfinite(values).any()}
    restarts, lost = last.get("Engines/Restarts", 0), last.get("Engines/Lost Agents", 0)
    if restarts or lost:
        kinds = ", ".join(f"{k.removeprefix('Engines/').lower()} {v:.0f}" for k, v in last.items()
                          if k not in ("Engines/Restarts", "Engines/Lost Agents") and v)
        yield Finding(
            "engine failures", None,
            f"{restarts:.0f} engine restarts ({kinds or 'no cause recorded'}), {lost:.0f} agents lost mid-episode",
            "every restart drops the episodes under way and the time spent relaunching; many restarts bias the data "
            "towards what happens early in episodes",
            f"read the engines' logs in {run.path / 'engines'}; raise step_timeout if the game is only slow",
        )


def diagnose(path: str | Path) -> list[Finding]:
    """Every finding about the run in ``path``, behaviour by behaviour, then its engines."""
    run = read_run(path)
    findings = [f for name, curves in run.behaviours.items() for check in CHECKS for f in check(run, name, curves)]
    return findings + list(check_engines(run))
