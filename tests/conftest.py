import os
import random

import numpy as np
import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# the suite runs as two pytest-xdist workers on two cores: one thread each, or tiny models crawl
torch.set_num_threads(1)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    """Runs a test on the CPU and, when present, on CUDA."""
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same random state, whatever ran before it on its worker.

    pytest-xdist hands tests to workers in a different order on every run; without this, a test
    drawing from the global generators would see different numbers each time.
    """
    random.seed(0)
    np.random.seed(0)  # noqa: NPY002 - code under test may draw from the legacy global generator
    torch.manual_seed(0)
