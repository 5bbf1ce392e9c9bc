"""The ``sparring`` command line: a thin layer over the Python API.

    sparring train CONFIG.yaml [--run-id ID] [--resume | --force] [--results-dir DIR] [--seed N] [--ray [ADDRESS]]
                   [--env PATH] [--num-envs N] [--base-port N] [--no-graphics] [--time-scale X] [--env-args ...]
    sparring export RUN_DIR [--behaviour NAME] [--format native|mlagents|godot] [--out PATH]
    sparring play MODEL.onnx [MODEL.onnx ...] --config CONFIG.yaml [--episodes N]
    sparring check-engine [--transport grpc|tcp] [--port N] [--host H --token T --tls-cert PEM --tls-key PEM]
                          [--steps N] [COMMAND ...]
    sparring record CONFIG.yaml --out PATH.demo [--behaviour NAME] [--episodes N] [--steps N] [--seed N] [--force]
    sparring league RUN_DIR [--plot PATH]
    sparring ladder RUN_DIR [--tiers N] [--band LOW HIGH] [--games N] [--seed N] [--play sampled|deterministic]
                    [--plot PATH]
    sparring doctor RUN_DIR
    sparring tune CONFIG.yaml [--run-id ID] [--results-dir DIR] [--force] [--ray ADDRESS]

CONFIG is a sparring config or an ML-Agents trainer config (see sparring.mlagents_config);
the environment flags are mlagents-learn's, and override the file as they do there.

Exit status: 0 done, 1 training stopped by an error (checkpoints kept), a recording ended
before its stop condition (what was recorded kept), the doctor found something or a ladder's
check found a pair of tiers outside its band (the ladder still exported), 2 the
command or its config was wrong (nothing written).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sparring.config import RunConfig
    from sparring.export.exporter import RunExport

USAGE_ERROR = 2

ENV_FLAGS = {
    "env_path": "--env",
    "num_envs": "--num-envs",
    "base_port": "--base-port",
    "no_graphics": "--no-graphics",
    "time_scale": "--time-scale",
    "env_args": "--env-args",
}
"""Env config field -> the mlagents-learn flag that overrides it; all but --num-envs are for a unity env."""


class UsageError(Exception):
    """Something the user asked for cannot be done; exits 2 with the message."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sparring", description="Train game NPCs that learn.")
    commands = parser.add_subparsers(dest="subcommand", required=True)
    train = commands.add_parser("train", help="train the behaviours of an env described by a YAML config")
    train.add_argument("config", type=Path, help="run config (YAML)")
    train.add_argument("--run-id", help="name of the run folder (default: the config's run_id, else its file name)")
    train.add_argument("--results-dir", type=Path, help="where run folders go (default: the config's, else results)")
    train.add_argument("--seed", type=int, help="override the config's seed")
    train.add_argument("--ray", nargs="?", const=True, metavar="ADDRESS",
                       help="run each env copy in a Ray actor on the cluster at ADDRESS (without one: the cluster this "
                            "machine runs, else a new local one); sets the config's scale.ray")
    mode = train.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the run from its newest checkpoint")
    mode.add_argument("--force", action="store_true", help="delete an existing run folder of the same id first")
    env = train.add_argument_group("environment (mlagents-learn's flags; they override the config)")
    env.add_argument("--env", dest="env_path", metavar="PATH", help="the Unity build to train in")
    env.add_argument("--num-envs", type=int, metavar="N", help="copies of the env trained at once")
    env.add_argument("--base-port", type=int, metavar="N", help="Unity build i listens on N + i")
    env.add_argument("--no-graphics", action="store_true", default=None, help="launch Unity builds without graphics")
    env.add_argument("--time-scale", type=float, metavar="X", help="Unity's time scale")
    env.add_argument("--env-args", nargs=argparse.REMAINDER, metavar="...",
                     help="everything after it goes to the command line of every Unity build")
    export = commands.add_parser("export", help="export a finished run's policies to ONNX for a game engine")
    export.add_argument("run_dir", type=Path, help="results/<run-id>")
    export.add_argument("--behaviour", help="only this behaviour (default: every behaviour)")
    export.add_argument("--format", choices=("native", "mlagents", "godot"), default="native")
    export.add_argument("--out", type=Path, help="output file (with --behaviour)")
    play = commands.add_parser("play", help="run exported ONNX policies in an env and report their mean return")
    play.add_argument("models", nargs="+", type=Path, help="native-format .onnx files, one per behaviour")
    play.add_argument("--config", type=Path, required=True, help="the run config whose env to play in")
    play.add_argument("--episodes", type=int, default=100)
    play.add_argument("--seed", type=int, default=0)
    check = commands.add_parser(
        "check-engine",
        help="drive a game engine through a whole bridge session and report where it departs from the protocol",
        description="Launch COMMAND (or wait for an engine to connect) and check it speaks the sparring bridge protocol.",
    )
    check.add_argument("--transport", choices=("grpc", "tcp"), default="grpc")
    check.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port; set it to wait for an engine)")
    check.add_argument("--token", help="token a waiting-for engine must present")
    check.add_argument("--host", default="127.0.0.1",
                       help="address to listen on (beyond loopback: needs --token, --tls-cert and --tls-key)")
    check.add_argument("--tls-cert", help="PEM certificate chain: listen over TLS only (an engine on another machine)")
    check.add_argument("--tls-key", help="the PEM private key of --tls-cert")
    check.add_argument("--steps", type=int, default=500, help="steps of random valid actions")
    check.add_argument("--timeout", type=float, default=30.0, help="seconds the engine has for each answer")
    check.add_argument("--headless-flag", help="flag added to the engine's command line")
    check.add_argument("command", nargs=argparse.REMAINDER, help="the engine to launch and its arguments")
    rec = commands.add_parser(
        "record", help="record demonstrations (.demo) while a person or a heuristic plays the game",
        description="Wait for (or launch) the game of CONFIG's bridge env, let it play every agent itself, and write "
                    "each decision of one behaviour with the action its player took to an ML-Agents .demo file.")
    rec.add_argument("config", type=Path, help="run config (YAML) whose env: section is the game (source: bridge)")
    rec.add_argument("--out", type=Path, required=True, help="the .demo file to write")
    rec.add_argument("--behaviour", help="the behaviour to record (default: the game's only one)")
    rec.add_argument("--episodes", type=int, metavar="N", help="stop once N episodes have ended")
    rec.add_argument("--steps", type=int, metavar="N", help="stop once N decisions have been recorded")
    rec.add_argument("--seed", type=int, help="the Reset's seed (default: the config's seed)")
    rec.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    league = commands.add_parser("league", help="a self-play run's league: its ratings as a table and over training")
    league.add_argument("run_dir", type=Path, help="results/<run-id> of a self-play run")
    league.add_argument("--plot", type=Path, help="where the PNG goes (default: RUN_DIR/league/ratings.png)")
    ladder = commands.add_parser(
        "ladder", help="difficulty tiers from a self-play run's league, each beating the one below at a chosen rate",
        description="Choose snapshots of RUN_DIR's league so that each tier beats the one below at a rate in the band "
                    "(draws half), check every pair with fresh games in the run's env, and export each tier to "
                    "RUN_DIR/ladder/ in every format its behaviour fits, its rating and win rates in the metadata.")
    ladder.add_argument("run_dir", type=Path, help="results/<run-id> of a finished self-play run")
    ladder.add_argument("--tiers", type=int, metavar="N", help="how many tiers (default: as many as the band allows)")
    ladder.add_argument("--band", type=float, nargs=2, default=(0.65, 0.75), metavar=("LOW", "HIGH"),
                        help="the score each tier should have against the one below (default 0.65 0.75)")
    ladder.add_argument("--games", type=int, default=400, help="fresh games per measurement (default 400)")
    ladder.add_argument("--seed", type=int, default=0)
    ladder.add_argument("--play", choices=("sampled", "deterministic"), default="sampled",
                        help="how the tiers play, in the checks and then in the game (default: sampled, as the league "
                             "played; deterministic: the most likely action)")
    ladder.add_argument("--plot", type=Path, help="where the PNG goes (default: RUN_DIR/ladder/ladder.png)")
    doctor = commands.add_parser("doctor", help="read a run's metrics and name what is wrong with its training")
    doctor.add_argument("run_dir", type=Path, help="results/<run-id>")
    tune = commands.add_parser(
        "tune", help="search a config's settings on Ray Tune (population-based training by default)",
        description="Train a trial of CONFIG for each sample of its tune: section's search space, each in a run folder "
                    "of its own, and write the best trial's config to RUN_DIR/best.yaml.")
    tune.add_argument("config", type=Path, help="run config (YAML) with a tune: section")
    tune.add_argument("--run-id", help="name of the run folder (default: the config's file name)")
    tune.add_argument("--results-dir", type=Path, default=Path("results"), help="where run folders go")
    tune.add_argument("--force", action="store_true", help="delete an existing run folder of the same id first")
    tune.add_argument("--ray", metavar="ADDRESS",
                      help="the Ray cluster to run the trials on (host:port, or auto; default: a local Ray for this search)")
    args = parser.parse_args(argv)
    try:
        if args.subcommand == "check-engine":
            return _check_engine(args)
        if args.subcommand == "export":
            return _export(args)
        if args.subcommand == "play":
            return _play(args)
        if args.subcommand == "league":
            return _league(args)
        if args.subcommand == "ladder":
            return _ladder(args)
        if args.subcommand == "record":
            with _sigterm_as_interrupt():  # the recording so far is kept, as for Ctrl-C
                return _record(args)
        if args.subcommand == "doctor":
            return _doctor(args)
        if args.subcommand == "tune":
            return _tune(args)
        with _sigterm_as_interrupt():
            return _train(args)
    except UsageError as exc:
        print(f"sparring: error: {exc}", file=sys.stderr)
        return USAGE_ERROR


def _train(args: argparse.Namespace) -> int:
    from sparring.config import ConfigError, load_run_config

    try:
        config, unsupported, options = load_run_config(args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    flags = {field: getattr(args, field) for field in ENV_FLAGS if getattr(args, field) is not None}
    config = apply_env_flags(config, flags, args.config)
    if args.seed is not None:
        config.seed = args.seed
    if args.ray is not None:
        config.scale.ray = args.ray
    if unsupported:
        print(f"sparring: warning: {args.config}: ignoring ML-Agents settings sparring does not support yet: "
              f"{', '.join(unsupported)}", file=sys.stderr)
    # An ML-Agents file's checkpoint_settings stand in for flags not given, as with mlagents-learn.
    run_id = args.run_id or options.get("run_id") or args.config.stem
    run_path = (args.results_dir or Path(options.get("results_dir", "results"))) / run_id
    resume = args.resume or (options.get("resume", False) and not args.force)
    force = args.force or (options.get("force", False) and not args.resume)

    from sparring.run import RunDirectory

    run = RunDirectory(run_path)
    checkpoint = None
    if resume:
        checkpoint = run.latest_checkpoint()
        if checkpoint is None:
            raise UsageError(f"--resume: {run_path} has no checkpoint to resume from")
    elif run_path.exists():
        if not force:
            raise UsageError(
                f"run {run_id!r} already exists at {run_path}; pass --resume to continue it or --force to overwrite it"
            )
        shutil.rmtree(run_path)  # the config is valid and the user asked to overwrite

    from sparring.training import TrainingStopped, train_run

    try:
        model, summary = train_run(config, run, checkpoint)
    except ConfigError as exc:  # the env or the trainer refused the config
        raise UsageError(f"{args.config}: {exc}") from None
    except TrainingStopped as stop:
        if isinstance(stop.cause, KeyboardInterrupt):
            print(f"interrupted at step {stop.step}; saved {stop.saved} (continue with --resume)", file=sys.stderr)
        else:
            latest = run.latest_checkpoint()
            kept = f"; checkpoints are intact, newest {latest}" if latest else ""
            print(f"sparring: {stop}{kept}", file=sys.stderr)
        return 1
    _print_summary(run, summary, model.num_steps)
    from sparring.export.exporter import ExportError, export_run

    try:
        _print_export(export_run(run.path))
    except ExportError as exc:
        print(f"sparring: export failed: {exc}; the trained model is kept in {run.final}", file=sys.stderr)
        return 1
    return 0


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM (``kill``, a job scheduler, a container stopping) is handled as Ctrl-C while training: the run saves
    a checkpoint and closes its env, which kills the game copies it launched even if they ignore the disconnect."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def apply_env_flags(config: RunConfig, flags: dict[str, Any], source: Path) -> RunConfig:
    """``config`` with its env's fields replaced by the :data:`ENV_FLAGS` given (``flags``: field -> value).

    Raises :class:`UsageError` for a Unity flag on another source, or a value the env refuses.
    """
    from pydantic import ValidationError

    unity_only = [ENV_FLAGS[field] for field in flags if field != "num_envs"]
    if unity_only and config.env.source != "unity":
        raise UsageError(f"{', '.join(unity_only)}: only for a Unity env, and {source} has env.source "
                         f"{config.env.source!r}")
    try:
        env = type(config.env).model_validate({**config.env.model_dump(), **flags})
    except ValidationError as exc:
        err = exc.errors()[0]
        raise UsageError(f"{ENV_FLAGS[err['loc'][0]]}: {err['msg']} (got {err['input']!r})") from None
    return config.model_copy(update={"env": env})


def _tune(args: argparse.Namespace) -> int:
    """Run the search; exit 0 when every trial finished, 1 when one failed or none reported the metric."""
    import importlib

    from rich.console import Console

    from sparring.config import ConfigError, load_config
    from sparring.tune import check_search, run_search, trial_table

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if config.tune is None:
        raise UsageError(f"{args.config}: no tune: section; sparring tune needs one to say what to search (tune: "
                         "{search_space: {trainer.hyperparameters.learning_rate: {loguniform: [1.0e-4, 3.0e-3]}}})")
    try:
        check_search(config)
    except ConfigError as exc:
        raise UsageError(f"{args.config}: {exc}") from None
    try:
        importlib.import_module("ray.tune")
    except ImportError as exc:
        raise UsageError(f"tune: sparring tune runs on Ray Tune, which is not installed ({exc}); "
                         "pip install 'sparring[ray]'") from None
    run_id = args.run_id or args.config.stem
    run_path = args.results_dir / run_id
    if run_path.exists():
        if not args.force:
            raise UsageError(f"run {run_id!r} already exists at {run_path}; pass --force to overwrite it")
        shutil.rmtree(run_path)  # the config is valid and the user asked to overwrite
    outcomes = run_search(config, run_path, args.ray)
    Console(highlight=False, soft_wrap=True).print(trial_table(config, outcomes))
    for outcome in outcomes:
        if outcome.error:
            print(f"sparring: {outcome.name} failed: {outcome.error}", file=sys.stderr)
    if not outcomes or not outcomes[0].ranked:
        print(f"sparring: no trial finished with a {config.tune.metric!r}; see {run_path}", file=sys.stderr)
        return 1
    print(f"best: {outcomes[0].name}; its config: {run_path / 'best.yaml'} (sparring train it)")
    return 1 if any(outcome.error for outcome in outcomes) else 0


def _export(args: argparse.Namespace) -> int:
    from sparring.export.exporter import ExportError, export_run

    try:
        _print_export(export_run(args.run_dir, args.behaviour, args.format, args.out))
    except ExportError as exc:
        raise UsageError(str(exc)) from None
    return 0


def _print_export(result: RunExport) -> None:
    for report in result.reports:
        print(report)
    for name, why in result.refused.items():
        print(f"sparring: behaviour {name!r} not exported: {why}", file=sys.stderr)


def _play(args: argparse.Namespace) -> int:
    from sparring.agents.evaluation import evaluate
    from sparring.config import ConfigError, load_config
    from sparring.envs.factory import make_env
    from sparring.export.policy import OnnxPolicy

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    try:
        policies = {p.behaviour: p for p in map(OnnxPolicy, args.models)}
    except (ValueError, OSError) as exc:
        raise UsageError(f"play: {exc}") from None
    with make_env(config.env, seed=args.seed) as env:
        missing = sorted(set(env.specs) - set(policies))
        if missing:
            raise UsageError(f"play: no model for behaviour(s) {missing}; give one .onnx per behaviour of the env")
        returns = evaluate(_ByBehaviour(policies), env, args.episodes, seed=args.seed)
    for name, values in returns.items():
        if len(values):
            print(f"{name}: mean return {values.mean():.3f} over {len(values)} episodes")
    return 0


class _ByBehaviour:
    """Several single-behaviour policies as one predictor."""

    def __init__(self, policies: dict) -> None:
        self.policies = policies

    def predict(self, obs, behaviour=None, action_mask=None, deterministic=True, agent_ids=None):
        return self.policies[behaviour].predict(obs, behaviour, action_mask, deterministic, agent_ids)

    def reset_memory(self, behaviour=None, agent_ids=None):
        for name, policy in self.policies.items():
            if behaviour in (None, name):
                policy.reset_memory(name, agent_ids)


def _record(args: argparse.Namespace) -> int:
    """Record demonstrations; exit 0 when the recording ended as asked, 1 when it ended early (what was recorded is
    kept), 2 for a wrong command or config."""
    from sparring.config import ConfigError, load_config
    from sparring.envs.factory import make_env
    from sparring.record import UNITY_REFUSAL, choose_behaviour, record

    if args.out.suffix != ".demo":
        raise UsageError(f"record: --out {args.out}: a demonstration file ends in .demo (ML-Agents reads no other)")
    for flag, value in (("--episodes", args.episodes), ("--steps", args.steps)):
        if value is not None and value < 1:
            raise UsageError(f"record: {flag} must be at least 1, got {value}")
    if args.out.exists() and not args.force:
        raise UsageError(f"record: {args.out} already exists; pass --force to overwrite it")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None
    if config.env.source == "unity":
        raise UsageError(f"record: {args.config} has env.source 'unity'; {UNITY_REFUSAL}")
    if config.env.source != "bridge":
        raise UsageError(f"record: {args.config} has env.source {config.env.source!r}; recording needs a game a person "
                         "plays, connected over the bridge (env.source 'bridge')")
    seed = config.seed if args.seed is None else args.seed
    try:
        env = make_env(config.env, seed=seed, recording=True)
    except Exception as exc:  # anything the env's own constructor raises is a problem with env: in the config
        raise UsageError(f"{args.config}: env: cannot start {config.env.label!r}: {type(exc).__name__}: {exc}") from None
    with env:
        try:
            behaviour = choose_behaviour(env.specs, args.behaviour)
        except ValueError as exc:
            raise UsageError(f"record: {exc}") from None
        report = record(env, args.out, behaviour, episodes=args.episodes, steps=args.steps, seed=seed)
    print(report)
    return 0 if report.complete else 1


def _league(args: argparse.Namespace) -> int:
    from sparring.agents.selfplay.league import League
    from sparring.league_report import report

    directory = args.run_dir / "league"
    if not (directory / "league.json").is_file():
        raise UsageError(f"league: {args.run_dir} has no league (no league/league.json); only self-play runs "
                         "(a self_play: section in the config) keep one")
    try:
        league = League.load(directory)
    except (ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"league: {directory / 'league.json'} is not a league this version reads: "
                         f"{type(exc).__name__}: {exc}") from None
    report(league, args.plot or directory / "ratings.png")
    return 0


def _ladder(args: argparse.Namespace) -> int:
    """Build, check, export and report the ladders; exit 1 when a check found a pair outside the band."""
    from sparring.agents.selfplay.ladder import LadderError
    from sparring.ladder import LADDER_DIR, make_ladders
    from sparring.ladder_report import report

    try:
        ladders = make_ladders(args.run_dir, args.tiers, args.band, args.games, args.seed, play=args.play)
    except LadderError as exc:
        raise UsageError(f"ladder: {exc}") from None
    report(ladders, args.plot or args.run_dir / LADDER_DIR / "ladder.png")
    outside = [(s, k) for s in ladders for k, fits in enumerate(s.ladder.in_band, start=2) if not fits]
    for side_ladder, k in outside:
        check = side_ladder.ladder.checks[k - 2]
        print(f"sparring: ladder {side_ladder.name}: tier {k} scored {check.score:.1%} against tier {k - 1} when "
              f"checked ({check.games} fresh games), outside the band", file=sys.stderr)
    return 1 if outside else 0


def _doctor(args: argparse.Namespace) -> int:
    """Print the doctor's findings; exit 0 when it found nothing, 1 when it found something."""
    from rich.console import Console

    from sparring.doctor import diagnose

    try:
        findings = diagnose(args.run_dir)
    except (FileNotFoundError, ValueError) as exc:
        raise UsageError(f"doctor: {exc}") from None
    console = Console(highlight=False, soft_wrap=True)
    if not findings:
        console.print(f"{args.run_dir}: healthy (no finding in its metrics)")
        return 0
    console.print(f"{args.run_dir}: {len(findings)} finding{'s' if len(findings) > 1 else ''}")
    for finding in findings:
        where = f" ({finding.behaviour})" if finding.behaviour else ""
        console.print(f"\n[bold]{finding.check}{where}[/bold]\n  seen: {finding.seen}\n  why it matters: "
                      f"{finding.why}\n  try: {finding.fix}")
    return 1


def _check_engine(args: argparse.Namespace) -> int:
    from sparring.check_engine import run

    if not args.command and not args.port:
        raise UsageError("check-engine: give the engine's command line, or --port to wait for an engine to connect")
    args.executable, args.args = (args.command[0], args.command[1:]) if args.command else (None, [])
    return run(args)


def _print_summary(run, summary: dict[str, dict[str, float]], steps: int) -> None:
    print(f"trained {steps} steps; outputs in {run.path}/")
    for name, metrics in summary.items():
        ret = metrics.get("Environment/Cumulative Reward")
        print(f"  {name}: mean return {ret:.3f}" if ret is not None else f"  {name}: no finished episodes")
    print(f"  final model: {run.final}\n  metrics: {run.metrics}\n  tensorboard --logdir {run.tensorboard}")


if __name__ == "__main__":
    sys.exit(main())
