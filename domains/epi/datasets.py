"""Historical epidemics that ship with the package (EpiEstim's bundled data sets).

Daily incidence and discretised serial intervals extracted from the R package EpiEstim 2.2-4
(Cori et al., Am J Epidemiol 2013), values unchanged. Loaded through ``importlib.resources`` so
they are found in an installed package as well as in a checkout.

=============  ===================================================  ==============================
name           what                                                 source cited by EpiEstim
=============  ===================================================  ==============================
Flu1918        92 days, pandemic influenza, Baltimore 1918          Frost & Sydenstricker 1919
Flu2009        32 days, H1N1 influenza, a school in Pennsylvania    Cauchemez et al. 2011
Measles1861    48 days, measles, Hagelloch (Germany) 1861           Groendyke et al. 2011
SARS2003       107 days, SARS, Hong Kong 2003                       Cori et al. 2009
Smallpox1972   57 days, smallpox, Kosovo 1972                       Riley & Ferguson 2006
=============  ===================================================  ==============================
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd

from probe.errors import ProbeError

__all__ = ["Epidemic", "load", "names", "epiestim_example1"]

_NAMES = ("Flu1918", "Flu2009", "Measles1861", "SARS2003", "Smallpox1972")
_SOURCES = {
    "Flu1918": "Frost & Sydenstricker (1919), influenza in Baltimore, 1918",
    "Flu2009": "Cauchemez et al. (2011), H1N1 influenza in a school in Pennsylvania, 2009",
    "Measles1861": "Groendyke et al. (2011), measles in Hagelloch, Germany, 1861",
    "SARS2003": "Cori et al. (2009), SARS in Hong Kong, 2003",
    "Smallpox1972": "Riley & Ferguson (2006), smallpox in Kosovo, 1972",
}


@dataclass(frozen=True)
class Epidemic:
    """A historical epidemic.

    Attributes
    ----------
    name : str
    incidence : pandas.Series
        Daily cases, indexed by date when known (Flu2009), else by day 1..T.
    serial_interval : numpy.ndarray
        Discrete serial interval over days 0, 1, ... (``w[0] = 0``).
    source : str
        The publication EpiEstim cites for the data.
    """

    name: str
    incidence: pd.Series
    serial_interval: np.ndarray
    source: str


def _open(filename: str):
    return resources.files("domains.epi.data").joinpath(filename).open("r")


def names() -> tuple[str, ...]:
    """Names of the shipped epidemics."""
    return _NAMES


def load(name: str) -> Epidemic:
    """Load one shipped epidemic by name (see :func:`names`)."""
    if name not in _NAMES:
        raise ProbeError(f"unknown data set {name!r}; available: {', '.join(_NAMES)}")
    with _open(f"{name}_incidence.csv") as fh:
        df = pd.read_csv(fh)
    if "date" in df.columns:
        index = pd.DatetimeIndex(pd.to_datetime(df["date"]), name="date")
    else:
        index = pd.Index(df["day"].to_numpy(), name="day")
    incidence = pd.Series(df["I"].to_numpy(np.float64), index=index, name="I")
    with _open(f"{name}_serial_interval.csv") as fh:
        w = pd.read_csv(fh)["w"].to_numpy(np.float64)
    return Epidemic(name=name, incidence=incidence, serial_interval=w, source=_SOURCES[name])


def epiestim_example1() -> pd.DataFrame:
    """EpiEstim's saved output for Flu2009, non-parametric SI, windows 2:26 to 8:32, prior mean 5 sd 5.

    Columns renamed to those of :func:`domains.epi.cori`.
    """
    with _open("EpiEstim_Example1_R.csv") as fh:
        df = pd.read_csv(fh)
    df.columns = ["t_start", "t_end", "mean", "std", "q025", "q05", "q25", "median", "q75", "q95", "q975"]
    return df
