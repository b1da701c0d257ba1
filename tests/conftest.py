import os

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
