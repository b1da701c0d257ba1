"""An atom-wise readout for chemprop networks: the FFN on every atom, then a sum, so the atoms' terms add up.

chemprop's standard readout sums the atoms' hidden states :math:`h_v` and applies the FFN to the
sum, :math:`f(G) = \\mathrm{FFN}(\\sum_v h_v)`. :class:`AtomwiseAggregation` moves the FFN's
hidden layers in front of the sum,

.. math::

    f(G) = T\\Big(W \\sum_v g(h_v) + b\\Big) = \\sum_v \\underbrace{s\\, W g(h_v)}_{t_v} + T(b),
    \\qquad T(z) = s z + \\mu,

where :math:`g` is the FFN's hidden layers (``Linear`` + activation, ``n_layers`` times), :math:`W, b`
its output layer (chemprop's ``RegressionFFN`` with ``n_layers=0``) and :math:`T` the output
transform that undoes the target scaling. The atom terms :math:`t_v` are then the network's own exact
decomposition of its prediction, :math:`\\sum_v t_v + T(b) = f(G)`: no attribution method, no path
and no baseline stand between them and the output. It is the atom-wise output head of SchNet
(Schütt et al., J. Chem. Phys. 148, 241722 (2018)) and of the additive atomic-contribution models
that Crippen's logP itself is (Wildman & Crippen, J. Chem. Inf. Comput. Sci. 39, 868 (1999)), on
chemprop's directed message passing (Yang et al., J. Chem. Inf. Model. 59, 3370 (2019)).

The class is a chemprop ``Aggregation`` with chemprop's ``hparams``, so a network built with it is a
plain ``chemprop.models.MPNN``: it trains with chemprop's Lightning loop and saves and loads with
``chemprop.models.save_model`` / ``MPNN.load_from_file`` and Lightning checkpoints (the file names
this class, so ``domains.chem.atomwise`` must be importable where it is loaded).

What the terms are not: a per-atom split of a molecule-level property is not identified by the
molecule-level values a network is trained on. Any amount moved along a bond from one end's term to
the other's, by a rule of the two ends' environments, leaves every molecule's sum unchanged, so two
networks that predict the same values may book them on different atoms. The terms say exactly how
*this* network adds up its prediction; how close that comes to a reference split such as Crippen's
is measured in ``benchmarks/chem_mpnn.py``.
"""

from __future__ import annotations

import torch
from chemprop.nn import Aggregation
from chemprop.nn.utils import get_activation_function
from torch import Tensor, nn

__all__ = ["AtomwiseAggregation"]


class AtomwiseAggregation(Aggregation):
    """The FFN's hidden layers on every atom's hidden state, then a sum over the molecule's atoms.

    Parameters
    ----------
    dim : int, default 0
        The axis of the atoms (chemprop's ``Aggregation`` convention).
    input_dim : int, default 300
        Width of the atoms' hidden states (the message passing's ``output_dim``).
    hidden_dim : int, default 300
        Width of the hidden layers.
    n_layers : int, default 1
        Hidden layers (``Linear`` then ``activation``) applied to each atom; 0 sums the hidden
        states themselves (then the network is linear in them).
    activation : str, default "relu"
        Any name chemprop's ``get_activation_function`` knows.

    Attributes
    ----------
    output_dim : int
        Width of the summed output: ``hidden_dim``, or ``input_dim`` when ``n_layers`` is 0; the
        predictor's ``input_dim`` must equal it.
    """

    def __init__(self, dim: int = 0, *args, input_dim: int = 300, hidden_dim: int = 300, n_layers: int = 1,
                 activation: str = "relu", **kwargs):
        super().__init__(dim, *args, **kwargs)
        self.hparams.update(input_dim=input_dim, hidden_dim=hidden_dim, n_layers=n_layers, activation=activation)
        layers: list[nn.Module] = []
        width = input_dim
        for _ in range(int(n_layers)):
            layers += [nn.Linear(width, hidden_dim), get_activation_function(activation)]
            width = hidden_dim
        self.atom_ffn = nn.Sequential(*layers)
        self.output_dim = width

    def atom_states(self, H: Tensor) -> Tensor:
        """:math:`g(h_v)` for every atom, shape ``(V, output_dim)``: what the sum adds up."""
        return self.atom_ffn(H)

    def forward(self, H: Tensor, batch: Tensor) -> Tensor:
        """:math:`\\sum_{v \\in G} g(h_v)` per molecule, shape ``(b, output_dim)``."""
        G = self.atom_states(H)
        n = int(batch.max()) + 1 if len(batch) else 0
        return torch.zeros(n, G.shape[1], dtype=G.dtype, device=G.device).index_add_(self.dim, batch, G)
