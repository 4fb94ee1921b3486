"""The `rgrid` command's first module: `rgrid version` is answered here, with nothing but
sys imported (a script asking for the version pays Python's own start-up and no more);
every other command goes on to rgrid.cli.thin."""

import sys

from rgrid import __version__


def main() -> None:
    if sys.argv[1:] in (["version"], ["--version"], ["-V"]):
        sys.stdout.write(f"rgrid {__version__}\n")
        return
    from rgrid.cli.thin import main as thin_main

    thin_main()
