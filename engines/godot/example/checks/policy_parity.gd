# Runs SparringPolicy (addons/sparring/policy.gd) on recorded observations, for the parity tests
# against onnxruntime (tests/test_godot_policy.py).
#   godot3-server --no-window --path engines/godot/example -s res://checks/policy_parity.gd --cases FILE
# FILE is JSON: a list of cases {"policy": .policy.tres, "count": n, "rows": float32 file (n rows in
# the policy's part order), "masks": uint8 file or "", "parts": [[name, size], ...] and "spec_rows"
# (the same rows in that order, handed to act() as Dictionaries; [] and "" for a plain vector),
# "out": prefix}. For each it writes <out>.outputs (float32 head outputs of every row),
# <out>.single_c / .single_d (act() per row: float32 continuous, int32 discrete), <out>.group_c /
# .group_d (one act_rows() over all rows), <out>.weights (float32, every layer as loaded) and
# <out>.json (the types act() returned), or <out>.error (why the policy cannot run).
extends SceneTree

const Sync = preload("res://addons/sparring/sync.gd")
const Tensor = preload("res://addons/sparring/tensor.gd")


func _init() -> void:
	var file := File.new()
	if file.open(Sync.command_line_value("--cases"), File.READ) != OK:
		printerr("policy_parity: no readable --cases")
		quit(1)
		return
	var cases = parse_json(file.get_as_text())
	file.close()
	for case in cases:
		_run(case)
	quit(0)


func _run(case: Dictionary) -> void:
	var out: String = case["out"]
	var policy = load(case["policy"])
	if policy == null or policy.prepare() != "":
		_write(out + ".error", ("cannot load " + case["policy"]) if policy == null else policy.error)
		return
	var count := int(case["count"])
	var n: int = policy.layer_sizes[0]
	var rows := _read(case["rows"], count * n * 4)
	var spec_rows := Tensor.read_float32_rows(_read(case["spec_rows"], count * n * 4) if case["spec_rows"] != "" else rows, count, n)
	var width := 0
	for b in policy.branches:
		width += b
	var masks := PoolByteArray()
	if case["masks"] != "":
		masks = _read(case["masks"], count * width)
	var outputs := PoolRealArray()
	var single_c := PoolRealArray()
	var single_d := PoolIntArray()
	var types := {}
	for i in range(count):
		var observation = spec_rows[i]
		if not case["parts"].empty():
			observation = {}
			var values := Array(spec_rows[i])
			var at := 0
			for part in case["parts"]:
				observation[part[0]] = PoolRealArray(values.slice(at, at + int(part[1]) - 1))
				at += int(part[1])
		var mask := masks.subarray(i * width, i * width + width - 1) if not masks.empty() else PoolByteArray()
		outputs.append_array(policy.outputs(observation))
		var action = policy.act(observation, mask)
		types["single"] = typeof(action)
		if typeof(action) == TYPE_DICTIONARY:
			types["discrete"] = typeof(action["discrete"])
			single_c.append_array(action["continuous"])
			action = action["discrete"]
		if typeof(action) == TYPE_REAL_ARRAY:
			single_c.append_array(action)
		elif typeof(action) == TYPE_INT_ARRAY:
			single_d.append_array(action)
		else:
			single_d.append(action)
	var group = policy.act_rows(bytes2var(Tensor._header(TYPE_REAL_ARRAY, count * n) + rows), count, masks)
	types["group"] = typeof(group)
	var group_c := PoolRealArray()
	var group_d := PoolIntArray()
	if typeof(group) == TYPE_DICTIONARY:
		group_c = group["continuous"]
		group_d = group["discrete"]
	elif typeof(group) == TYPE_REAL_ARRAY:
		group_c = group
	else:
		group_d = group
	var weights := PoolRealArray()
	for w in policy.weights:
		weights.append_array(w)
	_write(out + ".outputs", Tensor.float32_bytes(outputs))
	_write(out + ".single_c", Tensor.float32_bytes(single_c))
	_write(out + ".single_d", _int32_bytes(single_d))
	_write(out + ".group_c", Tensor.float32_bytes(group_c))
	_write(out + ".group_d", _int32_bytes(group_d))
	_write(out + ".weights", Tensor.float32_bytes(weights))
	_write(out + ".json", to_json(types))


func _read(path: String, size: int) -> PoolByteArray:
	var file := File.new()
	file.open(path, File.READ)
	var data := file.get_buffer(size)
	file.close()
	return data


static func _int32_bytes(values: PoolIntArray) -> PoolByteArray:
	if values.empty():
		return PoolByteArray()
	var bytes := var2bytes(values)
	return bytes.subarray(8, bytes.size() - 1)


func _write(path: String, data) -> void:
	var file := File.new()
	file.open(path, File.WRITE)
	if typeof(data) == TYPE_STRING:
		file.store_string(data)
	else:
		file.store_buffer(data)
	file.close()
