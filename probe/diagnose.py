"""Telling real robustness from a false sense of it: checks for gradient masking.

A model can look robust to a gradient attack because its gradients are useless
(zero, NaN, random, or pointing the wrong way) rather than because no nearby
adversarial input exists — "obfuscated gradients" (Athalye, Carlini & Wagner, ICML
2018). :func:`gradient_masking` runs the sanity checks of Carlini et al.'s evaluation
checklist and of AutoAttack's flags (Croce & Hein, ICML 2020): each one compares what a
healthy gradient attack must achieve with what weaker or gradient-free attacks achieve.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import pandas as pd
import torch
import torch.nn.functional as F

from .attacks.pgd import PGD
from .criteria import Misclassify, as_logits
from .devices import as_input, model_hygiene, resolve_device
from .errors import ProbeError
from .models import forward
from .norms import check_norm, lp_norm, project_ball, sample_ball
from .spaces import Space, as_space

__all__ = ["gradient_masking", "MaskingReport", "random_search", "CHECKS"]

# what each check means when it fires, and what to do about it
CHECKS: Mapping[str, str] = MappingProxyType({
    "zero_gradients": (
        "The input gradient of the loss is exactly zero on many inputs, so gradient attacks cannot move: a "
        "non-differentiable step (quantisation, rounding, thresholding, argmax) or a saturated layer hides the "
        "loss surface. Attack the model through a differentiable approximation of that step (BPDA: identity or "
        "a smooth surrogate on the backward pass) and use gradient-free attacks before claiming robustness."),
    "nonfinite_gradients": (
        "Some input gradients are NaN or infinite, so gradient steps are undefined: numerically unstable "
        "operations (log of zero, division by a vanishing norm, exploding logits). Fix the numerics or attack a "
        "numerically stable equivalent (e.g. the margin of the logits, not of log-probabilities)."),
    "stochastic_gradients": (
        "Two evaluations of the gradient at the same input differ: the model is randomised (input transforms, "
        "dropout at test time, noise). A single gradient is then a poor ascent direction. Attack the expectation "
        "over the randomness (EOT: average gradients over many draws) and report robustness of that attack."),
    "transfer_beats_whitebox": (
        "Adversarial inputs crafted on a surrogate model fool this model more often than a white-box attack on "
        "the model itself: its own gradients are less useful than a copy's, the hallmark of gradient masking. "
        "Report the transfer (or a stronger black-box) attack as the robustness, and find which layer breaks "
        "the gradient."),
    "noise_beats_gradient": (
        "Random noise inside the budget finds adversarial inputs where the gradient attack does not: the "
        "gradient attack is not even a local search here. Treat the gradient-attack accuracy as meaningless; "
        "use gradient-free attacks (random search, Square) and BPDA/EOT adaptations."),
    "random_search_beats_gradient": (
        "A gradient-free random search (Square-like) succeeds where the gradient attack fails: adversarial "
        "inputs exist within the budget but gradients do not lead to them. Report the gradient-free attack's "
        "success, and adapt the gradient attack (BPDA, EOT, a different loss) until it does at least as well."),
    "unbounded_fails": (
        "With an essentially unbounded budget the gradient attack should change every prediction; it does not, "
        "so the attack is broken on this model rather than the model robust. Check the gradients and the loss, "
        "increase steps, and do not trust bounded-budget results from this attack."),
    "more_steps_do_not_help": (
        "Another attack beats the gradient attack and ten times more gradient steps do not close the gap (or "
        "many steps do worse than one): the shortfall is not a matter of iterations, the gradient leads nowhere "
        "(masked or misleading). On a differentiable model iterative attacks match or beat single-step ones and "
        "converge with more steps; check the gradients and use gradient-free or adapted (BPDA, EOT) attacks."),
})


@dataclass(frozen=True)
class MaskingReport:
    """Outcome of :func:`gradient_masking`.

    Attributes
    ----------
    flags : Mapping[str, bool]
        One entry per check in :data:`CHECKS`; True where the check found a sign of gradient masking.
    explanations : Mapping[str, str]
        For each check, what a raised flag means and what to do.
    rates : Mapping[str, float]
        Attack success rates on the inputs diagnosed (correctly classified ones): ``whitebox``
        (PGD), ``one_step`` and ``iterative`` (single-step vs many-step PGD from the clean input),
        ``whitebox_10x_steps`` (run only when another attack beats PGD), ``noise``, ``random_search``,
        ``transfer``, ``unbounded``.
    details : Mapping[str, float]
        Gradient statistics: ``zero_gradient_fraction``, ``nonfinite_gradient_fraction``,
        ``gradient_difference`` (largest relative difference between two evaluations), and
        ``surrogate_agreement`` (fraction of inputs on which the surrogate copies the model's label).
    eps : float
    norm : str
    n : int
        Number of inputs diagnosed.
    """

    flags: Mapping[str, bool]
    explanations: Mapping[str, str]
    rates: Mapping[str, float]
    details: Mapping[str, float]
    eps: float
    norm: str
    n: int
    settings: dict = field(default_factory=dict)

    @property
    def suspicious(self) -> bool:
        """True if any check found a sign of gradient masking."""
        return any(self.flags.values())

    @property
    def raised(self) -> list[str]:
        """Names of the checks that fired."""
        return [k for k, v in self.flags.items() if v]

    def to_frame(self) -> pd.DataFrame:
        """One row per check: ``flag`` and ``explanation``."""
        return pd.DataFrame({"flag": pd.Series(dict(self.flags)),
                             "explanation": pd.Series(dict(self.explanations))}).rename_axis("check")

    def summary(self) -> str:
        """Readable verdict: the success rates, then each raised flag with its meaning and remedy."""
        lines = [f"gradient-masking diagnosis at eps={self.eps:g} ({self.norm}) on {self.n} inputs: "
                 + ("SUSPICIOUS" if self.suspicious else "no sign of gradient masking")]
        lines.append("  success rates: " + ", ".join(f"{k} {v:.2f}" for k, v in self.rates.items()))
        for name in self.raised:
            lines.append(f"  [!] {name}: {self.explanations[name]}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


def _margin(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``z_y - max_{j != y} z_j``: positive while the input is classified as ``y``."""
    return -Misclassify().loss(out, y)


def random_search(model: object, x: torch.Tensor, y: torch.Tensor, *, eps: float | torch.Tensor, norm: str = "linf",
                  queries: int = 500, space: Space | None = None, p_init: float = 0.1,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    r"""Gradient-free random search for misclassification inside an L-p ball, in the style of Square Attack.

    Keeps a perturbation on the ball's boundary and proposes changes to a random subset of
    a fraction :math:`p_t` of the features, accepting a proposal when it lowers the margin
    :math:`z_y - \max_{j \ne y} z_j`; :math:`p_t` halves on Square Attack's schedule. L-inf
    proposals set the chosen features to :math:`\pm\epsilon` (Square's vertices); L2/L1
    proposals add Gaussian noise there and rescale to the sphere. Unlike Square (which moves
    square windows of images) the subsets are unstructured, so any input shape works.
    Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box
    adversarial attack via random search", ECCV 2020.

    Parameters
    ----------
    model : callable
        Evaluated without gradients.
    x : torch.Tensor, shape (N, ...)
    y : torch.Tensor of int, shape (N,)
        Labels to move away from.
    eps : float or torch.Tensor of shape (N,)
    norm : {"linf", "l2", "l1"}, default "linf"
    queries : int, default 500
        Model evaluations per input (after the initial one).
    space : Space, optional
    p_init : float, default 0.1
        Initial fraction of features changed per proposal.
    generator : torch.Generator, optional
        CPU generator for the proposals.

    Returns
    -------
    torch.Tensor of bool, shape (N,)
        Whether an adversarial input was found.
    """
    norm = check_norm(norm)
    space = as_space(space)
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    n, d = x.shape[0], x[0].numel()
    radius = torch.as_tensor(eps, dtype=x.dtype, device=x.device).reshape(-1)
    radius = radius.expand(n) if radius.numel() == 1 else radius
    eps = radius[:, None]
    flat_shape = (n, d)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=g, dtype=x.dtype).to(x.device)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(shape, generator=g, dtype=x.dtype).to(x.device)

    def to_sphere(delta: torch.Tensor) -> torch.Tensor:
        if norm == "linf":
            return delta
        nrm = lp_norm(delta, norm).clamp(min=1e-30).view(-1, 1)
        return delta * (eps / nrm)

    def evaluate(delta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xa = space.project(x, x + project_ball(delta.view_as(x), radius, norm))
        with torch.no_grad():
            return _margin(forward(model, xa, check=False), y), xa - x

    if norm == "linf":
        delta = eps * torch.where(rand(*flat_shape) < 0.5, -1.0, 1.0)
    else:
        delta = to_sphere(randn(*flat_shape))
    best, real = evaluate(delta)
    delta = real.reshape(flat_shape)
    for t in range(int(queries)):
        # Square Attack's schedule, stretched over the query budget (its default budget is 10,000)
        frac = t * 10_000 / max(int(queries), 1)
        halvings = sum(frac > b for b in (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000))
        k = max(1, round(p_init / 2**halvings * d))
        active = best > 0
        if not active.any():
            break
        idx = rand(n, d).argsort(1)[:, :k]
        pick = torch.zeros(flat_shape, dtype=torch.bool, device=x.device).scatter(1, idx, True)
        if norm == "linf":
            signs = eps * torch.where(rand(*flat_shape) < 0.5, -1.0, 1.0)
            proposal = torch.where(pick, signs, delta)
        else:
            scale = eps / math.sqrt(k) if norm == "l2" else eps / k
            proposal = to_sphere(delta + pick * randn(*flat_shape) * scale)
        loss, real = evaluate(proposal)
        accept = active & (loss < best)
        best = torch.where(accept, loss, best)
        delta = torch.where(accept[:, None], real.reshape(flat_shape), delta)
    return best <= 0


class _MLP(torch.nn.Module):
    def __init__(self, d: int, c: int, width: int):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(d, width), torch.nn.ReLU(),
                                       torch.nn.Linear(width, width), torch.nn.ReLU(), torch.nn.Linear(width, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _train_surrogate(model: object, x: torch.Tensor, eps: float, norm: str, space: Space, n_classes: int,
                     epochs: int, width: int, generator: torch.Generator) -> torch.nn.Module:
    """A ReLU MLP fitted to the model's labels on ``x`` and on random points of the eps-ball around it."""
    jitter = [x]
    for scale in (0.5, 1.0, 1.0, 2.0):
        noise = sample_ball(tuple(x.shape), eps * scale, norm, generator, dtype=x.dtype).to(x.device)
        jitter.append(space.project(x, x + noise))
    xs = torch.cat(jitter)
    with torch.no_grad():
        ys = torch.cat([as_logits(forward(model, xs[i:i + 1024], check=False)).argmax(1)
                        for i in range(0, len(xs), 1024)])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
        sur = _MLP(x[0].numel(), n_classes, width).to(device=x.device, dtype=x.dtype)
    opt = torch.optim.Adam(sur.parameters(), lr=3e-3)
    batch = 256
    for _ in range(int(epochs)):
        order = torch.randperm(len(xs), generator=generator).to(x.device)
        for i in range(0, len(xs), batch):
            j = order[i:i + batch]
            with torch.enable_grad():
                loss = F.cross_entropy(sur(xs[j]), ys[j])
                opt.zero_grad()
                loss.backward()
            opt.step()
    sur.eval()
    for p in sur.parameters():
        p.requires_grad_(False)
    return sur


def _gradients(model: object, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor | None:
    """Input gradient of the margin loss, or None when the outputs do not depend differentiably on x."""
    xg = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        loss = -_margin(forward(model, xg, check=False), y)
        if not loss.requires_grad:
            return None
        (grad,) = torch.autograd.grad(loss.sum(), xg)
    return grad.detach()


def gradient_masking(model: object, x: object, y: object, *, eps: float, norm: str = "linf", steps: int = 20,
                     space: Space | None = None, surrogate: object = None, surrogate_epochs: int = 60,
                     noise_samples: int = 20, queries: int = 500, eps_unbounded: float | None = None,
                     tolerance: float = 0.05, batch_size: int | None = 256,
                     device: str | torch.device | None = None, seed: int = 0) -> MaskingReport:
    r"""Check whether a model's apparent robustness at budget ``eps`` may come from gradient masking.

    Runs, on the inputs the model classifies correctly:

    * **zero_gradients / nonfinite_gradients / stochastic_gradients** — the input gradient of
      the margin loss is exactly zero on more than ``tolerance`` of the inputs, non-finite
      anywhere, or differs between two evaluations;
    * **transfer_beats_whitebox** — PGD on a surrogate (``surrogate``, or an MLP fitted here to
      the model's labels on ``x`` and random points of its eps-balls) transfers to the model
      more often than PGD on the model itself, by more than ``tolerance``;
    * **noise_beats_gradient / random_search_beats_gradient** — random noise in the ball
      (``noise_samples`` draws per input) or a Square-like random search (:func:`random_search`)
      succeeds on more than ``tolerance`` of the inputs where white-box PGD failed;
    * **unbounded_fails** — PGD with budget ``eps_unbounded`` changes fewer than
      ``1 - tolerance`` of the predictions (it should change all);
    * **more_steps_do_not_help** — ``steps``-step PGD does worse than one FGSM-like step, or
      another attack beats white-box PGD and a ten times longer PGD still does not close the gap.

    These are the checks of Carlini et al., "On Evaluating Adversarial Robustness" (2019),
    and the flags AutoAttack raises (Croce & Hein, "Reliable evaluation of adversarial
    robustness with an ensemble of diverse parameter-free attacks", ICML 2020); obfuscated
    gradients as in Athalye, Carlini & Wagner, ICML 2018. A clean report is necessary, not
    sufficient, for robustness.

    Parameters
    ----------
    model : torch.nn.Module or callable
        Classifier mapping (N, ...) to class scores (N, C).
    x : torch.Tensor or array-like, shape (N, ...)
        Inputs; never modified.
    y : array-like of int, shape (N,)
        True labels.
    eps : float
        Budget of the evaluation; pick one where the attack succeeds on part of the inputs.
    norm : {"linf", "l2", "l1"}, default "linf"
    steps : int, default 20
        Steps of the white-box PGD.
    space : Space, optional
        Where inputs may go (e.g. ``probe.Box(0, 1)``).
    surrogate : torch.nn.Module or callable, optional
        Model for the transfer attack; default: an MLP trained here for ``surrogate_epochs`` epochs.
    noise_samples : int, default 20
    queries : int, default 500
        Query budget per input of the random search.
    eps_unbounded : float, optional
        Budget of the "unbounded" attack; default ``100 * eps`` plus a hundred times the largest input norm.
    tolerance : float, default 0.05
        Fraction of inputs a check may miss by before it fires.
    batch_size : int or None, default 256
    device : str or torch.device, optional
    seed : int, default 0

    Returns
    -------
    MaskingReport
        ``.suspicious``, ``.flags``, ``.explanations``, ``.rates``; ``print(report)`` gives a verdict.

    Raises
    ------
    ProbeError
        Bad ``eps`` or labels, or no input the model classifies correctly.
    """
    from .attacks.base import check_eps

    eps = float(check_eps(eps))
    norm = check_norm(norm)
    space = as_space(space)
    tolerance = float(tolerance)
    if not 0 <= tolerance < 1:
        raise ProbeError(f"tolerance must lie in [0, 1), got {tolerance}")
    if int(steps) < 2:
        raise ProbeError(f"steps must be at least 2 (the check compares one step with many), got {steps}")
    dev = resolve_device(device, model, x)
    x = as_input(x, device=dev)
    space.validate(x)
    y = torch.as_tensor(y).reshape(-1).long().to(dev)
    if y.shape[0] != x.shape[0]:
        raise ProbeError(f"y has {y.shape[0]} labels for {x.shape[0]} inputs")
    g = torch.Generator().manual_seed(int(seed))

    with model_hygiene(model, dev) as m:
        with torch.no_grad():
            clean = as_logits(torch.cat([forward(m, x[i:i + 1024]) for i in range(0, len(x), 1024)]))
        bad = ((y < 0) | (y >= clean.shape[1])).nonzero()
        if len(bad):
            i = int(bad[0])
            raise ProbeError(f"y[{i}] = {int(y[i])} is not a class index of a model with {clean.shape[1]} classes")
        keep = clean.argmax(1) == y
        if not keep.any():
            raise ProbeError("the model classifies none of the inputs correctly: nothing to diagnose")
        x, y = x[keep], y[keep]
        n = len(x)

        # 1. the gradients themselves
        g1, g2 = _gradients(m, x, y), _gradients(m, x, y)
        differentiable = g1 is not None
        if differentiable:
            flat1, flat2 = g1.flatten(1), g2.flatten(1)
            finite = torch.isfinite(flat1).all(1)
            zero_frac = float(((flat1 == 0).all(1) & finite).float().mean())
            nonfinite_frac = float((~finite).float().mean())
            scale = flat1.abs().amax(1).clamp(min=1e-12)
            diff = ((flat1 - flat2).abs().amax(1) / scale)[finite & torch.isfinite(flat2).all(1)]
            grad_diff = float(diff.max()) if len(diff) else 0.0
        else:
            zero_frac, nonfinite_frac, grad_diff = 1.0, 0.0, 0.0

        crit = Misclassify(y)

        def rate(t: torch.Tensor) -> float:
            return float(t.float().mean())

        def pgd(model_: object, **kw: object) -> torch.Tensor:
            if not differentiable and model_ is m:
                return torch.zeros(n, dtype=torch.bool, device=dev)
            res = PGD(norm=norm, seed=seed, **kw)(model_, x, crit, space=space, batch_size=batch_size, device=dev,
                                                  already_satisfied="keep")
            return res.success

        def fooled(x_adv: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return as_logits(forward(m, x_adv, check=False)).argmax(1) != y

        # 2. white-box PGD, single step vs many from the clean input, unbounded budget
        whitebox = pgd(m, eps=eps, steps=int(steps))
        one = pgd(m, eps=eps, steps=1, step_size=eps, random_start=False)
        many = pgd(m, eps=eps, steps=int(steps), random_start=False)
        if eps_unbounded is None:
            eps_unbounded = 100.0 * eps + 100.0 * float(lp_norm(x, norm).max())
        unb = pgd(m, eps=float(check_eps(eps_unbounded, "eps_unbounded")), steps=max(int(steps), 50),
                  random_start=False)

        # 3. random noise and a gradient-free search
        noise_hit = torch.zeros(n, dtype=torch.bool, device=dev)
        for _ in range(int(noise_samples)):
            z = sample_ball(tuple(x.shape), eps, norm, g, dtype=x.dtype).to(dev)
            noise_hit |= fooled(space.project(x, x + z))
        search_hit = random_search(m, x, y, eps=eps, norm=norm, queries=queries, space=space, generator=g)

        # 4. transfer from a surrogate
        if surrogate is None:
            surrogate = _train_surrogate(m, x, eps, norm, space, clean.shape[1], surrogate_epochs, 256, g)
        with torch.no_grad():
            agreement = float((as_logits(forward(surrogate, x, check=False)).argmax(1) == y).float().mean())
        x_transfer = PGD(eps=eps, norm=norm, steps=int(steps), seed=seed)(
            surrogate, x, crit, space=space, batch_size=batch_size, device=dev, already_satisfied="keep").x_adv
        transfer = fooled(x_transfer)

        # 5. does a tenfold longer gradient attack close the gap to the best other attack?
        best_other = max(rate(noise_hit), rate(search_hit), rate(transfer))
        gap = best_other > rate(whitebox) + tolerance
        longer = pgd(m, eps=eps, steps=10 * int(steps)) if gap else whitebox

    missed = ~whitebox
    found_any = bool((whitebox | noise_hit | search_hit | transfer).any())
    more_steps_fail = (rate(many) < rate(one) - tolerance
                       or (best_other > rate(whitebox) + tolerance and rate(longer) < best_other - tolerance))
    flags = {
        "zero_gradients": zero_frac > tolerance,
        "nonfinite_gradients": nonfinite_frac > 0,
        "stochastic_gradients": grad_diff > 1e-4,
        "transfer_beats_whitebox": rate(transfer) > rate(whitebox) + tolerance,
        "noise_beats_gradient": rate(noise_hit & missed) > tolerance,
        "random_search_beats_gradient": rate(search_hit & missed) > tolerance,
        "unbounded_fails": rate(unb) < 1.0 - tolerance,
        "more_steps_do_not_help": more_steps_fail,
    }
    rates = {"whitebox": rate(whitebox), "one_step": rate(one), "iterative": rate(many),
             "whitebox_10x_steps": rate(longer), "noise": rate(noise_hit),
             "random_search": rate(search_hit), "transfer": rate(transfer), "unbounded": rate(unb)}
    if rates["whitebox"] == 0.0 and not found_any:
        warnings.warn(f"no attack succeeded at eps={eps:g}: the budget may be too small for the checks to say "
                      "anything; diagnose at a budget where attacks succeed on part of the inputs", stacklevel=2)
    details = {"zero_gradient_fraction": zero_frac, "nonfinite_gradient_fraction": nonfinite_frac,
               "gradient_difference": grad_diff, "surrogate_agreement": agreement}
    settings = {"steps": int(steps), "noise_samples": int(noise_samples), "queries": int(queries),
                "eps_unbounded": float(eps_unbounded), "tolerance": tolerance, "seed": int(seed)}
    return MaskingReport(flags=MappingProxyType(flags), explanations=CHECKS, rates=MappingProxyType(rates),
                         details=MappingProxyType(details), eps=eps, norm=norm, n=n, settings=settings)
