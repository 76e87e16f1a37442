"""Data-parallel training: settings, TF_CONFIG roles, and two CPU workers vs one process.

The end-to-end check runs the real trainer three times in subprocesses (fresh TensorFlow
state each): one plain process with batch 2b and lr 2·lr0, and two
``MultiWorkerMirroredStrategy`` workers on loopback with batch b per replica and lr0 scaled
×2 by the linear rule. Both apply the same updates (each worker gets half of every global
batch; gradients are all-reduced and averaged), so the weights must agree up to float
summation order: we allow atol 1e-5 on the head weights and 1e-5 relative on the
validation loss. Observed: 1.5e-8 on weights of mean magnitude 5e-2, identical loss
(float32 sums reordered by the all-reduce); a wrong batch split or lr scaling moves the
weights by ~lr·grad ≈ 1e-3.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from training.config import TrainConfig
from training.engine import distribute as D
from training.errors import CXRError

ROOT = Path(__file__).resolve().parents[3]
TIMEOUT_S = 150


# ------------------------------------------------------------------ unit
def _tf_config(cluster: dict, kind: str, index: int) -> dict[str, str]:
    return {"TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})}


@pytest.mark.parametrize("kind,index,chief,worker", [
    ("worker", 0, True, 0), ("worker", 1, False, 1)])
def test_chief_is_worker_zero_without_chief_task(kind, index, chief, worker):
    conf = D.read_tf_config(_tf_config({"worker": ["h:1", "h:2"]}, kind, index))
    assert D.chief_role(conf) == (chief, worker) and D.n_workers(conf) == 2


@pytest.mark.parametrize("kind,index,chief", [("chief", 0, True), ("worker", 0, False)])
def test_explicit_chief_task(kind, index, chief):
    conf = D.read_tf_config(_tf_config({"chief": ["h:0"], "worker": ["h:1"]}, kind, index))
    assert D.chief_role(conf)[0] is chief and D.n_workers(conf) == 2


@pytest.mark.parametrize("raw,match", [("{not json", "not valid JSON"), ('{"cluster": {}}', "needs"),
                                       ('{"cluster": {"worker": []}, "task": {"type": "ps"}}', "not in the cluster")])
def test_bad_tf_config_is_explained(raw, match):
    with pytest.raises(CXRError, match=match):
        D.read_tf_config({"TF_CONFIG": raw})


def test_settings_are_checked_against_the_backend():
    assert D.resolve_setting("none", "tensorflow") == "none"
    assert D.resolve_setting("mirrored", "tensorflow") == "mirrored"
    with pytest.raises(CXRError, match="needs the jax backend"):
        D.resolve_setting("data_parallel", "tensorflow")
    with pytest.raises(CXRError, match="needs the tensorflow backend"):
        D.resolve_setting("multiworker", "jax")
    with pytest.raises(CXRError, match="not one of"):
        D.resolve_setting("horovod", "tensorflow")


def test_auto_without_cluster_or_gpus_is_none(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    assert D.make_distribution("auto").setting == "none"


def test_multiworker_without_tf_config_is_explained(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(CXRError, match="needs TF_CONFIG"):
        D.make_distribution("multiworker")


def test_batch_and_lr_scaling():
    dist = D.Distribution("mirrored", replicas=4)
    assert dist.global_batch(8) == 32
    assert dist.scaled_lr(1e-3) == pytest.approx(4e-3) and dist.scaled_lr(1e-3, False) == 1e-3


def test_config_accepts_old_boolean_and_checks_values():
    assert TrainConfig(distribute=True).distribute == "mirrored"
    assert TrainConfig(distribute=False).distribute == "none"
    with pytest.raises(CXRError, match="distribute"):
        TrainConfig(distribute="ring")
    with pytest.raises(CXRError, match="accumulate"):
        TrainConfig(accumulate=0)


def test_non_chief_writes_to_a_temp_copy(tmp_path):
    (tmp_path / "backup").mkdir()
    (tmp_path / "backup" / "state.json").write_text("{}")
    with D.worker_out(tmp_path, D.Distribution("multiworker", 2, True, 0)) as out:
        assert out == tmp_path
    with D.worker_out(tmp_path, D.Distribution("multiworker", 2, False, 1)) as out:
        assert out != tmp_path and (out / "backup" / "state.json").is_file()  # resume state
        (out / "model.keras").write_text("x")
    assert not out.exists() and not (tmp_path / "model.keras").exists()


# ------------------------------------------------------------------ two workers vs one process
def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _dataset(root: Path, n: int = 12) -> Path:
    rng = np.random.default_rng(0)
    for cls, vertical in (("NORMAL", False), ("PNEUMONIA", True)):
        (root / cls).mkdir(parents=True)
        for i in range(n):
            line = (np.arange(32) + i) % 8 < 4
            img = np.tile(line, (32, 1)) if vertical else np.tile(line[:, None], (1, 32))
            img = (0.7 * img + 0.3 * rng.random((32, 32))) * 255
            Image.fromarray(img.astype(np.uint8)).save(root / cls / f"i{i}.png")
    return root


def _worker_cmd(data: Path, cache: Path, out: Path, batch: int, lr: float, distribute: str) -> list[str]:
    spec = json.dumps({"data": [str(data)], "cache_dir": str(cache), "out": str(out), "batch_size": batch,
                       "lr": lr, "distribute": distribute})
    return [sys.executable, __file__, spec]


def _run_all(cmds: list[tuple[list[str], dict]], log_dir: Path) -> None:
    """Start every command, wait (bounded), always kill what is left; fail with the logs."""
    procs = []
    try:
        for i, (cmd, env) in enumerate(cmds):
            log = open(log_dir / f"proc{i}.log", "w")  # noqa: SIM115  closed in finally
            procs.append((subprocess.Popen(cmd, env={**os.environ, "PYTHONPATH": str(ROOT), **env}, stdout=log,
                                           stderr=subprocess.STDOUT, cwd=ROOT), log))
        deadline = time.monotonic() + TIMEOUT_S
        for p, _ in procs:
            p.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail(f"workers did not finish in {TIMEOUT_S} s; logs in {log_dir}")
    finally:
        for p, log in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            log.close()
    for i, (p, _) in enumerate(procs):
        tail = (log_dir / f"proc{i}.log").read_text()[-3000:]
        assert p.returncode == 0, f"process {i} failed:\n{tail}"


@pytest.mark.slow
def test_two_workers_match_one_process_with_the_same_global_batch(tmp_path):
    data, cache = _dataset(tmp_path / "data"), tmp_path / "cache"
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    env0 = {"TF_CONFIG": ""}
    cmds = [(_worker_cmd(data, cache, tmp_path / "single", 8, 2e-2, "none"), env0)]
    for i in range(2):
        cmds.append((_worker_cmd(data, cache, tmp_path / "multi", 4, 1e-2, "multiworker"),
                     _tf_config(cluster, "worker", i)))
    _run_all(cmds, tmp_path)
    assert len(list(tmp_path.glob("worker-parts-*"))) == 2  # streamed: each read its part only
    from training.models.card import load_model

    single, card_1 = load_model(tmp_path / "single")
    multi, card_2 = load_model(tmp_path / "multi")
    t = card_2["training"]
    assert (t["replicas"], t["global_batch"], t["lr_used"]) == (2, 8, pytest.approx(2e-2))
    assert t["batch_size"] == 4 and card_1["training"]["global_batch"] == 8
    for a, b in zip(single.get_layer("head").get_weights(), multi.get_layer("head").get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-5)
    v1, v2 = card_1["metrics"]["validation"]["loss"], card_2["metrics"]["validation"]["loss"]
    assert v2 == pytest.approx(v1, rel=1e-5)
    # only the chief wrote: one model folder, no stray worker folders in the output
    assert sorted(p.name for p in (tmp_path / "multi").iterdir()) == sorted(
        p.name for p in (tmp_path / "single").iterdir())


def _worker_main(spec: str) -> None:
    """Subprocess entry: the trainer on the tiny folder, frozen vgg16 at 32 px, no dropout."""
    import functools

    from training.engine.fit import train
    from training.models import build

    # Dropout draws its mask per replica, so one process and two workers would differ in
    # noise, not in the logic under test: the head's dropout is set to 0 here.
    build.build_model = functools.partial(build.build_model, dropout=0.0)
    kw = json.loads(spec)
    from training.engine import data

    real_parts = data.worker_parts

    def marked_parts(*args):  # proves each worker took the read-only-its-part path
        (Path(kw["cache_dir"]).parent / f"worker-parts-{os.getpid()}").touch()
        return real_parts(*args)

    data.worker_parts = marked_parts
    cfg = TrainConfig(task="pneumonia", arch="vgg16", weights=None, img_size=32, mode="frozen",
                      augment=False, feature_cache="off", epochs=2, parts=(0.6, 0.2, 0.2),
                      warmup_epochs=0, patience=0, seed=0, **kw)
    train(cfg, verbose=0)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    _worker_main(sys.argv[1])
