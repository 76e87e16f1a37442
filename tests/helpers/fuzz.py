"""The upload fuzz campaign: mutated seed files through a target, each outcome classified.

``run_campaign(seeds, target, n)`` runs the seeds as they are, then ``n`` mutants (case ``i``
mutates seed ``i % len(seeds)`` with ``random.Random(f"{seed}:{i}")``, so any case can be
rebuilt with :func:`make_case`). A target takes ``(bytes, filename)`` and returns
``(outcome, detail)``; anything it raises is a crash. Each case is timed and its peak memory
measured, then classified (worst first): crash > memory > slow > refused / accepted.
"""
from __future__ import annotations

import io
import random
import resource
import time
import traceback
import tracemalloc
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

from tests.helpers.fuzz_seeds import FORMATS, Seed
from tests.helpers.mutate import Mutant, mutate
from tests.helpers.proc_memory import reset_peak, status_kb


class Outcome(str, Enum):
    ACCEPTED = "accepted"   # decoded (API: 200, or a gate verdict with 422)
    REFUSED = "refused"     # a clear error: ImageDecodeError / DataError, an API 4xx with a JSON body
    CRASH = "crash"         # any other exception, an API 5xx, a body that is not the JSON contract
    SLOW = "slow"           # over the time limit
    MEMORY = "memory"       # added more than the memory bound


#: The pixel budget the campaign runs under: small, so the memory check is sharp and cases fast.
FUZZ_MAX_PIXELS = 1 << 20
#: Memory one case may add, per pixel of the budget. An upload at the budget holds a few full-size
#: copies at once: the decoder's buffer (up to 4 B/px RGBA), float32 grey (4), normalised copy (4),
#: a float64 modality/VOI LUT result for DICOM (8). Measured at exactly the budget (1024 x 1024,
#: test_fuzz_decode.py::test_images_at_the_budget_stay_under_the_bound): RGBA PNG, CMYK JPEG and
#: signed 16-bit DICOM with rescale + window add 16-26 MiB (the most when first in a process),
#: so 32 B/px + slack (48 MiB) leaves room; anything allocated from declared sizes before the
#: budget is checked exceeds it many times over.
BYTES_PER_BUDGET_PIXEL = 32
#: Allocator and interpreter noise that does not scale with the image (the seeds, <= 512 px, add < 3 MiB).
MEMORY_SLACK = 16 << 20
#: Allocations over this (per case) fail at once: far above the bound, far below the machine.
GUARD = 1 << 30

Target = Callable[[bytes, str], tuple[Outcome, str]]
#: Upload names a case may be given instead of its seed's.
OTHER_NAMES = ("x.dcm", "x.dicom", "x.png", "x.jpg", "X.PNG", "x.dcm.png", "\u00e4\u20ac\U0001f600.jpg",
               "a" * 200 + ".dcm", "../../x.png")


def memory_bound(max_pixels: int = FUZZ_MAX_PIXELS) -> int:
    """The most memory (bytes) one case may add under a ``max_pixels`` budget."""
    return BYTES_PER_BUDGET_PIXEL * max_pixels + MEMORY_SLACK


# --------------------------------------------------------------------------------- memory

class PeakMemory:
    """Peak memory a block adds, and a guard that makes a bigger allocation fail.

    The peak is the resident set's high-water mark where Linux can reset it (it counts every
    allocation, Pillow's and the codecs' C buffers included, which tracemalloc does not see,
    and is what an out-of-memory killer counts), else tracemalloc's peak. The guard
    (``RLIMIT_DATA`` at the current data size + ``guard`` bytes, Linux) turns a bomb's
    gigabytes into an immediate ``MemoryError``, so a campaign cannot take the machine down;
    a case that meets it is classified ``memory`` (see :func:`hit_guard`) where the error
    leaves a trace; a library that swallows it (pydicom's plugin loop re-raises a bare
    RuntimeError) makes such a case look refused, so the bound is exact up to the guard and
    best effort beyond it: the mutator's sizes (9000 to 65535 a side) keep bombs in both ranges.
    """

    def __init__(self, guard: int = GUARD) -> None:
        self.rss = _can_reset_hwm()
        self.guard = guard
        self.added = 0
        if not self.rss and not tracemalloc.is_tracing():
            tracemalloc.start()

    def __enter__(self) -> "PeakMemory":
        self._limits = resource.getrlimit(resource.RLIMIT_DATA) if self.rss else None
        if self._limits is not None:
            soft = status_kb("VmData") * 1024 + self.guard
            if self._limits[1] == resource.RLIM_INFINITY or soft < self._limits[1]:
                resource.setrlimit(resource.RLIMIT_DATA, (soft, self._limits[1]))
        if self.rss:
            reset_peak()  # peak RSS := current RSS
            self._start = status_kb("VmRSS") * 1024
        else:
            tracemalloc.reset_peak()
            self._start = tracemalloc.get_traced_memory()[0]
        return self

    def __exit__(self, *exc) -> None:
        peak = status_kb("VmHWM") * 1024 if self.rss else tracemalloc.get_traced_memory()[1]
        if self._limits is not None:
            resource.setrlimit(resource.RLIMIT_DATA, self._limits)
        self.added = max(0, peak - self._start)

    @property
    def method(self) -> str:
        return "peak RSS (VmHWM)" if self.rss else "tracemalloc peak"


def hit_guard(exc: BaseException | None) -> bool:
    """Whether ``exc`` or an exception it was raised from is a ``MemoryError`` (the guard).

    The message counts too: the DICOM decoder re-raises ``from None`` (pydicom's messages can
    quote tag values) and keeps only the type's name, "cannot decode the image (MemoryError)".
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, MemoryError) or "MemoryError" in str(exc):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _can_reset_hwm() -> bool:
    try:
        return reset_peak() and status_kb("VmHWM") > 0
    except KeyError:
        return False


# ---------------------------------------------------------------------------------- cases

@dataclass(frozen=True)
class Case:
    index: int          # -1 - k: seed k unmutated
    seed: Seed
    mutant: Mutant
    filename: str

    def describe(self) -> str:
        steps = "; ".join(self.mutant.steps) or "unmutated"
        name = self.filename if len(self.filename) <= 40 else f"{self.filename[:12]}...{self.filename[-8:]}"
        return f"case {self.index} [{self.seed.name} as {name!r}]: {steps}"


def make_case(seeds: Sequence[Seed], index: int, campaign_seed: int = 0) -> Case:
    """Case ``index`` of a campaign (negative: seed ``-1 - index`` as it is)."""
    if index < 0:
        seed = seeds[-1 - index]
        return Case(index, seed, Mutant(seed.data, ()), seed.filename)
    rng = random.Random(f"{campaign_seed}:{index}")
    seed = seeds[index % len(seeds)]
    mutant = mutate(seed.data, seed.fmt, rng)
    # One in ten goes under another name: another format's (".dcm" forces the DICOM reader), odd ones.
    name = rng.choice(OTHER_NAMES) if rng.random() < 0.1 else seed.filename
    return Case(index, seed, mutant, name)


@dataclass
class Result:
    case: Case
    outcome: Outcome
    seconds: float
    added: int          # bytes of peak memory added
    detail: str = ""


@dataclass
class Report:
    """Outcome counts per seed format, the worst cases, every crash / memory / slow case."""

    target: str
    max_pixels: int
    bound: int
    slow_s: float
    memory_method: str
    planned: int = 0
    results: list[Result] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self) -> Counter:
        return Counter((r.case.seed.fmt, r.outcome) for r in self.results)

    def failures(self, *outcomes: Outcome) -> list[Result]:
        wanted = outcomes or (Outcome.CRASH, Outcome.MEMORY, Outcome.SLOW)
        return [r for r in self.results if r.outcome in wanted]

    def worst(self, key: str) -> Result | None:
        return max(self.results, key=lambda r: getattr(r, key), default=None)

    def table(self) -> str:
        """Markdown: one row per seed format (and all), one column per outcome."""
        counts, cols = self.counts(), list(Outcome)
        lines = [f"| {self.target} | cases | " + " | ".join(o.value for o in cols) + " |",
                 "|---|" + "---|" * (len(cols) + 1)]
        for fmt in (*FORMATS, "all"):
            row = [sum(counts[(f, o)] for f in FORMATS) if fmt == "all" else counts[(fmt, o)] for o in cols]
            lines.append(f"| {fmt} | {sum(row):,} | " + " | ".join(f"{v:,}" for v in row) + " |")
        return "\n".join(lines)

    def summary(self, limit: int = 12) -> str:
        mem, slow = self.worst("added"), self.worst("seconds")
        out = [f"{self.target}: {len(self.results)} of {self.planned} cases in {self.seconds:.1f} s; "
               f"budget {self.max_pixels:,} px, memory bound {self.bound / 2**20:.0f} MiB ({self.memory_method}), "
               f"slow over {self.slow_s:g} s"]
        if mem:
            out.append(f"most memory added: {mem.added / 2**20:.1f} MiB by {mem.case.describe()} -> {mem.outcome.value}")
        if slow:
            out.append(f"slowest: {slow.seconds:.3f} s, {slow.case.describe()} -> {slow.outcome.value}")
        failures = self.failures()
        for r in failures[:limit]:
            out.append(f"{r.outcome.value.upper()} ({r.seconds:.2f} s, +{r.added / 2**20:.1f} MiB) "
                       f"{r.case.describe()}\n    {r.detail}")
        if len(failures) > limit:
            out.append(f"... and {len(failures) - limit} more: " + ", ".join(
                f"{r.outcome.value} case {r.case.index} ({r.case.seed.name})" for r in failures[limit:]))
        return "\n".join(out)


def run_case(case: Case, target: Target, probe: PeakMemory, bound: int, slow_s: float) -> Result:
    """One case through ``target``: timed, memory measured, classified."""
    start = time.perf_counter()
    with probe:
        try:
            outcome, detail = target(case.mutant.data, case.filename)
        except Exception as exc:  # noqa: BLE001 -- an escaped exception is exactly what we look for
            outcome = Outcome.MEMORY if hit_guard(exc) else Outcome.CRASH
            detail = _trace(exc)
    seconds = time.perf_counter() - start
    if outcome is Outcome.MEMORY:
        detail = f"over the {probe.guard / 2**30:g} GiB guard: {detail}"
    elif outcome is not Outcome.CRASH and probe.added > bound:
        outcome, detail = Outcome.MEMORY, f"added {probe.added / 2**20:.0f} MiB > {bound / 2**20:.0f} MiB ({detail})"
    elif outcome is not Outcome.CRASH and seconds > slow_s:
        outcome, detail = Outcome.SLOW, f"{seconds:.2f} s > {slow_s:g} s ({detail})"
    if outcome in (Outcome.ACCEPTED, Outcome.REFUSED):  # keep the bytes of failures only: a campaign's
        case = replace(case, mutant=Mutant(b"", case.mutant.steps))  # mutants would hold ~100 KB each
    return Result(case, outcome, seconds, probe.added, detail)


def _trace(exc: BaseException, lines: int = 12) -> str:
    tb = traceback.format_exception(exc)
    return "".join(tb[-lines:]).rstrip()


def run_campaign(seeds: Sequence[Seed], target: Target, n: int, *, name: str = "target",
                 campaign_seed: int = 0, max_pixels: int = FUZZ_MAX_PIXELS, slow_s: float = 2.0,
                 deadline_s: float | None = None, warmup: bool = True) -> Report:
    """The seeds as they are, then ``n`` mutants, until done or ``deadline_s`` has passed.

    ``warmup`` first runs every seed once unmeasured, so lazy imports and first-call caches
    (codec plugins, the models' first forward pass) are not counted against a case.
    """
    with warnings.catch_warnings():  # decoders warn about every oddity; outcomes are what count here
        warnings.simplefilter("ignore")
        return _campaign(seeds, target, n, name, campaign_seed, max_pixels, slow_s, deadline_s, warmup)


def _campaign(seeds: Sequence[Seed], target: Target, n: int, name: str, campaign_seed: int,
              max_pixels: int, slow_s: float, deadline_s: float | None, warmup: bool) -> Report:
    probe, bound = PeakMemory(), memory_bound(max_pixels)
    report = Report(name, max_pixels, bound, slow_s, probe.method, planned=len(seeds) + n)
    for seed in seeds if warmup else ():
        with probe:  # under the guard: the hostile seeds are bombs for the code before issue 22
            try:
                target(seed.data, seed.filename)
            except Exception:  # noqa: BLE001 -- classified below, when the seed runs as a case
                pass
    start = time.perf_counter()
    for index in range(-len(seeds), n):
        if deadline_s is not None and time.perf_counter() - start > deadline_s:
            break
        report.results.append(run_case(make_case(seeds, index, campaign_seed), target, probe, bound, slow_s))
    report.seconds = time.perf_counter() - start
    return report


# -------------------------------------------------------------------------------- targets

def decode_target(max_pixels: int | None = FUZZ_MAX_PIXELS) -> Target:
    """The upload path without models: ``decode_image`` + ``preprocess`` (training's
    ``load_image``), then the gate's ``inspect`` + ``image_reasons`` (the app's first step).

    ``max_pixels`` is passed where the code takes it (the pixel budget, issue 22).
    """
    from training.errors import DataError
    from training.gate.checks import image_reasons, inspect
    from training.preprocess import PreprocessConfig, decode_image, preprocess

    cfg = PreprocessConfig(size=64)
    decode_kw = _budget(decode_image, max_pixels)
    inspect_kw = _budget(inspect, max_pixels)

    def run(data: bytes, filename: str) -> tuple[Outcome, str]:
        try:
            gray = decode_image(data, filename, **decode_kw)
            preprocess(gray, cfg)
            facts = inspect(data, filename, **inspect_kw)
            image_reasons(facts)
        except DataError as exc:  # ImageDecodeError is a DataError
            outcome = Outcome.MEMORY if hit_guard(exc) else Outcome.REFUSED
            return outcome, f"{type(exc).__name__}: {str(exc)[:160]}"
        return Outcome.ACCEPTED, f"{facts.width}x{facts.height}"

    return run


def _budget(fn: Callable, max_pixels: int | None) -> dict:
    import inspect as pyinspect

    takes = "max_pixels" in pyinspect.signature(fn).parameters
    return {"max_pixels": max_pixels} if takes and max_pixels is not None else {}


def budget_supported() -> bool:
    """Whether decode and the gate take the pixel budget yet (issue 22, deliverable 1)."""
    from training.gate.checks import inspect
    from training.preprocess import decode_image

    return bool(_budget(decode_image, 1) and _budget(inspect, 1))


def api_target(app, path: str = "/api/predict", report: bool = False) -> Target:
    """``POST path`` through the app's test client: 5xx or a body off the contract is a crash.

    The contract: 200 with the JSON result (``report``: a DICOM or PDF file), 422 with the
    gate's verdict, or a 4xx with a JSON ``error`` and ``message``. The app's exception hook is
    wrapped (observed, not changed) to see what an answer came from: the traceback of a
    crash, and a ``MemoryError`` from the guard behind a 422.
    """
    client, seen = app.test_client(), _observe_exceptions(app)

    def run(data: bytes, filename: str) -> tuple[Outcome, str]:
        seen.clear()
        resp = client.post(path, data={"file": (io.BytesIO(data), filename)}, content_type="multipart/form-data")
        try:
            return _classify(resp, seen, report)
        finally:
            seen.clear()  # an exception holds its frames: the upload, the decoded arrays

    return run


def _observe_exceptions(app) -> list[BaseException]:
    """The list the app's exception hook appends to (wrapped once per app, however many targets)."""
    if not hasattr(app, "fuzz_seen"):
        app.fuzz_seen, handle = [], app.handle_user_exception

        def observe(exc: Exception):
            app.fuzz_seen.append(exc)
            return handle(exc)

        app.handle_user_exception = observe
    return app.fuzz_seen


def _classify(resp, seen: list[BaseException], report: bool) -> tuple[Outcome, str]:
    """An answer's outcome: the contract, a clear 4xx, or a crash (with what raised it)."""
    body, code = resp.get_json(silent=True), resp.status_code
    if any(hit_guard(exc) for exc in seen):
        return Outcome.MEMORY, f"HTTP {code} after a MemoryError"
    if report and code == 200 and (resp.data[128:132] == b"DICM" or resp.data.startswith(b"%PDF")):
        return Outcome.ACCEPTED, f"200 {resp.mimetype}"
    if code >= 500 or not isinstance(body, dict):
        trace = "\n".join(_trace(exc) for exc in seen)
        return Outcome.CRASH, f"HTTP {code}: {resp.get_data(as_text=True)[:200]!r}\n{trace}"
    if code == 200 and "models" in body and "gate" in body and not report:
        return Outcome.ACCEPTED, "200"
    if code == 422 and "gate" in body:  # decoded and judged: the gate's refusal is an answer
        return Outcome.ACCEPTED, f"422 gate: {[r.get('code') for r in body['gate'].get('reasons', [])]}"
    if 400 <= code < 500 and body.get("error") and body.get("message"):
        return Outcome.REFUSED, f"{code}: {str(body['message'])[:160]}"
    return Outcome.CRASH, f"HTTP {code} off the contract: {str(body)[:200]}"

