"""Files in the containers of a Compose project: read and written as tar archives through the daemon,
listed and deleted by small helper commands; a change that will not survive a recreate is a warning.
"""

from __future__ import annotations

import errno
import io
import os
import posixpath
import tarfile
import time

from runbook.targets.base import FileAccessError, file_error
from runbook.targets.compose.containers import Containers, first_line
from runbook.targets.compose.execs import Execs
from runbook.targets.compose.project import glob_depth, match_glob

# Print the absolute directory, then the files under it as NUL-separated `./relative` paths.
LISTER = 'cd -- "$1" 2>/dev/null || exit 3; pwd; shift; exec find . -mindepth 1 "$@" -type f -print0'
# Print "uid gid mode" of the file, or "uid gid" of its (created) parent directory.
PROBE = (
    'if [ -e "$1" ]; then stat -c "%u %g %a" -- "$1"; '
    'else mkdir -p -- "$2" && stat -c "%u %g" -- "$2"; fi'
)
# How many symbolic links read_file follows, as open() would.
MAX_LINKS = 8


class Files:
    """Read, write, list and delete files in the services, keeping owners and modes."""

    def __init__(self, containers: Containers, execs: Execs):
        self.containers = containers
        self.execs = execs

    def read_file(self, service: str, path: str) -> bytes:
        asked = target = self.containers.absolute(service, path)
        for _ in range(MAX_LINKS):
            with (self.containers.get_archive(service, target) as spool,
                  tarfile.open(fileobj=spool, mode="r") as tar):
                member = tar.next()
                if member is None or member.isdir():
                    raise file_error("read", service, target, IsADirectoryError(errno.EISDIR, "Is a directory"))
                if member.issym():
                    target = posixpath.normpath(posixpath.join(posixpath.dirname(target), member.linkname))
                    continue
                handle = tar.extractfile(member)
                if handle is None:
                    raise FileAccessError(f"cannot read {target} in {service}: not a regular file",
                                          path=target, service=service, hint="name a regular file")
                return handle.read()
        raise file_error("read", service, asked, OSError(errno.ELOOP, os.strerror(errno.ELOOP)))

    def write_file(self, service: str, path: str, data: bytes) -> None:
        target = self.containers.absolute(service, path)
        uid, gid, mode = self._owner_and_mode(service, target)
        member = tarfile.TarInfo(posixpath.basename(target))
        member.size, member.mode, member.uid, member.gid = len(data), mode, uid, gid
        member.mtime = int(time.time())
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            tar.addfile(member, io.BytesIO(data))
        self.containers.put_archive(service, posixpath.dirname(target), buffer.getvalue())
        self._note_persistence(service, target)

    def list_files(self, service: str, directory: str, pattern: str = "*") -> list[str]:
        depth = glob_depth(pattern)
        args = ["-maxdepth", str(depth)] if depth is not None else []
        code, out, err = self.execs.run_helper(
            service, ["sh", "-c", LISTER, "runbook-list", self.containers.absolute(service, directory), *args]
        )
        if code == 3:  # no such directory: nothing matches, as with pathlib
            return []
        if code not in (0, 1) or b"\n" not in out:  # 1: some subdirectory was unreadable
            raise FileAccessError(f"cannot list {directory} in {service}: {first_line(err) or f'exit {code}'}",
                                  path=directory, service=service, hint="check the directory's mode")
        base, _, listing = out.partition(b"\n")
        root = base.decode("utf-8", "surrogateescape")
        found = []
        for raw in listing.split(b"\0"):
            relative = raw.decode("utf-8", "surrogateescape").removeprefix("./")
            if relative and match_glob(relative, pattern):
                found.append(posixpath.join(root, relative))
        return sorted(found)

    def delete_file(self, service: str, path: str) -> None:
        target = self.containers.absolute(service, path)
        code, _, err = self.execs.run_helper(service, ["rm", "-f", "--", target])
        if code != 0:
            raise FileAccessError(f"cannot delete {target} in {service}: {first_line(err) or f'exit {code}'}",
                                  path=target, service=service,
                                  hint="check the owner and mode of the file and its directory")
        self._note_persistence(service, target)

    def is_persistent(self, service: str, path: str) -> bool:
        """Return True when path lies on a bind mount or volume, so a change survives a recreate."""
        target = self.containers.absolute(service, path)
        for mount in self.containers.container(service).attrs.get("Mounts") or []:
            if mount.get("Type", "bind") not in ("bind", "volume"):
                continue  # tmpfs and the like go with the container
            destination = str(mount.get("Destination") or "").rstrip("/")
            if destination and (target == destination or target.startswith(destination + "/")):
                return True
            if mount.get("Destination") == "/":
                return True
        return False

    def _note_persistence(self, service: str, path: str) -> None:
        if not self.is_persistent(service, path):
            self.containers.warnings.add(
                f"{path} in {self.containers.service_name(service)} is not on a bind mount or volume: "
                "the change is lost when the container is recreated"
            )

    def _owner_and_mode(self, service: str, target: str) -> tuple[int, int, int]:
        """Keep an existing file's owner and mode; a new one gets 0644 and its directory's owner."""
        code, out, err = self.execs.run_helper(service, ["sh", "-c", PROBE, "runbook-probe", target,
                                                         posixpath.dirname(target)])
        fields = out.decode(errors="replace").split()
        if code != 0:
            if b"mkdir" in err:
                raise FileAccessError(f"cannot create the directory of {target} in {service}: {first_line(err)}",
                                      path=target, service=service, hint="check the mode of its parent directory")
            return 0, 0, 0o644  # no stat(1) in the image: root-owned, 0644
        uid, gid = int(fields[0]), int(fields[1])
        mode = int(fields[2], 8) & 0o7777 if len(fields) > 2 else 0o644
        return uid, gid, mode
