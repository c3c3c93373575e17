"""The README's commands, read from its code blocks, so that tests and ``make compat`` run what it says.

A block is marked by an HTML comment on the line before it: ``<!-- run: NAME -->`` then a fenced ``sh``
block (both may be indented, inside a list item). Each command is one line (``\\`` continues it);
lines that start with ``#`` are comments.

    python devkit/readme.py run NAME [--venv DIR]   # run a block's commands in the repository, in order

``--venv``: that virtualenv's ``bin`` first on ``PATH``, as if it were activated (``pip`` is its pip).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_BLOCK = re.compile(
    r"^[ \t]*<!-- run: (?P<name>[\w-]+) -->\n[ \t]*```sh\n(?P<body>.*?)^[ \t]*```", re.MULTILINE | re.DOTALL
)


def blocks(readme: Path = REPO / "README.md") -> dict[str, list[str]]:
    """Every marked block of the README: name -> its commands."""
    found: dict[str, list[str]] = {}
    for match in _BLOCK.finditer(readme.read_text(encoding="utf-8")):
        text = match["body"].replace("\\\n", " ")
        found[match["name"]] = [
            line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")
        ]
    return found


def commands(name: str) -> list[str]:
    found = blocks()
    if name not in found:
        raise KeyError(f"README.md has no block marked <!-- run: {name} -->; it has {', '.join(found) or 'none'}")
    return found[name]


def user_env() -> dict[str, str]:
    """A user's shell: this process's environment without the Airflow settings and PYTHONPATH a test
    session sets (they would point a README command at the test's Airflow or the checkout's sources)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW") and k != "PYTHONPATH"}


def activated(venv: Path | None, env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment with ``venv`` activated (its bin first on PATH, VIRTUAL_ENV set)."""
    env = dict(os.environ if env is None else env)
    if venv is not None:
        venv = venv.absolute()
        env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        env["VIRTUAL_ENV"] = str(venv)
    return env


def run(
    command: str,
    *,
    cwd: Path = REPO,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    capture: bool = True,
) -> subprocess.CompletedProcess[str]:
    """One README command through bash, as a user types it; output captured unless ``capture`` is false."""
    return subprocess.run(
        ["bash", "-c", command], cwd=cwd, env=env, capture_output=capture, text=True, timeout=timeout, check=False
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python devkit/readme.py", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    run_block = sub.add_parser("run", help="run a marked block's commands in order; stop at the first failure")
    run_block.add_argument("name")
    run_block.add_argument("--venv", type=Path)
    args = parser.parse_args(argv)
    env = activated(args.venv)
    try:
        block = commands(args.name)
    except KeyError as exc:
        print(exc.args[0], file=sys.stderr)
        return 2
    for command in block:
        print(f"README [{args.name}] $ {command}", flush=True)
        result = run(command, env=env, capture=False)
        if result.returncode != 0:
            print(f"README [{args.name}]: {command!r} exited {result.returncode}", file=sys.stderr)
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
