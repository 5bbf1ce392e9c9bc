# SparringPolicy: a trained policy, run in GDScript (no .NET, no onnxruntime). `sparring export`
# writes one beside each native ONNX file whose policy it can run here, <Behaviour>.policy.tres:
# a resource with this script (export/README.md). Set a SparringAgent's or SparringAgentGroup's
# `policy_path` to it, and with no trainer connected the agent acts on it. Or use it directly:
#
#   var policy = load("res://policies/seeker.policy.tres")
#   var action = policy.act(observation, mask)          # as SparringAgent.apply_action() gets it
#   var actions = policy.act_rows(rows, count, masks)   # as SparringAgentGroup.apply_actions() gets them
#
# It computes what the native ONNX graph computes, deterministically: observation normalisation,
# the actor's MLP and head (policy_kernel.gd), then for each discrete branch the argmax over the
# allowed actions, and the continuous mean clipped to the action Box (a SAC policy: tanh(mean)
# scaled into the Box). With sample_actions (a difficulty tier of `sparring ladder`, measured with
# sampled actions), each discrete action is drawn from the softmax of its branch's allowed logits. Vector observations only: a policy that reads an image (CNN encoder) or an
# entity list (attention encoder), or that has memory (LSTM), is refused when it is prepared.
extends Resource

const Kernel = preload("policy_kernel.gd")
const Tensor = preload("tensor.gd")

const FORMAT_VERSION := 1
const MASKED_LOGIT := -1e8  # what a forbidden action's logit becomes, as in the trainer and the ONNX graph
const ACTIVATIONS := ["tanh", "relu", "swish"]
const ENCODERS := {"image": "an image, read by a CNN encoder", "entities": "an entity list, read by an attention encoder"}

# Written by `sparring export` (export/godot_addon.py).
export var format_version := 0
export var behaviour := ""
export var observation_names := PoolStringArray()  # the parts of an observation, in the order the policy reads them
export var observation_sizes := PoolIntArray()  # floats in each part
export var observation_kinds := PoolStringArray()  # "vector" each; "image" and "entities" are refused
export var memory_size := 0  # floats of recurrent state; a policy with memory is refused
export var norm_offset := PoolRealArray()  # observation normalisation: clamp((x - offset) * scale, -clip, clip);
export var norm_scale := PoolRealArray()  # empty: none
export var norm_clip := 0.0
export var activation := "tanh"  # of the hidden layers: tanh, relu or swish
export var layer_sizes := PoolIntArray()  # inputs, hidden layers..., head outputs (means, then logits)
export var weights := []  # a PoolRealArray per layer: inputs x outputs, row-major
export var biases := []  # a PoolRealArray per layer
export var continuous_size := 0
export var branches := PoolIntArray()  # discrete branch sizes
export var action_low := PoolRealArray()  # the action Box the means are clipped to
export var action_high := PoolRealArray()
export var squash_scale := PoolRealArray()  # SAC: tanh(mean) * scale + offset before clipping; empty: none
export var squash_offset := PoolRealArray()
export var sample_actions := false  # draw each discrete action from the softmax of the allowed logits (a ladder tier)

var rng := RandomNumberGenerator.new()  # what sample_actions draws from: set rng.seed to replay a game
var error := ""  # why the last prepare(), act() or act_rows() failed
var _kernel = null  # the compiled forward pass (policy_kernel.gd)
var _continuous := PoolRealArray()  # actions being chosen
var _discrete := PoolIntArray()


func _init() -> void:
	rng.randomize()  # each game its own draws; a fixed rng.seed replays them


# Check that this addon can run the policy, and compile its forward pass (once): "" or why not.
func prepare() -> String:
	if _kernel != null:
		return ""
	error = _problem()
	if error != "":
		return error
	var layers := []
	for k in range(weights.size()):
		layers.append([layer_sizes[k], layer_sizes[k + 1], weights[k], biases[k]])
	var norm := [] if norm_offset.empty() else [norm_offset, norm_scale, norm_clip]
	_kernel = Kernel.compile(layers, activation, norm)
	if _kernel == null:
		error = "%s: its forward pass did not compile (the error is above)" % _name()
	return error


# Whether the policy fits what a SparringAgent or SparringAgentGroup declares (batch.gd's
# spec_of): "" or why not.
func mismatch(spec: Dictionary) -> String:
	var declared := {}
	for part in spec["observations"]:
		var size := 1
		for d in part["space"]["shape"]:
			size *= d
		declared[part["name"]] = size
	var reads := {}
	for i in range(observation_names.size()):
		reads[observation_names[i]] = observation_sizes[i]
	var same := declared.size() == reads.size()
	for name in declared:
		same = same and reads.get(name) == declared[name]
	if not same:
		return "%s reads observations %s (floats per part), the node declares %s" % [_name(), str(reads), str(declared)]
	var nvec := []
	var size := 0
	if spec.has("discrete"):
		nvec = [spec["discrete"]["n"]]
	elif spec.has("multi_discrete"):
		nvec = Array(spec["multi_discrete"]["nvec"])
	else:
		size = spec["continuous"]["shape"][0]
	if size != continuous_size or str(nvec) != str(Array(branches)):
		return "%s chooses %s, the node declares %s" % [
			_name(), _describe(continuous_size, Array(branches)), _describe(size, nvec)]
	return ""


# The action for one observation (a PoolRealArray, or a Dictionary {part name: PoolRealArray}),
# as SparringAgent.apply_action() gets it: an int (one discrete branch), a PoolIntArray (several
# branches), a PoolRealArray (continuous), or {"continuous": PoolRealArray, "discrete": int or
# PoolIntArray} (both). `mask`: one byte per discrete action, branches concatenated, 1 allowed
# (empty: all allowed). null when it cannot act; `error` says why.
func act(observation, mask := PoolByteArray()):
	var out = outputs(observation)
	if out == null or not _mask_fits(mask, 1):
		return null
	_continuous = PoolRealArray()
	_discrete = PoolIntArray()
	_choose(out, mask, 0)
	var discrete = _discrete if branches.size() > 1 else (_discrete[0] if branches.size() == 1 else null)
	return _chosen(discrete)


# The actions of `count` agents whose observations are `rows` (count x inputs floats, row-major,
# each row's parts in observation_names order), as SparringAgentGroup.apply_actions() gets them:
# a PoolIntArray (count x branches), a PoolRealArray (count x continuous_size), or
# {"continuous": ..., "discrete": ...} (both). `masks`: count x (sum of branch sizes) bytes, or
# empty. null when it cannot act; `error` says why.
func act_rows(rows: PoolRealArray, count: int, masks := PoolByteArray()):
	if prepare() != "" or not _mask_fits(masks, count):
		return null
	var n: int = layer_sizes[0]
	if rows.size() != count * n:
		error = "%s: %d rows of %d observation floats need %d floats, got %d" % [_name(), count, n, count * n, rows.size()]
		return null
	_continuous = PoolRealArray()
	_discrete = PoolIntArray()
	var width := _mask_width()
	var i := 0
	for row in Tensor.read_float32_rows(Tensor.float32_bytes(rows), count, n):
		_choose(_kernel.forward(row), masks, i * width)
		i += 1
	return _chosen(_discrete)


# The actor head's outputs for one observation (as act() takes it): the continuous means, then
# the logits of every branch, before any action is chosen; null when it cannot run.
func outputs(observation):
	if prepare() != "":
		return null
	var row := PoolRealArray()
	if typeof(observation) == TYPE_REAL_ARRAY:
		row = observation
	elif typeof(observation) == TYPE_DICTIONARY:
		for name in observation_names:
			if not observation.has(name):
				error = "%s: the observation has no part '%s' (it has %s)" % [_name(), name, str(observation.keys())]
				return null
			row.append_array(PoolRealArray(observation[name]))
	else:
		error = "%s: an observation is a PoolRealArray, or a Dictionary of them by part name" % _name()
		return null
	if row.size() != layer_sizes[0]:
		error = "%s reads %d observation floats, got %d" % [_name(), layer_sizes[0], row.size()]
		return null
	return _kernel.forward(row)


# Append one agent's actions, from its head outputs, to _continuous and _discrete; its mask
# starts at mask[at].
func _choose(out: PoolRealArray, mask: PoolByteArray, at: int) -> void:
	for i in range(continuous_size):
		var u: float = out[i]
		if not squash_scale.empty():
			u = tanh(u) * squash_scale[i] + squash_offset[i]
		_continuous.append(max(min(u, action_high[i]), action_low[i]))
	var first := continuous_size
	var masked := not mask.empty()
	for n in branches:
		var best := 0
		var best_logit := 0.0
		for a in range(n):
			var logit: float = out[first + a]
			if masked and mask[at + first - continuous_size + a] == 0:
				logit = MASKED_LOGIT
			if a == 0 or logit > best_logit:  # the first of equal logits, as ArgMax
				best = a
				best_logit = logit
		if sample_actions:
			best = _draw(out, mask, at + first - continuous_size, first, n, best_logit, masked)
		_discrete.append(best)
		first += n


# One action of the branch whose logits are out[first..first+n), drawn in proportion to
# exp(logit - top) over the allowed ones (mask from mask[at]); top: the largest allowed logit.
func _draw(out: PoolRealArray, mask: PoolByteArray, at: int, first: int, n: int, top: float, masked: bool) -> int:
	var weights := PoolRealArray()
	var total := 0.0
	for a in range(n):
		var w := 0.0 if masked and mask[at + a] == 0 else exp(out[first + a] - top)
		weights.append(w)
		total += w
	var u := rng.randf() * total
	var last := 0
	for a in range(n):
		if weights[a] > 0.0:
			last = a
			u -= weights[a]
			if u < 0.0:
				return a
	return last  # u within rounding of total: the last allowed action


func _chosen(discrete):
	if branches.empty():
		return _continuous
	if continuous_size == 0:
		return discrete
	return {"continuous": _continuous, "discrete": discrete}


# Why the addon cannot run this policy, or "".
func _problem() -> String:
	if format_version != FORMAT_VERSION:
		return "%s is in sidecar format %d; this addon reads format %d: export the policy again with this addon's sparring, or update the addon" % [
			_name(), format_version, FORMAT_VERSION]
	for i in range(observation_kinds.size()):
		var kind: String = observation_kinds[i]
		if kind != "vector":
			return "%s: observation '%s' is %s; SparringPolicy runs vector observations only (run the native .onnx with onnxruntime instead)" % [
				_name(), observation_names[i], ENCODERS.get(kind, "of kind '%s'" % kind)]
	if memory_size > 0:
		return "%s is a recurrent (LSTM) policy (memory of %d floats); SparringPolicy runs memoryless policies only (run the native .onnx with onnxruntime instead)" % [
			_name(), memory_size]
	if not activation in ACTIVATIONS:
		return "%s: activation '%s' is not one of %s" % [_name(), activation, str(ACTIVATIONS)]
	var inputs := 0
	for size in observation_sizes:
		inputs += size
	var fits := observation_kinds.size() == observation_names.size() and observation_sizes.size() == observation_names.size()
	fits = fits and layer_sizes.size() >= 2 and layer_sizes[0] == inputs
	fits = fits and weights.size() == layer_sizes.size() - 1 and biases.size() == weights.size()
	for k in range(weights.size() if fits else 0):
		fits = fits and weights[k].size() == layer_sizes[k] * layer_sizes[k + 1] and biases[k].size() == layer_sizes[k + 1]
	fits = fits and layer_sizes[layer_sizes.size() - 1] == continuous_size + _mask_width()
	fits = fits and (norm_offset.empty() or (norm_offset.size() == inputs and norm_scale.size() == inputs))
	fits = fits and action_low.size() == continuous_size and action_high.size() == continuous_size
	fits = fits and (squash_scale.empty() or (squash_scale.size() == continuous_size and squash_offset.size() == continuous_size))
	if not fits:
		return "%s: its sizes do not fit together (a damaged file? export it again)" % _name()
	return ""


func _mask_fits(mask: PoolByteArray, count: int) -> bool:
	if mask.empty() or mask.size() == count * _mask_width():
		return true
	error = "%s: %d masks need %d bytes (one per discrete action), got %d" % [_name(), count, count * _mask_width(), mask.size()]
	return false


func _mask_width() -> int:
	var width := 0
	for n in branches:
		width += n
	return width


func _name() -> String:
	return "policy '%s' (%s)" % [behaviour, resource_path]


static func _describe(size: int, nvec: Array) -> String:
	var parts := []
	if size > 0:
		parts.append("%d continuous actions" % size)
	if not nvec.empty():
		parts.append("discrete branches %s" % str(nvec))
	return PoolStringArray(parts).join(" and ")
