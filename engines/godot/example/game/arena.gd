# The arena: a square grid the seekers move on. Its size can come from the trainer
# as the environment parameter "grid_size" (for curricula); it takes effect at the next Reset.
extends Node2D

const CELL := 64.0

export var grid_size := 7

var _drawing := OS.get_name() != "Server"


func _ready() -> void:
	$SparringSync.connect("reset_requested", self, "_on_reset_requested")


func _on_reset_requested(_seed: int, parameters: Dictionary) -> void:
	grid_size = int(parameters.get("grid_size", grid_size))


func random_cell() -> Vector2:
	return Vector2(randi() % grid_size, randi() % grid_size)


func _process(_delta: float) -> void:
	if _drawing:
		update()


func _draw() -> void:
	for i in range(grid_size + 1):
		draw_line(Vector2(i * CELL, 0), Vector2(i * CELL, grid_size * CELL), Color(0.3, 0.3, 0.35))
		draw_line(Vector2(0, i * CELL), Vector2(grid_size * CELL, i * CELL), Color(0.3, 0.3, 0.35))
	for seeker in get_tree().get_nodes_in_group("seekers"):
		var colour: Color = seeker.colour
		draw_circle((seeker.coin + Vector2(0.5, 0.5)) * CELL, CELL * 0.2, colour.darkened(0.3))
		draw_rect(Rect2(seeker.cell * CELL + Vector2(8, 8), Vector2(CELL - 16, CELL - 16)), colour)
