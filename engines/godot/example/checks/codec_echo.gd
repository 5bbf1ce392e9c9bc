# Decodes and re-encodes bridge messages with the addon's codec, for the codec tests.
#   godot3-server --path engines/godot/example -s res://checks/codec_echo.gd --dir D
# For every D/N.<MessageType>.bin it writes D/N.<MessageType>.out (the message
# re-encoded) or D/N.<MessageType>.err (why decoding failed).
extends SceneTree

const Proto = preload("res://addons/sparring/proto.gd")
const Sync = preload("res://addons/sparring/sync.gd")


func _init() -> void:
	var proto := Proto.new()
	var folder := Sync.command_line_value("--dir")
	var dir := Directory.new()
	if folder == "" or dir.open(folder) != OK:
		printerr("codec_echo: no readable --dir")
		quit(1)
		return
	dir.list_dir_begin(true, true)
	var name := dir.get_next()
	while name != "":
		if name.ends_with(".bin"):
			var type: String = name.split(".")[1]
			var file := File.new()
			file.open(folder.plus_file(name), File.READ)
			var bytes := file.get_buffer(file.get_len())
			file.close()
			var msg := proto.decode(bytes, type)
			var stem := folder.plus_file(name.get_basename())
			if proto.error != "":
				file.open(stem + ".err", File.WRITE)
				file.store_string(proto.error)
			else:
				file.open(stem + ".out", File.WRITE)
				file.store_buffer(proto.encode(msg, type))
			file.close()
		name = dir.get_next()
	quit(0)
