"""Start a run from another Python service with rgrid.api, follow it, fetch its outputs.

    python examples/api_run.py examples/wordcount.py examples/data/doc.txt

It uses the same settings as the CLI (RGRID_* variables, the config profile, or the
embedded default) and prints one JSON line: the id, the phase and the outputs.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from rgrid.api import RgridClient


async def main(script: str, args: list[str]) -> int:
    async with await RgridClient.connect() as rgrid:
        run = await rgrid.run(Path(script), args, tags={"via": "api"})
        status = run.cached or await rgrid.follow(run.execution_id)
        paths = await rgrid.fetch_outputs(status, Path("outputs"))
    print(
        json.dumps(
            {
                "id": status.execution_id,
                "phase": status.phase.value,
                "exit_code": status.exit_code,
                "outputs": [str(path) for path in paths],
            }
        )
    )
    return 0 if status.phase.value == "succeeded" else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1], sys.argv[2:])))
