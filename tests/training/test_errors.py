"""User-facing errors: the file, what is wrong, what to do."""
import pytest

from training.errors import (
    CXRError,
    DataError,
    ImageDecodeError,
    ModelCardError,
    SplitError,
    UnknownLabelError,
)


def test_data_error_names_the_file_and_what_to_do():
    err = DataError("no label column", path="data/labels.csv", hint="add a 'label' column")
    assert str(err) == "data/labels.csv: no label column What to do: add a 'label' column"
    assert err.path == "data/labels.csv" and err.hint == "add a 'label' column"


def test_data_error_without_path_or_hint_is_the_message():
    err = DataError("empty dataset")
    assert str(err) == "empty dataset" and err.path is None and err.hint is None


@pytest.mark.parametrize("kind", [ImageDecodeError, UnknownLabelError])
def test_data_error_kinds_keep_path_and_hint(kind):
    err = kind("bad", path=123, hint="fix it")
    assert isinstance(err, DataError) and err.path == "123" and str(err).endswith("What to do: fix it")


@pytest.mark.parametrize("kind", [DataError, SplitError, ModelCardError])
def test_every_kind_is_a_cxr_error(kind):
    assert issubclass(kind, CXRError)  # the CLI catches CXRError to print a message, not a traceback
