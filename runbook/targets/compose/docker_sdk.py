"""The docker SDK, imported without paramiko unless DOCKER_HOST is an ssh:// URL.

`docker[ssh]` makes `import docker` import paramiko (and cryptography) for an adapter that only ssh://
hosts use: about 0.1 s of every Compose command's start-up. docker.transport imports that adapter inside
`try: ... except ImportError`, so hiding paramiko during the import leaves the SDK whole for unix:// and
tcp:// hosts; with an ssh:// DOCKER_HOST nothing is hidden.
"""

from __future__ import annotations

import os
import sys


def _import_docker():
    wants_ssh = os.environ.get("DOCKER_HOST", "").startswith("ssh://")
    if wants_ssh or "docker" in sys.modules or "paramiko" in sys.modules:
        import docker

        return docker
    sys.modules["paramiko"] = None  # type: ignore[assignment]  # makes `import paramiko` raise ImportError
    try:
        import docker
    finally:
        del sys.modules["paramiko"]
    return docker


docker = _import_docker()
