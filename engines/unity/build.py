"""Build the Unity stand-in "player": an executable file, as a Unity Linux build is.

Why: ``UnityEnvironment(file_name=...)`` launches a build by file name (``NAME`` finds
``NAME.x86_64``) and passes Unity's command line to it. The launcher written here
``exec``s this interpreter on ``standin_player.py`` with those arguments, so the
stand-in is launched, signalled and reaped exactly like a real build.

    python engines/unity/build.py OUT_DIR    # writes OUT_DIR/StandIn.x86_64
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

PLAYER = Path(__file__).resolve().with_name("standin_player.py")
EXECUTABLE = "StandIn.x86_64"


def build_standin(out_dir: str | os.PathLike[str]) -> Path:
    """Write ``OUT_DIR/StandIn.x86_64`` and return its path.

    The interpreter's path is kept as is (not resolved): a virtual environment is
    found through the path of its ``python``, not through the file it links to.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    launcher = out / EXECUTABLE
    interpreter = os.path.abspath(sys.executable)
    launcher.write_text(f'#!/bin/sh\nexec {shlex.quote(interpreter)} {shlex.quote(str(PLAYER))} "$@"\n')
    launcher.chmod(0o755)
    return launcher


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUT_DIR")
    print(build_standin(sys.argv[1]))
