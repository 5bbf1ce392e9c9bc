# Protocol Buffers wire format for exactly the messages of protos/sparring/v1/bridge.proto.
#
# A message is a Dictionary keyed by field name, as in the .proto:
#   {"reset": {"seed": 7, "environment_parameters": {"speed": 2.0}}}  (a TrainerMessage)
# Decoding fills every absent scalar, repeated field and map with its proto3
# default; an absent message field (and every unset oneof member) is an absent key.
# Values: int64/uint64/int32/uint32/enum -> int, bool -> bool, double -> float,
# string -> String, bytes -> PoolByteArray, repeated -> Array, map -> Dictionary.
# Unknown fields are skipped; repeated int64 is written packed and read either way.
#
#   var proto = preload("res://addons/sparring/proto.gd").new()
#   var bytes: PoolByteArray = proto.encode({"hello": {...}}, "EngineMessage")
#   var msg: Dictionary = proto.decode(bytes, "TrainerMessage")  # {} and proto.error set on failure
extends Reference

enum Kind { INT64, UINT64, INT32, UINT32, BOOL, ENUM, DOUBLE, STRING, BYTES, MESSAGE, MAP }

const WIRE_VARINT := 0
const WIRE_I64 := 1
const WIRE_LEN := 2
const WIRE_I32 := 5

# Each field: [number, name, kind, repeated, message type]. Keep in step with bridge.proto.
const SCHEMA := {
	"Tensor": [
		[1, "dtype", Kind.ENUM], [2, "shape", Kind.INT64, true], [3, "data", Kind.BYTES]],
	"BoxSpace": [
		[1, "shape", Kind.INT64, true], [2, "dtype", Kind.ENUM],
		[3, "low", Kind.MESSAGE, false, "Tensor"], [4, "high", Kind.MESSAGE, false, "Tensor"]],
	"DiscreteSpace": [[1, "n", Kind.INT64]],
	"MultiDiscreteSpace": [[1, "nvec", Kind.INT64, true]],
	"ObservationComponent": [[1, "name", Kind.STRING], [2, "space", Kind.MESSAGE, false, "BoxSpace"]],
	"BehaviourSpec": [
		[1, "name", Kind.STRING],
		[2, "observations", Kind.MESSAGE, true, "ObservationComponent"],
		[3, "discrete", Kind.MESSAGE, false, "DiscreteSpace"],
		[4, "multi_discrete", Kind.MESSAGE, false, "MultiDiscreteSpace"],
		[5, "continuous", Kind.MESSAGE, false, "BoxSpace"],
		[6, "has_team", Kind.BOOL], [7, "team_id", Kind.INT32], [8, "has_action_mask", Kind.BOOL]],
	"Hello": [
		[1, "protocol_version", Kind.UINT32], [2, "auth_token", Kind.STRING],
		[3, "engine_name", Kind.STRING], [4, "behaviours", Kind.MESSAGE, true, "BehaviourSpec"]],
	"Welcome": [
		[1, "protocol_version", Kind.UINT32], [2, "seed", Kind.INT64],
		[3, "environment_parameters", Kind.MAP], [4, "recording", Kind.BOOL]],
	"Refusal": [[1, "reason", Kind.STRING]],
	"BehaviourObservations": [
		[1, "behaviour", Kind.STRING],
		[2, "decision_ids", Kind.MESSAGE, false, "Tensor"],
		[3, "decision_obs", Kind.MESSAGE, true, "Tensor"],
		[4, "decision_rewards", Kind.MESSAGE, false, "Tensor"],
		[5, "action_mask", Kind.MESSAGE, false, "Tensor"],
		[6, "terminal_ids", Kind.MESSAGE, false, "Tensor"],
		[7, "terminal_obs", Kind.MESSAGE, true, "Tensor"],
		[8, "terminal_rewards", Kind.MESSAGE, false, "Tensor"],
		[9, "terminal_truncated", Kind.MESSAGE, false, "Tensor"],
		[10, "decision_group_ids", Kind.MESSAGE, false, "Tensor"],
		[11, "decision_group_rewards", Kind.MESSAGE, false, "Tensor"],
		[12, "terminal_group_ids", Kind.MESSAGE, false, "Tensor"],
		[13, "terminal_group_rewards", Kind.MESSAGE, false, "Tensor"],
		[14, "played_ids", Kind.MESSAGE, false, "Tensor"],
		[15, "played_actions", Kind.MESSAGE, false, "Tensor"]],
	"GameStat": [[1, "key", Kind.STRING], [2, "value", Kind.DOUBLE], [3, "aggregation", Kind.ENUM]],
	"Observations": [
		[1, "step", Kind.UINT64], [2, "behaviours", Kind.MESSAGE, true, "BehaviourObservations"],
		[3, "stats", Kind.MESSAGE, true, "GameStat"]],
	"BehaviourActions": [[1, "behaviour", Kind.STRING], [2, "actions", Kind.MESSAGE, false, "Tensor"]],
	"Actions": [
		[1, "step", Kind.UINT64], [2, "behaviours", Kind.MESSAGE, true, "BehaviourActions"],
		[3, "environment_parameters", Kind.MAP]],
	"Reset": [[1, "seed", Kind.INT64], [2, "environment_parameters", Kind.MAP]],
	"Close": [[1, "reason", Kind.STRING]],
	"Error": [[1, "message", Kind.STRING], [2, "field", Kind.STRING]],
	"EngineMessage": [
		[1, "hello", Kind.MESSAGE, false, "Hello"], [2, "observations", Kind.MESSAGE, false, "Observations"],
		[3, "error", Kind.MESSAGE, false, "Error"], [4, "close", Kind.MESSAGE, false, "Close"]],
	"TrainerMessage": [
		[1, "welcome", Kind.MESSAGE, false, "Welcome"], [2, "refusal", Kind.MESSAGE, false, "Refusal"],
		[3, "reset", Kind.MESSAGE, false, "Reset"], [4, "actions", Kind.MESSAGE, false, "Actions"],
		[5, "close", Kind.MESSAGE, false, "Close"], [6, "error", Kind.MESSAGE, false, "Error"]],
}

# Members of one oneof: setting one clears the others (the last one on the wire wins).
const ONEOFS := {
	"BehaviourSpec": ["discrete", "multi_discrete", "continuous"],
	"EngineMessage": ["hello", "observations", "error", "close"],
	"TrainerMessage": ["welcome", "refusal", "reset", "actions", "close", "error"],
}

const MAX_DEPTH := 16

# Why the last decode failed ("" after a success).
var error := ""

var _fields := {}  # type -> SCHEMA[type], each field padded to [number, name, kind, repeated, type]
var _fields_by_number := {}  # type -> {number -> field}
var _defaults := {}  # type -> the message with every field at its proto3 default
var _buf := PoolByteArray()
var _pos := 0
var _scratch := StreamPeerBuffer.new()


func _init() -> void:
	for type in SCHEMA:
		var fields := []
		var by_number := {}
		var defaults := {}
		for declared in SCHEMA[type]:
			var field: Array = declared.duplicate()
			while field.size() < 5:  # [number, name, kind] -> + repeated, message type
				field.append(false if field.size() == 3 else "")
			fields.append(field)
			by_number[field[0]] = field
			if field[3]:
				defaults[field[1]] = []
			elif field[2] == Kind.MAP:
				defaults[field[1]] = {}
			elif field[2] != Kind.MESSAGE:
				defaults[field[1]] = _default(field[2])
		_fields[type] = fields
		_fields_by_number[type] = by_number
		_defaults[type] = defaults


# -- encoding -----------------------------------------------------------------
# Messages are written as a list of byte chunks, so the bulk tensor data is copied
# once, into the final message, however deeply it is nested. Every field number in
# bridge.proto is below 16, so each tag is one byte.

func encode(msg: Dictionary, type: String) -> PoolByteArray:
	var chunks := []
	_write(msg, type, chunks)
	var out := PoolByteArray()
	for chunk in chunks:
		out.append_array(chunk)
	return out


# Append the message's chunks to `chunks`; returns their total size.
func _write(msg: Dictionary, type: String, chunks: Array) -> int:
	if type == "Tensor":
		return _write_tensor(msg, chunks)
	var size := 0
	for field in _fields[type]:
		var name: String = field[1]
		if not msg.has(name):
			continue
		var number: int = field[0]
		var kind: int = field[2]
		var repeated: bool = field[3]
		var value = msg[name]
		var bytes := PoolByteArray()
		if kind == Kind.MESSAGE:
			var items: Array = value if repeated else [value]
			for item in items:
				var slot := chunks.size()
				chunks.append(null)
				var length := _write(item, field[4], chunks)
				chunks[slot] = _len_prefix(number, length)
				size += chunks[slot].size() + length
			continue
		elif kind == Kind.MAP:
			for key in value:
				var entry := _len_prefix(1, String(key).to_utf8().size())
				entry.append_array(String(key).to_utf8())
				entry.append((2 << 3) | WIRE_I64)
				entry.append_array(_double_bytes(float(value[key])))
				bytes.append_array(_len_prefix(number, entry.size()))
				bytes.append_array(entry)
		elif repeated:
			if value.size() > 0:
				var packed := _packed(kind, value)
				bytes = _len_prefix(number, packed.size())
				bytes.append_array(packed)
		elif kind == Kind.STRING or kind == Kind.BYTES:
			var raw: PoolByteArray = String(value).to_utf8() if kind == Kind.STRING else value
			if raw.size() > 0:
				bytes = _len_prefix(number, raw.size())
				bytes.append_array(raw)
		elif kind == Kind.DOUBLE:
			if value != 0.0:
				bytes.append((number << 3) | WIRE_I64)
				bytes.append_array(_double_bytes(value))
		else:
			var v := _varint_of(kind, value)
			if v != 0:
				bytes.append((number << 3) | WIRE_VARINT)
				bytes.append_array(varint_bytes(v))
		if bytes.size() > 0:
			chunks.append(bytes)
			size += bytes.size()
	return size


# The hot path: observations are mostly tensors. Their data is appended as is.
func _write_tensor(tensor: Dictionary, chunks: Array) -> int:
	var dtype: int = tensor.get("dtype", 0)
	var shape: Array = tensor.get("shape", [])
	var data: PoolByteArray = tensor.get("data", PoolByteArray())
	var head := PoolByteArray()
	if dtype != 0:
		head.append((1 << 3) | WIRE_VARINT)
		head.append(dtype)
	if shape.size() > 0:
		var packed := PoolByteArray()
		for d in shape:
			if d >= 0 and d < 0x80:
				packed.append(d)
			else:
				packed.append_array(varint_bytes(d))
		head.append_array(_len_prefix(2, packed.size()))
		head.append_array(packed)
	if data.size() > 0:
		head.append_array(_len_prefix(3, data.size()))
	chunks.append(head)
	if data.size() > 0:
		chunks.append(data)
	return head.size() + data.size()


# The tag and length of a length-delimited field.
func _len_prefix(number: int, length: int) -> PoolByteArray:
	var out := PoolByteArray()
	out.append((number << 3) | WIRE_LEN)
	if length < 0x80:
		out.append(length)
	else:
		out.append_array(varint_bytes(length))
	return out


func _packed(kind: int, values) -> PoolByteArray:
	var out := PoolByteArray()
	for value in values:
		var v := _varint_of(kind, value)
		if v >= 0 and v < 0x80:
			out.append(v)
		else:
			out.append_array(varint_bytes(v))
	return out


func _varint_of(kind: int, value) -> int:
	if kind == Kind.BOOL:
		return 1 if value else 0
	if kind == Kind.UINT32:
		return int(value) & 0xFFFFFFFF
	return int(value)  # int32 and int64 alike: negatives are sign-extended to 10 bytes


func _double_bytes(value: float) -> PoolByteArray:
	_scratch.data_array = PoolByteArray()
	_scratch.put_double(value)
	return _scratch.data_array


static func varint_bytes(v: int) -> PoolByteArray:
	var out := PoolByteArray()
	while true:
		var low7 := v & 0x7F
		v = (v >> 7) & 0x01FFFFFFFFFFFFFF  # logical shift: GDScript's >> keeps the sign
		if v == 0:
			out.append(low7)
			return out
		out.append(low7 | 0x80)
	return out


# -- decoding -----------------------------------------------------------------

func decode(bytes: PoolByteArray, type: String) -> Dictionary:
	error = ""
	_buf = bytes
	_pos = 0
	var msg := _read_message(type, bytes.size(), 0)
	_buf = PoolByteArray()
	return {} if error != "" else msg


func _read_message(type: String, end: int, depth: int) -> Dictionary:
	var msg: Dictionary = _defaults[type].duplicate(true)
	if depth > MAX_DEPTH:
		_fail("%s: messages nested deeper than %d" % [type, MAX_DEPTH])
		return msg
	var by_number: Dictionary = _fields_by_number[type]
	while _pos < end and error == "":
		var key := _read_varint(end)
		var number := key >> 3
		var wire := key & 7
		var field = by_number.get(number)
		if field == null:
			_skip(wire, end, type)
			continue
		var name: String = field[1]
		var kind: int = field[2]
		var repeated: bool = field[3]
		if kind == Kind.MESSAGE or kind == Kind.MAP or kind == Kind.STRING or kind == Kind.BYTES:
			if not _expect_wire(wire, WIRE_LEN, type, name):
				break
			var length := _read_varint(end)
			if length < 0 or length > end - _pos:
				_fail("%s.%s: length %d runs past the end of the message" % [type, name, length])
				break
			var stop := _pos + length
			if kind == Kind.MESSAGE:
				var sub := _read_message(field[4], stop, depth + 1)
				if repeated:
					msg[name].append(sub)
				else:
					for member in ONEOFS.get(type, []):
						msg.erase(member)
					msg[name] = sub
			elif kind == Kind.MAP:
				_read_map_entry(msg[name], stop, type + "." + name)
			elif kind == Kind.STRING:
				msg[name] = _slice(_pos, stop).get_string_from_utf8()
			else:
				msg[name] = _slice(_pos, stop)
			_pos = stop
		elif kind == Kind.DOUBLE:
			if _expect_wire(wire, WIRE_I64, type, name):
				msg[name] = _read_double(end)
		elif repeated and wire == WIRE_LEN:  # packed varints
			var length := _read_varint(end)
			if length < 0 or length > end - _pos:
				_fail("%s.%s: length %d runs past the end of the message" % [type, name, length])
				break
			var stop := _pos + length
			while _pos < stop and error == "":
				msg[name].append(_scalar(kind, _read_varint(stop)))
		elif _expect_wire(wire, WIRE_VARINT, type, name):
			var value = _scalar(kind, _read_varint(end))
			if repeated:
				msg[name].append(value)
			else:
				msg[name] = value
	return msg


func _read_map_entry(map: Dictionary, end: int, where: String) -> void:
	var key := ""
	var value := 0.0
	while _pos < end and error == "":
		var tag := _read_varint(end)
		if tag == ((1 << 3) | WIRE_LEN):
			var length := _read_varint(end)
			if length < 0 or length > end - _pos:
				_fail("%s: key length %d runs past the end of the entry" % [where, length])
				return
			key = _slice(_pos, _pos + length).get_string_from_utf8()
			_pos += length
		elif tag == ((2 << 3) | WIRE_I64):
			value = _read_double(end)
		else:
			_skip(tag & 7, end, where)
	map[key] = value


func _default(kind: int):
	match kind:
		Kind.BOOL:
			return false
		Kind.DOUBLE:
			return 0.0
		Kind.STRING:
			return ""
		Kind.BYTES:
			return PoolByteArray()
	return 0


func _scalar(kind: int, v: int):
	match kind:
		Kind.BOOL:
			return v != 0
		Kind.INT32:
			v &= 0xFFFFFFFF
			return v - 0x100000000 if v >= 0x80000000 else v
		Kind.UINT32:
			return v & 0xFFFFFFFF
	return v


func _read_varint(end: int) -> int:
	var result := 0
	var shift := 0
	while shift < 64:
		if _pos >= end:
			_fail("truncated varint")
			return 0
		var b: int = _buf[_pos]
		_pos += 1
		result |= (b & 0x7F) << shift
		if b < 0x80:
			return result
		shift += 7
	_fail("varint longer than 10 bytes")
	return 0


func _read_double(end: int) -> float:
	if end - _pos < 8:
		_fail("truncated double")
		return 0.0
	_scratch.data_array = _slice(_pos, _pos + 8)
	_pos += 8
	return _scratch.get_double()


func _skip(wire: int, end: int, where: String) -> void:
	var size := 0
	match wire:
		WIRE_VARINT:
			_read_varint(end)
			return
		WIRE_I64:
			size = 8
		WIRE_I32:
			size = 4
		WIRE_LEN:
			size = _read_varint(end)
		_:
			_fail("%s: unsupported wire type %d" % [where, wire])
			return
	if size < 0 or size > end - _pos:
		_fail("%s: unknown field runs past the end of the message" % where)
		return
	_pos += size


func _slice(from: int, to: int) -> PoolByteArray:  # [from, to)
	if to <= from:
		return PoolByteArray()
	return _buf.subarray(from, to - 1)


func _expect_wire(wire: int, expected: int, type: String, name: String) -> bool:
	if wire != expected:
		_fail("%s.%s: wire type %d, expected %d" % [type, name, wire, expected])
		return false
	return true


func _fail(why: String) -> void:
	if error == "":
		error = why
