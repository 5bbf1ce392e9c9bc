# Times SparringPolicy (addons/sparring/policy.gd), for benchmarks/godot_inference.py.
#   godot3-server --no-window --path engines/godot/example -s res://checks/bench_policy.gd \
#       --dir D --count N --agents A --repeats R
# D holds bench.policy.tres and rows.f32 (N float32 observation rows); a path ending in .tres on
# the command line would be taken for a scene to run. Prints one JSON line: prepare_ms (load and
# compile), agent_us (median of R blocks of N act() calls, per call), group_us_per_agent (median of
# R act_rows() calls over the first A rows, per agent); writes the head outputs of every row to
# D/outputs.f32.
extends SceneTree

const Sync = preload("res://addons/sparring/sync.gd")
const Tensor = preload("res://addons/sparring/tensor.gd")


func _init() -> void:
	var count := int(Sync.command_line_value("--count"))
	var agents := int(Sync.command_line_value("--agents"))
	var repeats := int(Sync.command_line_value("--repeats"))
	var start := OS.get_ticks_usec()
	var folder := Sync.command_line_value("--dir")
	var policy = load(folder.plus_file("bench.policy.tres"))
	if policy == null or policy.prepare() != "":
		printerr("bench_policy: ", "no policy" if policy == null else policy.error)
		quit(1)
		return
	var prepare_ms := (OS.get_ticks_usec() - start) / 1000.0
	var width: int = policy.layer_sizes[0]
	var file := File.new()
	file.open(folder.plus_file("rows.f32"), File.READ)
	var data := file.get_buffer(count * width * 4)
	file.close()
	var rows := Tensor.read_float32_rows(data, count, width)
	var crowd: PoolRealArray = bytes2var(Tensor._header(TYPE_REAL_ARRAY, agents * width) + data.subarray(0, agents * width * 4 - 1))
	var outputs := PoolRealArray()
	for row in rows:
		outputs.append_array(policy.outputs(row))
	var single := []
	var group := []
	for r in range(repeats):
		start = OS.get_ticks_usec()
		for row in rows:
			policy.act(row)
		single.append(float(OS.get_ticks_usec() - start) / count)
		start = OS.get_ticks_usec()
		policy.act_rows(crowd, agents)
		group.append(float(OS.get_ticks_usec() - start) / agents)
	file.open(folder.plus_file("outputs.f32"), File.WRITE)
	file.store_buffer(Tensor.float32_bytes(outputs))
	file.close()
	print(to_json({"prepare_ms": prepare_ms, "agent_us": _median(single), "group_us_per_agent": _median(group)}))
	quit(0)


static func _median(values: Array) -> float:
	values.sort()
	return values[values.size() / 2]
