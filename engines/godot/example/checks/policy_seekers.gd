# The example game with no trainer connected, its seekers acting on an exported policy, run as fast
# as the machine allows: for the test that the game plays its trained policy (tests/test_godot_policy.py).
#   godot3-server --path engines/godot/example res://checks/policy_seekers.tscn [--policy-dir D] --decisions N
# With --policy-dir, every seeker's policy_path is D/seeker.policy.tres (a path ending in .tres on
# the command line would be taken for a scene to run); without, the seekers play their heuristic
# (random). After N decisions each, prints "seekers: C coins in N decisions each" and quits.
extends Node

const Sync = preload("res://addons/sparring/sync.gd")

var _frames_left := 0
var _coins := 0
var _decisions := 0
var _caught := {}  # seeker -> its episode ended on its coin (seen already)


func _ready() -> void:
	process_priority = 1000  # after the seekers' own physics
	_decisions = int(Sync.command_line_value("--decisions", "100"))
	_frames_left = _decisions * $Arena/SparringSync.frames_per_step
	var folder := Sync.command_line_value("--policy-dir")
	for seeker in get_tree().get_nodes_in_group("seekers"):
		if folder != "":
			seeker.policy_path = folder.plus_file("seeker.policy.tres")
	Engine.time_scale = 1000.0
	Engine.iterations_per_second = 60000
	OS.low_processor_usage_mode_sleep_usec = 0


func _physics_process(_delta: float) -> void:
	for seeker in get_tree().get_nodes_in_group("seekers"):
		if seeker.episode_done and not _caught.get(seeker, false):
			_coins += 1
		_caught[seeker] = seeker.episode_done
	_frames_left -= 1
	if _frames_left == 0:
		print("seekers: %d coins in %d decisions each" % [_coins, _decisions])
		get_tree().quit()
