"""How every script in inside/ answers runbook: one marked line on stdout, or one line on stderr and an exit code.

The first part of every script runbook ships (runbook/frameworks/backend.py concatenates the parts and runs
them with the BACKEND's python, never imports them). The marker and the exit codes are those backend.py reads.
"""

import base64
import sys
import zlib

MARKER = "RUNBOOK-ANSWER:"
# 2 cannot start (Django, or alembic's scripts); 3 database unreachable; 5 framework not importable;
# 6 the migration graph cannot be loaded; 7 no manage.py / alembic.ini.
EXIT_CANNOT_START, EXIT_DATABASE, EXIT_NOT_IMPORTABLE, EXIT_GRAPH, EXIT_NO_PROJECT = 2, 3, 5, 6, 7


def fail(code, message):
    """Say why on the last line of stderr, which runbook shows, and exit."""
    sys.stderr.write(f"runbook-inspect: {message}\n")
    sys.exit(code)


def answer_line(text):
    """Return the answer as one marked line of base64 zlib: noise the app prints cannot corrupt it."""
    return "\n" + MARKER + base64.b64encode(zlib.compress(text.encode(), 6)).decode() + "\n"
