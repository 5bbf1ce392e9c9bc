# SparringAgent: one NPC that learns. Extend this script and fill in what the agent sees and does.
#
#   extends "res://addons/sparring/agent.gd"
#   func get_observation() -> PoolRealArray: return PoolRealArray([...])  # observation_size floats
#   func apply_action(action) -> void: ...        # int / PoolIntArray / PoolRealArray, see action_kind
#   func reset_agent() -> void: ...               # put the agent at the start of a new episode
# and, from the game's own logic (usually in _physics_process):
#   add_reward(1.0)          # any number of times between decisions
#   end_episode()            # reached a terminal state (won, lost, died)
#   end_episode(true)        # cut short: not a terminal state (time limit, level ended around it)
# Agents that share rewards play in a SparringMultiAgentGroup (multi_agent_group.gd).
#
# The agent joins the session when it enters the scene tree. SparringSync asks every
# agent for a decision every `frames_per_step` physics frames; an agent whose episode
# ended is reported once with its final observation, then reset_agent() is called and
# it asks for its first decision of the next episode in the same message.
# The node can sit anywhere in the scene; to drive a body (KinematicBody2D, ...), make
# the agent a child of it and reach it with get_parent().
extends "behaviour.gd"

const GROUP := "sparring_agents"

# Agents with the same behaviour name share one policy and must declare the same spaces;
# apply_action gets an int (DISCRETE), a PoolIntArray (MULTI_DISCRETE) or a PoolRealArray
# (CONTINUOUS), and get_action_mask() says which actions are allowed when use_action_mask is on.
export var behaviour_name := "agent"
# Decisions after which the episode is cut short (truncated); 0 for no limit.
export var max_episode_steps := 0

# Bookkeeping SparringSync reads and writes; the game uses the methods below.
var agent_id := -1  # int64, unique while the session lasts
var reward := 0.0  # earned since the last decision
var episode_done := false
var episode_truncated := false
var episode_steps := 0  # decisions acted on in this episode
var multi_agent_group = null  # the SparringMultiAgentGroup the agent plays in, if any
var group_id := 0  # the group its next row reports: its group's, or the one it left since its last row
var group_reward := 0.0  # earned by its group since the last decision
var played_action = null  # recording: what heuristic() gave at its last decision, reported with its next row


func _enter_tree() -> void:
	add_to_group(GROUP)


func _exit_tree() -> void:
	if multi_agent_group != null:
		multi_agent_group.unregister_agent(self)


# -- for the game to override -----------------------------------------------------

# What the agent sees now: observation_size floats, or, when observation_components()
# names several parts, a Dictionary {part name: PoolRealArray} holding each part C-order.
func get_observation():
	return PoolRealArray()


func apply_action(_action) -> void:
	pass


func reset_agent() -> void:
	pass


# One byte per action, branches concatenated: 1 = allowed, 0 = not. Every branch must
# allow at least one action.
func get_action_mask() -> PoolByteArray:
	var mask := PoolByteArray()
	for n in _branches():
		for i in range(n):
			mask.append(1)
	return mask


# The action taken when no trainer is connected (the game runs on its own) and no policy_path
# is set, and while the trainer records demonstrations (`sparring record`: the addon reports
# it). Override it to read the player's input (keys, a gamepad) or a scripted behaviour; by
# default: random.
func heuristic():
	if action_kind == ActionKind.DISCRETE:
		var allowed := []
		var mask := get_action_mask() if use_action_mask else PoolByteArray()
		for i in range(discrete_actions):
			if mask.size() == 0 or mask[i] != 0:
				allowed.append(i)
		return allowed[randi() % allowed.size()]
	if action_kind == ActionKind.MULTI_DISCRETE:
		var picks := PoolIntArray()
		for n in action_branches:
			picks.append(randi() % n)
		return picks
	var values := PoolRealArray()
	for i in range(continuous_size):
		values.append(rand_range(continuous_low, continuous_high))
	return values


# The action the agent's policy (policy_path, loaded) chooses for what it sees now; null when it
# cannot choose (policy.error says why).
func policy_action():
	return policy.act(get_observation(), get_action_mask() if use_action_mask else PoolByteArray())


# {part name: shape} of the observation, in order. One part named "obs" is a plain
# Box to the trainer; several are a Dict of Boxes.
func observation_components() -> Dictionary:
	return {"obs": [observation_size]}


# -- for the game to call -----------------------------------------------------------

func add_reward(value: float) -> void:
	reward += value


func end_episode(truncated := false) -> void:
	if not episode_done:
		episode_done = true
		episode_truncated = truncated


# -- used by SparringSync --------------------------------------------------------------

func episode_over() -> bool:
	return episode_done or (max_episode_steps > 0 and episode_steps >= max_episode_steps)


# [group id, group reward] of the row being reported; the reward is spent, and a group left is forgotten.
func report_group() -> Array:
	var row := [group_id, group_reward]
	group_reward = 0.0
	if multi_agent_group == null:
		group_id = 0
	return row


func start_episode() -> void:
	reward = 0.0
	group_reward = 0.0
	if multi_agent_group == null:
		group_id = 0
	episode_done = false
	episode_truncated = false
	episode_steps = 0
	reset_agent()


func _branches() -> Array:
	if action_kind == ActionKind.DISCRETE:
		return [discrete_actions]
	if action_kind == ActionKind.MULTI_DISCRETE:
		return Array(action_branches)
	return []
