"""Builds the env a run config asks for: the source, its copies, and how they are stepped."""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from typing import Any

from sparring.config import EnvConfig
from sparring.envs.base import MultiAgentEnv


def make_env(config: EnvConfig) -> MultiAgentEnv:
    """One batched env holding ``config.num_envs`` copies of the configured source.

    Gymnasium copies stepped serially become agents of one in-process env (the
    cheapest way to batch a small simulator); everything else goes through the
    vector env, in worker processes when ``vector: subprocess``.
    """
    from sparring.envs.vector import make_vector_env

    if config.source == "gymnasium" and config.vector == "serial":
        from sparring.envs.gymnasium import GymnasiumEnv

        return GymnasiumEnv(config.id, num_envs=config.num_envs, env_kwargs=config.kwargs)
    factory = functools.partial(make_single_env, config.model_dump())
    if config.num_envs == 1 and config.vector == "serial":
        return factory()
    return make_vector_env(factory, config.num_envs, mode=config.vector)


def make_single_env(config: dict[str, Any]) -> MultiAgentEnv:
    """One copy of the source (module-level and fed plain data, so worker processes can pickle it)."""
    cfg = EnvConfig.model_validate(config)
    if cfg.source == "gymnasium":
        from sparring.envs.gymnasium import GymnasiumEnv

        return GymnasiumEnv(cfg.id, num_envs=1, env_kwargs=cfg.kwargs)
    from sparring.envs.pettingzoo import PettingZooEnv

    return PettingZooEnv(_pettingzoo_constructor(cfg)(**cfg.kwargs), behaviours=cfg.behaviours, opponent=cfg.opponent)


def _pettingzoo_constructor(cfg: EnvConfig) -> Callable[..., Any]:
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
