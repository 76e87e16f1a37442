"""The lung segmentation model: builds, trains on tiny arrays, predicts a mask, splits by patient."""
import numpy as np

from training.lungs.segment import (build_unet, dice, patient_split, predict_mask, train_segmenter,
                                    training_pairs)


def test_unet_trains_one_step_and_predicts_a_mask_of_its_size():
    model = build_unet(size=32, base=4, depth=2)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    x = np.random.default_rng(0).random((4, 32, 32, 1)).astype("float32")
    y = (x > 0.5).astype("float32")
    before = [w.copy() for w in model.get_weights()]
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    mask = predict_mask(model, np.random.default_rng(1).random((50, 70)).astype("float32") * 255)
    assert mask.shape == (32, 32) and mask.dtype == bool


def test_default_unet_is_small():
    assert 100_000 <= build_unet().count_params() <= 300_000


def test_dice_by_hand():
    truth = np.zeros((3, 4, 4), bool)
    pred = np.zeros((3, 4, 4), bool)
    truth[0, :2], pred[0, :1] = True, True  # 8 and 4 pixels, 4 shared: 2*4/12
    truth[1, :2] = True  # nothing predicted: 0
    np.testing.assert_allclose(dice(truth, pred), [8 / 12, 0.0, 1.0])  # both empty: 1


def test_patient_split_keeps_patients_whole():
    patients = np.array(["a", "a", "b", "c", "c", "c", "d", "e", "f", "g"], dtype=object)
    test = patient_split(patients, 0.2, seed=1)
    assert 2 <= test.sum() <= 4
    assert not set(patients[test]) & set(patients[~test])


def test_training_pairs_and_held_out_dice_on_a_mini_ieee8023(mini_ieee):
    x, y, patients = training_pairs(mini_ieee, size=32)
    assert x.shape == y.shape == (6, 32, 32, 1) and 0 <= x.min() and x.max() <= 1
    assert sorted(set(patients)) == ["0", "1", "2"]
    _, report = train_segmenter(mini_ieee, epochs=1, size=32, batch_size=4)
    assert report.n_train_images + report.n_test_images == 6 and report.n_test_patients >= 1
    assert 0.0 <= report.test_dice <= 1.0
