# What a behaviour declares, shared by SparringAgent (agent.gd) and SparringAgentGroup (group.gd):
# the observation size, the action space, the team and whether decisions carry action masks.
# Each of the two names its own default `behaviour_name` (GDScript 3 cannot override an exported default).
extends Node

enum ActionKind { DISCRETE, MULTI_DISCRETE, CONTINUOUS }

# Length of one agent's observation. For several named parts or shapes of more than
# one axis, a SparringAgent overrides observation_components() instead.
export var observation_size := 1
export(ActionKind) var action_kind := ActionKind.DISCRETE
# DISCRETE: an action is an int in [0, discrete_actions).
export var discrete_actions := 2
# MULTI_DISCRETE: an action holds one int per branch, element i in [0, action_branches[i]).
export var action_branches := PoolIntArray([2, 2])
# CONTINUOUS: an action is continuous_size floats, meant to lie in [low, high].
export var continuous_size := 1
export var continuous_low := -1.0
export var continuous_high := 1.0
# Team of this behaviour in competitive games; -1 for none.
export var team_id := -1
# Discrete actions only: decisions carry a mask of the allowed actions.
export var use_action_mask := false
# A trained policy, the <Behaviour>.policy.tres `sparring export` writes: with no trainer
# connected, the agents act on it (policy.gd) instead of their heuristic. A trainer, when one
# connects, decides instead.
export(String, FILE, "*.tres") var policy_path := ""

var policy = null  # the SparringPolicy loaded from policy_path (by SparringSync, when it plays without a trainer)
