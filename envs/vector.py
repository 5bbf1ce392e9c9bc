"""Many copies of a sparring env presented to the trainer as one batched env.

A trainer sees a single :class:`~sparring.envs.base.MultiAgentEnv` whatever the
number of copies: per behaviour, the copies' decision and terminal steps are
concatenated, and the action batch the trainer returns is split back by the
per-copy row counts of the previous decisions. Agent ids stay unique by folding
the copy index into them: ``env_index * ID_STRIDE + local_id``
(:func:`split_agent_ids` undoes it).

- :class:`SerialVectorEnv` steps the copies one after another in this process:
  no start-up cost, easy to debug, exceptions keep their own type.
- :class:`SubprocVectorEnv` runs each copy in its own worker process and steps
  them in parallel. Game builds crash and hang; a dead, hung or failing worker
  surfaces as :class:`EnvWorkerError` naming the worker, within ``step_timeout``,
  and never as a hang. Env factories must be picklable (module-level functions,
  classes, or ``functools.partial`` of those; not lambdas or closures), and the
  script that creates the workers needs an ``if __name__ == "__main__":`` guard,
  as with any spawn/forkserver multiprocessing.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import signal
import time
import traceback
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from itertools import accumulate
from multiprocessing.connection import Connection, wait
from typing import Any

import numpy as np

from sparring.envs.parameters import ParameterValue
from sparring.envs.base import (
    Actions, BehaviourStep, DecisionSteps, GameStats, MultiAgentEnv, PlayedActions, StepResult, TerminalSteps, merge_stats,
)
from sparring.spec import BehaviourSpec, batch_concat, batch_len, batch_take, empty_actions

ID_STRIDE = 2**32
"""Merged agent id = ``env_index * ID_STRIDE + local_id``; local ids must lie in ``[0, ID_STRIDE)``."""

EnvFactory = Callable[[], MultiAgentEnv]


def split_agent_ids(agent_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(env_index, local_id)`` of merged agent ids, to find the copy an agent lives in."""
    env_index, local_ids = np.divmod(np.asarray(agent_ids, np.int64), ID_STRIDE)
    return env_index, local_ids


class EnvWorkerError(RuntimeError):
    """A subprocess env worker died, hung, or raised; the vector env has been closed.

    Attributes:
        worker_index: the failing worker, which hosts copy ``worker_index``.
        pid: its process id.
        exitcode: its exit code if it died (negative: killed by that signal), else ``None``.
    """

    def __init__(self, message: str, worker_index: int, pid: int | None, exitcode: int | None = None):
        super().__init__(message)
        self.worker_index = worker_index
        self.pid = pid
        self.exitcode = exitcode


class VectorEnv(MultiAgentEnv):
    """Shared merge/split logic; subclasses only decide where the copies run."""

    _closed = False  # set by a subclass's close(), which may run before __init__ finishes
    copies_seat_agents = True
    """Whether :meth:`seats` asks the copies; fleets of game engines, whose sides are teams, do not."""

    def __init__(self, copy_specs: Sequence[Mapping[str, BehaviourSpec]]):
        self.num_envs = len(copy_specs)
        self.specs = _agreed_specs(copy_specs)
        # Agent ids of copy i are shifted by this; repeated per agent when merging.
        self._id_offsets = np.arange(self.num_envs, dtype=np.int64) * ID_STRIDE
        # Per behaviour, where each copy's rows of the previous decisions start
        # (np.split boundaries) and how many rows there are; None until reset.
        self._split_points: dict[str, list[int]] | None = None
        self._decision_totals: dict[str, int] = {}
        self._seat_books: dict[str, _SeatBook | None] = {}  # per behaviour, the copies' answers to seats()

    @abstractmethod
    def _run_copies(self, method: str, args: list[Any]) -> list[StepResult]:
        """Call ``copy_i.<method>(args[i])`` on every copy and return their results in copy order."""

    def reset(self, seed: int | None = None) -> StepResult:
        """Reset every copy; copy ``i`` gets ``seed + i`` so copies do not play identical episodes."""
        seeds = [None if seed is None else seed + i for i in range(self.num_envs)]
        return self._call("reset", seeds)

    def step(self, actions: Actions) -> StepResult:
        return self._call("step", self._split_actions(actions))

    def _call(self, method: str, args: list[Any]) -> StepResult:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed (by close() or after a worker failed); make a new one")
        return self._merge(self._run_copies(method, args))

    def set_parameters(self, parameters: Mapping[str, ParameterValue]) -> None:
        """Every copy gets the same parameters (each copy draws its own samples)."""
        self._run_copies("set_parameters", [dict(parameters)] * self.num_envs)

    def drain_stats(self) -> GameStats:
        return merge_stats(self._run_copies("drain_stats", [None] * self.num_envs))

    def seats(self, behaviour: str, agent_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Each copy's answer for its own agents; game ``g`` of copy ``i`` becomes ``g * num_envs + i``, so a copy
        that plays one game (a PettingZoo env) plays game ``i``. ``None`` if any copy does not say.

        Answers hold for as long as an agent's id does, so the copies are asked only about ids not seen before:
        a worker process is not asked every step.
        """
        if not self.copies_seat_agents:
            return None
        ids = np.asarray(agent_ids, np.int64)
        first = behaviour not in self._seat_books  # asked even for no agents: whether the copies seat any
        book = self._seat_books.setdefault(behaviour, _SeatBook())
        if book is None:
            return None
        rows = book.rows(ids)
        if first or rows is None:
            new = np.setdiff1d(ids, book.ids)
            copies, local = split_agent_ids(new)
            answers = self._run_copies("seats", [(behaviour, local[copies == i]) for i in range(self.num_envs)])
            if any(answer is None for answer in answers):
                self._seat_books[behaviour] = None
                return None
            games, seats = np.zeros(len(new), np.int64), np.zeros(len(new), np.int64)
            for i, (copy_games, copy_seats) in enumerate(answers):
                games[copies == i] = np.asarray(copy_games, np.int64) * self.num_envs + i
                seats[copies == i] = copy_seats
            book.add(new, games, seats)
            rows = book.rows(ids)
        return book.games[rows], book.seats[rows]

    def _split_actions(self, actions: Actions) -> list[dict[str, np.ndarray]]:
        if self._split_points is None:
            raise RuntimeError(f"{type(self).__name__}.step() called before reset()")
        unknown = set(actions) - set(self.specs)
        if unknown:
            raise ValueError(f"actions for unknown behaviours {sorted(unknown)}; this env has {list(self.specs)}")
        per_copy: list[dict[str, np.ndarray]] = [{} for _ in range(self.num_envs)]
        for name, split_points in self._split_points.items():
            total = self._decision_totals[name]
            if name not in actions:
                if total:
                    raise ValueError(f"actions for behaviour {name!r} missing; expected {total} rows, one per decision agent")
                continue
            rows = actions[name] if isinstance(actions[name], dict) else np.asarray(actions[name])
            if batch_len(rows) != total:
                raise ValueError(
                    f"actions for behaviour {name!r}: got {batch_len(rows)} rows, expected {total} "
                    "(one per agent of the previous decision steps, in their order)"
                )
            bounds = [0, *split_points, total]
            for copy_actions, start, stop in zip(per_copy, bounds[:-1], bounds[1:]):
                copy_actions[name] = batch_take(rows, slice(start, stop))
        return per_copy

    def _merge(self, results: list[StepResult]) -> StepResult:
        merged: StepResult = {}
        split_points: dict[str, list[int]] = {}
        totals: dict[str, int] = {}
        for name, spec in self.specs.items():
            steps = _behaviour_steps(results, name)
            decisions = [s.decisions for s in steps]
            terminals = [s.terminals for s in steps]
            counts = [len(d) for d in decisions]
            merged[name] = BehaviourStep(
                DecisionSteps(
                    self._merged_ids(name, "decisions", [d.agent_ids for d in decisions]),
                    batch_concat([d.obs for d in decisions]),
                    batch_concat([d.rewards for d in decisions]),
                    _merged_masks(decisions, spec),
                    self._merged_groups(name, "decisions", [d.group_ids for d in decisions]),
                    batch_concat([d.group_rewards for d in decisions]),
                ),
                TerminalSteps(
                    self._merged_ids(name, "terminals", [t.agent_ids for t in terminals]),
                    batch_concat([t.obs for t in terminals]),
                    batch_concat([t.rewards for t in terminals]),
                    batch_concat([t.truncated for t in terminals]),
                    self._merged_groups(name, "terminals", [t.group_ids for t in terminals]),
                    batch_concat([t.group_rewards for t in terminals]),
                ),
                self._merged_ids(name, "lost", [s.lost for s in steps]),
                self._merged_played(name, spec, steps),
            )
            split_points[name] = list(accumulate(counts[:-1]))
            totals[name] = sum(counts)
        self._split_points, self._decision_totals = split_points, totals
        return merged

    def _merged_ids(self, name: str, kind: str, parts: list[np.ndarray]) -> np.ndarray:
        """Copy ``i``'s ids shifted by ``i * ID_STRIDE``, in copy order, after checking each fits below the stride.

        Most steps most copies report no terminals and no lost agents: only the copies with
        ids cost work, which keeps a step's fixed cost low (it is paid on every bridge round trip).
        """
        filled = [i for i, ids in enumerate(parts) if len(ids)]
        if not filled:
            return np.zeros(0, np.int64)
        if len(filled) == 1:
            local, offsets = parts[filled[0]].astype(np.int64, copy=False), self._id_offsets[filled[0]]
        else:
            local = np.concatenate(parts).astype(np.int64, copy=False)
            offsets = np.repeat(self._id_offsets, [len(ids) for ids in parts])
        if (local >> 32).any():  # below 0 or from ID_STRIDE = 2**32 up, in one pass
            bad = next(i for i in filled if parts[i].min() < 0 or parts[i].max() >= ID_STRIDE)
            raise ValueError(
                f"env copy {bad}, behaviour {name!r} {kind}: agent ids must lie in [0, 2**32) to be "
                f"merged across copies, got {parts[bad].min()}..{parts[bad].max()}"
            )
        return local + offsets


    def _merged_played(self, name: str, spec: BehaviourSpec, steps: list[BehaviourStep]) -> PlayedActions | None:
        """The copies' played actions as one batch (their ids shifted as agent ids are); ``None`` if no copy reports."""
        if all(s.played is None for s in steps):
            return None
        played = [s.played or PlayedActions(np.zeros(0, np.int64), empty_actions(spec)) for s in steps]
        return PlayedActions(self._merged_ids(name, "played", [p.agent_ids for p in played]),
                             batch_concat([p.actions for p in played]))

    def _merged_groups(self, name: str, kind: str, parts: list[np.ndarray]) -> np.ndarray:
        """Group ids made distinct across copies as agent ids are; 0 (no group) stays 0."""
        ids = self._merged_ids(name, f"{kind} group", parts)
        return np.where(ids % ID_STRIDE == 0, 0, ids)


class _SeatBook:
    """Games and seats of the agent ids seen so far, kept sorted by id for a vectorised look-up."""

    def __init__(self) -> None:
        self.ids = self.games = self.seats = np.zeros(0, np.int64)

    def add(self, ids: np.ndarray, games: np.ndarray, seats: np.ndarray) -> None:
        ids = np.concatenate([self.ids, ids])
        order = np.argsort(ids)
        self.ids = ids[order]
        self.games = np.concatenate([self.games, games])[order]
        self.seats = np.concatenate([self.seats, seats])[order]

    def rows(self, ids: np.ndarray) -> np.ndarray | None:
        """Where ``ids`` are kept; ``None`` if any is not (one binary search per id: the look-up of every step)."""
        rows = np.searchsorted(self.ids, ids)
        if len(ids) and (rows.max() >= len(self.ids) or (self.ids[rows] != ids).any()):
            return None
        return rows


def _agreed_specs(copy_specs: Sequence[Mapping[str, BehaviourSpec]]) -> dict[str, BehaviourSpec]:
    if not copy_specs:
        raise ValueError("a vector env needs at least one env factory, got none")
    first = dict(copy_specs[0])
    for i, specs in enumerate(copy_specs[1:], start=1):
        if set(specs) != set(first):
            raise ValueError(
                f"env copy {i} has behaviours {sorted(specs)}, copy 0 has {sorted(first)}; all copies must agree"
            )
        for name, spec in first.items():
            if specs[name] != spec:
                raise ValueError(
                    f"env copy {i} disagrees with copy 0 on behaviour {name!r}: {specs[name]} vs {spec}; "
                    "all copies must have the same specs"
                )
    return first


def _behaviour_steps(results: list[StepResult], name: str) -> list[BehaviourStep]:
    try:
        return [r[name] for r in results]
    except KeyError:
        bad = next(i for i, r in enumerate(results) if name not in r)
        raise ValueError(
            f"env copy {bad} returned no entry for behaviour {name!r}; every behaviour in specs must be present"
        ) from None


def _merged_masks(decisions: list[DecisionSteps], spec: BehaviourSpec) -> np.ndarray | None:
    masks = [d.action_mask for d in decisions]
    if all(m is None for m in masks):
        return None
    # A copy without masks allows everything; spell that out so the batch has one shape.
    return np.concatenate(
        [np.ones((len(d), spec.mask_size), bool) if m is None else m for d, m in zip(decisions, masks)]
    )


class SerialVectorEnv(VectorEnv):
    """Copies stepped one after another in this process.

    For cheap envs, where a process round trip would cost more than the step,
    and for debugging: an env's exception propagates unchanged.
    """

    def __init__(self, env_fns: Sequence[EnvFactory]):
        self.envs: list[MultiAgentEnv] = []
        try:
            for fn in env_fns:
                self.envs.append(fn())
            super().__init__([env.specs for env in self.envs])
        except BaseException:
            self.close()
            raise

    def _run_copies(self, method: str, args: list[Any]) -> list[StepResult]:
        return [call_env(env, method, arg) for env, arg in zip(self.envs, args)]

    def close(self) -> None:
        self._closed = True
        envs, self.envs = self.envs, []
        for env in envs:
            env.close()


def _default_start_method() -> str:
    # Never "fork": the parent has usually imported torch, whose OpenMP/MKL thread
    # pools and locks do not survive a fork (children can deadlock on a lock held
    # by a thread that was not copied). "forkserver" forks workers from a small
    # clean server process, cheaper than "spawn"'s fresh interpreter per worker;
    # "spawn" where forkserver does not exist (Windows).
    return "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


class SubprocVectorEnv(VectorEnv):
    """Each copy in its own worker process, all stepped in parallel.

    Args:
        env_fns: one picklable factory per copy (see the module docstring).
        start_method: a multiprocessing start method; default ``"forkserver"``
            (``"spawn"`` where unavailable), which is safe with torch loaded.
        step_timeout: seconds to wait for the workers' answer to one call (env
            construction, ``reset``, ``step``) before treating a worker as hung.
        close_timeout: seconds ``close`` lets workers close their envs before
            terminating them.
    """

    def __init__(
        self,
        env_fns: Sequence[EnvFactory],
        start_method: str | None = None,
        step_timeout: float = 60.0,
        close_timeout: float = 5.0,
    ):
        self.step_timeout = step_timeout
        self.close_timeout = close_timeout
        self._processes: list[mp.process.BaseProcess] = []
        self._conns: list[Connection] = []
        # Worker i owes an answer: it must not be sent another command, and
        # close terminates rather than asks it.
        self._busy: list[bool] = []
        payloads = [_pickled_factory(i, fn) for i, fn in enumerate(env_fns)]
        ctx = mp.get_context(start_method or _default_start_method())
        try:
            for i, payload in enumerate(payloads):
                parent_conn, child_conn = ctx.Pipe()
                # daemon: if the trainer dies without closing, multiprocessing
                # still takes the workers down with it instead of orphaning them.
                process = ctx.Process(
                    target=_worker, args=(child_conn, payload), name=f"sparring-env-worker-{i}", daemon=True
                )
                process.start()
                # Only the worker may hold its end, so the worker's death reads as EOF here.
                child_conn.close()
                self._processes.append(process)
                self._conns.append(parent_conn)
                self._busy.append(True)
            super().__init__(self._gather("env construction"))
        except BaseException:
            self.close()
            raise

    @property
    def worker_pids(self) -> list[int | None]:
        """Process id of each worker, to match a failing copy to system logs or core dumps."""
        return [p.pid for p in self._processes]

    def _run_copies(self, method: str, args: list[Any]) -> list[StepResult]:
        try:
            for i, (conn, arg) in enumerate(zip(self._conns, args)):
                try:
                    conn.send((method, arg))
                except (BrokenPipeError, ConnectionResetError):
                    raise self._death_error(i, method) from None
                self._busy[i] = True
            return self._gather(method)
        except NotImplementedError:
            raise  # every worker answered: they are still in step
        except BaseException:
            # A failed or interrupted (Ctrl-C) exchange leaves workers mid-command,
            # out of step with this process: none of them can be trusted again.
            self.close()
            raise

    def _gather(self, what: str) -> list[Any]:
        """Await every worker's answer to ``what``; raise on the first failure."""
        results: list[Any] = [None] * len(self._conns)
        refusals: list[str] = []
        pending = {i for i, busy in enumerate(self._busy) if busy}
        deadline = time.monotonic() + self.step_timeout
        while pending:
            remaining = deadline - time.monotonic()
            waitables = {self._conns[i]: i for i in pending} | {self._processes[i].sentinel: i for i in pending}
            ready = wait(list(waitables), timeout=max(remaining, 0))
            if not ready:
                i = min(pending)
                raise EnvWorkerError(
                    f"env worker {i} (pid {self._processes[i].pid}) did not answer {what} within "
                    f"{self.step_timeout} s and is treated as hung; raise step_timeout if the env is only slow",
                    i,
                    self._processes[i].pid,
                )
            for i in sorted({waitables[r] for r in ready}):
                conn = self._conns[i]
                # A sentinel alone means death; a readable pipe may still hold the last answer.
                try:
                    status, payload = conn.recv() if conn.poll() else (None, None)
                except (EOFError, ConnectionResetError):
                    status, payload = None, None
                if status is None:
                    raise self._death_error(i, what)
                if status == "error":
                    raise self._raised_error(i, what, payload)
                if status == "refused":
                    refusals.append(payload)
                results[i] = payload
                self._busy[i] = False
                pending.discard(i)
        if refusals:
            raise NotImplementedError(refusals[0])
        return results

    def _death_error(self, i: int, what: str) -> EnvWorkerError:
        process = self._processes[i]
        process.join(1.0)  # reap it, so the exit code is known
        code = process.exitcode
        if code is None:
            how = "closed its pipe but is still running"
        elif code < 0:
            how = f"died with exit code {code} (killed by {_signal_name(-code)})"
        else:
            how = f"died with exit code {code}"
        return EnvWorkerError(f"env worker {i} (pid {process.pid}) {how} during {what}", i, process.pid, code)

    def _raised_error(self, i: int, what: str, error: tuple[str, str, str]) -> EnvWorkerError:
        type_name, message, tb = error
        pid = self._processes[i].pid
        return EnvWorkerError(
            f"env worker {i} (pid {pid}) raised {type_name}: {message} during {what}\n\n"
            f"Traceback in the worker:\n{tb}",
            i,
            pid,
        )

    def close(self) -> None:
        """Ask idle workers to close their envs, then terminate whatever is left; never hangs."""
        if self._closed:
            return
        self._closed = True
        for conn, busy in zip(self._conns, self._busy):
            if not busy:
                try:
                    conn.send(("close", None))
                except OSError:
                    pass  # already gone; terminated below if need be
        deadline = time.monotonic() + self.close_timeout
        for process, busy in zip(self._processes, self._busy):
            if not busy:
                process.join(max(deadline - time.monotonic(), 0))
        for process in self._processes:
            if process.is_alive():
                process.terminate()
                process.join(1.0)
            if process.is_alive():
                process.kill()
                process.join(1.0)
        for conn in self._conns:
            conn.close()

    def __del__(self) -> None:
        # Attributes may be missing if __init__ failed early; interpreter shutdown may
        # have torn down modules. Neither is worth a traceback from a finalizer.
        try:
            self.close()
        except Exception:
            pass


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _pickled_factory(i: int, env_fn: EnvFactory) -> bytes:
    # Pickled here rather than by Process.start so the error names the factory, and
    # unpickled inside the worker so an import failure there comes back as a message.
    try:
        return pickle.dumps(env_fn)
    except Exception as exc:
        raise TypeError(
            f"env factory {i} ({env_fn!r}) cannot be pickled for a subprocess worker: {exc}. "
            "Pass a module-level function, a class, or functools.partial of one (not a lambda or "
            "closure), or use SerialVectorEnv / mode='serial'"
        ) from exc


def _worker(conn: Connection, env_fn_payload: bytes) -> None:
    """Build one env and serve ``(method, arg)`` commands until told to close."""
    # Ctrl-C reaches the whole process group; the trainer decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    env: MultiAgentEnv | None = None
    try:
        try:
            env = pickle.loads(env_fn_payload)()
            conn.send(("ok", dict(env.specs)))
        except Exception as exc:
            conn.send(("error", _describe(exc)))
            return
        while True:
            method, arg = conn.recv()
            if method == "close":
                return
            try:
                conn.send(("ok", call_env(env, method, arg)))
            except NotImplementedError as exc:  # a capability the source lacks: the worker stays usable
                conn.send(("refused", str(exc)))
            except Exception as exc:
                conn.send(("error", _describe(exc)))
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the trainer is gone; nobody is left to answer
    finally:
        if env is not None:
            env.close()


def call_env(env: MultiAgentEnv, method: str, arg: Any) -> Any:
    """``env.<method>(arg)`` for a vector env's copy; ``drain_stats`` takes no argument, ``seats`` two."""
    if method == "seats":
        return env.seats(*arg)
    return env.drain_stats() if method == "drain_stats" else getattr(env, method)(arg)


def _describe(exc: BaseException) -> tuple[str, str, str]:
    # Strings always pickle; the exception object itself may not.
    return type(exc).__qualname__, str(exc), "".join(traceback.format_exception(exc))


def make_vector_env(
    env_fn: EnvFactory,
    num_envs: int,
    mode: str = "subprocess",
    *,
    start_method: str | None = None,
    step_timeout: float = 60.0,
) -> VectorEnv:
    """``num_envs`` copies of ``env_fn()`` as one env; ``start_method`` and ``step_timeout`` apply to subprocesses."""
    if mode == "subprocess":
        return SubprocVectorEnv([env_fn] * num_envs, start_method=start_method, step_timeout=step_timeout)
    if mode == "serial":
        return SerialVectorEnv([env_fn] * num_envs)
    raise ValueError(f"make_vector_env mode must be 'subprocess' or 'serial', got {mode!r}")
