r"""Per-modality robustness of a late-fusion model: attack one modality at a time, certify it, and
say which modality the decision leans on.

For each modality m, with the others fixed at their clean values:

- ``attack_success``: the fraction of decisions PGD flips by perturbing m alone within ``eps``
  (the single-source attack of Yang, Jiang, Mao, Lin, Hsu, Darrell & Hong, "Defending Multimodal
  Fusion Models against Single-Source Adversaries", CVPR 2021), an empirical lower bound on
  the fraction that can be flipped;
- ``certified``: the fraction certified at ``eps`` on m alone (:func:`probe.certify.fusion.certify_fusion`),
  an upper bound's complement: ``certified + attack_success <= 1`` always;
- ``certified_unbounded``: the fraction still certified when m is fully adversarial (within
  its ``domain`` where one is given): the decisions the other modalities out-vote;
- ``median_radius``: the median certified single-source radius on m (capped at ``radius_max``).

The decision *leans on* the modality whose corruption alone overturns the most decisions:
the largest ``1 - certified_unbounded``; ties go to the smallest ``radius_fraction`` (the median
radius over the mean half-width of the modality's domain, a scale-free measure where a domain is
given), then to the largest ``attack_success``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd
import torch

from .attacks import PGD
from .certify.fusion import certify_fusion, fusion_radius
from .criteria import Misclassify
from .errors import ProbeError
from .multimodal import LateFusion, _named, fix_inputs

__all__ = ["ModalityReport", "modality_report"]


@dataclass(frozen=True)
class ModalityReport:
    """Result of :func:`modality_report`.

    Attributes
    ----------
    frame : pandas.DataFrame
        Indexed by modality: ``eps``, ``attack_success``, ``certified``, ``certified_unbounded``,
        ``median_radius``, ``radius_fraction`` (over the domain's mean half-width; NaN without a
        domain), ``reliance`` (``1 - certified_unbounded``).
    norm, rule : str
    """

    frame: pd.DataFrame
    norm: str
    rule: str

    @property
    def leans_on(self) -> str:
        """The modality whose corruption alone overturns the most decisions."""
        f = self.frame.assign(_r=-self.frame["radius_fraction"].fillna(float("inf")))
        f = f.sort_values(["reliance", "_r", "attack_success"], ascending=False)
        return str(f.index[0])

    def to_frame(self) -> pd.DataFrame:
        return self.frame.copy()

    def plot(self, ax: object = None) -> object:
        """Bars per modality: attacked at eps, certified at eps, certified with the modality unbounded."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(5, 3.5))
        self.frame[["attack_success", "certified", "certified_unbounded"]].rename(columns={
            "attack_success": "attacked at eps", "certified": "certified at eps",
            "certified_unbounded": "certified, modality unbounded"}).plot.bar(ax=ax, rot=0)
        ax.set_xlabel("modality")
        ax.set_ylabel("fraction of inputs")
        ax.set_ylim(0, 1)
        ax.set_title(f"single-source robustness ({self.rule}, {self.norm})")
        return ax


def modality_report(model: LateFusion, inputs: object, *, eps: float | Mapping, norm: str = "linf",
                    labels: object = None, domain: Mapping | None = None, method: str = "crown", steps: int = 20,
                    restarts: int = 1, radius_steps: int = 12, radius_max: float | Mapping | None = None, seed: int = 0,
                    device: str | torch.device | None = None) -> ModalityReport:
    """Single-source attacks, certificates and radii for every modality of a late-fusion model.

    Parameters
    ----------
    model : LateFusion
    inputs : dict of modality -> torch.Tensor of shape (N, ...)
    eps : float or dict of modality -> float
        Budget of the single-source attack on each modality.
    norm : {"linf", "l2", "l1"}, default "linf"
    labels : array-like of int, optional
        Default: the fused clean prediction.
    domain : dict of modality -> (lower, upper), optional
        Valid ranges: the attack stays inside them, and an unbounded modality is bounded over them.
    method : str, default "crown"
        Bound method of the branches.
    steps, restarts : int
        PGD settings. A vote has no gradient: PGD then ascends the mean of the branches' logits
        and success is scored on the vote.
    radius_steps : int, default 12
        Bisection steps of the certified radius.
    radius_max : float or dict of modality -> float, optional
        Top of the radius bracket (default 4 times the modality's ``eps``); larger radii are
        reported as ``radius_max``.
    seed : int, default 0
    device : optional

    Returns
    -------
    ModalityReport
    """
    if not isinstance(model, LateFusion):
        raise ProbeError(f"modality_report needs a probe.multimodal.LateFusion model, got {type(model).__name__}")
    named = _named(inputs)
    budgets = {k: eps for k in model.names} if not isinstance(eps, Mapping) else {str(k): v for k, v in eps.items()}
    domain = {} if domain is None else dict(domain)
    clean = certify_fusion(model, named, None, labels=labels, device=device)
    y = clean.labels
    attacker = model if model.rule != "vote" else LateFusion(dict(model.branches), rule="mean")
    rows = {}
    for name in model.names:
        if name not in budgets:
            continue
        e = float(budgets[name])
        fx = fix_inputs(model, named, modality=name)
        fa = fix_inputs(attacker, named, modality=name)
        lo, hi = domain.get(name, (float("-inf"), float("inf")))
        res = PGD(eps=e, norm=norm, steps=steps, restarts=restarts, seed=seed)(
            fa.model, fa.x, Misclassify(y), space=fa.space({name: lo}, {name: hi}), already_satisfied="keep")
        with torch.no_grad():
            flipped = fx.model(res.x_adv).argmax(1) != y.to(res.x_adv.device)
        cert = certify_fusion(model, named, {name: e}, norm=norm, method=method, labels=y, device=device)
        free = certify_fusion(model, named, None, labels=y, unbounded=name, domain=domain, method=method,
                              device=device)
        top = radius_max.get(name) if isinstance(radius_max, Mapping) else radius_max
        top = 4 * e if top is None else float(top)
        radius = fusion_radius(model, named, name, norm=norm, method=method, labels=y, steps=radius_steps,
                               eps_max=top if top > 0 else None, device=device)
        width = float("nan")
        if name in domain:
            half = (torch.as_tensor(hi, dtype=torch.float64) - torch.as_tensor(lo, dtype=torch.float64)) / 2
            width = float(half.expand(named[name].shape[1:]).mean())
        rows[name] = {"eps": e, "attack_success": float(flipped.float().mean()),
                      "certified": cert.certified_fraction, "certified_unbounded": free.certified_fraction,
                      "median_radius": float(radius.median()), "radius_fraction": float(radius.median()) / width}
    frame = pd.DataFrame.from_dict(rows, orient="index").rename_axis("modality")
    frame["reliance"] = 1 - frame["certified_unbounded"]
    return ModalityReport(frame, norm, model.rule)
