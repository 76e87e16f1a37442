"""The leave-one-group-out commands: ``cross-collection`` (a collection per fold) and
``cross-site`` (a site per fold, the same recipe flags); each run imports what it calls."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from training.commands_base import CACHE_HELP, DataCommand
from training.config import opt
from training.flags import save_resolved


@dataclass
class CrossCollection(DataCommand):
    """Leave one collection out: train on all but one --data collection, test on the one left
    out (external): per pathology ROC-AUC with patient-bootstrap CIs, one table."""

    NAME: ClassVar[str] = "cross-collection"
    REQUIRED: ClassVar[tuple[str, ...]] = ("data", "out")
    config: str | None = opt(None, "YAML training recipe (TrainConfig keys; flags override it)")
    task: str | None = opt(None, "label set (default multilabel)")
    arch: str | None = opt(None, "backbone (default resnet50)")
    mode: str | None = opt(None, "frozen | finetune | scratch (default frozen)")
    img_size: int | None = opt(None, "input size in px (default: the backbone's own)")
    epochs: int | None = opt(None, "epochs per fold (default 10)")
    batch_size: int | None = opt(None, "batch size (default 32)")
    seed: int | None = opt(None, "seed of each fold's split and training (default 0)")
    max_images: int | None = opt(None, "cap on each fold's training images")
    cache_dir: str | None = opt(None, CACHE_HELP)
    n_boot: int = opt(1000, "bootstrap resamples for the CIs")
    out: str | None = opt(None, "output folder")

    def run(self) -> int:
        from training.evaluation.cross_collection import RECIPE, cross_collection, recipe  # only what this command runs

        cfg = recipe(self.config, self.data_spec, **{k: getattr(self, k) for k in RECIPE})
        result = cross_collection(self.data_spec, cfg, self.out, n_boot=self.n_boot)
        save_resolved(self, self.out, "cross-collection.config.yaml")
        print(f"cross-collection: {Path(self.out) / 'cross_collection.md'} ({len(result['folds'])} folds)")
        return 0



@dataclass
class CrossSite(CrossCollection):
    """Leave one site out (a metadata column; ieee8023 location: its country): train on every
    other site with one recipe, test on the one left out: per output per-site and pooled ROC-AUC."""

    NAME: ClassVar[str] = "cross-site"
    site_column: str = opt("location", "metadata column naming each image's site")
    min_site_patients: int = opt(5, "positive and negative patients (scored output) a site needs to "
                                    "be held out; smaller sites stay in training")
    output: str | None = opt(None, "output whose counts decide the sites (default: COVID-19's)")
    card: list[str] = opt(factory=list, help="model folder whose card gets the pooled estimates as "
                          "site-held-out evidence, if trained with this recipe (repeat)", repeat=True)

    def run(self) -> int:
        from training.evaluation.cross_collection import RECIPE, recipe  # only what this command runs
        from training.evaluation.cross_site import cross_site, record_evidence

        cfg = recipe(self.config, self.data_spec, **{k: getattr(self, k) for k in RECIPE})
        result = cross_site(self.data_spec, cfg, self.out, self.site_column, self.min_site_patients,
                            self.output, n_boot=self.n_boot)
        for folder, status in record_evidence(result, cfg, self.card).items():
            print(f"cross-site: card {Path(folder).name}: {status}")
        save_resolved(self, self.out, "cross-site.config.yaml")
        print(f"cross-site: {Path(self.out) / 'cross_site.md'} ({len(result['folds'])} sites held out)")
        return 0
