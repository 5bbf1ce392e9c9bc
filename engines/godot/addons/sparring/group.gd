# SparringAgentGroup: many agents of one behaviour, handled as whole arrays (crowds of NPCs).
#
#   extends "res://addons/sparring/group.gd"
#   func get_observations() -> PoolRealArray: ...   # agent_count * observation_size floats, row i = agent i
#   func apply_actions(actions) -> void: ...        # PoolIntArray / PoolRealArray, one row per agent
#   func reset_agents(indices: PoolIntArray) -> void: ...  # these agents start a new episode
# and, from the game's own logic, either per agent:
#   add_reward(i, 1.0)        end_episode(i)        end_episode(i, true)  # truncated
# or whole arrays at once (the members `rewards` and `dones`, below).
# Rows that share rewards (ML-Agents' SimpleMultiAgentGroup; not to be confused with this crowd):
#   set_group(i, 7)   add_group_reward(7, 1.0)   end_group_episode(7)   group_episode_interrupted(7)
#   leave_group(i)    # row i leaves its group, usually as its episode ends
#
# Where SparringAgent costs GDScript calls on every agent at every decision, a group
# costs a few calls per decision whatever its size: the addon builds the tensors from
# these arrays with native array operations (var2bytes / bytes2var slicing) and only
# loops over the agents whose episode ended. Agent i of the group keeps its id for the
# whole session; ids are given when the group is first seen (and to new rows when
# agent_count grows).
extends "behaviour.gd"

const GROUP := "sparring_agent_groups"
const Tensor = preload("tensor.gd")
const Batch = preload("batch.gd")

# One group per behaviour name; it may not be shared with SparringAgent nodes or other groups.
export var behaviour_name := "group"
# Rows of every array. May change between decisions (rows are added or dropped at the end).
export var agent_count := 1

# Written by the game between decisions; the addon reads them at each decision and
# puts fresh zeros in their place. Assigning a whole new array of agent_count values is fine.
var rewards := PoolRealArray()  # earned since the last decision
var dones := PoolByteArray()  # 0 running, 1 terminated, 2 truncated (a PoolIntArray is accepted too)
var group_rewards := PoolRealArray()  # earned by each row's group since its last decision (add_group_reward)

var decision_count := 0  # rows of the last Observations (SparringSync checks the Actions against it)
var _ids := PoolIntArray()  # session-wide id of each row
var _id_bytes := PoolByteArray()  # _ids as int64 little-endian, rebuilt only when the rows change
var _zero_rewards := PoolRealArray()
var _zero_dones := PoolByteArray()
var _all := PoolIntArray()  # 0 .. agent_count - 1
var _group_of := PoolIntArray()  # each row's reward group, 0 for none (set_group)
var _group_bytes := PoolByteArray()  # _group_of as int64 little-endian, rebuilt when it changes
var _groups_changed := true
var _any_group := false  # some row is in a group: group columns travel
var _leaving := []  # rows reported once more with their group, then in none
var _width := 0  # action mask width
var _float32_ok := var2bytes(PoolRealArray([0.0])).size() == 12


func _enter_tree() -> void:
	add_to_group(GROUP)
	_resize()


# -- for the game to override -----------------------------------------------------

# agent_count * observation_size floats: agent i's observation is row i.
func get_observations() -> PoolRealArray:
	var obs := PoolRealArray()
	obs.resize(agent_count * observation_size)
	return obs


# DISCRETE: a PoolIntArray of agent_count actions. MULTI_DISCRETE: a PoolIntArray of
# agent_count * branches, row-major (agent i's branch b at i * branches + b).
# CONTINUOUS: a PoolRealArray of agent_count * continuous_size, row-major.
func apply_actions(_actions) -> void:
	pass


# Put these agents at the start of a new episode (all of them after each Reset).
func reset_agents(_indices: PoolIntArray) -> void:
	pass


# use_action_mask only: agent_count * (sum of branch sizes) bytes, row-major, 1 allowed, 0 not.
func get_action_masks() -> PoolByteArray:
	var mask := PoolByteArray()
	mask.resize(agent_count * _mask_width())
	for i in range(mask.size()):
		mask[i] = 1
	return mask


# The actions taken when no trainer is connected and no policy_path is set: random (masks ignored).
func heuristic_actions():
	var n := agent_count
	if action_kind == ActionKind.CONTINUOUS:
		var values := PoolRealArray()
		for i in range(n * continuous_size):
			values.append(rand_range(continuous_low, continuous_high))
		return values
	var picks := PoolIntArray()
	var nvec := [discrete_actions] if action_kind == ActionKind.DISCRETE else Array(action_branches)
	for i in range(n):
		for b in nvec:
			picks.append(randi() % b)
	return picks


# The observation as the trainer sees it (one Box per agent); groups have one component.
func observation_components() -> Dictionary:
	return {"obs": [observation_size]}


# -- for the game to call -------------------------------------------------------------

func add_reward(index: int, value: float) -> void:
	rewards[index] += value


func end_episode(index: int, truncated := false) -> void:
	if dones[index] == 0:
		dones[index] = 2 if truncated else 1


# Row `index` plays in reward group `group_id` (1 to 2^31 - 1; 0: none) from now on.
func set_group(index: int, group_id: int) -> void:
	_group_of[index] = group_id
	_leaving.erase(index)
	_groups_changed = true


func get_group(index: int) -> int:
	return _group_of[index]


# Row `index` leaves its group: its next row still reports the group and what it earned there, then none.
func leave_group(index: int) -> void:
	if _group_of[index] != 0 and not index in _leaving:
		_leaving.append(index)


# Every row in group `group_id` (not those leaving it) earns `value` (ML-Agents' AddGroupReward).
func add_group_reward(group_id: int, value: float) -> void:
	for i in _members(group_id):
		group_rewards[i] += value


func end_group_episode(group_id: int) -> void:
	for i in _members(group_id):
		end_episode(i)


func group_episode_interrupted(group_id: int) -> void:
	for i in _members(group_id):
		end_episode(i, true)


# -- used by SparringSync ---------------------------------------------------------------

# Give rows without an id one (from next_id on); returns the next free id.
func assign_ids(next_id: int) -> int:
	if _ids.size() == agent_count:
		return next_id
	_resize()
	if _ids.size() > agent_count:
		_ids.resize(agent_count)
	while _ids.size() < agent_count:
		_ids.append(next_id)
		next_id += 1
	var out := StreamPeerBuffer.new()
	for id in _ids:
		out.put_64(id)
	_id_bytes = out.data_array
	return next_id


# Every agent starts a new episode (a Reset, or the start of a game without trainer).
func start_all() -> void:
	_resize()
	rewards = _zero_rewards
	dones = _zero_dones
	group_rewards = _zero_rewards
	_leave(_leaving)
	reset_agents(_all)


# The BehaviourObservations message of this decision, or {"error": why}. Agents whose
# done flag is set go first to terminal rows (final observation, reward since their
# last decision), then reset_agents() starts their next episode and they decide with
# reward 0 in the same message.
func message() -> Dictionary:
	var n := agent_count
	decision_count = 0
	if rewards.size() != n:
		return {"error": "group %s: rewards has %d values for %d agents" % [get_path(), rewards.size(), n]}
	if dones.size() != n:
		return {"error": "group %s: dones has %d values for %d agents" % [get_path(), dones.size(), n]}
	if group_rewards.size() != n:
		return {"error": "group %s: group_rewards has %d values for %d agents" % [get_path(), group_rewards.size(), n]}
	var obs = get_observations()
	var why := _check_obs(obs)
	if why != "":
		return {"error": why}
	var obs_bytes := _float32(obs)
	var decision_rewards := rewards
	var decision_group_rewards := group_rewards
	var ended := []
	var flags := []
	if n > 0:
		flags = Array(dones)
		if flags.max() != 0 or flags.min() != 0:
			if flags.min() < 0 or flags.max() > 2:
				return {"error": "group %s: dones must hold 0 (running), 1 (terminated) or 2 (truncated)" % get_path()}
			for value in [1, 2]:
				var i: int = flags.find(value)
				while i >= 0:
					ended.append(i)
					i = flags.find(value, i + 1)
			ended.sort()
	var m := ended.size()
	var terminal_ids := StreamPeerBuffer.new()
	var terminal_obs := PoolByteArray()
	var terminal_rewards := PoolRealArray()
	var truncated := PoolByteArray()
	var terminal_groups = Batch.GroupColumns.new()
	var row := observation_size * 4
	for i in ended:
		terminal_ids.put_64(_ids[i])
		terminal_obs.append_array(obs_bytes.subarray(i * row, i * row + row - 1))
		terminal_rewards.append(decision_rewards[i])
		truncated.append(1 if flags[i] == 2 else 0)
		decision_rewards[i] = 0.0
		if _group_of[i] != 0 or decision_group_rewards[i] != 0.0:
			terminal_groups.add(truncated.size() - 1, [_group_of[i], decision_group_rewards[i]])
		decision_group_rewards[i] = 0.0
	rewards = _zero_rewards
	dones = _zero_dones
	group_rewards = _zero_rewards
	var left_ended := []
	for i in _leaving:
		if i in ended:
			left_ended.append(i)
	_leave(left_ended)  # their next episodes start in no group (reset_agents may register them again)
	if m > 0:
		reset_agents(PoolIntArray(ended))
		obs = get_observations()
		why = _check_obs(obs)
		if why != "":
			return {"error": why + " (after reset_agents)"}
		obs_bytes = _float32(obs)
	var msg := {
		"behaviour": behaviour_name,
		"decision_ids": Tensor.make(Tensor.INT64, [n], _id_bytes),
		"decision_obs": [Tensor.make(Tensor.FLOAT32, [n, observation_size], obs_bytes)],
		"decision_rewards": Tensor.make(Tensor.FLOAT32, [n], _float32(decision_rewards)),
		"terminal_ids": Tensor.make(Tensor.INT64, [m], terminal_ids.data_array),
		"terminal_obs": [Tensor.make(Tensor.FLOAT32, [m, observation_size], terminal_obs)],
		"terminal_rewards": Tensor.make(Tensor.FLOAT32, [m], _float32(terminal_rewards)),
		"terminal_truncated": Tensor.make(Tensor.BOOL, [m], truncated),
	}
	if use_action_mask:
		var mask = get_action_masks()
		var width := _mask_width()
		if typeof(mask) != TYPE_RAW_ARRAY or mask.size() != n * width:
			return {"error": "group %s: get_action_masks() must give a PoolByteArray of %d (%d agents x %d)" % [
				get_path(), n * width, n, width]}
		msg["action_mask"] = Tensor.make(Tensor.BOOL, [n, width], mask)
	terminal_groups.write(msg, "terminal", m)
	_refresh_groups()
	if _any_group:
		msg["decision_group_ids"] = Tensor.make(Tensor.INT64, [n], _group_bytes)
		msg["decision_group_rewards"] = Tensor.make(Tensor.FLOAT32, [n], _float32(decision_group_rewards))
	_leave(_leaving)
	decision_count = n
	return msg


# Decode `actions` (a Tensor) for the last message's rows and hand them to apply_actions();
# "" or why the tensor is wrong (then nothing is applied).
func apply(actions: Dictionary) -> String:
	var n := decision_count
	if action_kind == ActionKind.CONTINUOUS:
		var why := Tensor.check(actions, Tensor.FLOAT32, [n, continuous_size])
		if why != "":
			return why
		if n == 0:
			return ""
		var values
		if _float32_ok:
			values = bytes2var(Tensor._header(TYPE_REAL_ARRAY, n * continuous_size) + actions["data"])
		else:
			values = PoolRealArray()
			for r in Tensor.read_float32_rows(actions["data"], n, continuous_size):
				values.append_array(r)
		apply_actions(values)
		return ""
	var nvec := [discrete_actions] if action_kind == ActionKind.DISCRETE else Array(action_branches)
	var width := nvec.size()
	var shape := [n] if action_kind == ActionKind.DISCRETE else [n, width]
	var why := Tensor.check(actions, Tensor.INT64, shape)
	if why != "":
		return why
	if n == 0:
		return ""
	var count := n * width
	# int64 little-endian = (low int32, high int32) pairs: read them as one int32 array.
	var words := Array(bytes2var(Tensor._header(TYPE_INT_ARRAY, 2 * count) + actions["data"]))
	var low := words.slice(0, 2 * count - 1, 2)
	var high := words.slice(1, 2 * count - 1, 2)
	if high.min() != 0 or high.max() != 0 or low.min() < 0:
		for k in range(count):
			if high[k] != 0 or low[k] < 0:
				return "row %d: action outside [0, %d)" % [k / width, nvec[k % width]]
	for b in range(width):
		var column: Array = low if width == 1 else low.slice(b, count - 1, width)
		if column.max() >= nvec[b]:
			var k: int = column.find(column.max())
			return "row %d: action %d outside [0, %d)" % [k, column[k], nvec[b]]
	apply_actions(PoolIntArray(low))
	return ""


# Without a trainer: end and restart finished episodes, then act on the policy (policy_path,
# loaded) or on heuristic_actions(). "" or why the policy could not act.
func play_alone() -> String:
	if agent_count != _all.size():
		_resize()
	if dones.size() == agent_count and agent_count > 0:
		var flags := Array(dones)
		if flags.max() != 0:
			var ended := PoolIntArray()
			for i in range(flags.size()):
				if flags[i] != 0:
					ended.append(i)
			dones = _zero_dones
			reset_agents(ended)
	rewards = _zero_rewards
	dones = _zero_dones
	group_rewards = _zero_rewards
	_leave(_leaving)
	if policy == null:
		apply_actions(heuristic_actions())
		return ""
	var actions = policy.act_rows(get_observations(), agent_count, get_action_masks() if use_action_mask else PoolByteArray())
	if actions == null:
		return "group %s: %s" % [get_path(), policy.error]
	apply_actions(actions)
	return ""


func _resize() -> void:
	var n := agent_count
	if _zero_rewards.size() != n:
		_zero_rewards = PoolRealArray()
		_zero_rewards.resize(n)
		for i in range(n):
			_zero_rewards[i] = 0.0
		_zero_dones = PoolByteArray()
		_zero_dones.resize(n)
		for i in range(n):
			_zero_dones[i] = 0
		_all = PoolIntArray(range(n))
	if rewards.size() != n:
		var kept := rewards
		rewards = _zero_rewards
		for i in range(min(kept.size(), n)):
			rewards[i] = kept[i]
	if dones.size() != n:
		var kept := dones
		dones = _zero_dones
		for i in range(min(kept.size(), n)):
			dones[i] = kept[i]
	if group_rewards.size() != n:
		var kept := group_rewards
		group_rewards = _zero_rewards
		for i in range(min(kept.size(), n)):
			group_rewards[i] = kept[i]
	if _group_of.size() != n:
		var before := _group_of.size()
		_group_of.resize(n)
		for i in range(before, n):
			_group_of[i] = 0
		_groups_changed = true
		for i in _leaving.duplicate():
			if i >= n:
				_leaving.erase(i)
	_width = _mask_width()


# Rows of group `group_id` that are not leaving it.
func _members(group_id: int) -> Array:
	var rows := []
	var groups := Array(_group_of)
	var i := groups.find(group_id)
	while i >= 0:
		if not i in _leaving:
			rows.append(i)
		i = groups.find(group_id, i + 1)
	return rows


# These rows are in no group from now on.
func _leave(rows: Array) -> void:
	for i in rows.duplicate():  # rows may be _leaving itself
		_group_of[i] = 0
		_leaving.erase(i)
		_groups_changed = true


# After a row changed group: whether any row is in one, and the group ids as int64 bytes.
func _refresh_groups() -> void:
	if not _groups_changed:
		return
	_groups_changed = false
	var groups := Array(_group_of)
	_any_group = groups.size() > 0 and (groups.max() != 0 or groups.min() != 0)
	var out := StreamPeerBuffer.new()
	for g in groups:
		out.put_64(g)
	_group_bytes = out.data_array


func _mask_width() -> int:
	if action_kind == ActionKind.DISCRETE:
		return discrete_actions
	if action_kind == ActionKind.MULTI_DISCRETE:
		var width := 0
		for b in action_branches:
			width += b
		return width
	return 0


func _check_obs(obs) -> String:
	if typeof(obs) != TYPE_REAL_ARRAY or obs.size() != agent_count * observation_size:
		return "group %s: get_observations() must give a PoolRealArray of %d floats (%d agents x %d), got %s" % [
			get_path(), agent_count * observation_size, agent_count, observation_size,
			("%d floats" % obs.size()) if typeof(obs) == TYPE_REAL_ARRAY else "a value of type %d" % typeof(obs)]
	return ""


func _float32(values: PoolRealArray) -> PoolByteArray:
	if values.size() == 0:
		return PoolByteArray()
	if not _float32_ok:
		return Tensor.float32_bytes(values)
	var bytes := var2bytes(values)
	return bytes.subarray(8, bytes.size() - 1)
