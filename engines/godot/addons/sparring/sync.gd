# SparringSync: connects the scene's agents to the sparring trainer and runs them in lock-step.
#
# Add one to the main scene. When the game is started with --sparring-port N (the
# trainer does this), it connects to the trainer, declares one behaviour per distinct
# agent behaviour_name, and then, every `frames_per_step` physics frames, sends every
# agent's observation and reward and waits for their actions. Physics then runs as
# fast as the machine allows: keep the game logic in _physics_process.
# Without --sparring-port the game runs on its own, at normal speed, and each agent
# acts on its policy (policy_path: a trained policy, run by policy.gd) or else its heuristic().
#
# For the game: environment_parameters (or get_parameter()) holds the values the trainer set,
# to read as episodes start; record_stat() sends a statistic the trainer logs to TensorBoard.
# While the trainer records demonstrations (`sparring record`; `recording` is true) it sends no
# actions: every SparringAgent acts on its heuristic() (override it to read the player's input),
# and the addon reports each action to the trainer with the agent's next row.
#
# Command line (after the engine's own arguments):
#   --sparring-port N      the trainer's TCP port
#   --sparring-token T     the token the trainer expects in the Hello
#   --sparring-host H      the trainer's address (default 127.0.0.1)
#   --sparring-ca FILE     connect over TLS, trusting the PEM certificate in FILE (a trainer with tls_cert)
#   --sparring-tls-name N  the DNS name the trainer's certificate holds, if not H
# Exit codes: 0 the trainer closed the session (or the game quit on its own, and
# told the trainer with a Close); 1 an error (printed); 2 the trainer refused us.
extends Node

# The trainer (re)starts every episode: reset the world here. Each agent's reset_agent()
# runs right after, and their observations go out once every handler has returned.
signal reset_requested(seed_value, parameters)

const Agent = preload("agent.gd")
const Batch = preload("batch.gd")
const Group = preload("group.gd")
const Policy = preload("policy.gd")
const Proto = preload("proto.gd")
const Transport = preload("transport.gd")

const PROTOCOL_VERSION := 3
const EXIT_ERROR := 1
const EXIT_REFUSED := 2
# record_stat() aggregations: StatAggregation in bridge.proto (ML-Agents' StatsAggregationMethod).
const STAT_AGGREGATIONS := {"average": 0, "most_recent": 1, "sum": 2, "histogram": 3}

# Physics frames between two decisions.
export var frames_per_step := 1
# While training, physics runs up to this many times faster than real time (the
# frame delta stays 1 / physics fps); in practice, as fast as the machine allows.
export var speedup := 10000.0
export var connect_timeout_s := 10.0

var training := false  # a trainer is connected
var recording := false  # the trainer records demonstrations: agents play their heuristic() (from the Welcome)
var seed_value := 0  # from the Welcome, then from each Reset
var environment_parameters := {}  # from the Welcome, updated by each Reset and by Actions that carry new values
var step := 0  # of the last Observations sent: 0 after a Reset, then +1 per Actions

enum State { STARTING, RUNNING, ENDED }
var _state: int = State.STARTING
var _frames := 0
var _proto := Proto.new()
var _transport := Transport.new()
var _behaviours := {}  # name -> Batch (SparringAgent nodes)
var _groups := {}  # name -> SparringAgentGroup node
var _next_id := 0
var _has_reset := false
var _stats := []  # GameStat messages recorded since the last Observations
var _stat_aggregations := {}  # key -> the aggregation it was first recorded with


# The value that follows `name` on the command line (`name value` or `name=value`).
static func command_line_value(name: String, default: String = "") -> String:
	var args := OS.get_cmdline_args()
	for i in range(args.size()):
		var arg: String = args[i]
		if arg == name and i + 1 < args.size():
			return args[i + 1]
		if arg.begins_with(name + "="):
			return arg.substr(name.length() + 1, arg.length() - name.length() - 1)
	return default


func _ready() -> void:
	process_priority = -1000  # run before the game's own _physics_process each frame
	training = command_line_value("--sparring-port") != ""
	if training:
		var base_fps := Engine.iterations_per_second
		Engine.time_scale = speedup
		Engine.iterations_per_second = int(base_fps * speedup)
		Engine.physics_jitter_fix = 0.0
		OS.low_processor_usage_mode_sleep_usec = 0  # headless builds sleep this long every frame
		OS.vsync_enabled = false


func _physics_process(_delta: float) -> void:
	if _state == State.STARTING:
		_state = State.RUNNING
		if training:
			_start_session()
		else:
			_start_alone()
		return
	if _state != State.RUNNING:
		return
	_frames += 1
	if _frames < frames_per_step:
		return
	_frames = 0
	if training:
		step += 1
		if _send_observations():
			_await_actions()
	else:
		_play_alone()


# The game is quitting on its own (its window closed, get_tree().quit()): tell the trainer.
func _exit_tree() -> void:
	if training and _state == State.RUNNING:
		_send({"close": {"reason": "the game quit"}})
		_end(0, "")


# -- for the game ---------------------------------------------------------------------

# An environment parameter's current value (ML-Agents' EnvironmentParameters.GetWithDefault). Read it
# when an episode starts (in reset_agent()): new values arrive between decisions, for the episodes
# that start from then on.
func get_parameter(name: String, default := 0.0) -> float:
	return float(environment_parameters.get(name, default))


# Record one value of a statistic for the trainer's TensorBoard (ML-Agents' StatsRecorder.Add);
# aggregation: "average", "most_recent", "sum" or "histogram", the same for every value of a key.
# It goes out with the next decision; without a trainer it is dropped.
func record_stat(key: String, value: float, aggregation := "average") -> void:
	var why := ""
	if not STAT_AGGREGATIONS.has(aggregation):
		why = "aggregation '%s' is not one of %s" % [aggregation, str(STAT_AGGREGATIONS.keys())]
	elif key == "" or is_nan(value) or is_inf(value):
		why = "a statistic needs a name and a finite value"
	elif _stat_aggregations.get(key, aggregation) != aggregation:
		why = "it was recorded with aggregation '%s' before" % _stat_aggregations[key]
	if why != "":
		if training:
			_fail("observations.stats", "record_stat('%s', %s, '%s'): %s" % [key, value, aggregation, why])
		else:
			push_error("sparring: record_stat('%s'): %s" % [key, why])
		return
	_stat_aggregations[key] = aggregation
	if training:
		_stats.append({"key": key, "value": value, "aggregation": STAT_AGGREGATIONS[aggregation]})


# -- session --------------------------------------------------------------------

func _start_session() -> void:
	var port := int(command_line_value("--sparring-port"))
	var host := command_line_value("--sparring-host", "127.0.0.1")
	var ca_file := command_line_value("--sparring-ca")
	if not _transport.open(host, port, connect_timeout_s, ca_file, command_line_value("--sparring-tls-name")):
		_end(EXIT_ERROR, _transport.error)
		return
	var specs := []
	for agent in get_tree().get_nodes_in_group(Agent.GROUP):
		if not _behaviours.has(agent.behaviour_name):
			var spec := Batch.spec_of(agent)
			if spec.has("error"):
				_fail("hello.behaviours[%d]" % specs.size(), spec["error"])
				return
			_behaviours[agent.behaviour_name] = Batch.new(spec)
			specs.append(spec)
		if not _admit(agent, "hello.behaviours"):
			return
	for group in get_tree().get_nodes_in_group(Group.GROUP):
		var where := "hello.behaviours[%d]" % specs.size()
		if _behaviours.has(group.behaviour_name) or _groups.has(group.behaviour_name):
			_fail(where, "group %s: behaviour '%s' is declared already; a group needs a behaviour of its own" % [
				group.get_path(), group.behaviour_name])
			return
		var spec := Batch.spec_of(group)
		if spec.has("error"):
			_fail(where, spec["error"])
			return
		_groups[group.behaviour_name] = group
		_next_id = group.assign_ids(_next_id)
		specs.append(spec)
	if specs.empty():
		_fail("hello.behaviours", "the scene has no agents (nodes extending addons/sparring/agent.gd or group.gd)")
		return
	var hello := {
		"protocol_version": PROTOCOL_VERSION,
		"auth_token": command_line_value("--sparring-token"),
		"engine_name": "godot",
		"behaviours": specs,
	}
	if not _send({"hello": hello}):
		return
	var answer := _receive()
	if answer.has("refusal"):
		_end(EXIT_REFUSED, "the trainer refused the session: %s" % answer["refusal"]["reason"])
		return
	if not answer.has("welcome"):
		if _state == State.RUNNING:
			_fail("", "expected Welcome or Refusal after Hello, got %s" % _kind(answer))
		return
	recording = answer["welcome"]["recording"]
	if recording and not _groups.empty():
		_fail("hello.behaviours", "recording demonstrations of a SparringAgentGroup (behaviour '%s') is not supported; record SparringAgent nodes" % _groups.keys()[0])
		return
	seed_value = answer["welcome"]["seed"]
	seed(seed_value)
	environment_parameters = answer["welcome"]["environment_parameters"].duplicate()
	_await_actions()


# Read trainer messages, answering Resets, until Actions arrive (then apply them) or the session ends.
func _await_actions() -> void:
	while _state == State.RUNNING:
		var msg := _receive()
		if msg.has("reset"):
			_reset(msg["reset"])
			if not _send_observations():
				return
		elif msg.has("actions"):
			if not _has_reset:
				_fail("", "Actions before the first Reset")
			else:
				_merge_parameters(msg["actions"]["environment_parameters"])
				if recording:
					_play_heuristics()
				else:
					_apply_actions(msg["actions"])
			return
		elif msg.has("close"):
			_end(0, "", "the trainer closed the session: %s" % msg["close"]["reason"])
		elif msg.has("error"):
			var error: Dictionary = msg["error"]
			_end(EXIT_ERROR, "the trainer reported an error: %s (field %s)" % [error["message"], error["field"]])
		elif _state == State.RUNNING:
			_fail("", "expected Reset, Actions, Close or Error, got %s" % _kind(msg))


func _reset(reset: Dictionary) -> void:
	seed_value = reset["seed"]
	seed(seed_value)
	_merge_parameters(reset["environment_parameters"])
	emit_signal("reset_requested", seed_value, environment_parameters)
	for agent in get_tree().get_nodes_in_group(Agent.GROUP):
		agent.played_action = null  # the episodes it played in are over, unreported
		agent.start_episode()
	for group in get_tree().get_nodes_in_group(Group.GROUP):
		group.start_all()
	step = 0
	_has_reset = true


func _merge_parameters(parameters: Dictionary) -> void:
	for key in parameters:
		environment_parameters[key] = parameters[key]


func _send_observations() -> bool:
	for batch in _behaviours.values():
		batch.begin()
	for agent in get_tree().get_nodes_in_group(Agent.GROUP):
		if agent.agent_id < 0 and not _admit(agent, "observations.behaviours"):
			return false
		var why: String = _behaviours[agent.behaviour_name].add(agent)
		if why != "":
			_fail("observations.behaviours", why)
			return false
	var behaviours := []
	for batch in _behaviours.values():
		behaviours.append(batch.message())
	for group in get_tree().get_nodes_in_group(Group.GROUP):
		if _groups.get(group.behaviour_name) != group:
			_fail("observations.behaviours", "group %s joined with behaviour '%s', which the Hello did not declare for it" % [
				group.get_path(), group.behaviour_name])
			return false
		_next_id = group.assign_ids(_next_id)
		var part: Dictionary = group.message()
		if part.has("error"):
			_fail("observations.behaviours", part["error"])
			return false
		behaviours.append(part)
	var stats := _stats
	_stats = []
	return _send({"observations": {"step": step, "behaviours": behaviours, "stats": stats}})


func _apply_actions(actions: Dictionary) -> void:
	var answered := {}
	var entries: Array = actions["behaviours"]
	for i in range(entries.size()):
		var entry: Dictionary = entries[i]
		var where := "actions.behaviours[%d]" % i
		var name: String = entry["behaviour"]
		var batch = _behaviours.get(name)
		if batch == null:
			batch = _groups.get(name)
		if batch == null:
			_fail(where + ".behaviour", "unknown behaviour '%s'; declared: %s" % [name, str(_behaviours.keys() + _groups.keys())])
			return
		if answered.has(name):
			_fail(where + ".behaviour", "behaviour '%s' appears twice" % name)
			return
		answered[name] = true
		var why: String = batch.apply(entry.get("actions", {}))
		if why != "":
			_fail(where + ".actions", "behaviour '%s': %s" % [name, why])
			return
	for batch in _behaviours.values():
		if not answered.has(batch.name) and batch.deciders.size() > 0:
			_fail("actions.behaviours", "no actions for behaviour '%s', which has %d deciding agents" % [batch.name, batch.deciders.size()])
			return
	for name in _groups:
		if not answered.has(name) and _groups[name].decision_count > 0:
			_fail("actions.behaviours", "no actions for behaviour '%s', which has %d deciding agents" % [name, _groups[name].decision_count])
			return


# Recording: the trainer sent no actions; every deciding agent acts on its heuristic().
func _play_heuristics() -> void:
	for batch in _behaviours.values():
		var why: String = batch.play_heuristics()
		if why != "":
			_fail("observations.behaviours", why)
			return


# Give a newly seen agent its id; false (and the session ends) when it does not fit the Hello.
func _admit(agent: Agent, field: String) -> bool:
	var batch = _behaviours.get(agent.behaviour_name)
	if batch == null:
		_fail(field, "agent %s joined with behaviour '%s', which the Hello did not declare" % [agent.get_path(), agent.behaviour_name])
		return false
	var spec := Batch.spec_of(agent)
	if var2str(spec) != batch.spec_text:
		_fail(field, "agent %s declares behaviour '%s' as %s, but the agents before it as %s" % [
			agent.get_path(), agent.behaviour_name, Batch.describe(spec), Batch.describe(batch.spec)])
		return false
	agent.agent_id = _next_id
	_next_id += 1
	return true


# -- without a trainer ----------------------------------------------------------------

func _start_alone() -> void:
	emit_signal("reset_requested", seed_value, environment_parameters)
	for agent in get_tree().get_nodes_in_group(Agent.GROUP):
		agent.start_episode()
	for group in get_tree().get_nodes_in_group(Group.GROUP):
		group.start_all()
	_play_alone()


func _play_alone() -> void:
	for agent in get_tree().get_nodes_in_group(Agent.GROUP):
		if not _load_policy(agent):
			return
		if agent.episode_over():
			agent.start_episode()
		agent.reward = 0.0
		agent.report_group()
		agent.episode_steps += 1
		var action = agent.heuristic() if agent.policy == null else agent.policy_action()
		if action == null:
			_end(EXIT_ERROR, "agent %s: %s" % [agent.get_path(), agent.policy.error])
			return
		agent.apply_action(action)
	for group in get_tree().get_nodes_in_group(Group.GROUP):
		if not _load_policy(group):
			return
		var why: String = group.play_alone()
		if why != "":
			_end(EXIT_ERROR, why)
			return


# A node with a policy_path acts on that policy when no trainer is connected: load it (once) and
# check that it can run and fits what the node declares. false when not (the game ends, saying why).
func _load_policy(node) -> bool:
	if node.policy != null or node.policy_path == "":
		return true
	var policy = load(node.policy_path)
	var why := "it is not a policy `sparring export` wrote (a .policy.tres)"
	if policy is Policy:
		var spec := Batch.spec_of(node)
		why = policy.prepare()
		if why == "":
			why = spec["error"] if spec.has("error") else policy.mismatch(spec)
	if why != "":
		_end(EXIT_ERROR, "%s: policy_path %s: %s" % [node.get_path(), node.policy_path, why])
		return false
	node.policy = policy
	return true


# -- messages ---------------------------------------------------------------------------

func _send(engine_message: Dictionary) -> bool:
	if _state != State.RUNNING:
		return false
	if not _transport.send(_proto.encode(engine_message, "EngineMessage")):
		_end(EXIT_ERROR, _transport.error)
		return false
	return true


func _receive() -> Dictionary:
	var bytes := _transport.receive()
	if _transport.error != "":
		_end(EXIT_ERROR, _transport.error)
		return {}
	var msg := _proto.decode(bytes, "TrainerMessage")
	if _proto.error != "":
		_fail("", "cannot decode the trainer's message: %s" % _proto.error)
		return {}
	return msg


# Tell the trainer what went wrong (an Error in place of our next message) and quit.
func _fail(field: String, message: String) -> void:
	if _state == State.RUNNING and _transport.error == "":
		_transport.send(_proto.encode({"error": {"message": message, "field": field}}, "EngineMessage"))
	_end(EXIT_ERROR, message + (" (field %s)" % field if field != "" else ""))


func _end(code: int, error: String, note: String = "") -> void:
	if _state == State.ENDED:
		return
	_state = State.ENDED
	if error != "":
		printerr("sparring: ", error)
	elif note != "":
		print("sparring: ", note)
	_transport.close()
	get_tree().quit(code)


static func _kind(msg: Dictionary) -> String:
	return "an empty message" if msg.empty() else "a %s message" % msg.keys()[0]
