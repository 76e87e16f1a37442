"""Markdown table of each model's internal test ROC-AUC beside its site-held-out one, read from
the model cards (the numbers `evaluate` recorded; nothing is recomputed here).

    python docs/experiments/transfer_table.py demo-output/models/* [--output COVID-19]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from training.evaluation.evidence import EvidenceKind  # noqa: E402
from training.models.card import read_card  # noqa: E402


def cell(card, output: str, kind: EvidenceKind) -> str:
    items = card.evidence.items(output, kind)
    if not items:
        return "not measured"
    e = items[-1]
    # the part's size: an output kept within its source is scored on that source's rows only
    return f"{e.auc} (part: {e.n_images} img, {e.n_patients} pat)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", type=Path)
    ap.add_argument("--output", action="append", help="only these outputs (repeat)")
    args = ap.parse_args()
    print("| model | output | internal test (patient-disjoint) | held-out sites | transfer status |")
    print("|---|---|---|---|---|")
    for folder in args.models:
        card = read_card(folder)
        for output in card.outputs:
            if args.output and output not in args.output:
                continue
            print(f"| {card.architecture} | {output} | {cell(card, output, EvidenceKind.INTERNAL)} | "
                  f"{cell(card, output, EvidenceKind.SITE_HELD_OUT)} | {card.evidence.status(output)} |")


if __name__ == "__main__":
    main()
