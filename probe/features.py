r"""Robust and non-robust features: the constructions of Ilyas et al. (2019), the distribution of Tsipras et al. (2019).

Ilyas, Santurkar, Tsipras, Engstrom, Tran & Madry, "Adversarial Examples Are Not Bugs, They Are
Features", NeurIPS 2019, call a feature :math:`f: x \mapsto \mathbb{R}` (mean 0, variance 1 on
the data) :math:`\rho`-useful when :math:`\mathbb{E}[y f(x)] \ge \rho` and
:math:`\gamma`-robustly useful when :math:`\mathbb{E}[\inf_{\delta \in \Delta} y f(x + \delta)] \ge
\gamma > 0`; a useful feature that is not robustly useful is *non-robust*. Two constructions show
that models rely on non-robust features and that those generalise:

- :func:`feature_dataset` (:math:`\widehat{D}_R`, :math:`\widehat{D}_{NR}`): every training input
  is replaced by an input, grown from another random training input, whose representation under a
  given model matches the original one's. Through a robust model the new set keeps only robust
  features; through a standard model it keeps non-robust ones too.
- :func:`relabelled_dataset` (:math:`\widehat{D}_{rand}`, :math:`\widehat{D}_{det}`): every input is
  attacked towards a target class (random, or :math:`y + 1 \bmod C`) and *labelled with the target*.
  To a human every label is wrong, yet a model trained on it classifies the original test set
  better than chance: the small perturbations carry features that generalise.

:class:`TsiprasDistribution` is the ground truth (Tsipras, Santurkar, Engstrom, Turner & Madry,
"Robustness May Be at Odds with Accuracy", ICLR 2019): one robust, moderately predictive feature
and many weakly predictive, non-robust ones, where standard and robust accuracies of linear
classifiers and the usefulness of linear features are known in closed form.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .devices import as_input, batches, model_hygiene, resolve_device
from .errors import ProbeError
from .norms import check_norm, dual
from .spaces import Space, as_space

__all__ = ["TsiprasDistribution", "linear_feature_usefulness", "FeatureDataset", "invert_representation",
           "feature_dataset", "relabelled_dataset", "penultimate"]


def _phi(t: float) -> float:
    """Standard normal CDF; a step (0, 1/2 at 0, 1) at infinite arguments."""
    return 0.5 * math.erfc(-t / math.sqrt(2.0))


def _q_order(norm: str) -> float:
    return {"l1": 1.0, "l2": 2.0, "linf": float("inf")}[dual(check_norm(norm))]


@dataclass(frozen=True)
class TsiprasDistribution:
    r"""The distribution of Tsipras et al. (ICLR 2019, Section 2.1).

    :math:`y \sim U\{-1, +1\}`; :math:`x_1 = y` with probability :math:`p`, else :math:`-y` (robust,
    moderately predictive); :math:`x_2, \dots, x_{d+1} \sim N(\eta y, 1)` independently (each weakly
    predictive, together very predictive, and moved to the other class by an L-inf perturbation of
    :math:`2\eta`).

    Parameters
    ----------
    p : float, default 0.9
        Probability that the robust feature agrees with the label (0.5 < p < 1).
    d : int, default 100
        Number of non-robust features.
    eta : float, optional
        Mean shift of the non-robust features; default :math:`3 / \sqrt{d}`, so that averaging them
        classifies with accuracy :math:`\Phi(3) \approx 0.9987`.
    """

    p: float = 0.9
    d: int = 100
    eta: float | None = None

    def __post_init__(self) -> None:
        if not 0.5 < float(self.p) < 1:
            raise ProbeError(f"p must lie strictly between 0.5 and 1, got {self.p!r}")
        if int(self.d) != self.d or self.d < 1:
            raise ProbeError(f"d must be a positive integer, got {self.d!r}")
        if self.eta is None:
            object.__setattr__(self, "eta", 3.0 / math.sqrt(self.d))
        if not float(self.eta) > 0:
            raise ProbeError(f"eta must be positive, got {self.eta!r}")

    def sample(self, n: int, *, seed: int = 0, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` draws: inputs (n, d + 1) and labels (n,) in {-1, +1} (a private, seeded generator)."""
        g = torch.Generator().manual_seed(int(seed))
        dtype = dtype or torch.get_default_dtype()
        y = torch.randint(0, 2, (int(n),), generator=g).to(dtype) * 2 - 1
        agree = torch.rand(int(n), generator=g, dtype=dtype) < self.p
        x1 = torch.where(agree, y, -y)
        rest = self.eta * y[:, None] + torch.randn(int(n), self.d, generator=g, dtype=dtype)
        return torch.cat([x1[:, None], rest], 1), y.long()

    def _split(self, w: object) -> tuple[float, float, float, torch.Tensor]:
        w = torch.as_tensor(w, dtype=torch.float64).reshape(-1)
        if w.numel() != self.d + 1:
            raise ProbeError(f"a linear classifier of this distribution has {self.d + 1} weights, got {w.numel()}")
        v = w[1:]
        return float(w[0]), float(v.sum()), float(v.norm()), w

    def accuracy(self, w: object, b: float = 0.0, *, eps: float = 0.0, norm: str = "linf") -> float:
        r"""Exact (robust) accuracy of the linear classifier :math:`\operatorname{sign}(w^\top x + b)`.

        Against perturbations :math:`\lVert \delta \rVert_p \le \epsilon` of all features the worst
        case lowers the margin :math:`y (w^\top x + b)` by :math:`\epsilon \lVert w \rVert_q`
        (:math:`1/p + 1/q = 1`). With :math:`w = (w_1, v)` the margin is
        :math:`w_1 s + \eta \textstyle\sum_j v_j + y b + \lVert v \rVert_2 Z`, :math:`s = \pm 1` with
        probabilities :math:`p, 1 - p`, so the accuracy is

        .. math:: \frac12 \sum_{y = \pm 1} \Big[p\, \Phi\big(\tfrac{w_1 + m_y}{\lVert v \rVert_2}\big)
                  + (1 - p)\, \Phi\big(\tfrac{-w_1 + m_y}{\lVert v \rVert_2}\big)\Big], \qquad
                  m_y = \eta \textstyle\sum_j v_j + y b - \epsilon \lVert w \rVert_q.

        The averaging classifier :math:`w = (0, 1/d, \dots, 1/d)` scores :math:`\Phi(\eta\sqrt d)`
        clean; the robust one :math:`w = (1, 0, \dots, 0)` scores :math:`p` for any
        :math:`\epsilon < 1` in L-inf.
        """
        eps = float(eps)
        if not eps >= 0:
            raise ProbeError(f"eps must be >= 0, got {eps!r}")
        w1, vsum, vnorm, w = self._split(w)
        shift = eps * float(torch.linalg.vector_norm(w, ord=_q_order(norm)))
        total = 0.0
        for y in (1.0, -1.0):
            m = self.eta * vsum + y * float(b) - shift
            for s, prob in ((1.0, self.p), (-1.0, 1 - self.p)):
                mean = s * w1 + m
                if vnorm > 0:
                    total += 0.5 * prob * _phi(mean / vnorm)
                else:  # a deterministic margin: correct only where strictly positive
                    total += 0.5 * prob * float(mean > 0)
        return total

    def robust_accuracy_bound(self, standard_accuracy: float) -> float:
        r"""Tsipras et al.'s Theorem 2.1: the most robust accuracy a classifier can keep against L-inf
        perturbations of :math:`\epsilon \ge 2\eta` given its standard accuracy :math:`1 - \delta`:
        :math:`\min(1, \frac{p}{1 - p}\, \delta)`. The robust classifier attains it (:math:`\delta = 1 - p`)."""
        delta = 1.0 - float(standard_accuracy)
        if not -1e-12 <= delta <= 1:
            raise ProbeError(f"standard_accuracy must lie in [0, 1], got {standard_accuracy!r}")
        return min(1.0, self.p / (1 - self.p) * max(delta, 0.0))

    def usefulness(self, w: object, *, eps: float = 0.0, norm: str = "linf") -> float:
        r"""Exact (robust) usefulness of the linear feature :math:`f(x) = w^\top x / \sigma`, σ its standard deviation.

        :math:`\mathbb{E}[y\, w^\top x] = w_1 (2p - 1) + \eta \sum_j v_j`,
        :math:`\sigma^2 = w_1^2 + \eta^2 (\sum_j v_j)^2 + \lVert v \rVert_2^2 + 2 w_1 \eta (2p - 1) \sum_j v_j`,
        and the robust usefulness subtracts :math:`\epsilon \lVert w \rVert_q / \sigma` (Ilyas et al.
        2019, Section 2; for linear features, Goh, "Two Examples of Useful, Non-Robust Features",
        Distill 2019). The robust feature :math:`x_1` stays useful up to :math:`\epsilon = 2p - 1`;
        the average of the others loses all usefulness at :math:`\epsilon = \eta`.
        """
        w1, vsum, vnorm, w = self._split(w)
        mean = w1 * (2 * self.p - 1) + self.eta * vsum
        var = w1 ** 2 + (self.eta * vsum) ** 2 + vnorm ** 2 + 2 * w1 * self.eta * (2 * self.p - 1) * vsum
        if var <= 0:
            raise ProbeError("the feature is constant (w = 0); usefulness is undefined")
        return (mean - float(eps) * float(torch.linalg.vector_norm(w, ord=_q_order(norm)))) / math.sqrt(var)


def linear_feature_usefulness(w: object, x: object, y: object, *, eps: float = 0.0, norm: str = "linf") -> float:
    r"""Empirical (robust) usefulness of the linear feature :math:`f(x) = (w^\top x - \mu) / \sigma` on data.

    :math:`\frac1N \sum_i y_i f(x_i) - \epsilon \lVert w \rVert_q / \sigma` with :math:`\mu, \sigma` the
    mean and standard deviation of :math:`w^\top x` on the data and :math:`y_i \in \{-1, +1\}`: the
    worst L-p perturbation of size :math:`\epsilon` moves a linear feature by
    :math:`\epsilon \lVert w \rVert_q`. Ilyas et al. (NeurIPS 2019), Section 2.

    Parameters
    ----------
    w : array-like, shape (D,)
    x : array-like, shape (N, D)
    y : array-like, shape (N,)
        Labels in {-1, +1} (or {0, 1}, read as -1 / +1).
    eps : float, default 0
    norm : {"linf", "l2", "l1"}, default "linf"
        Norm of the perturbations.
    """
    xt = as_input(x).double().flatten(1)
    w = torch.as_tensor(w, dtype=torch.float64).reshape(-1)
    if w.numel() != xt.shape[1]:
        raise ProbeError(f"w has {w.numel()} weights but the inputs have {xt.shape[1]} features")
    s = torch.where(torch.as_tensor(y).reshape(-1) > 0, 1.0, -1.0).double()
    if s.numel() != len(xt):
        raise ProbeError(f"y has {s.numel()} labels for {len(xt)} inputs")
    f = xt @ w
    sigma = float(f.std(unbiased=False))
    if sigma == 0:
        raise ProbeError("the feature is constant on the data; usefulness is undefined")
    useful = float((s * (f - f.mean())).mean()) / sigma
    return useful - float(eps) * float(torch.linalg.vector_norm(w, ord=_q_order(norm))) / sigma


@dataclass(frozen=True)
class FeatureDataset:
    """A constructed training set.

    Attributes
    ----------
    x : torch.Tensor, shape (N, ...)
    y : torch.Tensor, shape (N,)
        Its labels (for ``relabelled_dataset`` the attack targets, not the original labels).
    kind : str
        "robust", "non-robust", "rand", "det" or a name given by the caller.
    source : torch.Tensor, shape (N,)
        For ``feature_dataset`` the index of the training input each new input was grown from; for
        ``relabelled_dataset`` the original labels.
    settings : dict
        The construction's hyperparameters.
    """

    x: torch.Tensor
    y: torch.Tensor
    kind: str
    source: torch.Tensor
    settings: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.x)

    def loader(self, batch_size: int = 64, *, seed: int = 0) -> torch.utils.data.DataLoader:
        """A shuffling ``DataLoader`` over ``(x, y)`` with a seeded generator."""
        data = torch.utils.data.TensorDataset(self.x, self.y)
        return torch.utils.data.DataLoader(data, batch_size=int(batch_size), shuffle=True,
                                           generator=torch.Generator().manual_seed(int(seed)))


def penultimate(model: torch.nn.Module) -> torch.nn.Module:
    """The representation of an ``nn.Sequential`` classifier: every module but the last (the readout)."""
    if not isinstance(model, torch.nn.Sequential) or len(model) < 2:
        raise ProbeError(f"penultimate needs an nn.Sequential of at least two modules, got {type(model).__name__}; "
                         "pass the representation as a callable instead")
    return model[:-1]


def invert_representation(representation: Callable[[torch.Tensor], torch.Tensor], x: object, start: object, *,
                          steps: int = 200, step_size: float = 0.1, space: Space | None = None,
                          batch_size: int | None = 256, device: str | torch.device | None = None) -> torch.Tensor:
    r"""Inputs grown from ``start`` whose representation matches that of ``x``.

    Minimises :math:`\lVert g(x_r) - g(x) \rVert_2` over :math:`x_r` by normalised (L2 steepest
    descent) gradient steps from :math:`x_r = ` ``start``, projected into ``space`` after each step,
    as in Ilyas et al. (NeurIPS 2019, Section 3.1 and Appendix C.4); the step size decays linearly
    to zero over the steps so that the iterates settle.

    Parameters
    ----------
    representation : callable
        :math:`g`: inputs (N, ...) -> representations (N, ...) (e.g. :func:`penultimate` of a model).
    x, start : torch.Tensor, shape (N, ...)
        Targets and starting points; never modified.
    steps : int, default 200
    step_size : float, default 0.1
        Initial L2 length of a step.
    space : Space, optional
        Where the new inputs must lie (``Box(0, 1)`` for images).
    batch_size : int or None, default 256
    device : str or torch.device, optional

    Returns
    -------
    torch.Tensor, shaped like ``x``

    Notes
    -----
    A local search: a ReLU unit that is off at the start passes no gradient, so a representation
    the start does not share may stay unmatched; check the gap :math:`\lVert g(x_r) - g(x) \rVert`.
    """
    dev = resolve_device(device, representation, x)
    xt = as_input(x, device=dev)
    x0 = as_input(start, name="start", device=dev)
    if x0.shape != xt.shape:
        raise ProbeError(f"start has shape {tuple(x0.shape)} but x has {tuple(xt.shape)}")
    space = as_space(space)
    out = torch.empty_like(xt)
    view = (-1,) + (1,) * (xt.dim() - 1)
    with model_hygiene(representation, dev) as g:
        for s in batches(len(xt), batch_size):
            with torch.no_grad():
                target = g(xt[s]).flatten(1)
            z = space.project(x0[s], x0[s]).detach()
            for k in range(int(steps)):
                z.requires_grad_(True)
                with torch.enable_grad():
                    loss = (g(z).flatten(1) - target).norm(dim=1).sum()
                    (grad,) = torch.autograd.grad(loss, z)
                length = step_size * (1 - k / int(steps))
                step = grad / grad.flatten(1).norm(dim=1).clamp(min=1e-30).view(view)
                # the space is applied around z itself: only its bounds constrain the grown input
                z = space.project(z.detach(), z.detach() - length * step).detach()
            out[s] = z
    return out


def feature_dataset(representation: Callable[[torch.Tensor], torch.Tensor], x: object, y: object, *,
                    kind: str = "robust", steps: int = 200, step_size: float = 0.1, space: Space | None = None,
                    seed: int = 0, batch_size: int | None = 256,
                    device: str | torch.device | None = None) -> FeatureDataset:
    r"""The training set restricted to the features a model uses (:math:`\widehat{D}_R`, :math:`\widehat{D}_{NR}`).

    Each :math:`(x_i, y_i)` becomes :math:`(x_r, y_i)` with :math:`x_r` grown from another training
    input :math:`x_{\pi(i)}` (a random permutation :math:`\pi`) until :math:`g(x_r) \approx g(x_i)`
    (:func:`invert_representation`). Through the representation of a robust (adversarially trained)
    model, :math:`x_r` carries only the robust features of :math:`x_i`, and a standard model trained
    on the result is robust on the original test set; through a standard model it carries
    non-robust features too, and a model trained on it is not. Ilyas et al., NeurIPS 2019,
    Section 3.1.

    Parameters
    ----------
    representation : callable
        Inputs -> representations (e.g. ``penultimate(robust_model)``).
    x : torch.Tensor, shape (N, ...)
    y : array-like, shape (N,)
    kind : str, default "robust"
        A name for the result ("robust" for :math:`\widehat D_R`, "non-robust" for :math:`\widehat D_{NR}`).
    steps, step_size, space, batch_size, device
        As in :func:`invert_representation`.
    seed : int, default 0
        Seed of the permutation of starting inputs.

    Returns
    -------
    FeatureDataset
        ``source`` holds :math:`\pi(i)`.
    """
    xt = as_input(x)
    yt = torch.as_tensor(y).reshape(-1)
    if len(yt) != len(xt):
        raise ProbeError(f"y has {len(yt)} labels for {len(xt)} inputs")
    perm = torch.randperm(len(xt), generator=torch.Generator().manual_seed(int(seed)))
    xr = invert_representation(representation, xt, xt[perm], steps=steps, step_size=step_size, space=space,
                               batch_size=batch_size, device=device)
    settings = {"steps": int(steps), "step_size": float(step_size), "seed": int(seed)}
    return FeatureDataset(x=xr, y=yt.to(xr.device), kind=kind, source=perm.to(xr.device), settings=settings)


def relabelled_dataset(model: torch.nn.Module, x: object, y: object, *, eps: float, norm: str = "l2",
                       kind: str = "rand", steps: int = 100, step_size: float | None = None,
                       space: Space | None = None, seed: int = 0, batch_size: int | None = 256,
                       device: str | torch.device | None = None) -> FeatureDataset:
    r"""Targeted adversarial examples labelled with their target (:math:`\widehat D_{rand}`, :math:`\widehat D_{det}`).

    For each :math:`(x_i, y_i)` a target :math:`t_i` is drawn uniformly from the classes
    (``kind="rand"``) or set to :math:`y_i + 1 \bmod C` (``kind="det"``), and

    .. math:: x_i' = \arg\min_{\lVert x' - x_i \rVert_p \le \epsilon} \mathrm{CE}(f(x'), t_i)

    is approximated by ``steps`` of projected gradient descent on the cross-entropy
    (:func:`probe.train.adversarial.maximize_loss`, run to the end rather than stopped at the
    first success, as in the paper). The new set is :math:`\{(x_i', t_i)\}`. In
    :math:`\widehat D_{rand}` the robust features carry no information about the new labels; in
    :math:`\widehat D_{det}` they point to the wrong class; a model trained on either that beats
    chance on the original test set has learnt from the non-robust features the attack planted.
    Ilyas et al., NeurIPS 2019, Section 3.2.

    Parameters
    ----------
    model : torch.nn.Module
        A *standard* (non-robust) classifier returning class scores (N, C).
    x : torch.Tensor, shape (N, ...)
    y : array-like of int, shape (N,)
    eps : float
        Budget of the perturbations.
    norm : {"l2", "linf", "l1"}, default "l2"
    kind : {"rand", "det"}, default "rand"
    steps : int, default 100
    step_size : float, optional
        Default :math:`2.5\,\epsilon / \text{steps}`.
    space : Space, optional
        Where the perturbed inputs must lie (``Box(0, 1)`` for images).
    seed : int, default 0
        Seed of the random targets.
    batch_size : int or None, default 256
    device : str or torch.device, optional

    Returns
    -------
    FeatureDataset
        ``y`` the targets, ``source`` the original labels.
    """
    from .train.adversarial import check_attack_settings, maximize_loss

    if kind not in ("rand", "det"):
        raise ProbeError(f"kind must be 'rand' or 'det', got {kind!r}")
    eps, norm, steps, step_size = check_attack_settings(eps, norm, steps, step_size)
    space = as_space(space)
    dev = resolve_device(device, model, x)
    xt = as_input(x, device=dev)
    yt = torch.as_tensor(y, device=dev).reshape(-1).long()
    if len(yt) != len(xt):
        raise ProbeError(f"y has {len(yt)} labels for {len(xt)} inputs")
    space.validate(xt)
    out = torch.empty_like(xt)
    with model_hygiene(model, dev) as m:
        with torch.no_grad():
            n_classes = int(m(xt[:1]).shape[1])
        if int(yt.min()) < 0 or int(yt.max()) >= n_classes:
            bad = int(((yt < 0) | (yt >= n_classes)).nonzero()[0])
            raise ProbeError(f"label {int(yt[bad])} of input {bad} is not a class of a model with {n_classes} outputs")
        if kind == "rand":
            g = torch.Generator().manual_seed(int(seed))
            targets = torch.randint(n_classes, (len(xt),), generator=g).to(dev)
        else:
            targets = (yt + 1) % n_classes
        for s in batches(len(xt), batch_size):
            t = targets[s]
            out[s] = maximize_loss(m, xt[s], lambda o, t=t: -F.cross_entropy(o, t, reduction="none"), eps=eps,
                                   norm=norm, steps=steps, step_size=step_size, space=space, start=None)
    settings = {"eps": eps, "norm": norm, "steps": steps, "step_size": step_size, "seed": int(seed)}
    return FeatureDataset(x=out, y=targets, kind=kind, source=yt, settings=settings)
