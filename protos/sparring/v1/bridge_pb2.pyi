from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    FLOAT32: _ClassVar[DType]
    FLOAT64: _ClassVar[DType]
    INT8: _ClassVar[DType]
    UINT8: _ClassVar[DType]
    INT32: _ClassVar[DType]
    INT64: _ClassVar[DType]
    BOOL: _ClassVar[DType]

class StatAggregation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    AVERAGE: _ClassVar[StatAggregation]
    MOST_RECENT: _ClassVar[StatAggregation]
    SUM: _ClassVar[StatAggregation]
    HISTOGRAM: _ClassVar[StatAggregation]
DTYPE_UNSPECIFIED: DType
FLOAT32: DType
FLOAT64: DType
INT8: DType
UINT8: DType
INT32: DType
INT64: DType
BOOL: DType
AVERAGE: StatAggregation
MOST_RECENT: StatAggregation
SUM: StatAggregation
HISTOGRAM: StatAggregation

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[_Union[DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class BoxSpace(_message.Message):
    __slots__ = ("shape", "dtype", "low", "high")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: DType
    low: Tensor
    high: Tensor
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[DType, str]] = ..., low: _Optional[_Union[Tensor, _Mapping]] = ..., high: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class DiscreteSpace(_message.Message):
    __slots__ = ("n",)
    N_FIELD_NUMBER: _ClassVar[int]
    n: int
    def __init__(self, n: _Optional[int] = ...) -> None: ...

class MultiDiscreteSpace(_message.Message):
    __slots__ = ("nvec",)
    NVEC_FIELD_NUMBER: _ClassVar[int]
    nvec: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, nvec: _Optional[_Iterable[int]] = ...) -> None: ...

class ObservationComponent(_message.Message):
    __slots__ = ("name", "space")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SPACE_FIELD_NUMBER: _ClassVar[int]
    name: str
    space: BoxSpace
    def __init__(self, name: _Optional[str] = ..., space: _Optional[_Union[BoxSpace, _Mapping]] = ...) -> None: ...

class BehaviourSpec(_message.Message):
    __slots__ = ("name", "observations", "discrete", "multi_discrete", "continuous", "has_team", "team_id", "has_action_mask")
    NAME_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    DISCRETE_FIELD_NUMBER: _ClassVar[int]
    MULTI_DISCRETE_FIELD_NUMBER: _ClassVar[int]
    CONTINUOUS_FIELD_NUMBER: _ClassVar[int]
    HAS_TEAM_FIELD_NUMBER: _ClassVar[int]
    TEAM_ID_FIELD_NUMBER: _ClassVar[int]
    HAS_ACTION_MASK_FIELD_NUMBER: _ClassVar[int]
    name: str
    observations: _containers.RepeatedCompositeFieldContainer[ObservationComponent]
    discrete: DiscreteSpace
    multi_discrete: MultiDiscreteSpace
    continuous: BoxSpace
    has_team: bool
    team_id: int
    has_action_mask: bool
    def __init__(self, name: _Optional[str] = ..., observations: _Optional[_Iterable[_Union[ObservationComponent, _Mapping]]] = ..., discrete: _Optional[_Union[DiscreteSpace, _Mapping]] = ..., multi_discrete: _Optional[_Union[MultiDiscreteSpace, _Mapping]] = ..., continuous: _Optional[_Union[BoxSpace, _Mapping]] = ..., has_team: _Optional[bool] = ..., team_id: _Optional[int] = ..., has_action_mask: _Optional[bool] = ...) -> None: ...

class Hello(_message.Message):
    __slots__ = ("protocol_version", "auth_token", "engine_name", "behaviours")
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    AUTH_TOKEN_FIELD_NUMBER: _ClassVar[int]
    ENGINE_NAME_FIELD_NUMBER: _ClassVar[int]
    BEHAVIOURS_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    auth_token: str
    engine_name: str
    behaviours: _containers.RepeatedCompositeFieldContainer[BehaviourSpec]
    def __init__(self, protocol_version: _Optional[int] = ..., auth_token: _Optional[str] = ..., engine_name: _Optional[str] = ..., behaviours: _Optional[_Iterable[_Union[BehaviourSpec, _Mapping]]] = ...) -> None: ...

class Welcome(_message.Message):
    __slots__ = ("protocol_version", "seed", "environment_parameters", "recording")
    class EnvironmentParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PROTOCOL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    RECORDING_FIELD_NUMBER: _ClassVar[int]
    protocol_version: int
    seed: int
    environment_parameters: _containers.ScalarMap[str, float]
    recording: bool
    def __init__(self, protocol_version: _Optional[int] = ..., seed: _Optional[int] = ..., environment_parameters: _Optional[_Mapping[str, float]] = ..., recording: _Optional[bool] = ...) -> None: ...

class Refusal(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class BehaviourObservations(_message.Message):
    __slots__ = ("behaviour", "decision_ids", "decision_obs", "decision_rewards", "action_mask", "terminal_ids", "terminal_obs", "terminal_rewards", "terminal_truncated", "decision_group_ids", "decision_group_rewards", "terminal_group_ids", "terminal_group_rewards", "played_ids", "played_actions")
    BEHAVIOUR_FIELD_NUMBER: _ClassVar[int]
    DECISION_IDS_FIELD_NUMBER: _ClassVar[int]
    DECISION_OBS_FIELD_NUMBER: _ClassVar[int]
    DECISION_REWARDS_FIELD_NUMBER: _ClassVar[int]
    ACTION_MASK_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_IDS_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_OBS_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_REWARDS_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_TRUNCATED_FIELD_NUMBER: _ClassVar[int]
    DECISION_GROUP_IDS_FIELD_NUMBER: _ClassVar[int]
    DECISION_GROUP_REWARDS_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_GROUP_IDS_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_GROUP_REWARDS_FIELD_NUMBER: _ClassVar[int]
    PLAYED_IDS_FIELD_NUMBER: _ClassVar[int]
    PLAYED_ACTIONS_FIELD_NUMBER: _ClassVar[int]
    behaviour: str
    decision_ids: Tensor
    decision_obs: _containers.RepeatedCompositeFieldContainer[Tensor]
    decision_rewards: Tensor
    action_mask: Tensor
    terminal_ids: Tensor
    terminal_obs: _containers.RepeatedCompositeFieldContainer[Tensor]
    terminal_rewards: Tensor
    terminal_truncated: Tensor
    decision_group_ids: Tensor
    decision_group_rewards: Tensor
    terminal_group_ids: Tensor
    terminal_group_rewards: Tensor
    played_ids: Tensor
    played_actions: Tensor
    def __init__(self, behaviour: _Optional[str] = ..., decision_ids: _Optional[_Union[Tensor, _Mapping]] = ..., decision_obs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., decision_rewards: _Optional[_Union[Tensor, _Mapping]] = ..., action_mask: _Optional[_Union[Tensor, _Mapping]] = ..., terminal_ids: _Optional[_Union[Tensor, _Mapping]] = ..., terminal_obs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., terminal_rewards: _Optional[_Union[Tensor, _Mapping]] = ..., terminal_truncated: _Optional[_Union[Tensor, _Mapping]] = ..., decision_group_ids: _Optional[_Union[Tensor, _Mapping]] = ..., decision_group_rewards: _Optional[_Union[Tensor, _Mapping]] = ..., terminal_group_ids: _Optional[_Union[Tensor, _Mapping]] = ..., terminal_group_rewards: _Optional[_Union[Tensor, _Mapping]] = ..., played_ids: _Optional[_Union[Tensor, _Mapping]] = ..., played_actions: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class GameStat(_message.Message):
    __slots__ = ("key", "value", "aggregation")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    AGGREGATION_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: float
    aggregation: StatAggregation
    def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ..., aggregation: _Optional[_Union[StatAggregation, str]] = ...) -> None: ...

class Observations(_message.Message):
    __slots__ = ("step", "behaviours", "stats")
    STEP_FIELD_NUMBER: _ClassVar[int]
    BEHAVIOURS_FIELD_NUMBER: _ClassVar[int]
    STATS_FIELD_NUMBER: _ClassVar[int]
    step: int
    behaviours: _containers.RepeatedCompositeFieldContainer[BehaviourObservations]
    stats: _containers.RepeatedCompositeFieldContainer[GameStat]
    def __init__(self, step: _Optional[int] = ..., behaviours: _Optional[_Iterable[_Union[BehaviourObservations, _Mapping]]] = ..., stats: _Optional[_Iterable[_Union[GameStat, _Mapping]]] = ...) -> None: ...

class BehaviourActions(_message.Message):
    __slots__ = ("behaviour", "actions")
    BEHAVIOUR_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    behaviour: str
    actions: Tensor
    def __init__(self, behaviour: _Optional[str] = ..., actions: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class Actions(_message.Message):
    __slots__ = ("step", "behaviours", "environment_parameters")
    class EnvironmentParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    STEP_FIELD_NUMBER: _ClassVar[int]
    BEHAVIOURS_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    step: int
    behaviours: _containers.RepeatedCompositeFieldContainer[BehaviourActions]
    environment_parameters: _containers.ScalarMap[str, float]
    def __init__(self, step: _Optional[int] = ..., behaviours: _Optional[_Iterable[_Union[BehaviourActions, _Mapping]]] = ..., environment_parameters: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Reset(_message.Message):
    __slots__ = ("seed", "environment_parameters")
    class EnvironmentParametersEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    SEED_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    seed: int
    environment_parameters: _containers.ScalarMap[str, float]
    def __init__(self, seed: _Optional[int] = ..., environment_parameters: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Close(_message.Message):
    __slots__ = ("reason",)
    REASON_FIELD_NUMBER: _ClassVar[int]
    reason: str
    def __init__(self, reason: _Optional[str] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("message", "field")
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    message: str
    field: str
    def __init__(self, message: _Optional[str] = ..., field: _Optional[str] = ...) -> None: ...

class EngineMessage(_message.Message):
    __slots__ = ("hello", "observations", "error", "close")
    HELLO_FIELD_NUMBER: _ClassVar[int]
    OBSERVATIONS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    hello: Hello
    observations: Observations
    error: Error
    close: Close
    def __init__(self, hello: _Optional[_Union[Hello, _Mapping]] = ..., observations: _Optional[_Union[Observations, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., close: _Optional[_Union[Close, _Mapping]] = ...) -> None: ...

class TrainerMessage(_message.Message):
    __slots__ = ("welcome", "refusal", "reset", "actions", "close", "error")
    WELCOME_FIELD_NUMBER: _ClassVar[int]
    REFUSAL_FIELD_NUMBER: _ClassVar[int]
    RESET_FIELD_NUMBER: _ClassVar[int]
    ACTIONS_FIELD_NUMBER: _ClassVar[int]
    CLOSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    welcome: Welcome
    refusal: Refusal
    reset: Reset
    actions: Actions
    close: Close
    error: Error
    def __init__(self, welcome: _Optional[_Union[Welcome, _Mapping]] = ..., refusal: _Optional[_Union[Refusal, _Mapping]] = ..., reset: _Optional[_Union[Reset, _Mapping]] = ..., actions: _Optional[_Union[Actions, _Mapping]] = ..., close: _Optional[_Union[Close, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ...) -> None: ...
