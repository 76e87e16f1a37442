"""File digests and the patient groups that byte-identical files link."""
import numpy as np

from training.data.content import content_groups, file_digests


def test_content_groups_links_patients_transitively():
    patients = ["p1", "p2", "p3", "p4", "p4", "p5"]
    digests = ["x", "x", "y", "y", "z", None]  # p1=p2 by x; p3=p4 by y; p5 unreadable
    groups, merged = content_groups(patients, digests)
    assert groups.tolist() == ["p1", "p1", "p3", "p3", "p3", "p5"]
    assert merged == 4
    chain, merged = content_groups(["a", "b", "b", "c"], ["1", "1", "2", "2"])
    assert set(chain) == {"a"} and merged == 3
    alone, merged = content_groups(["a", "b"], [None, None])  # missing files: own groups
    assert alone.tolist() == ["a", "b"] and merged == 0


def test_content_hashing_of_5000_files_is_fast(tmp_path):
    paths, blob = [], np.random.default_rng(0).bytes(8000)  # ~ a small JPEG each
    for i in range(5000):
        p = tmp_path / f"{i}.jpeg"
        p.write_bytes(i.to_bytes(4, "little") + blob)
        paths.append(str(p))
    digests = file_digests(paths + [str(tmp_path / "missing.png")])
    assert digests[-1] is None and len(set(digests[:-1])) == 5000
