"""One process of ``torchrun --nproc_per_node N accelerate_child.py RECORD_DIR align ...`` (tests/test_accelerate.py).

Runs ``safetext align`` exactly as ``python -m safetext_core align`` does, and records for the test what the
process did: its rank and world size, the share of each step's batch it encoded (the index lists the loop hands
to its length grouping, safe half then unsafe half) and every file it wrote through ``atomic_write``. The record
goes to ``RECORD_DIR/rank<N>.json``, a folder apart from the run's outputs.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    record_dir, argv = Path(sys.argv[1]), sys.argv[2:]
    from safetext_core import cli, loop, outputs

    shares: list[list[int]] = []
    written: list[str] = []
    grouping, writing = loop._length_groups, outputs.atomic_write

    def recorded_groups(batch, lengths, *args, **kwargs):
        shares.append(list(batch))
        return grouping(batch, lengths, *args, **kwargs)

    def recorded_write(path, *args, **kwargs):
        written.append(str(path))
        return writing(path, *args, **kwargs)

    loop._length_groups = recorded_groups
    outputs.atomic_write = recorded_write  # every writer imports it from outputs when it writes
    code = cli.main(argv)
    rank = int(os.environ.get("RANK", "0"))
    (record_dir / f"rank{rank}.json").write_text(json.dumps(
        {"rank": rank, "world": int(os.environ.get("WORLD_SIZE", "1")), "code": code, "shares": shares,
         "written": written}))
    return code


if __name__ == "__main__":
    sys.exit(main())
