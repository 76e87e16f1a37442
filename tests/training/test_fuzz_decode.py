"""Fuzz campaign, CI size, over the decode path: ``decode_image`` + ``preprocess`` and the gate's
``inspect`` + ``image_reasons`` (issue 22, deliverable 2; full size: benchmarks/bench_fuzz.py).

Hundreds of mutants of real and generated JPEG, PNG and DICOM seeds (fixed seeds: the same
cases every run), under a 1 Mpx pixel budget. Every case must end accepted or refused with a
clear error (``ImageDecodeError`` / ``DataError``): no other exception, no case adding more than
the budget's worth of memory, none slow. The harness is tested first, so a campaign that could
not see a crash or an allocation cannot pass.
"""
from __future__ import annotations

import mmap
import random
import time

import numpy as np
import pytest

from tests.conftest import SHARED_DATA
from tests.helpers import fuzz
from tests.helpers.fuzz import Outcome
from tests.helpers.fuzz_seeds import FORMATS, all_seeds, deflate_bomb, dicom_seeds, image_seeds
from tests.helpers.mutate import mutate
from tests.helpers.mutate_dicom import parse, write

N_CASES = 1000       # ~10 s on the 2-core VM (~25 s against the code before issue 22)
SLOW_S = 3.0         # a sound case takes < 0.1 s here; a bomb that fills its allocation, seconds
DEADLINE_S = 240.0   # the campaign stops starting cases after this (then the test fails)


@pytest.fixture(scope="module")
def seeds():
    return all_seeds(SHARED_DATA if SHARED_DATA.is_dir() else None)


@pytest.fixture(scope="module")
def report(seeds):
    return fuzz.run_campaign(seeds, fuzz.decode_target(fuzz.FUZZ_MAX_PIXELS), N_CASES, name="decode",
                             slow_s=SLOW_S, deadline_s=DEADLINE_S)


# ------------------------------------------------------------------------------ the harness

def test_seeds_cover_every_format_and_decode():
    from training.preprocess import decode_image

    seeds = image_seeds() + dicom_seeds()
    assert {s.fmt for s in seeds} == set(FORMATS)
    assert {"dcm-rle-u16", "dcm-jpeg-baseline", "dcm-multiframe", "dcm-deflated"} <= {s.name for s in seeds}
    for seed in seeds:  # a seed that does not decode would only test the refusal path
        assert decode_image(seed.data, seed.filename).size > 128 * 128, seed.name


def test_dicom_codec_round_trips_every_seed():
    for seed in dicom_seeds():
        dcm = parse(seed.data)
        if seed.name == "dcm-deflated":
            assert dcm is None  # deflated data sets get byte mutations only
            continue
        assert dcm is not None and dcm.body, seed.name
        assert write(dcm) == seed.data, seed.name


def test_mutations_are_deterministic_and_change_the_file(seeds):
    for seed in seeds[:12]:
        a = mutate(seed.data, seed.fmt, random.Random(f"t:{seed.name}"))
        b = mutate(seed.data, seed.fmt, random.Random(f"t:{seed.name}"))
        assert a == b and a.steps
    changed = [fuzz.make_case(seeds, i).mutant.data != seeds[i % len(seeds)].data for i in range(200)]
    assert sum(changed) >= 190  # a few mutations may undo themselves (e.g. a swap of equal chunks)


def test_format_aware_mutations_reach_size_fields(seeds):
    steps = [s for i in range(400) for s in fuzz.make_case(seeds, i).mutant.steps]
    for needle in ("png: IHDR", "jpeg: SOF", "dicom: Rows", "dicom: TransferSyntaxUID", "fragment",
                   "NumberOfFrames", "RescaleSlope"):
        assert any(needle in s for s in steps), needle


def test_probe_sees_an_allocation_and_the_guard_stops_a_bomb():
    probe = fuzz.PeakMemory(guard=256 << 20)
    with probe:
        # Fresh pages from the kernel, written: resident. (np.ones could reuse memory the
        # allocator already holds resident from earlier tests, which adds no RSS.)
        block = mmap.mmap(-1, 64 << 20)
        for at in range(0, len(block), 4096):
            block[at] = 1
    assert probe.added >= 60 << 20, probe.added
    block.close()
    if not probe.rss:
        pytest.skip("no RLIMIT_DATA guard without /proc/self/clear_refs")
    with pytest.raises(MemoryError) as err, probe:
        np.ones(1 << 30, np.uint8)
    assert fuzz.hit_guard(err.value)


def test_run_case_classifies_every_outcome(seeds):
    case, probe = fuzz.make_case(seeds, 0), fuzz.PeakMemory()

    def outcome(target, bound=1 << 30, slow_s=60.0):
        return fuzz.run_case(case, target, probe, bound, slow_s).outcome

    def raises(data, name):
        raise KeyError("not a decode error")

    def allocates(data, name):
        return Outcome.ACCEPTED, str(np.ones(32 << 20, np.uint8).sum())

    assert outcome(lambda d, n: (Outcome.REFUSED, "")) is Outcome.REFUSED
    assert outcome(raises) is Outcome.CRASH
    assert outcome(allocates, bound=8 << 20) is Outcome.MEMORY
    assert outcome(lambda d, n: (Outcome.ACCEPTED, ""), slow_s=-1.0) is Outcome.SLOW


def _at_budget(kind: str) -> tuple[bytes, str]:
    """A sound image of exactly FUZZ_MAX_PIXELS pixels (1024 x 1024)."""
    from PIL import Image
    from pydicom import uid

    from tests.helpers.fuzz_seeds import dicom_bytes, dicom_dataset, pil_bytes
    from tests.helpers.images import chest_like

    side = int(fuzz.FUZZ_MAX_PIXELS ** 0.5)
    grey = chest_like(side, side, seed=1)
    if kind == "png-RGBA":
        return pil_bytes(Image.fromarray(grey).convert("RGBA"), "PNG"), "x.png"
    if kind == "jpeg-CMYK":
        return pil_bytes(Image.fromarray(grey).convert("CMYK"), "JPEG"), "x.jpg"
    ds = dicom_dataset(grey.astype(np.int16) - 100, uid.ExplicitVRLittleEndian, signed=True, RescaleSlope="0.5",
                  RescaleIntercept="-100", WindowCenter="0", WindowWidth="200")
    if kind == "dicom-rle":
        ds.compress(uid.RLELossless, generate_instance_uid=False)
    return dicom_bytes(ds), "x.dcm"


@pytest.mark.parametrize("kind", ["png-RGBA", "jpeg-CMYK", "dicom-lut", "dicom-rle"])
def test_images_at_the_budget_stay_under_the_bound(kind):
    """The bound leaves room for sound uploads at the budget: a memory failure means a bomb."""
    data, name = _at_budget(kind)
    probe = fuzz.PeakMemory()
    with probe:
        outcome, detail = fuzz.decode_target()(data, name)
    assert outcome is Outcome.ACCEPTED, detail
    assert probe.added < fuzz.memory_bound(), probe.added


# ------------------------------------------------------- the campaign's findings, one by one

def test_deflate_bomb_is_refused_within_the_bound():
    """A deflated DICOM (~110 KB) whose data set inflates to 64 MB: pydicom inflates it whole,
    before any header check (fuzz finding; a 20 MB upload would inflate to ~20 GB)."""
    seed = deflate_bomb()
    result = fuzz.run_case(fuzz.make_case([seed], -1), fuzz.decode_target(), fuzz.PeakMemory(),
                           fuzz.memory_bound(), slow_s=60.0)
    assert result.outcome is not Outcome.MEMORY, result.detail


def test_truncated_jpeg_ls_is_refused_quickly():
    """A JPEG-LS DICOM cut short (no EOI): CharLS (pyjpegls) spends ~3.7 s of CPU refusing
    certain cut points of a 13 KB stream, whatever the image size (fuzz finding)."""
    jpeg_ls = pytest.importorskip("jpeg_ls")
    from pydicom import uid

    from tests.helpers.fuzz_seeds import dicom_dataset, encapsulated
    from tests.helpers.images import chest_like
    from training.errors import ImageDecodeError
    from training.preprocess import decode_image

    pixels = chest_like(512, 512, seed=1).astype(np.uint16) * 16
    stream = bytes(jpeg_ls.encode(pixels))
    ds = dicom_dataset(pixels, uid.ExplicitVRLittleEndian, bits_stored=12)
    data = encapsulated(ds, uid.JPEGLSLossless, stream[: len(stream) // 20], "MONOCHROME2")
    cpu = time.process_time()  # CPU, not wall time: the same on a loaded machine
    with pytest.raises(ImageDecodeError, match="truncated"):  # refused before CharLS runs
        decode_image(data, "cut.dcm", max_pixels=fuzz.FUZZ_MAX_PIXELS)
    assert time.process_time() - cpu < 1.0


# ----------------------------------------------------------------------------- the campaign

def test_every_case_ran_within_the_deadline(report):
    assert len(report.results) == report.planned, report.summary()


def test_campaign_is_not_vacuous(report):
    counts = report.counts()
    for fmt in FORMATS:  # each format both decodes and is refused: mutations reach the decoders
        assert counts[(fmt, Outcome.ACCEPTED)] > 0 and counts[(fmt, Outcome.REFUSED)] > 0, report.table()


def test_no_crash(report):
    """Every failure is an ImageDecodeError / DataError: anything else would be a 500 in the app."""
    crashes = report.failures(Outcome.CRASH)
    assert not crashes, f"{len(crashes)} crash(es)\n{report.summary()}"


def test_pixel_budget_bounds_memory(report):
    """No case adds more than the budget's worth of memory (fuzz.memory_bound) or meets the guard."""
    over = report.failures(Outcome.MEMORY)
    assert not over, f"{len(over)} case(s) over {report.bound / 2**20:.0f} MiB\n{report.summary()}"


def test_no_slow_case(report):
    slow = report.failures(Outcome.SLOW)
    assert not slow, f"{len(slow)} case(s) over {SLOW_S} s\n{report.summary()}"
