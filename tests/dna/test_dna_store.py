"""The chunked store: a job killed mid-run resumes to the same store, computing only what was missing;
a Dask LocalCluster gives what one process gives."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from domains.dna.datasets import synthetic_genome
from domains.dna.genome import Genome, tile_genome
from domains.dna.models import small_cnn
from domains.dna.regions import predict_windows, region_ism
from domains.dna.store import WindowStore
from domains.dna.variants import variant_effects
from probe import ProbeError

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import os, signal, sys
from domains.dna.genome import Genome, tile_genome
from domains.dna.models import small_cnn
from domains.dna.regions import predict_windows

genome = Genome(sys.argv[1])
model = small_cnn(2, channels=4, kernel=5, seed=0)
calls = []

def kill_on_fourth_chunk(module, inputs, output):
    calls.append(1)
    if len(calls) == 4:  # three chunks are written; the fourth is half-way through its model call
        os.kill(os.getpid(), signal.SIGKILL)

model.register_forward_hook(kill_on_fourth_chunk)
predict_windows(model, genome, tile_genome(genome, 40, stride=20), chunk_size=16, batch_size=16,
                store=sys.argv[2], progress=False)
"""


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    path = tmp_path_factory.mktemp("genome") / "g.fa"
    synthetic_genome(path, {"chr1": 1500, "chr2": 600}, seed=2)
    return Genome(path)


def _counted(model):
    seen = []
    model.register_forward_hook(lambda m, i, o: seen.append(len(i[0])))
    return model, seen


def test_kill_and_resume_give_the_same_store(genome, tmp_path):
    windows = tile_genome(genome, 40, stride=20)  # 103 windows: 7 chunks of 16
    store = tmp_path / "killed.zarr"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    child = subprocess.run([sys.executable, "-c", CHILD, str(genome.path), str(store)], env=env, cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == -9, child.stderr
    partial = WindowStore(store)
    assert partial.done.tolist() == [True] * 3 + [False] * 4
    model, seen = _counted(small_cnn(2, channels=4, kernel=5, seed=0))
    resumed = predict_windows(model, genome, windows, chunk_size=16, batch_size=16, store=store, progress=False)
    assert sum(seen) == len(windows) - 48  # the three written chunks are not computed again
    fresh = predict_windows(small_cnn(2, channels=4, kernel=5, seed=0), genome, windows, chunk_size=16,
                            batch_size=16, store=tmp_path / "fresh.zarr", progress=False)
    assert resumed.complete and np.array_equal(resumed["y"][:], fresh["y"][:])
    pd.testing.assert_frame_equal(resumed.to_frame(), fresh.to_frame())
    # a finished store is read back, not recomputed
    model, seen = _counted(small_cnn(2, channels=4, kernel=5, seed=0))
    predict_windows(model, genome, windows, chunk_size=16, batch_size=16, store=store, progress=False)
    assert not seen


def test_a_store_of_another_job_is_refused(genome, tmp_path):
    windows = tile_genome(genome, 40)
    predict_windows(small_cnn(2, channels=4, seed=0), genome, windows, chunk_size=8, store=tmp_path / "s.zarr")
    with pytest.raises(ProbeError, match="holds another job \\(another model"):
        predict_windows(small_cnn(2, channels=4, seed=1), genome, windows, chunk_size=8, store=tmp_path / "s.zarr")
    with pytest.raises(ProbeError, match="in chunks of 8"):
        predict_windows(small_cnn(2, channels=4, seed=0), genome, windows, chunk_size=4, store=tmp_path / "s.zarr")
    again = predict_windows(small_cnn(2, channels=4, seed=1), genome, windows, chunk_size=8,
                            store=tmp_path / "s.zarr", overwrite=True)
    assert again.complete


def test_dask_local_cluster_gives_the_one_process_result(genome, tmp_path):
    distributed = pytest.importorskip("distributed")
    chrom = genome.fetch("chr1", 0, 1500)
    pos = np.arange(100, 1400, 37)
    variants = pd.DataFrame({"CHROM": "chr1", "POS": pos + 1, "ID": [f"v{i}" for i in range(len(pos))],
                             "REF": [chrom[p] for p in pos], "ALT": ["ACGT"[("ACGT".index(chrom[p]) + 1) % 4]
                                                                     for p in pos]})
    windows = tile_genome(genome, 30, stride=90)
    model = small_cnn(3, channels=4, kernel=5, seed=0)
    one = variant_effects(model, genome, variants, width=51, rc=True, chunk_size=5)
    ism_one = region_ism(model, genome, windows, chunk_size=3)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None) as cl, \
            distributed.Client(cl) as client:
        many = variant_effects(model, genome, variants, width=51, rc=True, chunk_size=5, client=client)
        ism_many = region_ism(model, genome, windows, chunk_size=3, client=client, store=tmp_path / "ism.zarr")
    pd.testing.assert_frame_equal(one, many, check_exact=True)
    assert np.array_equal(ism_many["ism"][:], ism_one["ism"]) and np.array_equal(ism_many["y"][:], ism_one["y"])


def test_tasks_travel_to_worker_processes_and_the_bar_shows_a_rate(genome, capsys):
    import cloudpickle

    from domains.dna.regions import ModelRunner, _PredictTask

    windows = tile_genome(genome, 40, stride=40)
    model = small_cnn(2, channels=4, kernel=5, seed=0)
    task = _PredictTask(ModelRunner(model, device=None, batch_size=8, private=True), genome, windows)
    remote = cloudpickle.loads(cloudpickle.dumps(task))  # what a worker process receives: a Genome reopened by path
    assert remote.genome._fasta is None and remote.runner.private
    assert np.array_equal(remote(0, 10)["y"], task(0, 10)["y"])
    assert model.training  # the worker's copy was put in eval mode, not the caller's model
    predict_windows(model, genome, windows, chunk_size=8, progress=True)
    assert "window/s" in capsys.readouterr().err
