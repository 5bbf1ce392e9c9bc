"""Remote engines over TLS: both transports verify the trainer's certificate and keep the token check, and an engine
that speaks plaintext or trusts another CA is turned away with a clear error while the trainer serves on.

Certificates are made at test time (tests/certificates.py); the engines are the Python SDK, in threads of the test
process or launched as processes, against real servers on loopback sockets.
"""

import re
import socket
from pathlib import Path

import pytest
from pydantic import ValidationError

import sparring_engine as se
from certificates import make_certificates
from engine_threads import engine_in_thread, load_engine, play_in_thread, port_of
from sparring.cli import main
from sparring.env_config import BridgeEnvConfig
from sparring.envs.base import check_env
from sparring.envs.bridge.server import BridgeServer
from sparring.envs.factory import make_env

pytestmark = pytest.mark.timeout(60)

TRANSPORTS = ["grpc", "tcp"]
TOKEN = "s3cret"
FAULTY = str(Path(__file__).resolve().parent / "engines" / "faulty_game.py")
Game = load_engine("faulty_game").Faulty  # with fault "none", a well-behaved game: two walkers and a watcher


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return make_certificates(tmp_path_factory.mktemp("certificates"))


@pytest.fixture
def server(certs):
    with BridgeServer(token=TOKEN, tls_cert=certs.cert, tls_key=certs.key, handshake_timeout=2.0) as s:
        yield s


def connect(server: BridgeServer, transport: str, **options) -> se.EngineConnection:
    """An SDK connection with the token, waiting at most a few seconds; ``options`` override (a CA file, a name)."""
    return se.EngineConnection(se.BridgeOptions(port_of(server, transport), transport=transport,
                                                **{"token": TOKEN, "connect_timeout": 5.0, **options}))


def plays(server: BridgeServer, transport: str, certs, **options) -> None:
    """A trusting engine with the token plays a few steps over ``transport``."""
    with engine_in_thread(server, transport, Game("none"), token=TOKEN, ca_file=str(certs.ca), **options) as env:
        check_env(env, steps=5)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_engine_that_trusts_the_ca_and_sends_the_token_plays(server, certs, transport):
    plays(server, transport, certs)
    assert server.stats == {"sessions": 1, "refused": 0}


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_certificate_must_hold_the_name_the_engine_connects_by(server, certs, transport):
    plays(server, transport, certs, host="localhost")  # its DNS name, where 127.0.0.1 was its IP address
    plays(server, transport, certs, server_name="localhost")  # --sparring-tls-name
    with pytest.raises(se.TrainerTlsError, match="as 'trainer.example.com': Hostname mismatch"):
        connect(server, transport, ca_file=str(certs.ca), server_name="trainer.example.com")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_engine_trusting_another_ca_is_refused_naming_its_ca_file(server, certs, transport):
    expected = (rf"certificate that does not verify against --sparring-ca {re.escape(str(certs.other_ca))} as "
                r"'127.0.0.1': unable to get local issuer certificate. Give the CA that signed")
    with pytest.raises(se.TrainerTlsError, match=expected):
        connect(server, transport, ca_file=str(certs.other_ca))
    plays(server, transport, certs)  # the trainer serves on


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_missing_token_is_refused_over_tls_as_in_plaintext(server, certs, transport):
    with connect(server, transport, token="", ca_file=str(certs.ca)) as conn:
        with pytest.raises(se.TrainerRefused, match="missing auth token: this trainer requires one"):
            conn.hello(Game.specs)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_plaintext_engine_is_turned_away_and_the_trainer_serves_on(server, certs, transport, caplog):
    said = {"tcp": "the trainer hung up instead of answering the Hello .*a trainer that uses TLS does that to an "
                   "engine connecting without it \\(--sparring-ca\\)",
            "grpc": "no trainer on .* within 0.5 s \\(a trainer that uses TLS looks the same to an engine without "
                    "--sparring-ca\\)"}[transport]
    with pytest.raises(ConnectionError, match=said):
        with connect(server, transport, connect_timeout=0.5) as conn:
            conn.hello(Game.specs)
    plays(server, transport, certs)
    if transport == "tcp":  # gRPC's handshakes happen inside gRPC, where the server cannot see them
        assert server.stats == {"sessions": 1, "refused": 1}
        assert "TLS handshake failed (WRONG_VERSION_NUMBER): this trainer only speaks TLS" in caplog.text


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_engine_expecting_tls_from_a_plaintext_trainer_is_told_so(certs, transport):
    with BridgeServer(handshake_timeout=0.5) as plaintext:
        with pytest.raises(se.TrainerTlsError, match="the TLS handshake with the trainer at .* failed .*does the "
                                                     "trainer use TLS"):
            connect(plaintext, transport, ca_file=str(certs.ca))


def test_listening_beyond_loopback_needs_a_certificate(certs):
    with pytest.raises(ValueError, match="refusing to listen on 0.0.0.0 in plaintext: .*tls_cert= and tls_key=.*"
                                         "or bind 127.0.0.1"):
        BridgeServer(host="0.0.0.0", token=TOKEN)
    with BridgeServer(host="0.0.0.0", token=TOKEN, tls_cert=certs.cert, tls_key=certs.key) as server:
        assert server.tcp_port and server.grpc_port


def test_the_certificate_is_checked_when_the_trainer_starts(certs, tmp_path):
    with pytest.raises(ValueError, match="tls_cert and tls_key go together"):
        BridgeServer(tls_cert=certs.cert)
    with pytest.raises(ValueError, match=f"cannot use the TLS certificate chain {certs.cert} with the private key "
                                         f"{certs.other_key} .*the one the certificate was made for"):
        BridgeServer(tls_cert=certs.cert, tls_key=certs.other_key)
    with pytest.raises(ValueError, match=f"the TLS certificate chain \\(tls_cert\\) {tmp_path}/none.pem does not exist"):
        BridgeServer(tls_cert=tmp_path / "none.pem", tls_key=certs.key)
    with pytest.raises(ValidationError, match="env.tls_key is set but env.tls_cert is not"):
        BridgeEnvConfig(source="bridge", tls_key=str(certs.key))


def test_launched_copies_are_told_to_trust_the_trainers_certificate(certs, tmp_path):
    config = BridgeEnvConfig(source="bridge", executable=FAULTY, transport="grpc", tls_cert=str(certs.cert),
                             tls_key=str(certs.key))
    with make_env(config, log_dir=tmp_path) as env:
        [process] = env.processes
        assert process.command[-2:] == ["--sparring-ca", str(certs.cert.resolve())]
        check_env(env, steps=5)


def test_check_engine_checks_an_engine_on_another_machine_over_tls(certs, capsys):
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    options = se.BridgeOptions(port, transport="tcp", token=TOKEN, ca_file=str(certs.ca), connect_timeout=30)
    thread, raised = play_in_thread(Game("none"), options, "remote")  # connects once check-engine listens
    args = ["check-engine", "--transport", "tcp", "--host", "0.0.0.0", "--port", str(port), "--token", TOKEN,
            "--tls-cert", str(certs.cert), "--tls-key", str(certs.key), "--steps", "30"]
    assert main(args) == 0, capsys.readouterr()
    thread.join(10)
    assert not thread.is_alive() and not raised
    out = capsys.readouterr().out
    assert f"waiting for an engine on tcp over TLS at 0.0.0.0:{port}" in out and "FAIL" not in out
