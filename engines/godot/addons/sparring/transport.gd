# The bridge's TCP transport: each message is a 4-byte little-endian length, then that many bytes.
#
# Reads block (the game is in lock-step with the trainer); a closed connection
# ends a read with an error instead of hanging.
extends Reference

const MAX_FRAME_BYTES := 1 << 30

# Why the last call failed ("" when it did not).
var error := ""

var _tcp := StreamPeerTCP.new()


func open(host: String, port: int, timeout_s: float) -> bool:
	error = ""
	var err := _tcp.connect_to_host(host, port)
	if err != OK:
		error = "cannot connect to %s:%d (error %d)" % [host, port, err]
		return false
	var deadline := OS.get_ticks_msec() + int(timeout_s * 1000.0)
	while _tcp.get_status() == StreamPeerTCP.STATUS_CONNECTING:
		if OS.get_ticks_msec() > deadline:
			error = "no trainer answered at %s:%d within %.1f s" % [host, port, timeout_s]
			_tcp.disconnect_from_host()
			return false
		OS.delay_msec(1)
	if _tcp.get_status() != StreamPeerTCP.STATUS_CONNECTED:
		error = "cannot connect to %s:%d: is the trainer listening?" % [host, port]
		return false
	_tcp.set_no_delay(true)
	_tcp.big_endian = false
	return true


func send(body: PoolByteArray) -> bool:
	var frame := StreamPeerBuffer.new()
	frame.put_u32(body.size())
	frame.put_data(body)
	var err := _tcp.put_data(frame.data_array)
	if err != OK:
		error = "the trainer closed the connection (send error %d)" % err
		return false
	return true


# The next frame's bytes; an empty array with `error` set when the connection failed.
func receive() -> PoolByteArray:
	var header := _read(4)
	if error != "":
		return PoolByteArray()
	var size: int = header[0] | (header[1] << 8) | (header[2] << 16) | (header[3] << 24)
	if size > MAX_FRAME_BYTES:
		error = "frame of %d bytes exceeds the limit of %d" % [size, MAX_FRAME_BYTES]
		return PoolByteArray()
	return _read(size)


func close() -> void:
	_tcp.disconnect_from_host()


func _read(size: int) -> PoolByteArray:
	if size == 0:
		return PoolByteArray()
	var got: Array = _tcp.get_data(size)  # blocks until `size` bytes arrived or the peer closed
	if got[0] != OK or got[1].size() != size:
		error = "the trainer closed the connection (receive error %d)" % got[0]
		return PoolByteArray()
	return got[1]
