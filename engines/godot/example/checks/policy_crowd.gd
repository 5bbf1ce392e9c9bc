# A crowd (SparringAgentGroup) with no trainer connected, acting on an exported policy through
# SparringSync: for the test that groups play their policy (tests/test_godot_policy.py).
#   godot3-server --path engines/godot/example res://checks/policy_crowd.tscn --policy-dir D --agents N
# D holds crowd.policy.tres (a policy for 5 observation floats and 5 masked discrete actions, as
# a seeker's), rows.f32 (N float32 observations) and masks.u8 (N x 5 bytes). The crowd observes
# them, and its first actions are written to D/actions.i32 (int32); then the game quits.
extends Node

const Sync = preload("res://addons/sparring/sync.gd")
const Tensor = preload("res://addons/sparring/tensor.gd")


class Crowd extends "res://addons/sparring/group.gd":
	var folder := ""
	var rows := PoolRealArray()
	var masks := PoolByteArray()

	func get_observations() -> PoolRealArray:
		return rows

	func get_action_masks() -> PoolByteArray:
		return masks

	func apply_actions(actions) -> void:
		var file := File.new()
		file.open(folder.plus_file("actions.i32"), File.WRITE)
		var bytes := var2bytes(PoolIntArray(actions))
		file.store_buffer(bytes.subarray(8, bytes.size() - 1))
		file.close()
		get_tree().quit()


func _ready() -> void:
	var crowd := Crowd.new()
	crowd.folder = Sync.command_line_value("--policy-dir")
	crowd.behaviour_name = "crowd"
	crowd.agent_count = int(Sync.command_line_value("--agents"))
	crowd.observation_size = 5
	crowd.discrete_actions = 5
	crowd.use_action_mask = true
	crowd.policy_path = crowd.folder.plus_file("crowd.policy.tres")
	var file := File.new()
	file.open(crowd.folder.plus_file("rows.f32"), File.READ)
	crowd.rows = bytes2var(Tensor._header(TYPE_REAL_ARRAY, crowd.agent_count * 5) + file.get_buffer(crowd.agent_count * 20))
	file.close()
	file.open(crowd.folder.plus_file("masks.u8"), File.READ)
	crowd.masks = file.get_buffer(crowd.agent_count * 5)
	file.close()
	add_child(crowd)
