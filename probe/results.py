"""Named results: frozen dataclasses with ``to_frame()`` and, where a picture helps, ``plot()``."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

__all__ = ["AttackResult", "Attribution", "RobustnessCurve", "Certificate"]


def _np(t: torch.Tensor | None) -> np.ndarray | None:
    return None if t is None else t.detach().cpu().numpy()


_ACRONYMS = {"pgd": "PGD", "fgsm": "FGSM", "cw": "C&W", "fmn": "FMN", "deepfool+fmn": "DeepFool+FMN", "ibp": "IBP",
             "crown": "CROWN", "sdp": "LipSDP", "lipschitz": "Lipschitz"}  # names in legends


def _axes(ax: object = None) -> object:
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.5))
    return ax


@dataclass(frozen=True)
class AttackResult:
    """Outcome of an attack or minimal-perturbation search on N inputs.

    Attributes
    ----------
    x_adv : torch.Tensor, shape (N, ...)
        Perturbed inputs (inside the space); where the search failed, the best point found.
    delta : torch.Tensor, shape (N, ...)
        ``x_adv - x``.
    success : torch.Tensor of bool, shape (N,)
        Whether ``x_adv`` satisfies the criterion (checked by a final model call).
    distance : torch.Tensor, shape (N,)
        Size of ``delta`` in ``norm``; ``inf`` where the search failed.
    queries : torch.Tensor of int64, shape (N,)
        Model evaluations spent on each input (forward passes; a backward pass is not counted).
    norm : str
        "linf", "l2", "l1" or "l0" (changed positions in a ``OneHot`` space).
    method : str
        The attack that produced it.
    """

    x_adv: torch.Tensor
    delta: torch.Tensor
    success: torch.Tensor
    distance: torch.Tensor
    queries: torch.Tensor
    norm: str = "l2"
    method: str = ""

    def __len__(self) -> int:
        return int(self.success.shape[0])

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean())

    def to_frame(self) -> pd.DataFrame:
        """One row per input: ``success``, ``distance``, ``queries``."""
        return pd.DataFrame({
            "success": _np(self.success),
            "distance": _np(self.distance),
            "queries": _np(self.queries),
        }).rename_axis("input").assign(norm=self.norm, method=self.method)

    def plot(self, ax: object = None) -> object:
        """Empirical cumulative distribution of the distances found (fraction flipped vs budget)."""
        ax = _axes(ax)
        d = np.sort(_np(self.distance))
        d = d[np.isfinite(d)]
        frac = np.arange(1, len(d) + 1) / len(self)
        ax.step(np.concatenate([[0.0], d]), np.concatenate([[0.0], frac]), where="post",
                label=self.method or None)
        ax.set_xlabel(f"perturbation size ({self.norm})")
        ax.set_ylabel("fraction of inputs flipped")
        ax.set_ylim(0, 1.02)
        if not ax.get_title():
            ax.set_title(f"inputs flipped within each budget ({len(self)} inputs)")
        return ax


@dataclass(frozen=True)
class Attribution:
    """Per-feature importance, shaped like the input.

    Attributes
    ----------
    values : torch.Tensor, shape (N, ...)
        Attribution of each input feature.
    method : str
        How it was computed ("gradient", "integrated_gradients", "occlusion", ...).
    extras : dict
        Method-specific diagnostics (e.g. the completeness gap of integrated gradients,
        the R^2 of a surrogate fit).
    """

    values: torch.Tensor
    method: str
    extras: dict = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """Long format: one row per input and feature (``input``, ``feature``, ``value``)."""
        v = _np(self.values).reshape(self.values.shape[0], -1)
        n, f = v.shape
        return pd.DataFrame({"input": np.repeat(np.arange(n), f), "feature": np.tile(np.arange(f), n),
                             "value": v.ravel()}).assign(method=self.method)

    def plot(self, ax: object = None, index: int = 0, names: list[str] | None = None, top: int = 20) -> object:
        """Bar chart of the ``top`` features by |attribution| for input ``index`` (heat map for 2-d inputs)."""
        ax = _axes(ax)
        v = _np(self.values[index])
        if v.ndim == 2:
            lim = np.abs(v).max() or 1.0
            im = ax.imshow(v, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
            ax.figure.colorbar(im, ax=ax, shrink=0.8, label="attribution (output units)")
            ax.set_xlabel("position")
            ax.set_ylabel("channel")
        else:
            v = v.ravel()
            order = np.argsort(-np.abs(v))[:top][::-1]
            labels = [names[i] if names is not None else str(i) for i in order]
            ax.barh(range(len(order)), v[order], color=np.where(v[order] >= 0, "tab:red", "tab:blue"))
            ax.set_yticks(range(len(order)), labels)
            ax.set_xlabel("attribution")
            ax.set_ylabel("feature")
        ax.set_title(self.method)
        return ax


@dataclass(frozen=True)
class RobustnessCurve:
    """Accuracy (or criterion not met) against perturbation budget.

    Attributes
    ----------
    eps : torch.Tensor, shape (E,)
        Budgets.
    empirical : torch.Tensor, shape (E,)
        Fraction of inputs on which the attack failed at each budget (empirical robust
        accuracy when the criterion is misclassification): an *upper* bound on true robustness.
    certified : torch.Tensor, shape (E,), optional
        Fraction certified robust at each budget: a *lower* bound on true robustness.
    norm : str
        The norm of the budgets.
    clean : float
        Fraction of inputs not satisfying the criterion unperturbed (clean accuracy).
    method : str
        Attack (and certifier) used.
    """

    eps: torch.Tensor
    empirical: torch.Tensor
    certified: torch.Tensor | None = None
    norm: str = "linf"
    clean: float = 1.0
    method: str = ""

    def to_frame(self) -> pd.DataFrame:
        df = pd.DataFrame({"eps": _np(self.eps), "empirical": _np(self.empirical)})
        if self.certified is not None:
            df["certified"] = _np(self.certified)
        return df

    def plot(self, ax: object = None, label: str | None = None, certified_label: str | None = None,
             title: str | None = None) -> object:
        """Empirical (attack, or random corruption) and certified robust accuracy against the budget.

        Parameters
        ----------
        ax : matplotlib Axes, optional
        label : str, optional
            Names the empirical curve (default: the attack or corruption in ``method``, e.g. ``"PGD"``);
            the legend reads ``"label (attack)"`` or ``"label (corruption)"``.
        certified_label : str, optional
            Names the certified curve (default: the certifier in ``method``, e.g. ``"CROWN"``); the
            legend reads ``"certified_label (certified)"``.
        title : str, optional
            Default: ``"robust accuracy against the <norm> budget"``, unless ``ax`` has a title already.
        """
        ax = _axes(ax)
        eps = _np(self.eps)
        attack, certifier = self.method, ""
        if self.certified is not None and "+" in self.method:  # "<attack>+<certifier>"
            attack, _, certifier = self.method.rpartition("+")
        corruption = attack.startswith("corruption:")
        kind = "corruption" if corruption else "attack"
        name = label or (attack.partition(":")[2] if corruption else _ACRONYMS.get(attack, attack)) or "empirical"
        line = ax.plot(eps, _np(self.empirical), marker="o", ms=3, label=f"{name} ({kind})")
        if self.certified is not None:
            cname = certified_label or _ACRONYMS.get(certifier, certifier) or "bound"
            ax.plot(eps, _np(self.certified), ls="--", marker="s", ms=3, color=line[0].get_color(),
                    label=f"{cname} (certified)")
            ax.fill_between(eps, _np(self.certified), _np(self.empirical), color=line[0].get_color(), alpha=0.12,
                            label="in between: true robust accuracy")
        ax.set_xlabel(f"budget eps ({self.norm})")
        ax.set_ylabel("robust accuracy")
        ax.set_ylim(0, 1.02)
        if title is not None or not ax.get_title():
            ax.set_title(title or f"robust accuracy against the {self.norm} budget")
        ax.legend(frameon=False)
        return ax


@dataclass(frozen=True)
class Certificate:
    """Sound bounds on a model's outputs (and the radius they certify).

    Attributes
    ----------
    lower, upper : torch.Tensor, shape (N, K)
        Every output of every input inside the perturbation set lies in [lower, upper]
        (with probability ``confidence`` for probabilistic methods).
    radius : torch.Tensor, shape (N,), optional
        Certified radius (0 where nothing is certified).
    method : str
        "ibp", "crown", "lipschitz", "smoothing", ...
    confidence : float or None
        None for deterministic certificates, ``1 - alpha`` for randomized smoothing.
    """

    lower: torch.Tensor | None
    upper: torch.Tensor | None
    radius: torch.Tensor | None = None
    method: str = ""
    confidence: float | None = None

    def to_frame(self) -> pd.DataFrame:
        cols: dict[str, np.ndarray] = {}
        if self.lower is not None:
            lo, hi = _np(self.lower), _np(self.upper)
            lo, hi = lo.reshape(lo.shape[0], -1), hi.reshape(hi.shape[0], -1)
            for k in range(lo.shape[1]):
                cols[f"lower_{k}"], cols[f"upper_{k}"] = lo[:, k], hi[:, k]
        if self.radius is not None:
            cols["radius"] = _np(self.radius)
        return pd.DataFrame(cols).rename_axis("input").assign(method=self.method)
