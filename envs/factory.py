"""Builds the env a run config asks for: the source, its copies, and how they are stepped."""

from __future__ import annotations

import functools
import importlib
import sys
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import Any

from sparring.env_config import (
    BridgeEnvConfig, EnvConfig, GodotRLEnvConfig, GymnasiumEnvConfig, PettingZooEnvConfig, ScaleConfig, UnityEnvConfig,
)
from sparring.envs.base import MultiAgentEnv


def make_env(config: EnvConfig, log_dir: Path | None = None, seed: int = 0, recording: bool = False,
             scale: ScaleConfig | None = None) -> MultiAgentEnv:
    """One batched env holding ``config.num_envs`` copies of the configured source.

    Gymnasium copies stepped serially become agents of one in-process env (the
    cheapest way to batch a small simulator); game instances (on the bridge, or
    Unity builds) are launched (or awaited) and stepped concurrently, their logs
    in ``log_dir``; everything else goes through the vector env, in worker
    processes when ``vector: subprocess``. ``seed`` reaches the sources that take
    theirs at launch (Unity builds); the others are seeded by ``reset``. ``recording``: the
    games play every agent themselves and report what they did (``sparring record``; bridge
    sources only, the only ones whose games can report it). With ``scale.ray``, each copy runs in a Ray actor
    on that cluster (:mod:`sparring.envs.ray_workers`).
    """
    from sparring.envs.vector import make_vector_env

    if scale is not None and scale.ray not in (None, False):
        if recording:
            raise ValueError("sparring record plays its games locally; scale.ray is for training")
        return _make_ray_env(config, scale, log_dir, seed)
    if recording and config.source != "bridge":
        raise ValueError(f"recording needs games on the bridge (env.source 'bridge'), not {config.source!r}")
    if config.source == "bridge":
        return _make_bridge_env(config, log_dir, recording)
    if config.source == "unity":
        return _make_unity_env(config, log_dir, seed)
    if config.source == "godot_rl":
        return _make_godot_rl_env(config, log_dir, seed)

    if config.source == "gymnasium" and config.vector == "serial":
        from sparring.envs.gymnasium import GymnasiumEnv

        return GymnasiumEnv(config.id, num_envs=config.num_envs, env_kwargs=config.kwargs)
    factory = functools.partial(make_single_env, config.model_dump())
    if config.num_envs == 1 and config.vector == "serial":
        return factory()
    return make_vector_env(factory, config.num_envs, mode=config.vector)


def make_single_env(config: dict[str, Any]) -> MultiAgentEnv:
    """One copy of the source (module-level and fed plain data, so worker processes can pickle it)."""
    model = GymnasiumEnvConfig if config["source"] == "gymnasium" else PettingZooEnvConfig
    cfg = model.model_validate(config)
    if cfg.source == "gymnasium":
        from sparring.envs.gymnasium import GymnasiumEnv

        return GymnasiumEnv(cfg.id, num_envs=1, env_kwargs=cfg.kwargs)
    from sparring.envs.pettingzoo import PettingZooEnv

    return PettingZooEnv(_pettingzoo_constructor(cfg)(**cfg.kwargs), behaviours=cfg.behaviours, opponent=cfg.opponent,
                         groups=cfg.groups)


def _pettingzoo_constructor(cfg: PettingZooEnvConfig) -> Callable[..., Any]:
    module_name, _, attr = cfg.id.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"env.id {cfg.id!r}: cannot import module {module_name!r} ({exc})") from None
    attr = attr or ("parallel_env" if cfg.api == "parallel" else "env")
    constructor = getattr(module, attr, None)
    if not callable(constructor):
        raise ValueError(f"env.id {cfg.id!r}: module {module_name!r} has no callable {attr!r}")
    return constructor


def game_command(executable: str, args: Sequence[str]) -> tuple[str, list[str]]:
    """How to start a game: a ``.py`` file runs with this Python, anything else as it is."""
    return (sys.executable, [executable, *args]) if executable.endswith(".py") else (executable, list(args))


def _make_bridge_env(config: BridgeEnvConfig, log_dir: Path | None, recording: bool = False) -> MultiAgentEnv:
    from sparring.envs.bridge.env import MultiEngineEnv

    options = dict(transport=config.transport, step_timeout=config.step_timeout, reset_timeout=config.reset_timeout,
                   max_restarts=config.max_restarts, server_options={**config.server_options(), "recording": recording})
    if config.connect_timeout is not None:
        options["connect_timeout"] = config.connect_timeout
    if config.executable is None:
        return MultiEngineEnv.listen(config.num_envs, host=config.host, port=config.port or None, token=config.token,
                                     announce=lambda message: print(f"sparring: {message}", file=sys.stderr, flush=True),
                                     **options)
    program, args = game_command(config.executable, config.args)
    return MultiEngineEnv.launch(
        program, config.num_envs, args, headless_args=[config.headless_flag] if config.headless_flag else (),
        host=config.host, log_dir=None if log_dir is None else str(log_dir), **options,
    )


def _make_ray_env(config: EnvConfig, scale: ScaleConfig, log_dir: Path | None, seed: int) -> MultiAgentEnv:
    """``config.num_envs`` Ray actors, each building one copy on its own node (its logs under ``log_dir/worker<i>``,
    the same path on that node)."""
    from sparring.envs.ray_workers import ray_env

    if config.source in ("bridge", "godot_rl") and config.executable is None:
        raise ValueError("scale.ray needs env.executable: each Ray worker launches its own game; engines that connect "
                         "by themselves (editor mode) connect to one trainer, not to its workers")
    logs = None if log_dir is None else log_dir.resolve()
    factories = [functools.partial(make_env, _worker_copy(config, i), None if logs is None else logs / f"worker{i}",
                                   seed + i) for i in range(config.num_envs)]
    env = ray_env(factories, address=None if scale.ray is True else scale.ray, resources=scale.worker_resources,
                  num_cpus=scale.worker_cpus, max_restarts=scale.max_restarts, step_timeout=scale.step_timeout,
                  restart_timeout=scale.restart_timeout, seed=seed)
    nodes = env.worker_nodes
    print(f"sparring: {len(nodes)} env workers on {len(set(nodes))} Ray nodes", file=sys.stderr, flush=True)
    return env


def _worker_copy(config: EnvConfig, i: int) -> EnvConfig:
    """Copy ``i``'s own config: one copy, paths this machine resolves made absolute (a node reads them as they are),
    and for Unity (and a Godot RL game on a configured port) its own port."""
    update: dict[str, object] = {"num_envs": 1}
    if config.source in ("bridge", "godot_rl") and Path(config.executable).exists():
        update["executable"] = str(Path(config.executable).resolve())
    if config.source == "godot_rl" and config.port is not None:
        update["port"] = config.port + i
    if config.source == "unity":
        if config.env_path is not None and Path(config.env_path).exists():
            update["env_path"] = str(Path(config.env_path).resolve())
        update["base_port"] = (config.base_port or 5005) + i
    return config.model_copy(update=update)


def _make_godot_rl_env(config: GodotRLEnvConfig, log_dir: Path | None, seed: int) -> MultiAgentEnv:
    from sparring.envs.godot_rl.env import GameCommand, GodotRLFleet

    command = None
    if config.executable is not None:
        program, args = game_command(config.executable, config.args)
        command = GameCommand(program, tuple(args), config.show_window, config.action_repeat, config.speedup)
    return GodotRLFleet(
        config.num_envs, command, port=config.port, protocol=config.protocol, seed=seed,
        step_timeout=config.step_timeout, reset_timeout=config.reset_timeout, connect_timeout=config.connect_timeout,
        handshake_timeout=config.handshake_timeout, max_restarts=config.max_restarts,
        max_message_bytes=config.max_message_bytes, log_dir=None if log_dir is None else str(log_dir),
        announce=lambda message: print(f"sparring: {message}", file=sys.stderr, flush=True),
    )


def _make_unity_env(config: UnityEnvConfig, log_dir: Path | None, seed: int) -> MultiAgentEnv:
    from sparring.envs.unity import EngineSettings, MultiUnityEnv

    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
    engine = EngineSettings(config.width, config.height, config.quality_level, config.time_scale,
                            config.target_frame_rate, config.capture_frame_rate)
    return MultiUnityEnv(
        config.env_path, config.num_envs, seed=seed, max_restarts=config.max_restarts,
        base_port=config.base_port, no_graphics=config.no_graphics, timeout_wait=config.timeout_wait,
        additional_args=config.env_args, engine_settings=engine,
        log_folder=None if log_dir is None else str(log_dir.resolve()),
    )
