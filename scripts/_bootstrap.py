"""Run a repository script inside the project's environment.

The scripts are run with a plain `python3`, as the recipe shows. If `behavioral_analytics`
cannot be imported, re-run the same script with the same arguments under the virtual
environment `./dev` creates (`.venv` at the repository root, or the one named by `BA_VENV`);
if there is none, say what to run first and exit 2. Keep this file importable by old Pythons.
"""

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_GUARD = "BA_BOOTSTRAPPED"


def ensure_environment() -> None:
    try:
        import behavioral_analytics  # noqa: F401
    except ImportError:
        pass
    else:
        return
    venv = Path(os.environ.get("BA_VENV") or REPO / ".venv")
    python = venv / "bin" / "python"
    script = os.path.abspath(sys.argv[0])
    if python.exists() and os.environ.get(_GUARD) != str(python):
        os.environ[_GUARD] = str(python)
        os.execv(str(python), [str(python), script, *sys.argv[1:]])
    if python.exists():
        problem = f"{venv} exists but behavioral-analytics is not installed in it"
    else:
        problem = f"no project environment at {venv}"
    sys.stderr.write(
        f"{Path(script).name}: {problem}.\n"
        "Run ./dev test (or: python3 -m venv .venv && .venv/bin/pip install -e .) "
        "at the repository root first, then run this script again.\n"
    )
    sys.exit(2)
