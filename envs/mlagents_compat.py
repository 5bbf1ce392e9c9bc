"""Lets ``mlagents_envs`` 0.28 run unchanged on modern protobuf and Python.

Why this exists (DESIGN section 5): the newest ``mlagents-envs`` that installs on
Python 3.11+ ships protoc-3 generated ``*_pb2.py`` modules, which build their
descriptors by hand and are refused by protobuf >= 4; ``onnx`` and ``tensorboard``
need protobuf >= 6, so downgrading is no option, and the pure-Python protobuf
fallback would make every message an order of magnitude slower to parse.

Each of those modules embeds its ``.proto`` file, serialized (``serialized_pb=``).
:func:`install` puts an import hook in front of them: instead of executing the old
module, it reads that embedded file out of its source (without running it), adds
it to the default descriptor pool, and lets ``google.protobuf.internal.builder``
make the message classes, enum wrappers and constants, exactly as a modern
``protoc`` output would. The classes are then native (upb) protobuf messages, and
``UnityEnvironment``, ``rpc_utils`` and the side channels run as shipped.

Python 3.12 removed ``distutils``, whose ``StrictVersion`` ``mlagents_envs``
uses to compare communication versions; setuptools provides ``distutils`` again
there (a dependency of sparring on 3.12+), and this module checks it is present.

Importing :mod:`sparring.envs.unity` installs the hook; call :func:`install`
yourself before importing ``mlagents_envs`` anywhere else.
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

from google.protobuf import descriptor_pool
from google.protobuf.internal import builder

PACKAGE = "mlagents_envs.communicator_objects"


class LegacyProtoError(ImportError):
    """An ``mlagents_envs`` message module does not have the shape this layer knows how to read."""


def embedded_file_descriptor(source: str, origin: str) -> tuple[bytes, list[str]]:
    """The serialized ``.proto`` file a protoc-3 module embeds, and the modules it imports first.

    Read from the module's syntax tree, never by executing it: the module's own
    code is exactly what modern protobuf refuses.
    """
    tree = ast.parse(source, origin)
    dependencies = [
        f"{node.module}.{alias.name}"
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and node.module == PACKAGE
        for alias in node.names
    ]
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "FileDescriptor":
            for keyword in node.keywords:
                if keyword.arg == "serialized_pb":
                    literal = keyword.value
                    # protoc 3 wraps the bytes as _b('...') (a latin-1 str) or writes b'...'
                    if isinstance(literal, ast.Call) and len(literal.args) == 1:
                        literal = literal.args[0]
                    if isinstance(literal, ast.Constant) and isinstance(literal.value, (str, bytes)):
                        value = literal.value
                        return (value.encode("latin1") if isinstance(value, str) else value), dependencies
    raise LegacyProtoError(f"{origin}: no FileDescriptor(serialized_pb=...) literal found")


class _EmbeddedDescriptorLoader(importlib.abc.Loader):
    """Builds a ``*_pb2`` module from its embedded file descriptor (see the module docstring)."""

    def __init__(self, origin: str) -> None:
        self.origin = origin

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        with open(self.origin, encoding="utf-8") as file:
            serialized, dependencies = embedded_file_descriptor(file.read(), self.origin)
        for dependency in dependencies:
            importlib.import_module(dependency)
        namespace = module.__dict__
        namespace["DESCRIPTOR"] = file_descriptor = descriptor_pool.Default().AddSerializedFile(serialized)
        builder.BuildMessageAndEnumDescriptors(file_descriptor, namespace)
        builder.BuildTopDescriptorsAndMessages(file_descriptor, module.__name__, namespace)


class _LegacyProtoFinder(importlib.abc.MetaPathFinder):
    """Routes ``mlagents_envs.communicator_objects.*_pb2`` imports to :class:`_EmbeddedDescriptorLoader`."""

    def find_spec(self, fullname: str, path=None, target=None) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != PACKAGE or not name.endswith("_pb2"):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None:
            return None
        spec.loader = _EmbeddedDescriptorLoader(spec.origin)
        return spec


_FINDER = _LegacyProtoFinder()


def install() -> None:
    """Install the import hook (idempotent). Must run before ``mlagents_envs`` messages are imported."""
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    stale = [name for name, module in sys.modules.items()
             if name.startswith(PACKAGE + ".") and name.endswith("_pb2")
             and not isinstance(getattr(module, "__loader__", None), _EmbeddedDescriptorLoader)]
    if stale:
        raise ImportError(f"mlagents_envs message modules were imported before sparring's protobuf compatibility "
                          f"layer ({stale[0]}); import sparring.envs.unity (or call "
                          f"sparring.envs.mlagents_compat.install()) first")
    try:
        with warnings.catch_warnings():  # Python 3.10-3.11's own distutils warns that it is deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            from distutils.version import StrictVersion  # noqa: F401  (what mlagents_envs.environment imports)
    except ImportError as exc:
        raise ImportError("mlagents_envs needs distutils, which Python 3.12 removed; install setuptools, "
                          "which provides it again") from exc
    # mlagents_envs compares communication versions with StrictVersion, which warns on every handshake:
    # noise to a user, and under -W error it would abort UnityEnvironment half-way and leave it hanging.
    warnings.filterwarnings("ignore", "distutils Version classes are deprecated", DeprecationWarning)
    _decode_channels_first_images()


def _decode_channels_first_images() -> None:
    """Teach ``rpc_utils`` 0.28 the compressed images of ML-Agents 3.x+ (idempotent).

    Unity 3.x+ sends cameras channels first, shape (C, H, W) with dimension properties (none,
    translational, translational); ``mlagents_envs`` 0.28 (the newest for Python 3.11+) was written
    for 2.x's (H, W, C): it reads the channel count from ``shape[2]`` and refuses its own decoded PNG
    for not having the declared shape. Such an observation is decoded here as the (H, W, C) image it
    is, then laid out channels first, which is what the newer ``mlagents_envs`` returns; uncompressed
    and channels-last observations go through unchanged.
    """
    from mlagents_envs import rpc_utils
    from mlagents_envs.communicator_objects.observation_pb2 import NONE, ObservationProto

    original = rpc_utils._observation_to_np_array
    if getattr(original, "decodes_channels_first", False):
        return
    translational = 2  # DimensionProperty.TRANSLATIONAL_EQUIVARIANCE

    def observation_to_np_array(obs: ObservationProto, expected_shape=None):
        if (obs.compression_type == NONE or len(obs.shape) != 3
                or list(obs.dimension_properties)[1:] != [translational, translational]):
            return original(obs, expected_shape)
        if expected_shape is not None and list(obs.shape) != list(expected_shape):
            return original(obs, expected_shape)  # its own error message
        channels, height, width = obs.shape
        channels_last = ObservationProto()
        channels_last.CopyFrom(obs)
        channels_last.shape[:] = [height, width, channels]
        return original(channels_last).transpose(2, 0, 1)

    observation_to_np_array.decodes_channels_first = True
    rpc_utils._observation_to_np_array = observation_to_np_array
