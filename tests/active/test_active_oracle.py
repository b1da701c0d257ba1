import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from probe.active.oracle import OracleError, label_batch
from probe.errors import ProbeError


class Square:
    def label(self, batch):
        return [{"y": np.array(x) ** 2} for x in batch]


class Flaky:
    """Fails the first ``fail`` attempts on every item, or returns NaN instead."""

    def __init__(self, fail=1, nan=False):
        self.fail, self.nan, self.calls = fail, nan, {}

    def label(self, batch):
        (x,) = batch
        self.calls[x] = self.calls.get(x, 0) + 1
        if self.calls[x] <= self.fail:
            if self.nan:
                return [{"y": np.array([1.0, np.nan])}]
            raise RuntimeError(f"SCF did not converge for {x}")
        return [{"y": np.array([x, x])}]


def test_labels_in_order_through_an_executor():
    with ThreadPoolExecutor(2) as ex:
        out = label_batch(Square(), [1.0, 2.0, 3.0], executor=ex)
    assert [float(o["y"]) for o in out] == [1.0, 4.0, 9.0]


@pytest.mark.parametrize("nan", [False, True])
def test_failures_and_nan_are_retried(nan):
    oracle = Flaky(fail=2, nan=nan)
    with pytest.warns(UserWarning, match="retrying"):
        out = label_batch(oracle, [1.0, 2.0], retries=2)
    assert [o["y"].tolist() for o in out] == [[1.0, 1.0], [2.0, 2.0]]
    assert oracle.calls == {1.0: 3, 2.0: 3}


@pytest.mark.parametrize("nan", [False, True])
def test_persistent_failure_is_a_clear_error_naming_the_item(nan):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(OracleError, match=r"item 5 after 2 attempts.*(non-finite 'y'|SCF)"):
            with ThreadPoolExecutor(2) as ex:
                label_batch(Flaky(fail=99, nan=nan), [4.0], executor=ex, retries=1, first_index=5)
    assert issubclass(OracleError, ProbeError)


def test_not_an_oracle():
    with pytest.raises(ProbeError, match="no label"):
        label_batch(object(), [1])


def test_a_dask_client_works_as_the_executor():
    distributed = pytest.importorskip("distributed")
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        out = label_batch(Square(), [1.0, 2.0, 3.0], executor=client)
        assert [float(o["y"]) for o in out] == [1.0, 4.0, 9.0]
        # the oracle travels to the workers as a copy, so every retry starts afresh: it keeps failing
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(OracleError, match="item 0 after 2 attempts"):
                label_batch(Flaky(fail=1), [1.0], executor=client, retries=1)
