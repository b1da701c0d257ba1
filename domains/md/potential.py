"""An ensemble Behler-Parrinello interatomic potential with energies and forces.

Each atom ``i`` is described by atom-centred symmetry functions of its neighbours within
a cosine cutoff (Behler & Parrinello, Phys. Rev. Lett. 98, 146401, 2007; Behler,
J. Chem. Phys. 134, 074106, 2011):

- cutoff ``f_c(r) = 0.5 (cos(pi r / r_c) + 1)`` for ``r < r_c``, else 0;
- radial ``G2_i[s, k] = sum_{j != i, Z_j = s} exp(-eta_k (r_ij - R_k)^2) f_c(r_ij)``;
- angular ``G4_i[p, l] = 2^(1 - zeta) sum_{j < k, {Z_j, Z_k} = p} (1 + lambda cos theta_ijk)^zeta
  exp(-eta (r_ij^2 + r_ik^2 + r_jk^2)) f_c(r_ij) f_c(r_ik) f_c(r_jk)``,

resolved by neighbour element ``s`` and unordered element pair ``p``. The energy is a sum
of atomic energies from one small MLP per element, ``E = sum_i (b_{Z_i} + a NN_{Z_i}(G_i))``,
so it is invariant under rotation, translation and permutation of like atoms by
construction; forces are ``F = -dE/dR``. ``M`` such networks, differing in their random
initialisation, form the committee whose spread is the uncertainty (the committee of DP-GEN
and i-PI); all members run in one vectorised call (:class:`probe.active.Ensemble`). Their
forces share the descriptor Jacobian: ``F_m = -(dE_m/dG) . (dG/dR)`` with ``dG/dR`` written
out analytically per atom pair and computed once per configuration, whatever ``M``. This is
the one derivative path: prediction, training (whose forces are the same written-out
contraction) and the member-by-member baseline (:meth:`EnsemblePotential.energy_and_forces_loop`)
all use it; automatic differentiation checks it in the tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ase.data import chemical_symbols
from torch import nn

from probe.active import Ensemble
from probe.devices import resolve_device
from probe.errors import ProbeError

__all__ = ["SymmetryFunctions", "ElementMLP", "EnsemblePotential", "Prediction"]


def cosine_cutoff(r: torch.Tensor, cutoff: float) -> torch.Tensor:
    """``0.5 (cos(pi r / r_c) + 1)`` inside the cutoff, 0 outside."""
    return 0.5 * (torch.cos(math.pi * r / cutoff) + 1.0) * (r < cutoff).to(r.dtype)


class SymmetryFunctions(nn.Module):
    """Element-resolved Behler-Parrinello radial (G2) and angular (G4) symmetry functions.

    Parameters
    ----------
    n_species : int
        Number of elements ``S``.
    cutoff : float, default 6.0
        Cutoff radius ``r_c`` in Angstrom.
    n_radial : int, default 8
        Radial Gaussians with centres ``R_k`` evenly spaced in ``[0.8, r_c - 0.5]`` and
        ``eta_k = 1 / (2 h^2)``, ``h`` the spacing.
    angular_eta : sequence of float, default (0.005, 0.05)
        ``eta`` of the angular terms (1/A^2).
    zetas : sequence of float, default (1, 4)
    lambdas : sequence of float, default (-1, 1)

    Shapes
    ------
    ``forward(positions (B, N, 3), species (N,)) -> (B, N, D)`` with
    ``D = S * n_radial + S (S + 1) / 2 * len(angular_eta) len(zetas) len(lambdas)``.
    """

    def __init__(self, n_species: int, *, cutoff: float = 6.0, n_radial: int = 8,
                 angular_eta: Sequence[float] = (0.005, 0.05), zetas: Sequence[float] = (1.0, 4.0),
                 lambdas: Sequence[float] = (-1.0, 1.0)) -> None:
        super().__init__()
        self.n_species = int(n_species)
        self.cutoff = float(cutoff)
        centres = torch.linspace(0.8, cutoff - 0.5, n_radial, dtype=torch.float64)
        h = float(centres[1] - centres[0]) if n_radial > 1 else 1.0
        self.register_buffer("centres", centres)
        self.register_buffer("radial_eta", torch.full((n_radial,), 1.0 / (2 * h * h), dtype=torch.float64))
        self.angular_eta = tuple(float(e) for e in angular_eta)
        self.zetas = tuple(float(z) for z in zetas)
        self.lambdas = tuple(float(lam) for lam in lambdas)
        if any(z < 1 for z in self.zetas):
            raise ProbeError(f"zetas must be >= 1, got {self.zetas}")
        n_combos = len(self.angular_eta) * len(self.zetas) * len(self.lambdas)
        pairs = torch.zeros(n_species, n_species, dtype=torch.long)
        p = 0
        for a in range(n_species):
            for b in range(a, n_species):
                pairs[a, b] = pairs[b, a] = p
                p += 1
        self.register_buffer("pair_index", pairs)
        self.n_pairs = p
        self.n_radial = n_radial
        self.n_angular = n_combos
        self.dim = n_species * n_radial + p * n_combos

    def forward(self, positions: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        dtype = positions.dtype
        n = positions.shape[-2]
        diff = positions.unsqueeze(-2) - positions.unsqueeze(-3)  # (B, N, N, 3): r_j - r_i as [i, j] -> r_i - r_j
        eye = torch.eye(n, dtype=dtype, device=positions.device)
        d2 = diff.pow(2).sum(-1)  # exactly 0 on the diagonal
        # the diagonal is masked; adding 1 there keeps sqrt (and its gradient) finite
        r = torch.sqrt(d2 + eye)
        fc = cosine_cutoff(r, self.cutoff) * (1.0 - eye)  # (B, N, N)
        onehot = torch.nn.functional.one_hot(species, self.n_species).to(dtype)  # (N, S)
        # radial
        g2 = torch.exp(-self.radial_eta.to(dtype) * (r.unsqueeze(-1) - self.centres.to(dtype)) ** 2)
        g2 = g2 * fc.unsqueeze(-1)  # (B, N, N, K)
        radial = torch.einsum("bijk,js->bisk", g2, onehot).flatten(-2)
        # angular: cos(theta_ijk) between r_j - r_i and r_k - r_i
        unit = diff / r.unsqueeze(-1)
        cos = torch.einsum("bijx,bikx->bijk", unit, unit)
        r2 = d2
        # r_ij^2 + r_ik^2 + r_jk^2 and f_c(r_ij) f_c(r_ik) f_c(r_jk) for every triplet (i, j, k)
        s2 = r2.unsqueeze(-1) + r2.unsqueeze(-2) + r2.unsqueeze(-3)
        fcc = fc.unsqueeze(-1) * fc.unsqueeze(-2) * fc.unsqueeze(-3)
        shape = [1 + lam * cos for lam in self.lambdas]
        shape = torch.stack([2.0 ** (1.0 - z) * (b ** int(z) if z == int(z) else b.clamp_min(0.0) ** z)
                             for z in self.zetas for b in shape], dim=-1)  # (B, i, j, k, Z * L)
        radial_part = torch.stack([torch.exp(-e * s2) * fcc for e in self.angular_eta], dim=-1)  # (B, i, j, k, E)
        pair = torch.nn.functional.one_hot(self.pair_index[species][:, species], self.n_pairs).to(dtype)  # (j, k, P)
        # j == k terms vanish through f_c(r_jk) = 0 on the diagonal; each unordered pair is counted twice
        angular = 0.5 * torch.einsum("bijkz,bijke,jkp->bipze", shape, radial_part, pair).flatten(-3)
        return torch.cat([radial, angular], dim=-1)

    def pair_gradients(self, positions: torch.Tensor,
                       species: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Descriptors and their analytic derivatives with respect to the positions, per atom pair.

        With ``d_ij = r_i - r_j``, ``u_ij = d_ij / r_ij``, ``cos = u_ij . u_ik`` and, for one
        angular term ``T_ijk = A(cos) exp(-eta s) f_c(r_ij) f_c(r_ik) f_c(r_jk)``
        (``A = 2^(1 - zeta) (1 + lambda cos)^zeta``, ``s = r_ij^2 + r_ik^2 + r_jk^2``)::

            dcos/dr_j = (cos u_ij - u_ik) / r_ij,   ds/dr_j = -2 r_ij u_ij + 2 r_jk u_jk,
            dr_ij/dr_j = -u_ij,                    dr_jk/dr_j = u_jk,

        so ``dT_ijk/dr_j = alpha u_ij + beta u_ik + gamma u_jk`` with scalar ``alpha, beta,
        gamma`` per triplet and channel; ``dT_ijk/dr_k`` follows by the symmetry ``j <-> k`` and
        ``dG_i/dr_i = -sum_{j != i} dG_i/dr_j`` (translation invariance). Radial terms:
        ``dG2_i/dr_j = -g'(r_ij) u_ij``. These derivatives do not depend on the networks, so the
        forces of every committee member follow from them by one contraction
        (:meth:`pullback`), ``F_m = -(dE_m/dG) . (dG/dR)``.

        Returns
        -------
        G : torch.Tensor, shape (B, N, D)
            The same values as :meth:`forward` (up to rounding).
        gradients : tuple of torch.Tensor
            ``dg2 (B, N, N, K)``: ``d g2_k(r_ij) / d r_ij``; ``unit (B, N, N, 3)``: ``u_ij``;
            ``alpha_s (B, N, C, N, S)`` and ``jac_s (B, N, C, N, S, 3)``: with them
            ``alpha_s[b, i, c, j, s] u_ij + jac_s[b, i, c, j, s] = sum_{k: Z_k = s} dT_ijk[c] / dr_j``,
            from which ``dG4_i[p, c] / dr_j`` is the entry ``s`` with ``pair(Z_j, s) = p``.
        """
        dtype = positions.dtype
        b, n = positions.shape[0], positions.shape[-2]
        diff = positions.unsqueeze(-2) - positions.unsqueeze(-3)  # [i, j] -> r_i - r_j
        eye = torch.eye(n, dtype=dtype, device=positions.device)
        off = 1.0 - eye
        d2 = diff.pow(2).sum(-1)
        r = torch.sqrt(d2 + eye)
        fc = cosine_cutoff(r, self.cutoff) * off
        inside = (r < self.cutoff).to(dtype) * off
        dfc = (-0.5 * math.pi / self.cutoff) * torch.sin(math.pi * r / self.cutoff) * inside  # f_c'(r)
        onehot = torch.nn.functional.one_hot(species, self.n_species).to(dtype)  # (N, S)
        unit = diff / r.unsqueeze(-1)  # (B, N, N, 3), 0 on the diagonal
        # radial
        eta, centres = self.radial_eta.to(dtype), self.centres.to(dtype)
        centred = r.unsqueeze(-1) - centres
        gauss = torch.exp(-eta * centred ** 2)
        g2 = gauss * fc.unsqueeze(-1)  # (B, N, N, K)
        radial = torch.einsum("bijk,js->bisk", g2, onehot).flatten(-2)
        dg2 = gauss * (dfc.unsqueeze(-1) - 2.0 * eta * centred * fc.unsqueeze(-1))  # dg2 / dr_ij
        # angular; triplet tensors are laid out (B, i, channel, j, k): products over channels run on
        # contiguous (j, k) blocks and sums over k are plain matrix products
        cos = torch.einsum("bijx,bikx->bijk", unit, unit)
        s2 = d2.unsqueeze(-1) + d2.unsqueeze(-2) + d2.unsqueeze(-3)
        fc_ij, fc_ik, fc_jk = fc.unsqueeze(-1), fc.unsqueeze(-2), fc.unsqueeze(-3)
        fcc = fc_ij * fc_ik * fc_jk
        shapes, dshapes = [], []
        for z in self.zetas:
            for lam in self.lambdas:
                base = 1 + lam * cos
                if z == int(z):
                    shapes.append(2.0 ** (1.0 - z) * base ** int(z))
                    dshapes.append(2.0 ** (1.0 - z) * z * lam * base ** (int(z) - 1))
                else:
                    base = base.clamp_min(0.0)
                    shapes.append(2.0 ** (1.0 - z) * base ** z)
                    dshapes.append(2.0 ** (1.0 - z) * z * lam * base ** (z - 1))
        shape = torch.stack(shapes, dim=2)  # (B, i, Z L, j, k): A
        dshape = torch.stack(dshapes, dim=2)  # dA / dcos
        gauss3 = torch.stack([torch.exp(-e * s2) for e in self.angular_eta], dim=2)  # (B, i, E, j, k)
        radial_part = gauss3 * fcc.unsqueeze(2)

        def outer(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # (.., Z L, j, k) x (.., E, j, k) -> (.., C, j, k)
            return (x.unsqueeze(3) * y.unsqueeze(2)).flatten(2, 3)

        to_pair = torch.nn.functional.one_hot(self.pair_index[species], self.n_pairs).to(dtype)  # (j, S, P)
        terms = outer(shape, radial_part) @ onehot  # (B, i, C, j, S): sum over k per element
        # 0.5 sum_{j, k}: each unordered pair (j, k) is counted twice
        angular = 0.5 * torch.einsum("bicjs,jsp->bipc", terms, to_pair).flatten(-2)
        g = torch.cat([radial, angular], dim=-1)
        # dT_ijk / dr_j = alpha u_ij + beta u_ik + gamma u_jk
        etas = torch.tensor(self.angular_eta, dtype=dtype, device=positions.device).reshape(-1, 1, 1)  # (E, 1, 1)
        r_ij = r.unsqueeze(2).unsqueeze(-1)  # (B, i, 1, j, 1)
        alpha_a = radial_part * (cos / r.unsqueeze(-1)).unsqueeze(2)  # times dA/dcos
        alpha_b = 2.0 * etas * r_ij * radial_part - gauss3 * (dfc.unsqueeze(-1) * fc_ik * fc_jk).unsqueeze(2)
        alpha = dshape.unsqueeze(3) * alpha_a.unsqueeze(2)
        alpha = alpha.addcmul_(shape.unsqueeze(3), alpha_b.unsqueeze(2)).flatten(2, 3)
        beta = outer(dshape, -radial_part / r_ij)
        gamma_b = -2.0 * etas * r.unsqueeze(1).unsqueeze(1) * radial_part
        gamma_b = gamma_b + gauss3 * (fc_ij * fc_ik * dfc.unsqueeze(-3)).unsqueeze(2)
        # gamma is summed over k against u_jk: laid out (B, j, C, i, k)
        gamma = outer(shape.transpose(1, 3).contiguous(), gamma_b.transpose(1, 3).contiguous())
        n_c, n_s = alpha.shape[2], self.n_species
        onehot_u = (onehot.unsqueeze(-1) * unit.unsqueeze(-2)).reshape(b * n, n, n_s * 3)  # [(b, a), k, (s, x)]
        # sum over k per neighbour element s; dG_i/dr_j = sum_k [pair(j, k) = p] dT_ijk/dr_j
        # the alpha part stays a coefficient of u_ij: (B, i, C, j, S)
        alpha_s = alpha @ onehot
        jac_s = (beta.reshape(b * n, n_c * n, n) @ onehot_u).reshape(b, n, n_c, n, n_s, 3)
        jac_s = jac_s + (gamma.reshape(b * n, n_c * n, n) @ onehot_u).reshape(b, n, n_c, n, n_s, 3).transpose(1, 3)
        return g, (dg2, unit, alpha_s, jac_s)

    def forward_and_jacobian(self, positions: torch.Tensor,
                             species: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Descriptors and their dense Jacobian with respect to the positions.

        Returns
        -------
        G : torch.Tensor, shape (B, N, D)
            The same values as :meth:`forward` (up to rounding).
        J : torch.Tensor, shape (B, N, D, N, 3)
            ``J[b, i, d, j, x] = dG[b, i, d] / dR[b, j, x]`` (see :meth:`pair_gradients`).
        """
        g, (dg2, unit, alpha_s, jac_s) = self.pair_gradients(positions, species)
        jac_s = jac_s + alpha_s.unsqueeze(-1) * unit.unsqueeze(2).unsqueeze(-2)
        onehot = torch.nn.functional.one_hot(species, self.n_species).to(g.dtype)
        to_pair = torch.nn.functional.one_hot(self.pair_index[species], self.n_pairs).to(g.dtype)  # (j, S, P)
        jac_r = -torch.einsum("bijk,js,bijx->biskjx", dg2, onehot, unit).flatten(2, 3)  # (B, i, S K, j, 3)
        jac_a = torch.einsum("bicjsx,jsp->bipcjx", jac_s, to_pair).flatten(2, 3)  # (B, i, P C, j, 3)
        jac = torch.cat([jac_r, jac_a], dim=2)  # (B, i, D, j, 3)
        # translation invariance: dG_i/dr_i = -sum_{j != i} dG_i/dr_j
        jac.diagonal(0, 1, 3).copy_(-jac.sum(3).permute(0, 2, 3, 1))
        return g, jac

    def pullback(self, gradients: tuple[torch.Tensor, ...], species: torch.Tensor,
                 cotangents: torch.Tensor) -> torch.Tensor:
        """``sum_{i, d} c[m, b, i, d] dG[b, i, d] / dR[b, a, x]`` for a stack of cotangents ``c``.

        Parameters
        ----------
        gradients : tuple
            The second output of :meth:`pair_gradients` (computed once, whatever the number of
            cotangents).
        species : torch.Tensor, shape (N,)
        cotangents : torch.Tensor, shape (M, B, N, D)
            E.g. ``dE_m/dG`` of M committee members.

        Returns
        -------
        torch.Tensor, shape (M, B, N, 3)
            ``(dG/dR)^T c_m``; with ``w[m, b, i, j] = c_m[b, i] . dG_i/dr_j`` (``j != i``) it is
            ``sum_i w[m, b, i, a] - sum_j w[m, b, a, j]`` by translation invariance.
        """
        dg2, unit, alpha_s, jac_s = gradients
        m, b, n, _ = cotangents.shape
        n_r = self.n_species * self.n_radial
        c_r = cotangents[..., :n_r].reshape(m, b, n, self.n_species, self.n_radial).index_select(3, species)
        # each atom j's cotangent entries for the pairs (Z_j, s), s = 0..S-1: (M, B, i, j, S, C)
        pairs = self.pair_index[species].reshape(-1)
        c_a = cotangents[..., n_r:].reshape(m, b, n, self.n_pairs, -1).index_select(3, pairs)
        c_a = c_a.reshape(m, b, n, n, self.n_species, -1)
        along = torch.einsum("mbijsc,bicjs->mbij", c_a, alpha_s) - (c_r * dg2).sum(-1)  # coefficient of u_ij
        w = along.unsqueeze(-1) * unit + torch.einsum("mbijsc,bicjsx->mbijx", c_a, jac_s)  # (M, B, i, j, 3)
        return w.sum(2) - w.sum(3)


class ElementMLP(nn.Module):
    """One MLP per element, evaluated for all atoms at once by gathering each atom's weights.

    ``NN_Z(g) = w3_Z . tanh(W2_Z tanh(W1_Z g + b1_Z) + b2_Z) + b3_Z``.

    Shapes
    ------
    ``forward(G (B, N, D), species (N,)) -> (B, N)`` atomic outputs.
    """

    def __init__(self, n_species: int, dim: int, hidden: int = 32, *, seed: int = 0,
                 dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(int(seed))

        def w(*shape: int) -> nn.Parameter:
            return nn.Parameter(torch.randn(*shape, generator=g, dtype=dtype) / math.sqrt(shape[-2]))

        self.w1, self.b1 = w(n_species, dim, hidden), nn.Parameter(torch.zeros(n_species, hidden, dtype=dtype))
        self.w2, self.b2 = w(n_species, hidden, hidden), nn.Parameter(torch.zeros(n_species, hidden, dtype=dtype))
        self.w3, self.b3 = w(n_species, hidden, 1), nn.Parameter(torch.zeros(n_species, 1, dtype=dtype))

    def forward(self, g: torch.Tensor, species: torch.Tensor,
                with_gradient: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Atomic outputs (B, N); with ``with_gradient`` also ``d NN_{Z_n}(g_n) / d g_n`` (B, N, D).

        Few rows (one configuration, the MD step): each layer is one matrix product of the
        element-blocked input ``[onehot(Z_n) (x) x_n]`` (S I values) with the stacked weights
        (S I, O), which picks each atom's element weights without gathering them per atom;
        many rows: one product per element on that element's atoms. The gradient is
        written out (``w3 (1 - h2^2)`` back through ``W2`` and ``W1``), so a committee gets it
        in the same vectorised forward call, without a backward pass.
        """
        n_species = self.w1.shape[0]
        if n_species == 1 or g.shape[0] * g.shape[1] < 64:
            return self._blocked(g, species, with_gradient)
        # many rows: one product per element on that element's atoms (no wasted blocks)
        groups = [torch.nonzero(species == s).squeeze(-1) for s in range(n_species)]
        outs, grads, order = [], [], []
        for s, idx in enumerate(groups):
            if idx.numel() == 0:
                continue
            x = g.index_select(-2, idx)
            h1 = torch.tanh(x @ self.w1[s] + self.b1[s])
            h2 = torch.tanh(h1 @ self.w2[s] + self.b2[s])
            outs.append((h2 @ self.w3[s] + self.b3[s]).squeeze(-1))
            order.append(idx)
            if with_gradient:
                d2 = self.w3[s].squeeze(-1) * (1 - h2 * h2)
                grads.append(((d2 @ self.w2[s].T) * (1 - h1 * h1)) @ self.w1[s].T)
        inverse = torch.argsort(torch.cat(order))
        out = torch.cat(outs, -1).index_select(-1, inverse)
        if not with_gradient:
            return out
        return out, torch.cat(grads, -2).index_select(-2, inverse)

    def _blocked(self, g: torch.Tensor, species: torch.Tensor,
                 with_gradient: bool) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        onehot = torch.nn.functional.one_hot(species, self.w1.shape[0]).to(g.dtype)  # (N, S)

        def blocked(x: torch.Tensor) -> torch.Tensor:  # (B, N, I) -> (B, N, S I)
            return (onehot.unsqueeze(-1) * x.unsqueeze(-2)).flatten(-2)

        def unblocked(y: torch.Tensor) -> torch.Tensor:  # (B, N, S I) -> (B, N, I): the atom's own block
            return (onehot.unsqueeze(-1) * y.unflatten(-1, (onehot.shape[1], -1))).sum(-2)

        w1, w2, w3 = self.w1.flatten(0, 1), self.w2.flatten(0, 1), self.w3.flatten(0, 1)
        h1 = torch.tanh(blocked(g) @ w1 + onehot @ self.b1)
        h2 = torch.tanh(blocked(h1) @ w2 + onehot @ self.b2)
        out = (blocked(h2) @ w3 + onehot @ self.b3).squeeze(-1)
        if not with_gradient:
            return out
        d2 = (onehot @ self.w3.squeeze(-1)) * (1 - h2 * h2)  # (B, N, H)
        d1 = unblocked(d2 @ w2.T) * (1 - h1 * h1)
        return out, unblocked(d1 @ w1.T)


@dataclass(frozen=True)
class Prediction:
    """Ensemble prediction for B configurations of N atoms.

    Attributes
    ----------
    energy : torch.Tensor, shape (M, B)
        Each member's energy (eV).
    forces : torch.Tensor, shape (M, B, N, 3)
        Each member's forces (eV/A).
    """

    energy: torch.Tensor
    forces: torch.Tensor

    @property
    def energy_mean(self) -> torch.Tensor:
        return self.energy.mean(0)

    @property
    def energy_std(self) -> torch.Tensor:
        return self.energy.std(0, unbiased=False)

    @property
    def forces_mean(self) -> torch.Tensor:
        return self.forces.mean(0)


class EnsemblePotential(nn.Module):
    """A committee of Behler-Parrinello potentials for a fixed set of elements.

    The members differ in their random initialisation (always) and, as options, in what each one
    sees, so that their spread is less of a shared blind spot (members trained on the same labels
    from the same features share much of their error):

    - ``bootstrap``: member ``m`` weights label ``c`` by a count ``n_mc ~ Poisson(1)`` drawn once per
      label (the online bootstrap of Oza & Russell, AISTATS 2001: resampling the labels with
      replacement as they arrive), its loss the ``n_mc``-weighted mean;
    - ``prior_scale``: randomized prior functions (Osband, Aslanides & Cassirer, NeurIPS 2018): member
      ``m`` predicts ``NN_m(G) + beta P_m(G)`` with ``P_m`` an untrained network of the same shape,
      frozen, so ``NN_m`` learns the labels minus its own prior and the members disagree where no
      label pins them down;
    - ``feature_fraction``: member ``m`` sees only a random subset of that fraction of the
      descriptor channels (the random-subspace method, Ho, IEEE TPAMI 20, 832, 1998).

    Parameters
    ----------
    elements : sequence of int or str
        The elements it is trained for (atomic numbers or symbols).
    n_members : int, default 4
        Committee size ``M``.
    hidden : int, default 32
        Width of each element's two hidden layers.
    cutoff : float, default 6.0
        Cutoff radius in Angstrom.
    seed : int, default 0
        Member ``m`` is initialised with seed ``seed + m``; priors, feature subsets and bootstrap
        counts derive from ``seed`` too.
    device : str or torch.device, optional
        ``None``: the CPU (move the potential, or pass ``"cuda"``, to use a GPU).
    dtype : torch.dtype, default torch.float64
        Of the parameters and the computation (``torch.float32`` for speed on a GPU).
    descriptor_options : dict, optional
        Passed to :class:`SymmetryFunctions`.
    bootstrap : bool, default False
    prior_scale : float, default 0.0
        ``beta`` (0: no prior).
    feature_fraction : float, default 1.0
        In ``(0, 1]``.
    """

    def __init__(self, elements: Sequence[int | str], *, n_members: int = 4, hidden: int = 32, cutoff: float = 6.0,
                 seed: int = 0, device: str | torch.device | None = None, dtype: torch.dtype = torch.float64,
                 descriptor_options: dict | None = None, bootstrap: bool = False, prior_scale: float = 0.0,
                 feature_fraction: float = 1.0) -> None:
        super().__init__()
        numbers = sorted({chemical_symbols.index(e) if isinstance(e, str) else int(e) for e in elements})
        if not numbers or any(z <= 0 or z >= len(chemical_symbols) for z in numbers):
            raise ProbeError(f"elements must be known chemical elements, got {list(elements)}")
        if dtype not in (torch.float32, torch.float64):
            raise ProbeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if not 0 < feature_fraction <= 1:
            raise ProbeError(f"feature_fraction must be in (0, 1], got {feature_fraction}")
        if prior_scale < 0:
            raise ProbeError(f"prior_scale must be non-negative, got {prior_scale}")
        self.numbers = tuple(numbers)
        self.hidden = int(hidden)
        self.n_members = int(n_members)
        self.bootstrap = bool(bootstrap)
        self.prior_scale = float(prior_scale)
        self.feature_fraction = float(feature_fraction)
        self.descriptor = SymmetryFunctions(len(numbers), cutoff=cutoff, **(descriptor_options or {}))
        d = self.descriptor.dim
        self.register_buffer("g_mean", torch.zeros(d, dtype=torch.float64))
        self.register_buffer("g_std", torch.ones(d, dtype=torch.float64))
        self.register_buffer("e_shift", torch.zeros(len(numbers), dtype=torch.float64))
        self.register_buffer("e_scale", torch.ones((), dtype=torch.float64))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.register_buffer("feature_mask", torch.ones(self.n_members, d, dtype=torch.float64))
        self._dtype = dtype
        self._build(seed)
        self.to(device=resolve_device(device), dtype=dtype)

    def _build(self, seed: int) -> None:
        self.seed = int(seed)
        dim, s = self.descriptor.dim, len(self.numbers)
        self.ensemble = Ensemble([ElementMLP(s, dim, self.hidden, seed=seed + m) for m in range(self.n_members)],
                                 device="cpu")
        self.prior = None
        if self.prior_scale > 0:
            self.prior = Ensemble([ElementMLP(s, dim, self.hidden, seed=seed + 7919 + m)
                                   for m in range(self.n_members)], device="cpu").requires_grad_(False)
        if self.feature_fraction < 1:
            rng = np.random.default_rng([seed, 104729])
            keep = max(1, round(self.feature_fraction * dim))
            mask = np.zeros((self.n_members, dim))
            for m in range(self.n_members):
                mask[m, rng.choice(dim, keep, replace=False)] = 1.0
            self.feature_mask = torch.as_tensor(mask)
        self._cache: dict = {}
        self._optimizer: torch.optim.Optimizer | None = None
        self._counts: dict[int, np.ndarray] = {}

    def reset(self, seed: int = 0) -> None:
        """Back to the untrained state: members re-initialised with seeds ``seed + m``, statistics cleared."""
        device = self.device
        self._build(seed)
        self.g_mean.zero_()
        self.g_std.fill_(1.0)
        self.e_shift.zero_()
        self.e_scale.fill_(1.0)
        self.fitted.fill_(False)
        self.to(device=device, dtype=self._dtype)

    @property
    def device(self) -> torch.device:
        return self.g_mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    def species(self, numbers: Sequence[int] | np.ndarray) -> torch.Tensor:
        """Map atomic numbers to element indices; ``ProbeError`` names an atom outside ``elements``."""
        numbers = np.asarray(numbers, dtype=np.int64).reshape(-1)
        lookup = {z: k for k, z in enumerate(self.numbers)}
        for i, z in enumerate(numbers):
            if int(z) not in lookup:
                sym = chemical_symbols[int(z)] if 0 < z < len(chemical_symbols) else str(z)
                known = [chemical_symbols[n] for n in self.numbers]
                raise ProbeError(f"atom {i} is {sym}, which this potential was not trained for (elements {known})")
        return torch.tensor([lookup[int(z)] for z in numbers], dtype=torch.long, device=self.device)

    def _positions(self, positions: object) -> torch.Tensor:
        pos = torch.as_tensor(np.asarray(positions, dtype=np.float64) if not isinstance(positions, torch.Tensor)
                              else positions).to(device=self.device, dtype=self._dtype)
        if pos.dim() == 2:
            pos = pos.unsqueeze(0)
        if pos.dim() != 3 or pos.shape[-1] != 3:
            raise ProbeError(f"positions must have shape (B, N, 3) or (N, 3), got {tuple(pos.shape)}")
        if not torch.isfinite(pos).all():
            raise ProbeError("positions hold a non-finite value")
        return pos

    def _members(self, g: torch.Tensor, species: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Atomic outputs (M, B, N) and their gradients d/dG_norm (M, B, N, D) of every member, written out.

        Differentiable with respect to the parameters (training), no backward pass needed for the forces.
        """
        if self.feature_fraction < 1:
            mask = self.feature_mask[:, None, None, :]
            atomic, grad = self.ensemble(g.unsqueeze(0) * mask, species, True, in_dims=(0, None, None))
            grad = grad * mask
        else:
            atomic, grad = self.ensemble(g, species, True)
        if self.prior is not None:
            p_atomic, p_grad = self.prior(g, species, True)
            atomic, grad = atomic + self.prior_scale * p_atomic, grad + self.prior_scale * p_grad
        return atomic, grad

    def features(self, positions: object, numbers: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised descriptors and their Jacobian with respect to the positions.

        Returns
        -------
        G : torch.Tensor, shape (B, N, D)
            ``(G_raw - mean) / std`` with the statistics fixed at the first fit.
        J : torch.Tensor, shape (B, N, D, N, 3)
            ``dG / dR``, analytic (:meth:`SymmetryFunctions.forward_and_jacobian`).
        """
        species = self.species(numbers)
        pos = self._positions(positions).detach()
        if pos.shape[1] != species.shape[0]:
            raise ProbeError(f"positions have {pos.shape[1]} atoms but numbers has {species.shape[0]}")
        with torch.no_grad():
            g, jac = self.descriptor.forward_and_jacobian(pos, species)
            std = self.g_std.to(g.dtype)
            return (g - self.g_mean.to(g.dtype)) / std, jac / std[:, None, None]

    def energy_and_forces(self, positions: object, numbers: Sequence[int]) -> Prediction:
        """Energies and forces of every member in one vectorised call.

        The descriptor ``G(R)`` and its Jacobian ``dG/dR`` are computed once for all members,
        analytically (:meth:`SymmetryFunctions.pair_gradients`); the members' networks run under
        ``vmap`` with their input gradients ``dE_m/dG`` written out in the same call; one
        contraction then gives every member's forces, ``F_m = -(dE_m/dG) . (dG/dR)``, so the cost
        of the forces hardly grows with ``M``. Configurations are processed in chunks that keep the
        per-triplet terms within about 64 MiB.

        Parameters
        ----------
        positions : array-like, shape (B, N, 3) or (N, 3)
            Cartesian coordinates in Angstrom (not modified).
        numbers : sequence of int, length N
            Atomic numbers.

        Returns
        -------
        Prediction
            ``energy`` (M, B) in eV, ``forces`` (M, B, N, 3) in eV/A, in the potential's dtype.
        """
        species = self.species(numbers)
        pos = self._positions(positions).detach().clone()
        if pos.shape[1] != species.shape[0]:
            raise ProbeError(f"positions have {pos.shape[1]} atoms but numbers has {species.shape[0]}")
        energies, forces = [], []
        with torch.no_grad():  # no backward pass anywhere: derivatives are written out
            for chunk in torch.split(pos, self._chunk_size(pos.shape[1])):
                g, gradients = self.descriptor.pair_gradients(chunk, species)
                atomic, dnn_dg = self._members((g - self.g_mean) / self.g_std, species)
                energies.append(self.e_scale * atomic.sum(-1) + self.e_shift[species].sum())
                # dE_m/dG_norm / std = dE_m/dG_raw: the raw derivatives serve every member
                forces.append(-self.descriptor.pullback(gradients, species, (self.e_scale / self.g_std) * dnn_dg))
        return Prediction(energy=torch.cat(energies, 1), forces=torch.cat(forces, 1))

    def predict(self, positions: object, numbers: Sequence[int]) -> Prediction:
        """The committee call (:class:`domains.md.committee.Committee`): :meth:`energy_and_forces`."""
        return self.energy_and_forces(positions, numbers)

    def _chunk_size(self, n_atoms: int) -> int:
        # about six per-triplet tensors of N^3 x channels values each are alive per configuration:
        # chunks keep them within about 64 MiB (float64)
        per_config = 6 * n_atoms ** 3 * self.descriptor.n_angular
        return max(1, (1 << 23) // per_config)

    def energy_and_forces_loop(self, positions: object, numbers: Sequence[int], *,
                               members: Sequence[nn.Module] | None = None) -> Prediction:
        """The same as :meth:`energy_and_forces` by a Python loop over members (the baseline).

        Each member runs as a complete stand-alone potential (descriptor, its Jacobian, network,
        contraction), as when M independently trained potentials run one after another.
        ``members`` (from ``self.ensemble.members()``) may be passed to avoid rebuilding them. Only
        for committees of plain members (no prior, all features).
        """
        if self.prior is not None or self.feature_fraction < 1:
            raise ProbeError("energy_and_forces_loop covers committees without priors or feature subsets")
        species = self.species(numbers)
        pos = self._positions(positions).detach()
        energies, forces = [], []
        with torch.no_grad():
            for member in members if members is not None else self.ensemble.members():
                g, gradients = self.descriptor.pair_gradients(pos, species)
                atomic, dnn_dg = member((g - self.g_mean) / self.g_std, species, True)
                energies.append(self.e_scale * atomic.sum(-1) + self.e_shift[species].sum())
                cot = ((self.e_scale / self.g_std) * dnn_dg).unsqueeze(0)
                forces.append(-self.descriptor.pullback(gradients, species, cot)[0])
        return Prediction(energy=torch.stack(energies), forces=torch.stack(forces))

    # -- training ---------------------------------------------------------------------------------
    def _cached_features(self, pos: torch.Tensor, species: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # descriptors and Jacobians of labelled configurations never change once the
        # normalisation is fixed, so each is computed once and kept (one entry per label)
        out_g, out_j = [], []
        for p in pos:
            key = (species.cpu().numpy().tobytes(), p.cpu().numpy().tobytes())
            if key not in self._cache:
                self._cache[key] = self.descriptor.forward_and_jacobian(p.unsqueeze(0), species)
            g, j = self._cache[key]
            out_g.append(g)
            out_j.append(j)
        return (torch.cat(out_g) - self.g_mean) / self.g_std, torch.cat(out_j)

    def _normalise(self, groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
        with torch.no_grad():
            feats = torch.cat([self.descriptor(p, s).reshape(-1, self.descriptor.dim) for p, s, _, _ in groups])
            self.g_mean.copy_(feats.mean(0))
            std = feats.std(0, unbiased=False)
            self.g_std.copy_(torch.where(std > 1e-6, std, torch.ones_like(std)))
            counts = torch.cat([torch.nn.functional.one_hot(s, len(self.numbers)).sum(0).to(torch.float64)
                                .expand(e.shape[0], -1) for _, s, e, _ in groups])
            energies = torch.cat([e.to(torch.float64) for _, _, e, _ in groups])
            # per-element reference energies: least squares (minimum norm for a single composition)
            shift = torch.linalg.lstsq(counts.cpu(), energies.cpu().unsqueeze(-1), driver="gelsd").solution
            self.e_shift.copy_(shift.squeeze(-1).to(self.device))
            frms = torch.cat([f.reshape(-1) for _, _, _, f in groups]).pow(2).mean().sqrt()
            self.e_scale.copy_(frms.clamp_min(1e-2))
            self.fitted.fill_(True)
            self._cache.clear()

    def bootstrap_counts(self, n_labels: int) -> np.ndarray:
        """Each member's count of each label, shape (M, n_labels): ``Poisson(1)`` per label, drawn once.

        Label ``c``'s counts come from ``numpy.random.default_rng([seed, c])``, so they do not change
        as labels arrive. A member whose counts are all zero (a chance event on the first few labels)
        counts every label once. All ones without ``bootstrap``.
        """
        if not self.bootstrap:
            return np.ones((self.n_members, n_labels))
        for c in range(n_labels):
            if c not in self._counts:
                self._counts[c] = np.random.default_rng([self.seed, 7, c]).poisson(1.0, self.n_members)
        counts = np.stack([self._counts[c] for c in range(n_labels)], axis=1).astype(np.float64)
        counts[counts.sum(1) == 0] = 1.0
        return counts

    def fit(self, configurations: Sequence[tuple[np.ndarray, np.ndarray, float, np.ndarray]], *, steps: int = 200,
            lr: float = 3e-3, force_weight: float = 1.0, seed: int = 0, batch_size: int | None = None,
            warm_optimizer: bool = False) -> list[float]:
        """Train every member on energies and forces (warm start; all members at once).

        Loss per member ``L_m = sum_c n_mc [((E_mc - E_c) / N_c)^2 + w_F mean_{i,x} (F_mcix - F_cix)^2]
        / (a^2 sum_c n_mc)`` with ``a`` the force scale fixed at the first fit and ``n_mc`` the
        bootstrap counts (:meth:`bootstrap_counts`; all 1 without bootstrap); Adam on the stacked
        parameters of all members (their losses summed, so each member's gradient is its own). The
        forces are the written-out ones of :meth:`energy_and_forces` (no double backward).

        Parameters
        ----------
        configurations : sequence of (numbers (N,), positions (N, 3), energy, forces (N, 3))
            In the order they were labelled (the bootstrap counts follow the index).
        steps : int, default 200
            Adam steps.
        lr : float, default 3e-3
        force_weight : float, default 1.0
        seed : int, default 0
            Seeds the private generator that draws the minibatches.
        batch_size : int, optional
            Configurations per step: the newest one and a uniform sample of the others
            (``None``: all, full batch). Bounds the cost of a step whatever the number of labels.
        warm_optimizer : bool, default False
            Keep Adam's moment estimates from the previous fit (a warm-started update), instead of a
            fresh optimiser.

        Returns
        -------
        list of float
            The summed loss after each step.
        """
        if len(configurations) == 0:
            raise ProbeError("fit needs at least one labelled configuration")
        if batch_size is not None and batch_size < 1:
            raise ProbeError(f"batch_size must be a positive integer, got {batch_size}")
        by_comp: dict[tuple, list] = {}
        for k, (numbers, positions, energy, forces) in enumerate(configurations):
            numbers = tuple(int(z) for z in np.asarray(numbers).reshape(-1))
            pos = np.asarray(positions, dtype=np.float64)
            frc = np.asarray(forces, dtype=np.float64)
            if pos.shape != (len(numbers), 3) or frc.shape != (len(numbers), 3):
                raise ProbeError(f"configuration {k}: positions {pos.shape} and forces {frc.shape} must be "
                                 f"({len(numbers)}, 3)")
            if not (np.isfinite(pos).all() and np.isfinite(frc).all() and np.isfinite(energy)):
                raise ProbeError(f"configuration {k} holds a non-finite value")
            by_comp.setdefault(numbers, []).append((k, pos, float(energy), frc))
        kw = {"device": self.device, "dtype": self._dtype}
        groups, index = [], []
        for numbers, items in by_comp.items():
            s = self.species(numbers)
            groups.append((torch.tensor(np.stack([p for _, p, _, _ in items]), **kw), s,
                           torch.tensor([e for _, _, e, _ in items], **kw),
                           torch.tensor(np.stack([f for _, _, _, f in items]), **kw)))
            index.append(np.array([k for k, _, _, _ in items]))
        if not bool(self.fitted):
            self._normalise(groups)
        n_conf = len(configurations)
        counts = torch.as_tensor(self.bootstrap_counts(n_conf), **kw)  # (M, C)
        cached = [(self._cached_features(pos, s), s, e, f) for pos, s, e, f in groups]
        params = list(self.ensemble.parameters())
        if not warm_optimizer or self._optimizer is None:
            self._optimizer = torch.optim.Adam(params, lr=lr)
        opt = self._optimizer
        for group in opt.param_groups:
            group["lr"] = lr
        scale2 = float(self.e_scale) ** 2
        rng = np.random.default_rng([seed, n_conf])
        e_scale, g_std = self.e_scale.to(self._dtype), self.g_std.to(self._dtype)
        e_shift = self.e_shift.to(self._dtype)
        losses = []
        for _ in range(steps):
            chosen = None
            if batch_size is not None and batch_size < n_conf:
                chosen = np.concatenate([[n_conf - 1], rng.choice(n_conf - 1, batch_size - 1, replace=False)])
            opt.zero_grad()
            terms = []
            for ((g, jac), s, e, f), idx in zip(cached, index):
                rows = np.arange(len(idx)) if chosen is None else np.flatnonzero(np.isin(idx, chosen))
                if rows.size == 0:
                    continue
                sel = torch.as_tensor(rows, device=self.device)
                w = counts[:, torch.as_tensor(idx[rows], device=self.device)]  # (M, b)
                atomic, grad = self._members(g[sel], s)
                energy = e_scale * atomic.sum(-1) + e_shift[s].sum()
                forces = -torch.einsum("mbnd,bndjx->mbjx", (e_scale / g_std) * grad, jac[sel])
                n_at = s.shape[0]
                le = ((energy - e[sel]) / n_at).pow(2)  # (M, b)
                lf = (forces - f[sel]).pow(2).mean((-1, -2))
                terms.append((w * (le + force_weight * lf)).sum(-1))
            in_batch = counts if chosen is None else counts[:, torch.as_tensor(chosen, device=self.device)]
            weight = in_batch.sum(-1)
            member_loss = torch.stack(terms).sum(0) / (weight.clamp_min(1e-12) * scale2)  # (M,)
            total = member_loss.sum()
            total.backward()
            opt.step()
            losses.append(float(total.detach()))
        return losses
