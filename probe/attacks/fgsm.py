"""Fast gradient sign method (Goodfellow et al., 2015) and its L2 / L1 fast-gradient variants."""

from __future__ import annotations

import torch

from ..criteria import Criterion
from ..errors import ProbeError
from ..norms import check_norm, steepest_direction
from ..spaces import Space
from .base import Attack, Forward, check_eps, loss_and_grad

__all__ = ["FGSM"]


class FGSM(Attack):
    r"""One gradient step of size ``eps`` in the norm's steepest-ascent direction.

    :math:`x' = \Pi_S\big(x + \epsilon\, d_p(\nabla_x L(x))\big)` with :math:`d_p` the unit
    steepest-ascent direction of the norm: ``sign(g)`` for L-inf (the fast gradient sign
    method of Goodfellow, Shlens & Szegedy, "Explaining and Harnessing Adversarial
    Examples", ICLR 2015), ``g / ||g||_2`` for L2 (the fast gradient method of Kurakin et
    al. 2017) and the sparse L1 direction of Tramer & Boneh (2019) for L1. ``L`` is the
    criterion's margin loss, so the step moves towards success whatever the criterion.

    Parameters
    ----------
    eps : float or torch.Tensor of shape (N,)
        Step size = budget (one per input if a tensor).
    norm : {"linf", "l2", "l1"}, default "linf"
    sparsity : float, default 0.99
        L1 only: quantile of |gradient| above which coordinates move.
    """

    name = "fgsm"

    def __init__(self, *, eps: float | torch.Tensor, norm: str = "linf", sparsity: float = 0.99):
        self.eps = eps
        self.norm = norm
        self.sparsity = sparsity

    def validate(self) -> None:
        check_norm(self.norm)
        check_eps(self.eps)

    def presample(self, x: torch.Tensor, generator: torch.Generator) -> dict[str, torch.Tensor]:
        eps = check_eps(self.eps)
        n = x.shape[0]
        eps_vec = eps if torch.is_tensor(eps) else torch.full((n,), eps)
        if eps_vec.shape[0] != n:
            raise ProbeError(f"eps has {eps_vec.shape[0]} entries for {n} inputs")
        return {"eps": eps_vec}

    def run(self, f: Forward, x: torch.Tensor, criterion: Criterion, reference: torch.Tensor, space: Space,
            eps: torch.Tensor) -> torch.Tensor:
        norm = check_norm(self.norm)
        _, grad, _ = loss_and_grad(f, x, criterion, reference)
        e = eps.to(x).view((-1,) + (1,) * (x.dim() - 1))
        return space.project(x, x + e * steepest_direction(grad, norm, self.sparsity))
