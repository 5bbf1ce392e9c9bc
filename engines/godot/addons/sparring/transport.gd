# The bridge's TCP transport: each message is a 4-byte little-endian length, then that many bytes.
#
# Reads block (the game is in lock-step with the trainer); a closed connection
# ends a read with an error instead of hanging. Given a CA file, the frames travel
# over TLS (StreamPeerSSL over the StreamPeerTCP), for a trainer on another machine.
extends Reference

const MAX_FRAME_BYTES := 1 << 30

# Why the last call failed ("" when it did not).
var error := ""

var _tcp := StreamPeerTCP.new()
var _ssl: StreamPeerSSL = null
var _stream: StreamPeer = _tcp  # what frames go through: the TCP stream, or TLS over it


# Connect to the trainer; with `ca_file` (a PEM certificate), over TLS, verifying that the
# trainer's certificate was signed by it and holds `tls_name` (default: `host`).
func open(host: String, port: int, timeout_s: float, ca_file: String = "", tls_name: String = "") -> bool:
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
	if ca_file != "":
		return _secure(ca_file, host if tls_name == "" else tls_name, deadline)
	return true


# The TLS handshake over the connected TCP stream.
func _secure(ca_file: String, name: String, deadline: int) -> bool:
	var ca := X509Certificate.new()
	if ca.load(ca_file) != OK:
		error = "cannot load --sparring-ca %s: it must be a PEM certificate file" % ca_file
		_tcp.disconnect_from_host()
		return false
	_ssl = StreamPeerSSL.new()
	var err := _ssl.connect_to_stream(_tcp, true, name, ca)
	while err == OK and _ssl.get_status() == StreamPeerSSL.STATUS_HANDSHAKING and OS.get_ticks_msec() <= deadline:
		_ssl.poll()
		OS.delay_msec(1)
	if err != OK or _ssl.get_status() != StreamPeerSSL.STATUS_CONNECTED:
		error = ("the TLS handshake with the trainer failed (error %d, status %d): its certificate must be signed by " +
				"the CA in --sparring-ca %s and hold the name %s (Godot 3.2 matches DNS names only, not IP " +
				"addresses: pass --sparring-tls-name), and the trainer must use TLS") % [
				err, _ssl.get_status(), ca_file, name]
		_tcp.disconnect_from_host()
		return false
	_stream = _ssl
	return true


func send(body: PoolByteArray) -> bool:
	var frame := StreamPeerBuffer.new()
	frame.put_u32(body.size())
	frame.put_data(body)
	var err := _stream.put_data(frame.data_array)
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
	if _ssl != null:
		_ssl.disconnect_from_stream()
	_tcp.disconnect_from_host()


func _read(size: int) -> PoolByteArray:
	if size == 0:
		return PoolByteArray()
	if _ssl != null:
		_await_tls()
	var got: Array = _stream.get_data(size)  # blocks until `size` bytes arrived or the peer closed
	if got[0] != OK or got[1].size() != size:
		error = "the trainer closed the connection (receive error %d)" % got[0]
		return PoolByteArray()
	return got[1]


# Godot 3.2's TLS reads keep a CPU busy while they wait: wait here instead, 0.1 ms at a
# time, until a record has arrived or the trainer hung up (poll() reads it, or sees the end).
func _await_tls() -> void:
	while _ssl.get_available_bytes() == 0:
		_ssl.poll()
		if _ssl.get_status() != StreamPeerSSL.STATUS_CONNECTED or _ssl.get_available_bytes() > 0:
			return
		OS.delay_usec(100)
