"""Vector envs: many copies behave as one env, and a failing worker surfaces fast and by name."""

from __future__ import annotations

import functools
import os
import signal

import numpy as np
import pytest
import toy_envs
from toy_envs import CountingEnv, CrashingEnv, Dungeon, HangingEnv, RaisingEnv, make_missing_build_env

from sparring.envs.base import BehaviourStep, DecisionSteps, StepResult, TerminalSteps, check_step_result
from sparring.envs.vector import (
    ID_STRIDE,
    EnvWorkerError,
    SerialVectorEnv,
    SubprocVectorEnv,
    make_vector_env,
    split_agent_ids,
)
from sparring.spec import batch_take

COUNTING = functools.partial(CountingEnv, episode_length=3)
STEPS = 7  # crosses two episode boundaries with episode_length=3


def actions_for(result: StepResult, t: int, id_offset: int = 0) -> dict[str, np.ndarray]:
    """Actions that depend on who receives them, so a misrouted row shows in the next observation."""
    env_index, local = split_agent_ids(result["runner"].decisions.agent_ids + id_offset)
    w_env, w_local = split_agent_ids(result["watcher"].decisions.agent_ids + id_offset)
    return {
        "runner": (env_index + local + t) % 5,
        "watcher": np.stack([(w_env + w_local) % 2, (w_env + t) % 3], axis=1),
    }


def rollout(env, seed: int | None) -> list[StepResult]:
    results = [env.reset(seed)]
    for t in range(STEPS):
        results.append(env.step(actions_for(results[-1], t)))
    for result in results:
        check_step_result(env.specs, result)
    return results


def rollout_by_hand(env_fns, seed: int) -> list[list[StepResult]]:
    """Per step, the result of each copy stepped on its own, as the vector env should have done."""
    envs = [fn() for fn in env_fns]
    results = [[env.reset(seed + i) for i, env in enumerate(envs)]]
    for t in range(STEPS):
        results.append(
            [env.step(actions_for(r, t, i * ID_STRIDE)) for i, (env, r) in enumerate(zip(envs, results[-1]))]
        )
    return results


def copy_share(merged: StepResult, i: int) -> StepResult:
    """Copy ``i``'s rows of a merged result, with its own agent ids."""
    share = {}
    for name, step in merged.items():
        d, t = step.decisions, step.terminals
        d_local, d_rows = local_rows(d.agent_ids, i)
        t_local, t_rows = local_rows(t.agent_ids, i)
        mask = None if d.action_mask is None else d.action_mask[d_rows]
        share[name] = BehaviourStep(
            DecisionSteps(d_local, batch_take(d.obs, d_rows), d.rewards[d_rows], mask),
            TerminalSteps(t_local, batch_take(t.obs, t_rows), t.rewards[t_rows], t.truncated[t_rows]),
        )
    return share


def local_rows(agent_ids: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
    env_index, local = split_agent_ids(agent_ids)
    assert np.all(np.diff(env_index) >= 0), "copies not back to back in copy order"
    rows = env_index == i
    return local[rows], rows


def assert_results_equal(got: StepResult, want: StepResult) -> None:
    assert list(got) == list(want)
    for name in want:
        for kind in ("decisions", "terminals"):
            g, w = getattr(got[name], kind), getattr(want[name], kind)
            np.testing.assert_array_equal(g.agent_ids, w.agent_ids, err_msg=f"{name} {kind} ids")
            np.testing.assert_array_equal(g.rewards, w.rewards, err_msg=f"{name} {kind} rewards")
            for key in w.obs if isinstance(w.obs, dict) else [None]:
                g_obs, w_obs = (g.obs[key], w.obs[key]) if key else (g.obs, w.obs)
                np.testing.assert_array_equal(g_obs, w_obs, err_msg=f"{name} {kind} obs {key or ''}")
        g_mask, w_mask = got[name].decisions.action_mask, want[name].decisions.action_mask
        assert (g_mask is None) == (w_mask is None), f"{name} mask presence"
        if w_mask is not None:
            np.testing.assert_array_equal(g_mask, w_mask, err_msg=f"{name} mask")
        np.testing.assert_array_equal(got[name].terminals.truncated, want[name].terminals.truncated)


def test_serial_vector_env_matches_stepping_copies_by_hand():
    env_fns = [COUNTING] * 3
    with SerialVectorEnv(env_fns) as venv:
        merged = rollout(venv, seed=4)
    for result, copies in zip(merged, rollout_by_hand(env_fns, seed=4), strict=True):
        for i, copy in enumerate(copies):
            assert_results_equal(copy_share(result, i), copy)


def test_subprocess_vector_env_matches_serial():
    with SerialVectorEnv([COUNTING] * 3) as serial, SubprocVectorEnv([COUNTING] * 3) as subproc:
        for got, want in zip(rollout(subproc, seed=4), rollout(serial, seed=4), strict=True):
            assert_results_equal(got, want)


def test_spawned_workers_can_import_the_test_envs():
    with SerialVectorEnv([COUNTING] * 2) as serial, SubprocVectorEnv([COUNTING] * 2, start_method="spawn") as subproc:
        for got, want in zip(rollout(subproc, seed=1), rollout(serial, seed=1), strict=True):
            assert_results_equal(got, want)


def test_reset_gives_copy_i_the_seed_plus_i():
    with SubprocVectorEnv([COUNTING] * 3) as venv:
        runners = venv.reset(seed=10)["runner"].decisions
    env_index, _ = split_agent_ids(runners.agent_ids)
    np.testing.assert_array_equal(runners.obs[:, 0], 10 + env_index)


def test_reset_without_seed_leaves_every_copy_unseeded():
    with SerialVectorEnv([COUNTING] * 3) as venv:
        venv.reset(seed=None)
        assert [env.last_seed for env in venv.envs] == [None, None, None]


def test_actions_reach_the_agent_they_were_meant_for():
    # Seeds 0, 1, 2 give the copies 1, 2, 3 runners and 0, 1, 0 watchers.
    with SubprocVectorEnv([COUNTING] * 3) as venv:
        first = venv.reset(seed=0)
        sent = actions_for(first, t=0)
        second = venv.step(sent)
        third = venv.step(actions_for(second, t=1))
    np.testing.assert_array_equal(second["runner"].decisions.agent_ids, first["runner"].decisions.agent_ids)
    np.testing.assert_array_equal(second["runner"].decisions.obs[:, 2], sent["runner"])
    # Watchers decide every other step and report the action they last received.
    np.testing.assert_array_equal(third["watcher"].decisions.agent_ids, first["watcher"].decisions.agent_ids)
    np.testing.assert_array_equal(third["watcher"].decisions.obs["last"], sent["watcher"])


def test_copies_without_masks_allow_every_action_beside_copies_with_masks():
    env_fns = [functools.partial(COUNTING, masks=True), functools.partial(COUNTING, masks=False)]
    with SerialVectorEnv(env_fns) as venv:
        decisions = venv.reset(seed=1)["runner"].decisions
    env_index, _ = split_agent_ids(decisions.agent_ids)
    assert decisions.action_mask[env_index == 1].all()
    assert not decisions.action_mask[env_index == 0].all()


def test_mask_stays_none_when_no_copy_gives_masks():
    with SerialVectorEnv([functools.partial(COUNTING, masks=False)] * 2) as venv:
        assert venv.reset(seed=1)["runner"].decisions.action_mask is None


def test_copies_that_disagree_on_specs_are_refused():
    with pytest.raises(ValueError, match=r"env copy 1 disagrees with copy 0 on behaviour 'runner'"):
        SerialVectorEnv([COUNTING, functools.partial(COUNTING, n_actions=4)])


def test_local_ids_outside_the_stride_are_refused(monkeypatch):
    monkeypatch.setattr(toy_envs, "RUNNER_FIRST_ID", -5)
    with SerialVectorEnv([COUNTING] * 2) as venv:
        with pytest.raises(ValueError, match=r"env copy 0, behaviour 'runner' decisions: agent ids must lie in"):
            venv.reset(seed=0)


def test_wrong_number_of_action_rows_is_refused():
    with SerialVectorEnv([COUNTING] * 2) as venv:
        venv.reset(seed=0)  # 1 + 2 runners
        with pytest.raises(ValueError, match=r"behaviour 'runner': got 2 rows, expected 3"):
            venv.step({"runner": np.zeros(2, np.int64)})


def test_step_before_reset_is_refused():
    with SerialVectorEnv([COUNTING]) as venv:
        with pytest.raises(RuntimeError, match=r"step\(\) called before reset\(\)"):
            venv.step({})


def test_unpicklable_factory_is_refused_before_any_worker_starts():
    with pytest.raises(TypeError, match=r"env factory 0 .* cannot be pickled"):
        SubprocVectorEnv([lambda: CountingEnv()])


@pytest.mark.timeout(30)
def test_factory_failure_in_a_worker_reaches_the_parent():
    with pytest.raises(EnvWorkerError, match=r"env worker 1 \(pid \d+\) raised FileNotFoundError: no game build"):
        SubprocVectorEnv([COUNTING, make_missing_build_env])


@pytest.mark.timeout(30)
def test_crashed_worker_raises_naming_worker_pid_and_exit_code():
    venv = SubprocVectorEnv([COUNTING, COUNTING, functools.partial(CrashingEnv, fail_at=2)])
    pid = venv.worker_pids[2]
    result = venv.reset(seed=0)
    result = venv.step(actions_for(result, 0))
    with pytest.raises(EnvWorkerError, match=rf"env worker 2 \(pid {pid}\) died with exit code 3 during step") as err:
        venv.step(actions_for(result, 1))
    assert (err.value.worker_index, err.value.pid, err.value.exitcode) == (2, pid, 3)


@pytest.mark.timeout(30)
def test_killed_worker_is_reported_on_reset():
    venv = SubprocVectorEnv([COUNTING] * 2)
    os.kill(venv.worker_pids[1], signal.SIGKILL)
    with pytest.raises(EnvWorkerError, match=r"env worker 1 .* exit code -9 \(killed by SIGKILL\) during reset"):
        venv.reset(seed=0)


@pytest.mark.timeout(30)
def test_worker_failure_closes_the_other_workers():
    venv = SubprocVectorEnv([COUNTING, functools.partial(CrashingEnv, fail_at=1)])
    result = venv.reset(seed=0)
    with pytest.raises(EnvWorkerError):
        venv.step(actions_for(result, 0))
    assert not any(p.is_alive() for p in venv._processes)
    with pytest.raises(RuntimeError, match="is closed"):
        venv.reset(seed=0)


@pytest.mark.timeout(30)
def test_exception_in_a_worker_env_reaches_the_parent_with_its_traceback():
    venv = SubprocVectorEnv([COUNTING, functools.partial(RaisingEnv, fail_at=1)])
    result = venv.reset(seed=0)
    with pytest.raises(EnvWorkerError, match=r"env worker 1 \(pid \d+\) raised ValueError: toy env refuses step 1") as err:
        venv.step(actions_for(result, 0))
    assert 'toy_envs.py", line' in str(err.value) and "in fail" in str(err.value)


@pytest.mark.timeout(30)
def test_hung_worker_hits_step_timeout():
    venv = SubprocVectorEnv([COUNTING, functools.partial(HangingEnv, fail_at=1)], step_timeout=0.5)
    result = venv.reset(seed=0)
    with pytest.raises(EnvWorkerError, match=r"env worker 1 \(pid \d+\) did not answer step within 0.5 s"):
        venv.step(actions_for(result, 0))
    assert not any(p.is_alive() for p in venv._processes)


def test_close_is_idempotent_and_stops_every_worker():
    venv = SubprocVectorEnv([COUNTING] * 2)
    venv.reset(seed=0)
    venv.close()
    venv.close()
    assert not any(p.is_alive() for p in venv._processes)
    assert [p.exitcode for p in venv._processes] == [0, 0]


def test_serial_close_closes_every_copy():
    venv = SerialVectorEnv([COUNTING] * 2)
    copies = list(venv.envs)
    venv.close()
    venv.close()
    assert all(env.closed for env in copies)


@pytest.mark.parametrize("mode, kind", [("serial", SerialVectorEnv), ("subprocess", SubprocVectorEnv)])
def test_make_vector_env_builds_the_requested_kind(mode, kind):
    with make_vector_env(COUNTING, 2, mode=mode) as venv:
        assert isinstance(venv, kind) and venv.num_envs == 2


def test_make_vector_env_names_the_valid_modes():
    with pytest.raises(ValueError, match=r"'subprocess' or 'serial', got 'threads'"):
        make_vector_env(COUNTING, 2, mode="threads")



def test_an_env_worker_imports_only_what_stepping_its_env_needs():
    """A subprocess copy built from a run config, as `sparring train` builds it, imports neither torch nor the
    trainers: a worker starts in a fraction of a second and holds no trainer memory."""
    from sparring.env_config import GymnasiumEnvConfig
    from sparring.envs.factory import make_env

    config = GymnasiumEnvConfig(source="gymnasium", id="toy_envs:ImportProbe-v0", num_envs=2, vector="subprocess")
    with make_env(config) as env:
        loaded = env.reset(seed=0)["ImportProbe"].decisions.obs
    assert loaded.tolist() == [[0.0, 0.0], [0.0, 0.0]], "a worker imported torch or sparring.agents"


class _IdsAtOrAboveTheStride(CountingEnv):
    """Its runners' ids start at ID_STRIDE, where the next copy's would begin."""

    shift = ID_STRIDE

    def reset(self, seed=None):
        return self._shifted(super().reset(seed))

    def _shifted(self, result: StepResult) -> StepResult:
        step = result["runner"]
        d = step.decisions
        result["runner"] = BehaviourStep(DecisionSteps(d.agent_ids + self.shift, d.obs, d.rewards, d.action_mask),
                                         step.terminals)
        return result


class _NegativeIds(_IdsAtOrAboveTheStride):
    """Its runners' ids lie below 0, where the previous copy's would end."""

    shift = -ID_STRIDE


@pytest.mark.parametrize("bad_env", [_IdsAtOrAboveTheStride, _NegativeIds])
@pytest.mark.parametrize("copies, bad_copy", [(1, 0), (2, 0), (2, 1)])
def test_ids_that_would_collide_with_the_next_copy_are_refused_naming_the_copy(copies, bad_copy, bad_env):
    factories = [COUNTING] * copies
    factories[bad_copy] = bad_env
    env = SerialVectorEnv(factories)
    with pytest.raises(ValueError, match=rf"env copy {bad_copy}, behaviour 'runner' decisions: agent ids must lie"):
        env.reset(seed=0)


@pytest.mark.parametrize("kind", [SerialVectorEnv, SubprocVectorEnv])
def test_copies_keep_their_groups_apart_and_pool_their_statistics(kind):
    env = kind([functools.partial(Dungeon, areas=2)] * 2)
    try:
        decisions = env.reset(seed=0)["escaper"].decisions
        copies, local = split_agent_ids(decisions.agent_ids)
        groups = decisions.group_ids
        assert len(set(groups.tolist())) == 4  # two dungeons in each of two copies
        assert (groups % ID_STRIDE == 1 + local // 3).all() and (groups // ID_STRIDE == copies).all()
        result = env.step({"escaper": np.where(local % 3 == 0, 1, 0)})  # the first of each group fights
        env.step({"escaper": np.full(len(result["escaper"].decisions), 2)})  # the others try code 0
        assert len(env.drain_stats()["Dungeon/Escaped"]) == 4 and env.drain_stats() == {}
    finally:
        env.close()


def test_a_worker_refusing_parameters_says_why_and_keeps_stepping():
    env = SubprocVectorEnv([functools.partial(CountingEnv, episode_length=3)] * 2)
    try:
        result = env.reset(seed=0)
        with pytest.raises(NotImplementedError, match="CountingEnv takes no environment parameters"):
            env.set_parameters({"gravity": 9.8})
        check_step_result(env.specs, env.step(actions_for(result, 0)))
    finally:
        env.close()
