# The forward pass of a SparringPolicy's MLP, compiled to GDScript that does its arithmetic in Godot's
# native 3x3 matrices.
#
# GDScript 3.2 pays for every operation it interprets, whatever the operation does, and its
# Pool arrays have no arithmetic. So the network is cut into 3x3 blocks: every block of a weight
# matrix is a Basis, every three activations a Vector3, and one `Basis * Vector3` does nine
# multiply-adds natively. For each layer shape a script is written out with one line per three
# outputs (`a = b + w_0 * x_0 + w_1 * x_1 + ...`), its blocks as member variables, so no
# operation is spent on indexing or looping. (64 inputs, two hidden layers of 64, 8 outputs:
# about 50 us, where a loop over PoolRealArrays takes about 950 us; benchmarks/godot_inference.py.)
# The script is compiled once per policy when it is first used (GDScript.reload(), a few ms).
#
# `Vector3` holds float32 as the ONNX graph does; activations are computed in double and stored
# as float32. Rows and columns past the layer sizes are padded with zeros.
extends Reference


# An object whose forward(x: PoolRealArray) -> PoolRealArray gives the head's outputs for one
# observation row, or null (with an error printed) when the script does not compile.
# `layers`: [[inputs, outputs, weights (inputs x outputs, row-major), biases], ...], the last one
# the head; `norm`: [offset, scale, clip] or [] for no observation normalisation.
static func compile(layers: Array, activation: String, norm: Array) -> Object:
	var lines := PoolStringArray(["extends Reference", ""])
	var members := {}
	var inputs: int = layers[0][0]
	var code := PoolStringArray(["func forward(x: PoolRealArray) -> PoolRealArray:"])
	for j in range(_blocks(inputs)):
		var parts := []
		for r in range(3):
			parts.append("x[%d]" % (3 * j + r) if 3 * j + r < inputs else "0.0")
		code.append("\tvar a0_%d = Vector3(%s)" % [j, PoolStringArray(parts).join(", ")])
		if not norm.empty():
			members["_no%d" % j] = _vector(norm[0], 3 * j)
			members["_ns%d" % j] = _vector(norm[1], 3 * j)
			code.append("\ta0_%d = (a0_%d - _no%d) * _ns%d" % [j, j, j, j])
			code.append(_applied("a0_%d" % j, "clamp({v}, _low, _high)"))
	if not norm.empty():
		members["_low"] = -float(norm[2])
		members["_high"] = float(norm[2])
	for k in range(layers.size()):
		var fan_in: int = layers[k][0]
		var fan_out: int = layers[k][1]
		var w: PoolRealArray = layers[k][2]
		for o in range(_blocks(fan_out)):
			var terms := ["_b%d_%d" % [k, o]]
			members["_b%d_%d" % [k, o]] = _vector(layers[k][3], 3 * o)
			for j in range(_blocks(fan_in)):
				members["_w%d_%d_%d" % [k, o, j]] = _block(w, fan_in, fan_out, 3 * j, 3 * o)
				terms.append("_w%d_%d_%d * a%d_%d" % [k, o, j, k, j])
			var name := "a%d_%d" % [k + 1, o]
			code.append("\tvar %s = %s" % [name, PoolStringArray(terms).join(" + ")])
			if k < layers.size() - 1:
				code.append(_activated(name, activation))
	var outputs := []
	var last := layers.size()
	for i in range(layers[last - 1][1]):
		outputs.append("a%d_%d.%s" % [last, i / 3, ["x", "y", "z"][i % 3]])
	code.append("\treturn PoolRealArray([%s])" % PoolStringArray(outputs).join(", "))
	for name in members:
		lines.append("var %s" % name)
	lines.append("")
	lines.append_array(code)
	var script := GDScript.new()
	script.source_code = lines.join("\n") + "\n"
	if script.reload() != OK:
		return null
	var kernel = script.new()
	for name in members:
		kernel.set(name, members[name])
	return kernel


static func _blocks(size: int) -> int:
	return (size + 2) / 3


# values[start .. start + 2] as a Vector3, zeros past the end.
static func _vector(values: PoolRealArray, start: int) -> Vector3:
	var v := Vector3()
	for r in range(3):
		if start + r < values.size():
			v[r] = values[start + r]
	return v


# The 3x3 block of w (fan_in x fan_out, row-major) at inputs row.., outputs col..: a Basis whose
# column c (what multiplies input row + c) holds the weights to outputs col .. col + 2.
static func _block(w: PoolRealArray, fan_in: int, fan_out: int, row: int, col: int) -> Basis:
	var axes := []
	for c in range(3):
		var axis := Vector3()
		for r in range(3):
			if row + c < fan_in and col + r < fan_out:
				axis[r] = w[(row + c) * fan_out + col + r]
		axes.append(axis)
	return Basis(axes[0], axes[1], axes[2])


static func _activated(name: String, activation: String) -> String:
	if activation == "relu":  # exactly max(x, 0), in two native operations
		return "\t%s = (%s + %s.abs()) * 0.5" % [name, name, name]
	if activation == "swish":
		return _applied(name, "{v} / (1.0 + exp(-{v}))")
	return _applied(name, "tanh({v})")


# `name = Vector3(f(name.x), f(name.y), f(name.z))`, f an expression of {v}.
static func _applied(name: String, f: String) -> String:
	var parts := []
	for axis in ["x", "y", "z"]:
		parts.append(f.replace("{v}", "%s.%s" % [name, axis]))
	return "\t%s = Vector3(%s)" % [name, PoolStringArray(parts).join(", ")]
