"""The ``env:`` section of a run config: which source, its copies, and (for game builds) the bridge's settings.

Kept apart from :mod:`sparring.config` so that what builds an env (the env factory, and
every subprocess env worker) imports only pydantic, not the trainers and torch.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _PythonEnvConfig(_Strict):
    """What every in-Python source shares: which env, its arguments, and how many copies."""

    id: str = Field(description="Which env (see each source).")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the env constructor.")
    num_envs: int = Field(1, ge=1, description="Copies of the env stepped together.")
    vector: Literal["serial", "subprocess"] = Field(
        "serial", description="Step copies in this process or in one worker process each."
    )

    @property
    def label(self) -> str:
        """What the env is, for messages."""
        return self.id


class GymnasiumEnvConfig(_PythonEnvConfig):
    """A single-agent Gymnasium env (``id``: a registered id such as 'CartPole-v1'); copies become agents."""

    source: Literal["gymnasium"]


class PettingZooEnvConfig(_PythonEnvConfig):
    """A PettingZoo AEC or Parallel env (``id``: a module with env()/parallel_env(), or 'module:factory')."""

    source: Literal["pettingzoo"]
    api: Literal["aec", "parallel"] = Field("aec", description="Which constructor of the module to call.")
    behaviours: dict[str, str] | None = Field(
        None, description="Agent name -> behaviour name (default: strip a trailing _<digits>)."
    )
    opponent: Literal["random"] | None = Field(
        None, description="The learner plays one seat per episode, 'random' plays the others."
    )
    groups: dict[str, str] | None = Field(
        None, description="Agent name -> group name, for agents that cooperate (MA-POCA values each group together)."
    )


class BridgeEnvConfig(_Strict):
    """Running game instances connected over the sparring bridge (launched by the trainer, or editor mode)."""

    source: Literal["bridge"]
    executable: str | None = Field(
        None,
        description=(
            "The game to launch num_envs copies of (a .py file runs with this Python; a relative path is taken from "
            "the working directory, as are relative args). None: editor mode, wait for num_envs engines to "
            "connect to host:port."
        ),
    )
    args: list[str] = Field(default_factory=list, description="Extra command-line arguments for every copy.")
    headless_flag: str | None = Field(None, description="Added to each copy's command line, e.g. '--headless'.")
    num_envs: int = Field(1, ge=1, description="Game instances trained at once.")
    transport: Literal["grpc", "tcp"] = Field("grpc", description="gRPC stream, or length-prefixed frames over TCP.")
    host: str = Field("127.0.0.1", description="Address to listen on; anything but loopback needs a token and TLS.")
    port: int = Field(
        0, ge=0, le=65535,
        description="Port to listen on. 0: a free port for launched copies; in editor mode 5105 (gRPC) or 5106 (TCP).",
    )
    token: str | None = Field(
        None,
        description="Shared secret engines must present. None: none is needed on loopback (any is accepted); "
        "launched copies always get one of their own.",
    )
    tls_cert: str | None = Field(
        None,
        description="PEM certificate chain: engines connect over TLS only (needed beyond loopback), and launched "
        "copies are told to trust this file (--sparring-ca). A relative path is taken from the working directory.",
    )
    tls_key: str | None = Field(None, description="The unencrypted PEM private key of tls_cert.")
    handshake_timeout: float = Field(10.0, gt=0, description="Seconds a new connection has to send its Hello.")
    connect_timeout: float | None = Field(
        None, gt=0,
        description="Seconds to wait for engines to complete their handshake: a launched copy from its launch "
        "(default 60), the first engines in editor mode (default 600).",
    )
    reset_timeout: float | None = Field(
        None, gt=0, description="Seconds an engine may take to answer a Reset (levels load). None: step_timeout."
    )
    step_timeout: float = Field(60.0, gt=0, description="Seconds an engine may take to answer before it is relaunched.")
    max_restarts: int = Field(5, ge=0, description="Relaunches per game instance before training stops.")
    max_message_bytes: int = Field(64 * 2**20, ge=1024, description="The largest message either side may send.")
    max_behaviours: int = Field(64, ge=1, description="Behaviours an engine may declare.")
    max_observation_elements: int = Field(
        2**16, ge=1, description="Observation values per agent an engine may declare, all components together."
    )
    max_action_choices: int = Field(
        2**16, ge=1, description="Discrete actions per behaviour an engine may declare, all branches together."
    )
    max_action_dims: int = Field(1024, ge=1, description="Continuous action values, or discrete branches, per behaviour.")

    @model_validator(mode="after")
    def _tls_pair(self) -> BridgeEnvConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            given, missing = ("tls_cert", "tls_key") if self.tls_key is None else ("tls_key", "tls_cert")
            raise ValueError(f"env.{given} is set but env.{missing} is not: TLS needs the certificate chain "
                             "(tls_cert) and its private key (tls_key), both PEM files")
        return self

    def server_options(self) -> dict[str, Any]:
        """The :class:`~sparring.envs.bridge.server.BridgeServer` settings these keys give."""
        from sparring.envs.bridge.codec import SpecLimits

        limits = SpecLimits(self.max_behaviours, self.max_observation_elements, self.max_action_choices,
                            self.max_action_dims)
        return {"max_message_bytes": self.max_message_bytes, "handshake_timeout": self.handshake_timeout,
                "limits": limits, "tls_cert": self.tls_cert, "tls_key": self.tls_key}

    @property
    def label(self) -> str:
        """What the env is, for messages."""
        return self.executable or f"engines connecting to {self.host}:{self.port} (editor mode)"


class UnityEnvConfig(_Strict):
    """Unity ML-Agents builds (or the Editor) through mlagents-envs; names follow ML-Agents' env/engine settings."""

    source: Literal["unity"]
    env_path: str | None = Field(
        None, description="The Unity build to launch num_envs copies of; None: the Editor (press Play) on base_port."
    )
    env_args: list[str] = Field(default_factory=list, description="Extra command-line arguments for every build.")
    num_envs: int = Field(1, ge=1, description="Builds trained at once (worker ids 0..num_envs-1).")
    base_port: int | None = Field(
        None, ge=1, le=65535, description="Worker i listens on base_port + i (default 5005 for builds, 5004 Editor)."
    )
    no_graphics: bool = Field(False, description="Launch builds with -nographics -batchmode.")
    time_scale: float = Field(20.0, gt=0, description="Unity's Time.timeScale during training.")
    width: int = Field(84, ge=1, description="Game window width (pixels).")
    height: int = Field(84, ge=1, description="Game window height (pixels).")
    quality_level: int = Field(5, ge=0, description="Unity quality level.")
    target_frame_rate: int = Field(-1, description="Unity's Application.targetFrameRate (-1: unlimited).")
    capture_frame_rate: int = Field(60, ge=0, description="Unity's Time.captureFramerate.")
    timeout_wait: float = Field(60.0, gt=0, description="Seconds a build may take to start or answer a step.")
    max_restarts: int = Field(5, ge=0, description="Relaunches per build before training stops.")

    @property
    def label(self) -> str:
        """What the env is, for messages."""
        return self.env_path or f"the Unity Editor on port {self.base_port or 5004}"


class GodotRLEnvConfig(_Strict):
    """Games made with the Godot RL Agents plugin, trained unchanged over its JSON protocol (launched, or editor mode)."""

    source: Literal["godot_rl"]
    executable: str | None = Field(
        None,
        description="The exported game to launch num_envs copies of, each told --port=P --env_seed=S as godot-rl's "
        "GodotEnv tells it (a .py file runs with this Python; a relative path is taken from the working directory). "
        "None: editor mode, wait for num_envs games started from the Godot editor.",
    )
    args: list[str] = Field(default_factory=list, description="Extra command-line arguments for every copy.")
    num_envs: int = Field(1, ge=1, description="Games trained at once; game i connects to its own port.")
    show_window: bool = Field(False, description="Launch copies without --disable-render-loop --headless.")
    action_repeat: int | None = Field(
        None, ge=1, description="Physics frames each action is held (--action_repeat=N). None: the game's Sync node's."
    )
    speedup: float | None = Field(
        None, gt=0,
        description="How much faster than real time the game's physics runs (--speedup=X). None: the Sync node's.",
    )
    protocol: Literal["auto", "0.7", "0.3"] = Field(
        "auto",
        description="The plugin's protocol version: '0.7' (main branch, Godot 4), '0.3' (godot3 branch, Godot 3.5), "
        "'auto' both, except a godot3 game's float16 camera images, which need '0.3'.",
    )
    port: int | None = Field(
        None, ge=1, le=65535,
        description="Game i connects to port + i. None: free ports for launched copies; 11008 (the plugin's default) "
        "in editor mode.",
    )
    connect_timeout: float | None = Field(
        None, gt=0, description="Seconds a game has to connect: from its launch (default 60), in the editor (default 600).",
    )
    handshake_timeout: float = Field(10.0, gt=0, description="Seconds a connected game has to answer env_info.")
    reset_timeout: float | None = Field(
        None, gt=0, description="Seconds a game may take to answer a reset (levels load). None: step_timeout."
    )
    step_timeout: float = Field(60.0, gt=0, description="Seconds a game may take to answer before it is relaunched.")
    max_restarts: int = Field(
        5, ge=0, description="Relaunches (reconnections in editor mode) per game before training stops."
    )
    max_message_bytes: int = Field(64 * 2**20, ge=1024, description="The longest message a game may send.")

    @model_validator(mode="after")
    def _flags_need_a_launch(self) -> GodotRLEnvConfig:
        given = [key for key in ("action_repeat", "speedup") if getattr(self, key) is not None]
        if self.executable is None and given:
            raise ValueError(f"env.{given[0]} reaches a game on the command line the trainer launches it with; in "
                             "editor mode (no env.executable) set it on the game's Sync node instead")
        return self

    @property
    def label(self) -> str:
        """What the env is, for messages."""
        return self.executable or f"Godot games started from the editor (port {self.port or 11008})"


EnvConfig = Annotated[
    Union[GymnasiumEnvConfig, PettingZooEnvConfig, BridgeEnvConfig, UnityEnvConfig, GodotRLEnvConfig],
    Field(discriminator="source"),
]


class ScaleConfig(_Strict):
    """Where the env copies run, and whether acting waits for learning (the config's ``scale:`` section)."""

    overlap: bool = Field(
        False,
        description="Collect the next rollout while the learners train on the last (PPO, MA-POCA), so the game does "
        "not wait for an update no longer than a rollout's collection. The acting policy is one update behind; each "
        "update's PPO ratio is taken against it.",
    )
    ray: bool | str | None = Field(
        None,
        description="Run each env copy in a Ray actor: true joins the cluster this machine runs (else starts one), "
        "or give the cluster's address (HOST:PORT, 'auto'). None: copies run locally.",
    )
    worker_resources: dict[str, float] = Field(
        default_factory=dict,
        description="Ray resources each env worker needs: nodes that have the game build advertise one "
        "(ray start --resources '{\"game\": 8}') and workers ask for it ({game: 1}).",
    )
    worker_cpus: float = Field(1.0, ge=0, description="CPUs each env worker reserves on its node.")
    max_restarts: int = Field(
        10, ge=0,
        description="Restarts per env worker whose process, game or node died; its agents are reported lost and the "
        "run goes on. One failure more stops training.",
    )
    restart_timeout: float = Field(
        180.0, gt=0, description="Seconds a restarted env worker has to be placed on a node and build its env."
    )
    step_timeout: float = Field(
        60.0, gt=0, description="Seconds an env worker has to answer a step; beyond it, it is restarted as hung."
    )
