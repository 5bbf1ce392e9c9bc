# One behaviour: its declared spec, the tensors of its share of an Observations message,
# and the decoding of its share of an Actions message.
extends Reference

const Tensor = preload("tensor.gd")
const Agent = preload("agent.gd")
const Behaviour = preload("behaviour.gd")


# A growing float32 column (an observation component for many agents).
class Column:
	var data := PoolRealArray()

	func add(values: PoolRealArray) -> void:
		data.append_array(values)


# The group ids and group rewards of a set of rows. Only rows in a group (or with a group reward) are
# added, so a game without groups pays nothing per agent; the columns travel only if there are some.
class GroupColumns:
	var _grouped := []  # [row, group id, group reward], rows ascending

	func add(row: int, group: Array) -> void:
		_grouped.append([row, group[0], group[1]])

	# Adds the group fields of `rows` rows to `msg` ("decision" or "terminal"), if some row is in a group.
	func write(msg: Dictionary, kind: String, rows: int) -> void:
		if _grouped.empty():
			return
		var ids := StreamPeerBuffer.new()
		var rewards := PoolRealArray()
		var row := 0
		for entry in _grouped + [[rows, 0, 0.0]]:
			while row < entry[0]:
				ids.put_64(0)
				rewards.append(0.0)
				row += 1
			if row < rows:
				ids.put_64(entry[1])
				rewards.append(entry[2])
				row += 1
		msg[kind + "_group_ids"] = Tensor.make(Tensor.INT64, [rows], ids.data_array)
		msg[kind + "_group_rewards"] = Tensor.make(Tensor.FLOAT32, [rows], Tensor.float32_bytes(rewards))


var name := ""
var spec := {}  # the BehaviourSpec message
var spec_text := ""  # to check that every agent of the behaviour declares the same spec
var components := []  # [name, shape, element count] per observation component
var action_kind := 0
var branches := []  # discrete: [n]; multi-discrete: nvec; continuous: []
var continuous_size := 0
var masked := false
var mask_width := 0

var deciders := []  # the agents of the last message's decision rows, in order
var _ids: StreamPeerBuffer
var _obs := []
var _rewards: PoolRealArray
var _mask: PoolByteArray
var _terminal_ids: StreamPeerBuffer
var _terminal_obs := []
var _terminal_rewards: PoolRealArray
var _truncated: PoolByteArray
var _groups: GroupColumns
var _terminal_groups: GroupColumns
var _played_ids: StreamPeerBuffer  # agents reporting the action heuristic() gave at their last decision
var _played_ints: StreamPeerBuffer  # ... discrete choices, int64, branches in order
var _played_floats: PoolRealArray  # ... continuous values


# The BehaviourSpec message `agent` (a SparringAgent or a SparringAgentGroup) declares,
# or {"error": why} when it declares nonsense.
static func spec_of(agent) -> Dictionary:
	var where := "agent %s (behaviour %s)" % [agent.get_path(), agent.behaviour_name]
	if agent.behaviour_name == "":
		return {"error": "%s: behaviour_name is empty" % where}
	var observations := []
	var parts: Dictionary = agent.observation_components()
	if parts.empty():
		return {"error": "%s: observation_components() is empty" % where}
	for part in parts:
		var shape := Array(parts[part])
		if shape.empty() or Tensor.element_count(shape) <= 0:
			return {"error": "%s: observation %s has shape %s; dimensions must be positive" % [where, part, str(shape)]}
		observations.append({"name": part, "space": {"shape": shape, "dtype": Tensor.FLOAT32}})
	var spec := {"name": agent.behaviour_name, "observations": observations}
	if agent.action_kind == Behaviour.ActionKind.DISCRETE:
		if agent.discrete_actions <= 0:
			return {"error": "%s: discrete_actions must be positive" % where}
		spec["discrete"] = {"n": agent.discrete_actions}
	elif agent.action_kind == Behaviour.ActionKind.MULTI_DISCRETE:
		if agent.action_branches.size() == 0 or Array(agent.action_branches).min() <= 0:
			return {"error": "%s: action_branches must be non-empty and positive" % where}
		spec["multi_discrete"] = {"nvec": Array(agent.action_branches)}
	else:
		if agent.continuous_size <= 0:
			return {"error": "%s: continuous_size must be positive" % where}
		if agent.use_action_mask:
			return {"error": "%s: action masks need discrete actions" % where}
		var n: int = agent.continuous_size
		var low := []
		var high := []
		for i in range(n):
			low.append(agent.continuous_low)
			high.append(agent.continuous_high)
		spec["continuous"] = {
			"shape": [n], "dtype": Tensor.FLOAT32,
			"low": Tensor.make(Tensor.FLOAT64, [n], Tensor.float64_bytes(low)),
			"high": Tensor.make(Tensor.FLOAT64, [n], Tensor.float64_bytes(high))}
	if agent.team_id >= 0:
		spec["has_team"] = true
		spec["team_id"] = agent.team_id
	spec["has_action_mask"] = agent.use_action_mask
	return spec


# A spec in one line: "obs [5], discrete 5, masked".
static func describe(spec: Dictionary) -> String:
	if spec.has("error"):
		return spec["error"]
	var parts := []
	for part in spec["observations"]:
		parts.append("%s %s" % [part["name"], str(part["space"]["shape"])])
	if spec.has("discrete"):
		parts.append("discrete %d" % spec["discrete"]["n"])
	elif spec.has("multi_discrete"):
		parts.append("multi-discrete %s" % str(spec["multi_discrete"]["nvec"]))
	else:
		parts.append("continuous %s" % str(spec["continuous"]["shape"]))
	if spec.get("has_team", false):
		parts.append("team %d" % spec["team_id"])
	if spec.get("has_action_mask", false):
		parts.append("masked")
	return PoolStringArray(parts).join(", ")


func _init(declared: Dictionary) -> void:
	spec = declared
	spec_text = var2str(declared)
	name = declared["name"]
	for part in declared["observations"]:
		var shape: Array = part["space"]["shape"]
		components.append([part["name"], shape, Tensor.element_count(shape)])
	if declared.has("discrete"):
		action_kind = Behaviour.ActionKind.DISCRETE
		branches = [declared["discrete"]["n"]]
	elif declared.has("multi_discrete"):
		action_kind = Behaviour.ActionKind.MULTI_DISCRETE
		branches = declared["multi_discrete"]["nvec"]
	else:
		action_kind = Behaviour.ActionKind.CONTINUOUS
		continuous_size = declared["continuous"]["shape"][0]
	masked = declared.get("has_action_mask", false)
	for n in branches:
		mask_width += n
	begin()


# Start a new message.
func begin() -> void:
	deciders = []
	_ids = StreamPeerBuffer.new()
	_obs = _columns()
	_rewards = PoolRealArray()
	_mask = PoolByteArray()
	_terminal_ids = StreamPeerBuffer.new()
	_terminal_obs = _columns()
	_terminal_rewards = PoolRealArray()
	_truncated = PoolByteArray()
	_groups = GroupColumns.new()
	_terminal_groups = GroupColumns.new()
	_played_ids = StreamPeerBuffer.new()
	_played_ints = StreamPeerBuffer.new()
	_played_floats = PoolRealArray()


# Add the agent to the message: first as a terminal step if its episode ended (then
# it starts the next one), then as a decision; with the action it played at its last
# decision, if it has one to report. "" or what is wrong with the agent.
func add(agent: Agent) -> String:
	if agent.played_action != null:
		var why := _add_played(agent)
		if why != "":
			return why
	if agent.episode_done or (agent.max_episode_steps > 0 and agent.episode_steps >= agent.max_episode_steps):
		var why := _add_observation(_terminal_obs, agent)
		if why != "":
			return why
		_terminal_ids.put_64(agent.agent_id)
		_terminal_rewards.append(agent.reward)
		_truncated.append(1 if agent.episode_truncated or not agent.episode_done else 0)
		if agent.group_id != 0 or agent.group_reward != 0.0:
			_terminal_groups.add(_truncated.size() - 1, agent.report_group())
		agent.start_episode()
	var why := _add_observation(_obs, agent)
	if why != "":
		return why
	_ids.put_64(agent.agent_id)
	_rewards.append(agent.reward)
	agent.reward = 0.0
	if agent.group_id != 0 or agent.group_reward != 0.0:
		_groups.add(deciders.size(), agent.report_group())
	if masked:
		var mask: PoolByteArray = agent.get_action_mask()
		if mask.size() != mask_width:
			return "agent %s: get_action_mask() gave %d values, behaviour %s needs %d" % [
				agent.get_path(), mask.size(), name, mask_width]
		_mask.append_array(mask)
	deciders.append(agent)
	return ""


# This behaviour's BehaviourObservations message.
func message() -> Dictionary:
	var n := deciders.size()
	var m := _truncated.size()
	var msg := {
		"behaviour": name,
		"decision_ids": Tensor.make(Tensor.INT64, [n], _ids.data_array),
		"decision_obs": _obs_tensors(_obs, n),
		"decision_rewards": Tensor.make(Tensor.FLOAT32, [n], Tensor.float32_bytes(_rewards)),
		"terminal_ids": Tensor.make(Tensor.INT64, [m], _terminal_ids.data_array),
		"terminal_obs": _obs_tensors(_terminal_obs, m),
		"terminal_rewards": Tensor.make(Tensor.FLOAT32, [m], Tensor.float32_bytes(_terminal_rewards)),
		"terminal_truncated": Tensor.make(Tensor.BOOL, [m], _truncated),
	}
	if masked:
		msg["action_mask"] = Tensor.make(Tensor.BOOL, [n, mask_width], _mask)
	_groups.write(msg, "decision", n)
	_terminal_groups.write(msg, "terminal", m)
	var k := _played_ids.get_size() / 8
	if k > 0:
		msg["played_ids"] = Tensor.make(Tensor.INT64, [k], _played_ids.data_array)
		if action_kind == Behaviour.ActionKind.CONTINUOUS:
			msg["played_actions"] = Tensor.make(Tensor.FLOAT32, [k, continuous_size], Tensor.float32_bytes(_played_floats))
		elif action_kind == Behaviour.ActionKind.DISCRETE:
			msg["played_actions"] = Tensor.make(Tensor.INT64, [k], _played_ints.data_array)
		else:
			msg["played_actions"] = Tensor.make(Tensor.INT64, [k, branches.size()], _played_ints.data_array)
	return msg


# Recording: every decider acts on its own heuristic() (the player's input), which is
# reported with its next row. "" or what is wrong with an agent's heuristic().
func play_heuristics() -> String:
	for agent in deciders:
		var action = agent.heuristic()
		var why := _check_heuristic(agent, action)
		if why != "":
			return why
		agent.episode_steps += 1
		agent.apply_action(action)
		agent.played_action = action
	return ""


# Give each decider its row of `actions` (a Tensor); "" or why the tensor is wrong.
func apply(actions: Dictionary) -> String:
	var n := deciders.size()
	if action_kind == Behaviour.ActionKind.CONTINUOUS:
		var why := Tensor.check(actions, Tensor.FLOAT32, [n, continuous_size])
		if why != "":
			return why
		var rows := Tensor.read_float32_rows(actions["data"], n, continuous_size)
		for i in range(n):
			var agent = deciders[i]
			agent.episode_steps += 1
			agent.apply_action(rows[i])
		return ""
	var width := branches.size()
	var shape := [n] if action_kind == Behaviour.ActionKind.DISCRETE else [n, width]
	var why := Tensor.check(actions, Tensor.INT64, shape)
	if why != "":
		return why
	var values := Tensor.read_int64(actions["data"])
	for b in range(width):  # check every row before acting on any
		var limit: int = branches[b]
		for k in range(b, values.size(), width):
			if values[k] < 0 or values[k] >= limit:
				return "row %d: action %d outside [0, %d)" % [k / width, values[k], limit]
	if action_kind == Behaviour.ActionKind.DISCRETE:
		for i in range(n):
			var agent = deciders[i]
			agent.episode_steps += 1
			agent.apply_action(values[i])
	else:
		for i in range(n):
			var agent = deciders[i]
			agent.episode_steps += 1
			agent.apply_action(PoolIntArray(values.slice(i * width, (i + 1) * width - 1)))
	return ""


func _check_heuristic(agent: Agent, action) -> String:
	var kind := typeof(action)
	if action_kind == Behaviour.ActionKind.DISCRETE:
		if kind == TYPE_INT:
			return ""
		return "agent %s: heuristic() must return an int for discrete actions, got %s" % [agent.get_path(), str(action)]
	var want := continuous_size if action_kind == Behaviour.ActionKind.CONTINUOUS else branches.size()
	var types := [TYPE_REAL_ARRAY, TYPE_ARRAY] if action_kind == Behaviour.ActionKind.CONTINUOUS else [TYPE_INT_ARRAY, TYPE_ARRAY]
	if not (kind in types) or action.size() != want:
		return "agent %s: heuristic() gave %s; behaviour %s needs %d %s" % [
			agent.get_path(), str(action), name, want,
			"floats" if action_kind == Behaviour.ActionKind.CONTINUOUS else "ints (one per branch)"]
	return ""


func _add_played(agent: Agent) -> String:
	var action = agent.played_action
	agent.played_action = null
	_played_ids.put_64(agent.agent_id)
	if action_kind == Behaviour.ActionKind.CONTINUOUS:
		_played_floats.append_array(PoolRealArray(action))
	elif action_kind == Behaviour.ActionKind.DISCRETE:
		_played_ints.put_64(action)
	else:
		for value in action:
			_played_ints.put_64(int(value))
	return ""


func _columns() -> Array:
	var columns := []
	for part in components:
		columns.append(Column.new())
	return columns


func _add_observation(columns: Array, agent: Agent) -> String:
	var obs = agent.get_observation()
	if columns.size() == 1 and typeof(obs) == TYPE_REAL_ARRAY and obs.size() == components[0][2]:
		columns[0].add(obs)
		return ""
	if components.size() == 1 and typeof(obs) == TYPE_REAL_ARRAY:
		return _size_error(agent, components[0], obs.size())
	if typeof(obs) != TYPE_DICTIONARY:
		return "agent %s: get_observation() must return a PoolRealArray, or a Dictionary of them for several components" % agent.get_path()
	for c in range(components.size()):
		var part: PoolRealArray = obs.get(components[c][0], PoolRealArray())
		if part.size() != components[c][2]:
			return _size_error(agent, components[c], part.size())
		columns[c].add(part)
	return ""


func _size_error(agent: Agent, component: Array, size: int) -> String:
	return "agent %s: observation %s has %d floats, behaviour %s declares shape %s (%d)" % [
		agent.get_path(), component[0], size, name, str(component[1]), component[2]]


func _obs_tensors(columns: Array, rows: int) -> Array:
	var tensors := []
	for c in range(components.size()):
		tensors.append(Tensor.make(Tensor.FLOAT32, [rows] + components[c][1], Tensor.float32_bytes(columns[c].data)))
	return tensors
