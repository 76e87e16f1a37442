"""What every command that loads data shares: the data flags, the load step, the skipped-row warning."""
from __future__ import annotations

import sys
from dataclasses import dataclass

from training.config import DataOptions
from training.flags import Command


def report_skipped(skipped: list[dict]) -> None:
    """Say loudly which rows were left out and why (they are also in every report)."""
    if not skipped:
        return
    reasons: dict[str, int] = {}
    for row in skipped:
        key = str(row.get("reason", "?")).split(":")[0][:80]
        reasons[key] = reasons.get(key, 0) + 1
    lines = "; ".join(f"{n} x {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    print(f"WARNING: {len(skipped)} row(s) skipped ({lines}). They are listed in the dataset "
          "report; pass --on-error raise to stop on them instead.", file=sys.stderr)


@dataclass
class DataCommand(DataOptions, Command):
    """A command that loads datasets: the data flags of :class:`~training.config.DataOptions`."""

    def __post_init__(self) -> None:
        DataOptions.__post_init__(self)
        Command.__post_init__(self)

    def load(self):
        from training.data.formats import load_datasets  # only what this command runs

        ds = load_datasets(self.data_spec)
        report_skipped(ds.skipped)
        return ds


CACHE_HELP = "preprocessed-image cache (default $CXRLAB_CACHE or ~/.cache/cxrlab)"
