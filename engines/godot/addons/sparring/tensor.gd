# Tensor messages <-> Godot arrays, with the bulk bytes made by the engine, not element by element.
#
# A Tensor is {"dtype": int, "shape": Array, "data": PoolByteArray}: little-endian, C order.
# float32 data is var2bytes(PoolRealArray) minus its 8-byte header (a 4-byte type tag,
# a 4-byte count), and is read back by prepending such a header and calling bytes2var.
# A loop of StreamPeerBuffer.put_float is ~70x slower (DESIGN section 4). int64 arrays
# (agent ids, discrete actions) are small and go through StreamPeerBuffer put_64/get_64;
# bool arrays are PoolByteArrays of 0 and 1.
extends Reference

# DType in bridge.proto.
const FLOAT32 := 1
const FLOAT64 := 2
const INT8 := 3
const UINT8 := 4
const INT32 := 5
const INT64 := 6
const BOOL := 7
const ITEM_SIZE := {FLOAT32: 4, FLOAT64: 8, INT8: 1, UINT8: 1, INT32: 4, INT64: 8, BOOL: 1}
const DTYPE_NAMES := {
	FLOAT32: "float32", FLOAT64: "float64", INT8: "int8", UINT8: "uint8",
	INT32: "int32", INT64: "int64", BOOL: "bool"}


static func make(dtype: int, shape: Array, data: PoolByteArray) -> Dictionary:
	return {"dtype": dtype, "shape": shape, "data": data}


static func float32_bytes(values: PoolRealArray) -> PoolByteArray:
	if values.size() == 0:
		return PoolByteArray()
	var bytes := var2bytes(values)
	if bytes.size() != 8 + 4 * values.size():  # an engine built with double-precision reals
		var out := StreamPeerBuffer.new()
		for v in values:
			out.put_float(v)
		return out.data_array
	return bytes.subarray(8, bytes.size() - 1)


static func float64_bytes(values: Array) -> PoolByteArray:  # small arrays only (space bounds)
	var out := StreamPeerBuffer.new()
	for v in values:
		out.put_double(v)
	return out.data_array


# Rows of a float32 (n, width) tensor, one PoolRealArray each.
static func read_float32_rows(data: PoolByteArray, n: int, width: int) -> Array:
	var rows := []
	var row_bytes := width * 4
	if width == 0 or var2bytes(PoolRealArray([0.0])).size() != 12:  # double-precision reals: element by element
		var reader := StreamPeerBuffer.new()
		reader.data_array = data
		for i in range(n):
			var row := PoolRealArray()
			for j in range(width):
				row.append(reader.get_float())
			rows.append(row)
		return rows
	var header := _header(TYPE_REAL_ARRAY, width)
	for i in range(n):
		rows.append(bytes2var(header + data.subarray(i * row_bytes, (i + 1) * row_bytes - 1)))
	return rows


static func read_int64(data: PoolByteArray) -> Array:
	var reader := StreamPeerBuffer.new()
	reader.data_array = data
	var values := []
	for i in range(data.size() / 8):
		values.append(reader.get_64())
	return values


# Number of elements a shape holds; -1 for a negative dimension.
static func element_count(shape: Array) -> int:
	var count := 1
	for d in shape:
		if d < 0:
			return -1
		count *= d
	return count


# "" when `tensor` is a `dtype` tensor of `shape` with the right number of bytes, else why not.
static func check(tensor: Dictionary, dtype: int, shape: Array) -> String:
	var got_dtype: int = tensor.get("dtype", 0)
	var got_shape: Array = tensor.get("shape", [])
	if got_dtype != dtype or str(got_shape) != str(shape):
		return "expected %s %s, got %s %s" % [
			DTYPE_NAMES[dtype], str(shape), DTYPE_NAMES.get(got_dtype, "dtype %d" % got_dtype), str(got_shape)]
	var size: int = tensor.get("data", PoolByteArray()).size()
	var expected := element_count(shape) * int(ITEM_SIZE[dtype])
	if size != expected:
		return "%d data bytes for shape %s of %s (%d expected)" % [size, str(shape), DTYPE_NAMES[dtype], expected]
	return ""


static func _header(type: int, count: int) -> PoolByteArray:
	var header := StreamPeerBuffer.new()
	header.put_u32(type)
	header.put_u32(count)
	return header.data_array
