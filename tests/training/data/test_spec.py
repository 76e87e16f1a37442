"""DataSpec: validated, normalised, read back from saved configs and cards, given to the loaders."""
import pytest

from training.data import formats
from training.data.spec import FORMAT_NAMES, DataSpec
from training.errors import CXRError


def test_normalises_paths_and_comma_separated_names(tmp_path):
    spec = DataSpec(tmp_path, views="PA, AP ,", modalities=["X-ray"], on_error="skip")
    assert spec.data == (str(tmp_path),) and spec.views == ("PA", "AP") and spec.modalities == ("X-ray",)
    assert DataSpec(["a", tmp_path]).data == ("a", str(tmp_path))
    assert DataSpec().views is None and DataSpec().on_error == "raise"


@pytest.mark.parametrize("changes, match", [
    ({"fmt": "dicomdir"}, "fmt='dicomdir' is not one of"),
    ({"on_error": "ignore"}, "on_error='ignore' is not one of"),
    ({"views": " , "}, "views is empty"),
    ({"modalities": []}, "modalities is empty"),
    ({"uncertain": "maybe"}, "uncertain='maybe' is not one of"),
    ({"pathologies": "Effusion, Gout"}, "unknown pathology 'Gout'"),
])
def test_bad_options_are_clear_errors(changes, match):
    with pytest.raises(CXRError, match=match) as info:
        DataSpec(("d",), **changes)
    assert "What to do" in str(info.value)


def test_format_names_are_the_loaders_formats():
    assert sorted(formats.FORMATS) == sorted(FORMAT_NAMES)


def test_round_trip_and_from_dict_reads_only_its_keys():
    spec = DataSpec(("a", "b"), "ieee8023", ("PA",), ("X-ray", "CT"), "skip")
    saved = spec.to_dict()
    assert saved == {"data": ["a", "b"], "fmt": "ieee8023", "views": ["PA"],
                     "modalities": ["X-ray", "CT"], "on_error": "skip", "pathologies": None,
                     "uncertain": "ignore", "labeler": "chexpert"}
    assert DataSpec.from_dict({**saved, "arch": "resnet50", "epochs": 3}) == spec
    # an older card: null and missing keys are the defaults
    assert DataSpec.from_dict({"data": ["a"], "views": None, "arch": "x"}) == DataSpec(("a",))
    assert DataSpec.from_dict(None) == DataSpec()


def test_pathologies_are_canonical_in_the_order_given_and_round_trip():
    spec = DataSpec(("a",), pathologies="nodule, Pleural_Effusion,Nodule", uncertain="ones")
    assert spec.pathologies == ("Nodule", "Effusion")
    assert DataSpec.from_dict(spec.to_dict()) == spec
    assert DataSpec(("a",), pathologies="all").pathologies is None
    assert spec.loader_options() == {"uncertain": "ones"}  # "ignore" is every loader's default


def test_for_model_keeps_its_own_pathologies_and_uncertain_policy():
    """A model's outputs are matched to the data's columns by name: evaluating on a collection
    that annotates fewer findings must not fail on the training run's --pathologies."""
    trained = DataSpec(("train",), pathologies=("Nodule",), uncertain="ones")
    assert DataSpec(("ext",)).for_model(trained) == DataSpec(("ext",))


def test_for_model_takes_what_it_leaves_open_from_the_training_spec():
    trained = DataSpec(("train",), "csv", ("AP",), ("X-ray",), "raise")
    # no data given: the model's data, read as in training; this spec's error policy
    assert DataSpec(on_error="skip").for_model(trained) == trained.replace(on_error="skip")
    # data given: its own format; views/modalities left to default come from training
    own = DataSpec(("new",), views=("PA",)).for_model(trained)
    assert own == DataSpec(("new",), "auto", ("PA",), ("X-ray",), "raise")


def test_loader_options_default_given_and_all():
    assert DataSpec().loader_options() == {}
    assert DataSpec(views="PA", modalities="all").loader_options() == {"views": ("PA",), "modalities": None}


def test_load_datasets_takes_the_spec_whole(tmp_path):
    from tests.training.data.test_formats import make_ieee

    root = make_ieee(tmp_path / "i")
    every = formats.load_datasets(DataSpec(root, views="all"))
    default = formats.load_datasets(DataSpec(root))
    assert (len(every), len(default)) == (2, 1)  # the lateral view only with "all"
    assert len(formats.load_datasets(DataSpec(root, fmt="ieee8023", views="all"))) == len(every)
    with pytest.raises(TypeError, match="takes a DataSpec"):
        formats.load_datasets([root])
    with pytest.raises(CXRError, match="no dataset given"):
        formats.load_datasets(DataSpec())
