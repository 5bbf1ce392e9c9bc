"""Run an exported native-format policy with onnxruntime: the Python side of what a game does."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort

from sparring.agents.rollout import AgentMemory
from sparring.spec import HYBRID_KEYS, Batch, Obs


class OnnxPolicy:
    """An exported policy (native format) with the same ``predict`` as a trained model.

    Args:
        path: the ``.onnx`` file written by ``sparring export`` or at the end of training.
        threads: onnxruntime intra-op threads (1 matches a game's inference budget).
    """

    def __init__(self, path: str | Path, threads: int = 1) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        if meta.get("sparring_format") != "native":
            raise ValueError(f"{path}: not a sparring native-format model (format {meta.get('sparring_format')!r}); "
                             "OnnxPolicy runs native exports")
        self.behaviour = meta["behaviour"]
        self.observation_space = json.loads(meta["observation_space"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.components = [name for name in self.inputs if name not in ("action_mask", "recurrent_in")]
        self._mask_width = next((i.shape[1] for i in self.session.get_inputs() if i.name == "action_mask"), None)
        memory_size = next((i.shape[1] for i in self.session.get_inputs() if i.name == "recurrent_in"), 0)
        self.memory = AgentMemory(memory_size) if memory_size else None  # what each agent remembers, by id
        outputs = [o.name for o in self.session.get_outputs()]
        self._actions = ["continuous_action", "discrete_action"] if "continuous_action" in outputs else ["action"]
        self._outputs = self._actions + (["recurrent_out"] if memory_size else [])

    def predict(
        self, obs: Obs, behaviour: str | None = None, action_mask: np.ndarray | None = None, deterministic: bool = True,
        agent_ids: np.ndarray | None = None,
    ) -> Batch:
        """Deterministic actions for a batch of observations (``behaviour`` is checked if given).

        Hybrid behaviours get ``{"continuous": ..., "discrete": ...}``, as a trained model's ``predict`` gives.
        A recurrent policy needs ``agent_ids``: it feeds each agent's ``recurrent_out`` back as its next
        ``recurrent_in``, as a game does, until :meth:`reset_memory` forgets the agent.
        """
        if behaviour is not None and behaviour != self.behaviour:
            raise ValueError(f"this model acts for behaviour {self.behaviour!r}, not {behaviour!r}")
        parts = obs if isinstance(obs, dict) else {self.components[0]: obs}
        feeds = {name: np.asarray(parts[name], np.float32) for name in self.components}
        n = len(next(iter(feeds.values())))
        if self._mask_width is not None:
            feeds["action_mask"] = np.ones((n, self._mask_width), bool) if action_mask is None else np.asarray(action_mask, bool)
        if self.memory is not None:
            if agent_ids is None:
                raise ValueError("this model is recurrent: pass agent_ids, so each agent's memory carries over")
            agent_ids = np.asarray(agent_ids, np.int64)
            feeds["recurrent_in"] = self.memory.get(agent_ids)
        actions = self.session.run(self._outputs, feeds)
        if self.memory is not None:
            self.memory.set(agent_ids, actions.pop())  # recurrent_out, the last output
        return actions[0] if len(actions) == 1 else dict(zip(HYBRID_KEYS, actions))

    def reset_memory(self, behaviour: str | None = None, agent_ids: np.ndarray | None = None) -> None:
        """Forget what a recurrent model remembers of ``agent_ids`` (their episodes ended), or of everyone."""
        if self.memory is not None:
            if agent_ids is None:
                self.memory = AgentMemory(self.memory.state.shape[1])
            else:
                self.memory.forget(np.asarray(agent_ids, np.int64))
