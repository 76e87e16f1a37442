"""What data a command loads and how: one typed record for every loader call.

A :class:`DataSpec` is built from a command's flags (``training.config.DataOptions``), from a
saved config or a card's ``training`` mapping (:meth:`DataSpec.from_dict`, the one reader of
those keys), and passed whole to :func:`training.data.formats.load_datasets`. This module
imports nothing heavy: the command line builds specs before any loader is imported.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from training.errors import CXRError

#: Names of the formats in ``training.data.formats.FORMATS`` (a test keeps the two equal; a new
#: loader adds its name here too: this module cannot import the loaders)
FORMAT_NAMES = ("ieee8023", "csv", "nih", "chexpert", "rsna", "covidx", "mimic", "padchest",
                "folder")
FORMAT_CHOICES = ("auto", *FORMAT_NAMES)
ON_ERROR_CHOICES = ("raise", "skip")
#: What an uncertain label (CheXpert/MIMIC ``-1``) becomes: NaN (unknown), 1 or 0
UNCERTAIN_CHOICES = ("ignore", "ones", "zeros")
#: Which MIMIC-CXR label file: the CheXpert labeller's (default) or NegBio's
LABELER_CHOICES = ("chexpert", "negbio")
#: ``views``/``modalities`` value that keeps every row (None means the format's default)
ALL = "all"
#: The keys a spec is saved under (config.yaml, card.training): the field names
KEYS = ("data", "fmt", "views", "modalities", "on_error", "pathologies", "uncertain",
        "labeler")


def split_commas(value: Any) -> Any:
    """``"PA, AP"`` → ``["PA", "AP"]`` (blanks dropped); anything but a string unchanged."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return value


def _names(value: Any, key: str) -> tuple[str, ...] | None:
    """A views/modalities value as a tuple of names (None: the format's default)."""
    value = split_commas(value)
    if value is None:
        return None
    names = tuple(str(v).strip() for v in value if str(v).strip())
    if not names:
        raise CXRError(f"data: {key} is empty. What to do: name at least one, or '{ALL}' to keep "
                       "every one, or leave it out for the format's default")
    return names


def _canonical(value: Any) -> tuple[str, ...] | None:
    """``--pathologies`` as canonical vocabulary names, in the order given (None: all)."""
    names = _names(value, "pathologies")
    if names is None or ALL in (n.lower() for n in names):
        return None
    # imported here: the vocabulary loads numpy/pandas, which a spec without it never needs
    from training.data.pathologies import select

    return tuple(select(names))


@dataclass(frozen=True)
class DataSpec:
    """Datasets to load (folders or CSVs, combined) and the loader options they share."""

    data: tuple[str, ...] = ()
    fmt: str = "auto"
    views: tuple[str, ...] | None = None  # None: the format's default (ieee8023: PA, AP, AP Supine)
    modalities: tuple[str, ...] | None = None  # None: the format's default (ieee8023: X-ray)
    on_error: str = "raise"
    #: outputs to keep (canonical names, in this order); None: every pathology loaded
    pathologies: tuple[str, ...] | None = None
    uncertain: str = "ignore"  # the loaders that read uncertain labels: UNCERTAIN_CHOICES
    labeler: str = "chexpert"  # MIMIC-CXR's label file: LABELER_CHOICES

    def __post_init__(self) -> None:
        data = [self.data] if isinstance(self.data, (str, Path)) else list(self.data or ())
        object.__setattr__(self, "data", tuple(str(d) for d in data))
        object.__setattr__(self, "views", _names(self.views, "views"))
        object.__setattr__(self, "modalities", _names(self.modalities, "modalities"))
        object.__setattr__(self, "pathologies", _canonical(self.pathologies))
        for key, allowed in (("fmt", FORMAT_CHOICES), ("on_error", ON_ERROR_CHOICES),
                             ("uncertain", UNCERTAIN_CHOICES), ("labeler", LABELER_CHOICES)):
            if getattr(self, key) not in allowed:
                raise CXRError(f"data: {key}={getattr(self, key)!r} is not one of {list(allowed)}. "
                               f"What to do: use one of {', '.join(allowed)}")

    @classmethod
    def of(cls, data: DataSpec | Sequence[str | Path] | str | Path) -> DataSpec:
        """``data`` itself when a spec, else a spec of those paths with default options."""
        return data if isinstance(data, DataSpec) else cls(data)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> DataSpec:
        """The spec saved in a config or a card's ``training`` mapping (other keys ignored;
        a missing or null key takes the default, as older cards wrote them)."""
        given = {k: v for k, v in (values or {}).items() if k in KEYS and v is not None}
        return cls(**given)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON values under the saved keys (``data``, ``fmt``, ...)."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    def replace(self, **changes: Any) -> DataSpec:
        return dataclasses.replace(self, **changes)

    def for_model(self, trained: DataSpec) -> DataSpec:
        """The spec to read a saved model's data with: what this spec gives, the rest as the
        model was ``trained`` (its data and format when no data is given; its views and
        modalities when left to default: the rows it was trained to read); this on_error,
        uncertain policy and pathologies: the model's outputs are matched to the data's columns
        by name (NaN where the data lack one), so an external collection that annotates fewer
        findings still reads."""
        own = bool(self.data)
        return self.replace(
            data=self.data if own else trained.data,
            fmt=self.fmt if own or self.fmt != "auto" else trained.fmt,
            views=self.views if self.views is not None else trained.views,
            modalities=self.modalities if self.modalities is not None else trained.modalities)

    def loader_options(self) -> dict[str, Any]:
        """The options the format loaders take: views/modalities only when not the default;
        ``uncertain`` only when not "ignore" (then only the loaders with that keyword get it)."""
        out: dict[str, Any] = {} if self.uncertain == "ignore" else {"uncertain": self.uncertain}
        if self.labeler != "chexpert":  # MIMIC only: the other loaders never see it
            out["labeler"] = self.labeler
        for key in ("views", "modalities"):
            value = getattr(self, key)
            if value is not None:
                out[key] = None if ALL in (v.lower() for v in value) else value
        return out
