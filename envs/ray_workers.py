"""Env copies as Ray actors on a cluster, presented to the trainer as one batched env.

A game build steps a few hundred times a second; training faster takes more copies than one machine
holds. Each copy here lives in an actor of its own (any source: launched bridge engines, a Unity build,
PettingZoo or Gymnasium), placed by Ray resources: a node that has the game build advertises one
(``ray start --resources '{"game": 8}'``) and workers ask for it. The policy stays in the trainer and acts
for every copy in one batch (copies step in lock-step, as :class:`~sparring.envs.vector.SubprocVectorEnv`'s
do), so only observations and actions cross the network.

A worker whose process, game or whole node dies is restarted by Ray, on whatever node has room, with a
fresh copy of the env; its agents are reported in ``BehaviourStep.lost`` and the run goes on, the failures
counted in :attr:`RayVectorEnv.metrics` as a fleet of game instances counts its own.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from sparring.envs.base import MultiAgentEnv, StepResult
from sparring.envs.supervision import LiveAgents, RestartBudget
from sparring.envs.vector import EnvFactory, EnvWorkerError, VectorEnv, call_env

log = logging.getLogger("sparring")


class WorkerRestarted(RuntimeError):
    """A step reached a worker that Ray restarted (with a new env) since its last reset."""


class EnvWorker:
    """One env copy inside a Ray actor; Ray builds it anew when it restarts the actor."""

    def __init__(self, factory: EnvFactory) -> None:
        self.env = factory()
        self.playing = False  # reset since it was built: a step before that means the actor was restarted

    def specs(self) -> dict:
        return dict(self.env.specs)

    def call(self, method: str, arg: Any) -> Any:
        if method == "step" and not self.playing:
            raise WorkerRestarted("this env worker was restarted since its last reset")
        self.playing = self.playing or method == "reset"
        return call_env(self.env, method, arg)

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()

    def close(self) -> None:
        self.env.close()


class RayVectorEnv(VectorEnv):
    """Copy ``i`` built by ``env_fns[i]`` in a Ray actor, all stepped at once.

    Args:
        env_fns: one factory per copy, pickled to the worker's node (module-level functions, classes, or
            ``functools.partial`` of those; what the factory reads, a game build, must exist on that node).
        address: the Ray cluster to join (``"auto"``, ``"HOST:PORT"``); ``None``: the one this process is
            connected to, else the cluster running on this machine, else a new local one (``ray.init()``).
        resources: Ray resources each worker needs, e.g. ``{"game": 1}``.
        num_cpus: CPUs each worker reserves.
        max_restarts: restarts allowed per worker over the run; one more failure raises
            :class:`~sparring.envs.supervision.EngineFailure`.
        step_timeout: seconds a worker may take to answer; beyond it, it is killed as hung and restarted.
        restart_timeout: seconds to wait for a restarted worker to be placed and to build its env.
    """

    def __init__(
        self,
        env_fns: Sequence[EnvFactory],
        address: str | None = None,
        resources: Mapping[str, float] | None = None,
        num_cpus: float = 1.0,
        max_restarts: int = 10,
        step_timeout: float = 60.0,
        restart_timeout: float = 180.0,
        seed: int | None = None,
    ) -> None:
        import ray

        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            ray.init(address=address, logging_level=logging.WARNING, configure_logging=False)
        self.step_timeout = step_timeout
        self.restart_timeout = restart_timeout
        self._seed = seed
        self._parameters: dict | None = None  # the last set_parameters, given again to a restarted worker
        actor = ray.remote(EnvWorker).options(
            num_cpus=num_cpus, resources=dict(resources or {}), max_restarts=-1, max_task_retries=0,
            scheduling_strategy="SPREAD")
        self.workers = [actor.remote(fn) for fn in env_fns]
        self.budget = RestartBudget(len(self.workers), ("worker_deaths", "worker_timeouts"), max_restarts, log=log)
        self.metrics = self.budget.metrics
        try:
            specs = self._ray.get([w.specs.remote() for w in self.workers], timeout=restart_timeout)
        except BaseException:
            self.close()
            raise
        super().__init__(specs)
        self._live = [LiveAgents(list(self.specs)) for _ in self.workers]

    def reset(self, seed: int | None = None) -> StepResult:
        self._seed = seed
        return super().reset(seed)

    def set_parameters(self, parameters: Mapping[str, Any]) -> None:
        self._parameters = dict(parameters)
        super().set_parameters(parameters)

    def _run_copies(self, method: str, args: list[Any]) -> list[Any]:
        ray = self._ray
        calls = [w.call.remote(method, arg) for w, arg in zip(self.workers, args)]
        results = []
        for i, call in enumerate(calls):
            try:
                results.append(ray.get(call, timeout=self.step_timeout))
            except ray.exceptions.GetTimeoutError:
                ray.kill(self.workers[i], no_restart=False)
                results.append(self._replace(i, method, args[i], "worker_timeouts",
                                             f"did not answer {method} within {self.step_timeout} s"))
            except ray.exceptions.RayActorError as exc:  # its process or its node died
                results.append(self._replace(i, method, args[i], "worker_deaths", _first_line(exc)))
            except ray.exceptions.RayTaskError as exc:
                if isinstance(exc.cause, WorkerRestarted):  # it died between two calls, unseen
                    results.append(self._replace(i, method, args[i], "worker_deaths", str(exc.cause)))
                    continue
                if isinstance(exc, NotImplementedError):  # a capability the source lacks: the workers stay usable
                    ray.wait(calls, num_returns=len(calls))
                    raise NotImplementedError(str(exc.cause)) from None
                self.close()
                raise EnvWorkerError(f"env worker {i} raised {type(exc.cause).__name__}: {exc.cause} during {method}"
                                     f"\n\n{exc}", i, None) from None
        if method in ("reset", "step"):
            for live, result in zip(self._live, results):
                live.update(result, fresh=method == "reset")
        return results

    def _replace(self, i: int, method: str, arg: Any, kind: str, reason: str) -> Any:
        """Copy ``i``'s answer to ``method`` after its worker failed: Ray restarts the actor with a new env, which
        starts new episodes; the agents it had mid-episode are reported lost."""
        lost = self._live[i].snapshot()
        self.budget.record(i, kind, f"env worker {i}: {reason}", lost)
        try:
            time.sleep(self.budget.next_delay(i, reason))
        except Exception:
            self.close()
            raise
        worker = self.workers[i]
        deadline = time.monotonic() + self.restart_timeout
        while True:  # until Ray has placed the worker again and its env is built
            try:
                self._ray.get(worker.specs.remote(), timeout=max(deadline - time.monotonic(), 0.1))
                break
            except (self._ray.exceptions.RayActorError, self._ray.exceptions.GetTimeoutError) as exc:
                if time.monotonic() > deadline:
                    self.close()
                    raise EnvWorkerError(f"env worker {i} failed ({reason}) and was not back within "
                                         f"{self.restart_timeout} s: {_first_line(exc)}", i, None) from None
                time.sleep(0.5)
        if self._parameters is not None:
            self._ray.get(worker.call.remote("set_parameters", self._parameters))
        if method == "drain_stats":
            return {}
        if method == "set_parameters":
            return None
        if method == "seats":  # the new env seats its agents as the old one did
            return self._ray.get(worker.call.remote(method, arg), timeout=self.step_timeout)
        seed = None if self._seed is None else self._seed + i + len(self.workers) * self.budget.restarts[i]
        result = self._ray.get(worker.call.remote("reset", seed), timeout=self.step_timeout)
        self._live[i].update(result, fresh=True)
        return {name: replace(step, lost=np.concatenate([step.lost, lost[name]])) for name, step in result.items()}

    @property
    def worker_nodes(self) -> list[str]:
        """The Ray node each worker runs on now."""
        return self._ray.get([w.node.remote() for w in self.workers])

    def close(self) -> None:
        """Close every worker's env (briefly: a dead node cannot answer), then end the actors."""
        if self._closed:
            return
        self._closed = True
        ray = self._ray
        workers, self.workers = getattr(self, "workers", []), []
        try:
            ray.wait([w.close.remote() for w in workers], num_returns=len(workers), timeout=10)
        except Exception:
            pass  # a worker already gone has nothing left to close
        for worker in workers:
            ray.kill(worker)
        if self._owns_ray:
            ray.shutdown()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def ray_env(env_fns: Sequence[EnvFactory], **options: Any) -> MultiAgentEnv:
    """:class:`RayVectorEnv`, or a clear error where Ray is not installed."""
    if importlib.util.find_spec("ray") is None:
        raise ImportError("scale.ray needs Ray: pip install 'sparring[ray]'")
    return RayVectorEnv(env_fns, **options)
