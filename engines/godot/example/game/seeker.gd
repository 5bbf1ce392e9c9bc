# A seeker: moves one cell per decision (stay, up, down, left, right) and must reach
# its own coin. Reward: +1 for the coin (the episode ends, terminated), -0.01 per
# decision; the episode is cut short (truncated) after max_episode_steps decisions.
# Observation (5 floats): its cell, the coin's offset from it (both / (grid_size - 1)),
# and the fraction of the episode's decisions left. Moves off the grid are masked.
extends "res://addons/sparring/agent.gd"

const MOVES := [Vector2(0, 0), Vector2(0, -1), Vector2(0, 1), Vector2(-1, 0), Vector2(1, 0)]

export var colour := Color(0.9, 0.6, 0.2)

var cell := Vector2()
var coin := Vector2()
var _move := -1  # the action to carry out on the next physics frame

onready var arena: Node2D = get_parent()


func _init() -> void:
	add_to_group("seekers")


func reset_agent() -> void:
	cell = arena.random_cell()
	coin = arena.random_cell()
	while coin == cell:
		coin = arena.random_cell()
	_move = -1


func get_observation() -> PoolRealArray:
	var span := float(arena.grid_size - 1)
	var offset := (coin - cell) / span
	var left := 1.0 - float(episode_steps) / float(max_episode_steps) if max_episode_steps > 0 else 1.0
	return PoolRealArray([cell.x / span, cell.y / span, offset.x, offset.y, left])


func get_action_mask() -> PoolByteArray:
	var last: int = arena.grid_size - 1
	return PoolByteArray([1, int(cell.y > 0), int(cell.y < last), int(cell.x > 0), int(cell.x < last)])


func apply_action(action) -> void:
	_move = action


func _physics_process(_delta: float) -> void:
	if _move < 0 or episode_done:
		return
	var last: float = arena.grid_size - 1
	var target: Vector2 = cell + MOVES[_move]
	cell = Vector2(clamp(target.x, 0, last), clamp(target.y, 0, last))
	_move = -1
	add_reward(-0.01)
	if cell == coin:
		add_reward(1.0)
		end_episode()
