"""hangwatch: a process supervisor for programs that must not hang.

The package carries the ``hangwatch`` binary (installed beside the interpreter's scripts),
``python -m hangwatch`` to run it, and a pytest plugin that names the test a hung suite was in
when the suite runs under ``hangwatch run`` (see :mod:`hangwatch.pytest_plugin`).
"""

import os
import sys
import sysconfig

__all__ = ["find_hangwatch_bin"]


def find_hangwatch_bin():
    """Return the path of the installed ``hangwatch`` binary.

    The wheel puts it in the scripts directory of the scheme it was installed with: the
    environment's (a virtualenv, the system), the user's (``pip install --user``), or a
    ``bin/`` beside the package (``pip install --target``).
    """
    name = "hangwatch"
    candidates = [sysconfig.get_path("scripts")]
    user_scheme = {"posix": "posix_user", "nt": "nt_user"}.get(os.name)
    if user_scheme and user_scheme in sysconfig.get_scheme_names():
        candidates.append(sysconfig.get_path("scripts", scheme=user_scheme))
    # pip install --target DIR: the package is DIR/hangwatch, the binary DIR/bin/hangwatch.
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidates.append(os.path.join(package_parent, "bin"))
    for directory in candidates:
        path = os.path.join(directory, name)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    raise FileNotFoundError(
        "the hangwatch binary was not found in {} (is the hangwatch wheel installed for {}?)".format(
            ", ".join(candidates), sys.executable
        )
    )
