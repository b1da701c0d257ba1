"""chemprop message-passing networks: loading, prediction on molecules, atom and bond attributions.

A chemprop 2 ``MPNN`` (Heid et al., "Chemprop: a machine learning package for chemical property
prediction", J. Chem. Inf. Model. 64, 9 (2024); the directed message passing of Yang et al.,
J. Chem. Inf. Model. 59, 3370 (2019)) reads a molecular graph: a feature row ``v_a`` per atom and
``e_b`` per directed bond. Its attributions are taken on those inputs and returned in the same
:class:`~domains.chem.atoms.AtomMaps` as the feature models':

- ``method="gradient_x_input"``: :math:`w_a = \\nabla_{v_a} f \\cdot v_a` and
  :math:`w_b = \\sum_{\\vec b} \\nabla_{e_{\\vec b}} f \\cdot e_{\\vec b}` over the bond's two directions
  (Shrikumar et al., "Not just a black box", arXiv:1605.01713 (2016)).
- ``method="integrated_gradients"``: the same products with the gradient averaged along the straight
  path from the all-zero graph features to the molecule's (Sundararajan, Taly & Yan, "Axiomatic
  attribution for deep networks", ICML 2017); atom and bond terms together sum to
  :math:`f(x) - f(0)` up to the quadrature error of ``steps`` midpoints.
- ``method="ablation"``: :math:`w_a = f(G) - f(G_{-a})`, where :math:`G_{-a}` has atom ``a``'s feature
  row and the rows of its bonds set to zero (the atom still passes messages, but carries no
  chemistry): RDKit's similarity-map weights (Riniker & Landrum, J. Cheminform. 5, 43 (2013)) for a
  graph network. All masked copies of all molecules go through the network in batches; bond weights
  mask one bond at a time the same way.

- ``method="hidden_gradient_x_input"``: :math:`w_v = \\nabla_{h_v} f \\cdot h_v` on the atoms' hidden
  states :math:`h_v` after message passing (a layer gradient x activation, Shrikumar et al. 2016, as
  captum's ``LayerGradientXActivation``). With a sum readout :math:`f = \\mathrm{FFN}(\\sum_v h_v)` all
  atoms share the gradient, so the weights are the FFN's first-order terms and sum to
  :math:`\\nabla \\mathrm{FFN}(H) \\cdot H`; no bond weights.
- ``method="readout"``: for a network with an atom-wise readout
  (:class:`~domains.chem.atomwise.AtomwiseAggregation`, ``fit_mpnn(..., readout="atomwise")``), whose
  prediction is :math:`f(G) = \\sum_v t_v + T(b)`, the atom terms :math:`t_v` themselves: the network's
  own exact decomposition of its output (no path, no baseline, one forward pass). Networks whose FFN
  acts on the sum of the atoms' states have no such terms and are refused.

For the gradient methods an atom's map weight is its own term plus half of each of its bonds' terms,
so the atom weights of a molecule sum to the total attribution; ``AtomMaps.bond_weights`` keeps the
bond terms themselves (zero for the two methods on the atoms' states, which book everything on atoms).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from probe.devices import batches, model_hygiene, resolve_device
from probe.errors import ProbeError

from .atoms import AtomMaps
from .io import as_molecules

__all__ = ["MPNN_METHODS", "MPNN_READOUTS", "fit_mpnn", "load_mpnn", "mpnn_atom_weights", "mpnn_predict", "is_mpnn",
           "readout_bias"]

MPNN_METHODS = ("gradient_x_input", "integrated_gradients", "ablation", "hidden_gradient_x_input", "readout")
MPNN_READOUTS = ("ffn", "atomwise")


def _chemprop():
    try:
        import chemprop
    except ImportError as err:  # pragma: no cover - exercised only without the extra
        raise ProbeError("chemprop models need the chemprop package: pip install 'probe[chemprop]'") from err
    return chemprop


def is_mpnn(model: object) -> bool:
    """Whether ``model`` is a chemprop ``MPNN`` (or a subclass); never imports chemprop itself."""
    import sys

    if "chemprop" not in sys.modules:  # then nothing can be an instance of its classes
        return False
    from chemprop.models import MPNN

    return isinstance(model, MPNN)


def load_mpnn(model: object, *, map_location: str | torch.device = "cpu") -> object:
    """A chemprop ``MPNN`` from an object, a Lightning checkpoint (``.ckpt``) or a saved model file (``.pt``).

    Parameters
    ----------
    model : chemprop.models.MPNN, str or pathlib.Path
        The network, or a file written by chemprop's training (``best.pt``, ``*.ckpt``) or by
        ``chemprop.models.save_model``.
    map_location : str or torch.device, default "cpu"
        Where the loaded weights go.

    Returns
    -------
    chemprop.models.MPNN
        In eval mode.
    """
    cp = _chemprop()
    if isinstance(model, cp.models.MPNN):
        return model
    if not isinstance(model, (str, Path)):
        raise ProbeError(f"expected a chemprop MPNN or a path to one, got {type(model).__name__}")
    path = Path(model)
    if not path.exists():
        raise ProbeError(f"chemprop model file {str(path)!r} does not exist")
    try:
        if path.suffix == ".ckpt":
            net = cp.models.MPNN.load_from_checkpoint(str(path), map_location=map_location)
        else:
            net = cp.models.MPNN.load_from_file(str(path), map_location=map_location)
    except Exception as err:
        raise ProbeError(f"{str(path)!r} is not a chemprop MPNN file: {err}") from err
    return net.eval()


def _featurizer(featurizer: object | None) -> object:
    if featurizer is not None:
        return featurizer
    return _chemprop().featurizers.SimpleMoleculeMolGraphFeaturizer()


def _graphs(mols: Sequence, featurizer: object, model: object) -> list:
    fz = _featurizer(featurizer)
    graphs = [fz(m) for m in mols]
    w_i = model.message_passing.W_i.in_features
    d_v, d_e = graphs[0].V.shape[1], graphs[0].E.shape[1]
    # bond message passing reads [v || e] per directed bond, atom message passing v alone
    if w_i not in (d_v, d_v + d_e):
        raise ProbeError(f"the network reads {w_i} input features per message, the featuriser gives {d_v} per atom "
                         f"and {d_e} per bond: pass the featuriser the network was trained with")
    return graphs


def _batch(graphs: Sequence, device: torch.device) -> object:
    bmg = _chemprop().data.BatchMolGraph(list(graphs))
    bmg.to(device)
    return bmg


def _molecules(molecules: object) -> tuple[list, list]:
    ms = as_molecules(molecules)
    if len(ms) == 0:
        raise ProbeError("no molecules given")
    empty = [ms.names[i] for i, m in enumerate(ms.mols) if m.GetNumAtoms() == 0]
    if empty:
        raise ProbeError(f"molecule {empty[0]!r} has no atoms")
    return list(ms.mols), list(ms.names)


def mpnn_predict(model: object, molecules: object, *, featurizer: object | None = None, batch_size: int = 256,
                 device: str | torch.device | None = None) -> np.ndarray:
    """The network's outputs on molecules, in the target's own units.

    Parameters
    ----------
    model : chemprop.models.MPNN or path
    molecules : SMILES, RDKit Mol, sequence of either, or MoleculeSet
    featurizer : chemprop graph featuriser, optional
        Default ``SimpleMoleculeMolGraphFeaturizer()`` (chemprop's own default).
    batch_size : int, default 256
        Molecules per forward call.
    device : str or torch.device, optional
        Default: the network's device.

    Returns
    -------
    numpy.ndarray, shape (N, K)
    """
    model = load_mpnn(model)
    mols, _ = _molecules(molecules)
    dev = resolve_device(device, model)
    graphs = _graphs(mols, featurizer, model)
    outs = []
    with model_hygiene(model, dev), torch.no_grad():
        for s in batches(len(graphs), batch_size):
            outs.append(_forward(model, _batch(graphs[s], dev)))
    return torch.cat(outs).cpu().double().numpy()


def _forward(model: object, bmg: object) -> torch.Tensor:
    out = model(bmg)
    return out.reshape(len(out), -1)


def _gradient_terms(model, graphs, output: int, alphas: np.ndarray, device, batch_size: int):
    """Per molecule: (atom terms, bond terms, prediction) of the path-averaged gradient x input."""
    atom_terms, bond_terms, preds = [], [], []
    for s in batches(len(graphs), batch_size):
        bmg = _batch(graphs[s], device)
        V0, E0 = bmg.V.detach().clone(), bmg.E.detach().clone()
        gV, gE = torch.zeros_like(V0), torch.zeros_like(E0)
        for a in alphas:
            bmg.V = (a * V0).requires_grad_(True)
            bmg.E = (a * E0).requires_grad_(True)
            leaf_v, leaf_e = bmg.V, bmg.E
            with torch.enable_grad():
                y = _forward(model, bmg)[:, output]
                gv, ge = torch.autograd.grad(y.sum(), (leaf_v, leaf_e), allow_unused=True)
            gV += gv if gv is not None else 0.0
            gE += ge if ge is not None else 0.0
        gV /= len(alphas)
        gE /= len(alphas)
        bmg.V, bmg.E = V0, E0
        with torch.no_grad():
            preds.append(_forward(model, bmg)[:, output].cpu().double().numpy())
        at = (gV * V0).sum(1).cpu().double().numpy()
        bt = (gE * E0).sum(1).cpu().double().numpy()
        a0 = e0 = 0
        for g in graphs[s]:
            atom_terms.append(at[a0:a0 + len(g.V)])
            # directed edges 2b and 2b+1 are RDKit bond b's two directions
            bond_terms.append(bt[e0:e0 + len(g.E)].reshape(-1, 2).sum(1))
            a0 += len(g.V)
            e0 += len(g.E)
    return atom_terms, bond_terms, np.concatenate(preds)


def _hidden_terms(model, graphs, output: int, device, batch_size: int):
    """Per molecule: grad_{h_v} f . h_v on the message passing's atom states, and f(G)."""
    terms, preds, states = [], [], []

    def leaf(module, inputs, out):  # the atom states become the leaf the gradient is taken for
        states.append(out.detach().requires_grad_(True))
        return states[-1]

    for s in batches(len(graphs), batch_size):
        bmg = _batch(graphs[s], device)
        handle = model.message_passing.register_forward_hook(leaf)
        try:
            with torch.enable_grad():
                y = _forward(model, bmg)[:, output]
                (g,) = torch.autograd.grad(y.sum(), states[-1])
        finally:
            handle.remove()
        t = (g * states[-1]).sum(1).detach().cpu().double().numpy()
        preds.append(y.detach().cpu().double().numpy())
        a0 = 0
        for gr in graphs[s]:
            terms.append(t[a0:a0 + len(gr.V)])
            a0 += len(gr.V)
    return terms, np.concatenate(preds)


def _masked(g, atoms: Sequence[int] = (), edges: Sequence[int] = ()):
    from chemprop.data import MolGraph

    V, E = g.V.copy(), g.E.copy()
    V[list(atoms)] = 0.0
    E[list(edges)] = 0.0
    return MolGraph(V, E, g.edge_index, g.rev_edge_index)


def _ablation_terms(model, graphs, output: int, device, batch_size: int):
    """Per molecule: f(G) - f(G with one atom masked), f(G) - f(G with one bond masked), f(G)."""
    rows, owners = [], []
    for k, g in enumerate(graphs):
        rows.append(g)
        owners.append((k, "base", 0))
        src = np.asarray(g.edge_index[0])
        dst = np.asarray(g.edge_index[1])
        for a in range(len(g.V)):
            rows.append(_masked(g, [a], np.flatnonzero((src == a) | (dst == a))))
            owners.append((k, "atom", a))
        for b in range(len(g.E) // 2):
            rows.append(_masked(g, (), [2 * b, 2 * b + 1]))
            owners.append((k, "bond", b))
    out = []
    with torch.no_grad():
        for s in batches(len(rows), batch_size):
            out.append(_forward(model, _batch(rows[s], device))[:, output].cpu().double().numpy())
    out = np.concatenate(out)
    base = np.zeros(len(graphs))
    atom_terms = [np.zeros(len(g.V)) for g in graphs]
    bond_terms = [np.zeros(len(g.E) // 2) for g in graphs]
    for y, (k, kind, i) in zip(out, owners):
        if kind == "base":
            base[k] = y
        elif kind == "atom":
            atom_terms[k][i] = y
        else:
            bond_terms[k][i] = y
    return ([base[k] - t for k, t in enumerate(atom_terms)], [base[k] - t for k, t in enumerate(bond_terms)],
            base, len(rows))


def _atomwise_head(model: object) -> tuple:
    """(aggregation, output layer, output transform) of a network with an atom-wise readout, else ProbeError."""
    cp = _chemprop()
    from .atomwise import AtomwiseAggregation

    agg, pred = model.agg, model.predictor
    why = None
    if not isinstance(agg, AtomwiseAggregation):
        why = f"its aggregation is {type(agg).__name__}, so its FFN acts on the sum of the atoms' states"
    elif not isinstance(model.bn, torch.nn.Identity):
        why = "it batch-normalises the summed states"
    elif not isinstance(pred, cp.nn.RegressionFFN) or pred.n_targets != 1:
        why = f"its predictor {type(pred).__name__} is not a plain regression output layer"
    elif len(pred.ffn) != 1 or len(pred.ffn[0]) != 1 or not isinstance(pred.ffn[0][0], torch.nn.Linear):
        why = "its predictor has hidden layers after the sum (build it with n_layers=0)"
    elif not isinstance(pred.output_transform, (torch.nn.Identity, cp.nn.UnscaleTransform)):
        why = f"its output transform {type(pred.output_transform).__name__} is not affine"
    if why is not None:
        raise ProbeError(f"method='readout' needs a network with an atom-wise readout "
                         f"(fit_mpnn(..., readout='atomwise')): {why}")
    return agg, pred.ffn[0][0], pred.output_transform


def readout_bias(model: object) -> np.ndarray:
    """The constant :math:`T(b)` of an atom-wise readout, shape (K,): prediction = sum of atom terms + bias.

    Raises ``ProbeError`` for a network without an atom-wise readout (see :func:`mpnn_atom_weights`).
    """
    model = load_mpnn(model)
    _, lin, transform = _atomwise_head(model)
    with model_hygiene(model), torch.no_grad():
        return transform(lin.bias[None]).reshape(-1).cpu().double().numpy()


def _readout_terms(model, graphs, output: int, device, batch_size: int):
    """Per molecule: the atom terms t_v = T(W g(h_v) + b) - T(b) of an atom-wise readout, and f(G)."""
    agg, lin, transform = _atomwise_head(model)
    terms, preds = [], []
    with torch.no_grad():
        bias = transform(lin.bias[None])
        for s in batches(len(graphs), batch_size):
            bmg = _batch(graphs[s], device)
            t = transform(lin(agg.atom_states(model.message_passing(bmg)))) - bias
            t = t[:, output].cpu().double().numpy()
            preds.append(_forward(model, bmg)[:, output].cpu().double().numpy())
            a0 = 0
            for g in graphs[s]:
                terms.append(t[a0:a0 + len(g.V)])
                a0 += len(g.V)
    return terms, np.concatenate(preds)


def mpnn_atom_weights(model: object, molecules: object, *, method: str = "integrated_gradients", output: int = 0,
                      steps: int = 32, featurizer: object | None = None, batch_size: int = 128,
                      device: str | torch.device | None = None) -> AtomMaps:
    """Per-atom and per-bond weights of a chemprop network's prediction.

    Parameters
    ----------
    model : chemprop.models.MPNN or path
        A trained network (see :func:`load_mpnn`).
    molecules : SMILES, RDKit Mol, sequence of either, or MoleculeSet
    method : str, default "integrated_gradients"
        One of ``"integrated_gradients"``, ``"gradient_x_input"``, ``"ablation"``,
        ``"hidden_gradient_x_input"``, ``"readout"``; see the module docstring for the formulas.
        ``"readout"`` only for networks with an atom-wise readout, whose atom weights then sum to
        the prediction minus :func:`readout_bias`.
    output : int, default 0
        Output column (task) to explain.
    steps : int, default 32
        Midpoint-rule steps of the integrated-gradients path integral.
    featurizer : chemprop graph featuriser, optional
        The one the network was trained with; default chemprop's ``SimpleMoleculeMolGraphFeaturizer()``.
    batch_size : int, default 128
        Graphs per forward pass (molecules for the gradient methods, masked copies for ablation).
    device : str or torch.device, optional
        Default: the network's device.

    Returns
    -------
    AtomMaps
        ``weights`` per heavy atom (output units) and ``bond_weights`` per RDKit bond index;
        ``queries`` counts the graphs sent through the network (for the gradient methods, each
        forward-backward pass of a molecule counts once per path step).

    Raises
    ------
    ProbeError
        For an unknown method, ``steps < 1``, or ``method="readout"`` on a network without an
        atom-wise readout (the message says what it has instead).
    """
    if method not in MPNN_METHODS:
        raise ProbeError(f"method must be one of {MPNN_METHODS}, got {method!r}")
    if method == "integrated_gradients" and int(steps) < 1:
        raise ProbeError(f"steps must be at least 1, got {steps}")
    model = load_mpnn(model)
    mols, names = _molecules(molecules)
    dev = resolve_device(device, model)
    graphs = _graphs(mols, featurizer, model)
    with model_hygiene(model, dev):
        if method == "readout":
            weights, pred = _readout_terms(model, graphs, output, dev, batch_size)
            bond_t = [np.zeros(m.GetNumBonds()) for m in mols]
            queries = len(graphs)
        elif method == "hidden_gradient_x_input":
            weights, pred = _hidden_terms(model, graphs, output, dev, batch_size)
            bond_t = [np.zeros(m.GetNumBonds()) for m in mols]
            queries = len(graphs)
        elif method == "ablation":
            atom_t, bond_t, pred, queries = _ablation_terms(model, graphs, output, dev, batch_size)
            weights = atom_t
        else:
            alphas = np.array([1.0]) if method == "gradient_x_input" else (np.arange(int(steps)) + 0.5) / int(steps)
            atom_t, bond_t, pred = _gradient_terms(model, graphs, output, alphas, dev, batch_size)
            queries = len(graphs) * (len(alphas) + 1)
            weights = []
            for m, at, bt in zip(mols, atom_t, bond_t):
                w = at.copy()
                for b in m.GetBonds():
                    w[b.GetBeginAtomIdx()] += bt[b.GetIdx()] / 2
                    w[b.GetEndAtomIdx()] += bt[b.GetIdx()] / 2
                weights.append(w)
    return AtomMaps(tuple(weights), np.asarray(pred), tuple(mols), tuple(names), f"mpnn_{method}", int(queries),
                    bond_weights=tuple(bond_t))


def fit_mpnn(molecules: object, y: object, *, hidden: int = 128, depth: int = 3, aggregation: str = "sum",
             epochs: int = 30, lr: float = 1e-3, batch_size: int = 64, ffn_hidden: int = 128, ffn_layers: int = 1,
             readout: str = "ffn", seed: int = 0,
             device: str | torch.device | None = None) -> object:
    """Train a small chemprop ``MPNN`` regressor by Adam on squared error (seeded; a plain loop, no Trainer).

    Parameters
    ----------
    molecules : SMILES, RDKit Mol, sequence of either, or MoleculeSet
    y : array-like, shape (N,) or (N, K)
        Targets; standardised for training and unscaled by the network's output transform.
    hidden : int, default 128
        Width of the bond messages.
    depth : int, default 3
        Message-passing steps.
    aggregation : {"sum", "mean", "norm"}, default "sum"
        Readout over atoms; a sum suits additive properties such as logP.
    epochs, lr, batch_size, ffn_hidden, ffn_layers : training settings
        ``ffn_layers`` hidden layers of width ``ffn_hidden`` before the output layer.
    readout : {"ffn", "atomwise"}, default "ffn"
        ``"ffn"``: chemprop's standard readout, the FFN on the aggregated atom states.
        ``"atomwise"``: the FFN's hidden layers on every atom, then a sum, then the output layer
        (:class:`~domains.chem.atomwise.AtomwiseAggregation`), so the prediction is a sum of atom
        terms plus a constant and ``mpnn_atom_weights(..., method="readout")`` returns those terms;
        needs ``aggregation="sum"``.
    seed : int, default 0
        Seeds weights and shuffling without touching the global generator.
    device : str or torch.device, optional
        Default the CPU.

    Returns
    -------
    chemprop.models.MPNN
        In eval mode.
    """
    cp = _chemprop()
    mols, _ = _molecules(molecules)
    Y = np.asarray(y, dtype=np.float64)
    Y = Y.reshape(len(Y), -1)
    if len(Y) != len(mols):
        raise ProbeError(f"{len(Y)} targets for {len(mols)} molecules")
    aggs = {"sum": cp.nn.SumAggregation, "mean": cp.nn.MeanAggregation, "norm": cp.nn.NormAggregation}
    if aggregation not in aggs:
        raise ProbeError(f"aggregation must be one of {tuple(aggs)}, got {aggregation!r}")
    if readout not in MPNN_READOUTS:
        raise ProbeError(f"readout must be one of {MPNN_READOUTS}, got {readout!r}")
    if readout == "atomwise" and aggregation != "sum":
        raise ProbeError(f"readout='atomwise' sums the atoms' terms: it needs aggregation='sum', got {aggregation!r}")
    dev = resolve_device(device)
    mu, sd = Y.mean(0), Y.std(0)
    sd[sd == 0] = 1.0
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler()
    scaler.mean_, scaler.scale_, scaler.var_, scaler.n_features_in_ = mu, sd, sd ** 2, Y.shape[1]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mp = cp.nn.BondMessagePassing(d_h=hidden, depth=depth)
        unscale = cp.nn.UnscaleTransform.from_standard_scaler(scaler)
        if readout == "atomwise":
            from .atomwise import AtomwiseAggregation

            agg = AtomwiseAggregation(input_dim=hidden, hidden_dim=ffn_hidden, n_layers=ffn_layers)
            ffn = cp.nn.RegressionFFN(n_tasks=Y.shape[1], input_dim=agg.output_dim, n_layers=0,
                                      output_transform=unscale)
        else:
            agg = aggs[aggregation]()
            ffn = cp.nn.RegressionFFN(n_tasks=Y.shape[1], input_dim=hidden, hidden_dim=ffn_hidden,
                                      n_layers=ffn_layers, output_transform=unscale)
        net = cp.models.MPNN(mp, agg, ffn, batch_norm=False)
    net.to(dev)
    graphs = _graphs(mols, None, net)
    target = torch.as_tensor((Y - mu) / sd, dtype=torch.float32, device=dev)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    net.train()
    for _ in range(int(epochs)):
        perm = torch.randperm(len(graphs), generator=g).numpy()
        for s in range(0, len(graphs), batch_size):
            b = perm[s:s + batch_size]
            bmg = _batch([graphs[i] for i in b], dev)
            opt.zero_grad()
            loss = ((_forward(net, bmg) - target[b]) ** 2).mean()
            loss.backward()
            opt.step()
    return net.eval()
