"""The far end of benchmarks/bridge.py's floor: the bridge's process layout with no protocol at all.

It connects to the benchmark's echo server as an engine connects to the trainer, and
answers every message with the same prebuilt bytes (the size of a serialized
Observations message), over framed TCP or a gRPC stream of raw bytes. What a round
trip costs here is what the machine's loopback and the transport's Python stack
cost: the floor under the bridge's own round trip.

    python benchmarks/bridge_floor.py --transport tcp|grpc --port P --reply-bytes R
"""

from __future__ import annotations

import argparse
import queue
import socket

import grpc

from sparring.protos.wire import FRAME_HEADER, read_exactly, read_frame_size

METHOD = "/floor.Echo/Session"


def tcp(port: int, reply: bytes) -> None:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    framed = FRAME_HEADER.pack(len(reply)) + reply
    try:
        while True:
            read_exactly(sock, read_frame_size(sock, 1 << 30, None), None)
            sock.sendall(framed)
    except ConnectionError:
        pass


def grpc_stream(port: int, reply: bytes) -> None:
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_receive_message_length", 1 << 30),
                                                                   ("grpc.max_send_message_length", 1 << 30)])
    outbox: queue.SimpleQueue = queue.SimpleQueue()
    outbox.put(b"")  # the first message opens the stream, as a Hello would
    session = channel.stream_stream(METHOD, request_serializer=None, response_deserializer=None)
    try:
        for _ in session(iter(outbox.get, None)):
            outbox.put(reply)
    except grpc.RpcError:
        pass


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--transport", choices=("tcp", "grpc"), required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reply-bytes", type=int, required=True)
    options = parser.parse_args()
    (tcp if options.transport == "tcp" else grpc_stream)(options.port, b"\x01" * options.reply_bytes)
