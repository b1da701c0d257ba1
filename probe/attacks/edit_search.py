"""Greedy and beam search for the fewest substitutions in a one-hot space that satisfy a criterion."""

from __future__ import annotations

import torch

from ..criteria import Criterion
from ..errors import ProbeError
from ..spaces import OneHot, Space
from .base import Attack, Forward, RunResult, loss_and_grad

__all__ = ["EditSearch"]

_GUIDES = ("gradient", "ism")


class EditSearch(Attack):
    r"""Fewest substitutions (Hamming distance) that make the model meet a criterion.

    A beam search over edit sets in a :class:`probe.OneHot` space. At step ``t`` every beam state
    (a sequence with ``t - 1`` substitutions) is extended by one more substitution at a position
    not yet edited and not masked; candidates are ranked by the criterion's margin loss (larger
    is closer to success), and the ``beam_width`` best distinct edit sets are kept. The search
    stops at the first step where some candidate satisfies the criterion. Then, with
    ``prune=True``, edits are removed one at a time while the criterion still holds (each round
    drops the edit whose removal leaves the largest margin), so the returned set is 1-minimal: no
    single edit in it can be undone.

    ``guide="ism"`` scores every single substitution of every beam state with a forward pass
    (in-silico mutagenesis, black-box: no gradients); with ``max_edits=1`` the result is exactly
    what the full mutagenesis table says (the substitution of largest margin among those that
    satisfy the criterion). ``guide="gradient"`` ranks substitutions by the first-order estimate
    :math:`L(x) + g_{b,p} - \sum_{b'} g_{b',p}\,x_{b',p}` with :math:`g = \nabla_x L`, the change of
    the loss when column ``p`` becomes base ``b`` (the HotFlip estimate, Ebrahimi et al., "HotFlip:
    White-Box Adversarial Examples for Text Classification", ACL 2018), and evaluates only the
    ``candidates`` best of them exactly.

    Parameters
    ----------
    max_edits : int, default 10
        Largest number of substitutions tried; inputs not flipped by then fail (distance ``inf``).
    beam_width : int, default 1
        Edit sets kept per step (1 is greedy).
    guide : {"gradient", "ism"}, default "gradient"
    prune : bool, default True
        Drop edits that are not needed once the criterion holds.
    candidates : int, default 32
        ``guide="gradient"``: substitutions per beam state evaluated exactly at each step.
    chunk : int, default 4096
        Sequences per forward pass during the search.
    seed : int, default 0
        Unused by the deterministic search; kept for the common attack interface.
    """

    name = "edit_search"
    minimal = True
    needs_continuous = False
    norm = "l0"

    def __init__(self, *, max_edits: int = 10, beam_width: int = 1, guide: str = "gradient", prune: bool = True,
                 candidates: int = 32, chunk: int = 4096, seed: int = 0):
        self.max_edits = max_edits
        self.beam_width = beam_width
        self.guide = guide
        self.prune = prune
        self.candidates = candidates
        self.chunk = chunk
        self.seed = seed

    @property
    def needs_gradient(self) -> bool:  # type: ignore[override]
        return self.guide == "gradient"

    def validate(self) -> None:
        if self.guide not in _GUIDES:
            raise ProbeError(f"guide must be one of {_GUIDES}, got {self.guide!r}")
        for name in ("max_edits", "beam_width", "candidates", "chunk"):
            if int(getattr(self, name)) < 1:
                raise ProbeError(f"EditSearch needs {name} >= 1, got {getattr(self, name)}")

    def _check(self, space: Space) -> None:
        if not isinstance(space, OneHot):
            raise ProbeError(f"EditSearch searches a OneHot space, got {space!r}")

    def _allowed(self, x: torch.Tensor, space: OneHot) -> torch.Tensor:
        """Bool (n, positions...) of positions that may change."""
        positions = x.shape[:1] + x.shape[2:] if space.axis == 1 else None
        if positions is None:
            raise ProbeError("EditSearch supports OneHot(axis=1) inputs shaped (N, categories, positions...)")
        allowed = torch.ones(positions, dtype=torch.bool, device=x.device)
        if space.mask is not None:
            mask = space.mask.to(x.device)
            try:
                allowed = allowed & ~mask.expand(positions)
            except RuntimeError:
                raise ProbeError(f"OneHot mask of shape {tuple(mask.shape)} does not fit positions of shape "
                                 f"{tuple(positions[1:])}") from None
        return allowed

    def run(self, f: Forward, x: torch.Tensor, criterion: Criterion, reference: torch.Tensor, space: Space,
            **_: torch.Tensor) -> RunResult:
        self._check(space)
        n, k = x.shape[0], x.shape[1]
        shape = x.shape[2:]
        allowed0 = self._allowed(x, space).reshape(n, -1)  # (n, P)
        xf = x.reshape(n, k, -1)
        queries = torch.zeros(n, dtype=torch.long, device=x.device)
        beam = xf.clone()[:, None]  # (n, B, k, P)
        result = xf.clone()
        done = torch.zeros(n, dtype=torch.bool, device=x.device)
        best_loss = torch.full((n,), float("-inf"), device=x.device)
        for _step in range(int(self.max_edits)):
            b = beam.shape[1]
            states = beam.reshape(n * b, k, -1)
            owner = torch.arange(n, device=x.device).repeat_interleave(b)
            free = allowed0[owner] & ~(states != xf[owner]).any(1)  # not masked, not edited yet
            active = ~done[owner]
            cand = self._propose(f, states, owner, free & active[:, None], criterion, reference, shape, queries)
            scores, sat = cand  # (n*b, k, P): margin of each one-edit extension (-inf: not tried)
            flat = scores.reshape(n, -1)
            satf = sat.reshape(n, -1)
            new_states = []
            for i in range(n):
                if done[i]:
                    new_states.append(beam[i])
                    continue
                ok = satf[i] & torch.isfinite(flat[i])
                if ok.any():
                    j = int(torch.where(ok, flat[i], torch.full_like(flat[i], float("-inf"))).argmax())
                    result[i] = _apply(beam[i], j, k)
                    done[i] = True
                    new_states.append(beam[i])
                    continue
                order = flat[i].argsort(descending=True)
                chosen, seen = [], set()
                for j in order.tolist():
                    if not torch.isfinite(flat[i, j]) or len(chosen) >= int(self.beam_width):
                        break
                    cand_x = _apply(beam[i], j, k)
                    key = tuple((cand_x != xf[i]).any(0).nonzero().flatten().tolist()) + \
                        tuple(cand_x.argmax(0)[(cand_x != xf[i]).any(0)].tolist())
                    if key in seen:
                        continue
                    seen.add(key)
                    chosen.append(cand_x)
                    if len(chosen) == 1 and float(flat[i, j]) > float(best_loss[i]):
                        best_loss[i] = flat[i, j]
                        result[i] = cand_x
                if not chosen:  # nothing left to edit
                    done[i] = True
                    new_states.append(beam[i])
                    continue
                new_states.append(torch.stack(chosen))
            # states of unequal beam widths are padded by repeating their last one (duplicates score alike)
            width = max(s.shape[0] for s in new_states)
            beam = torch.stack([torch.cat([s, s[-1:].expand(width - s.shape[0], -1, -1)]) for s in new_states])
            if done.all():
                break
        if self.prune:
            result = self._prune(f, xf, result, criterion, reference, shape, queries)
        return RunResult(x_adv=result.reshape(x.shape), queries=queries)

    def _forward(self, f: Forward, xs: torch.Tensor, owner: torch.Tensor, criterion: Criterion,
                 reference: torch.Tensor, shape: torch.Size, queries: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and satisfied flag of many candidate sequences (M, k, P), in chunks."""
        losses, sats = [], []
        for s in range(0, len(xs), int(self.chunk)):
            xc = xs[s:s + int(self.chunk)]
            oc = owner[s:s + int(self.chunk)]
            with torch.no_grad():
                out = f(xc.reshape((len(xc), xc.shape[1]) + tuple(shape)))
            ref = reference[oc]
            losses.append(criterion.loss(out, ref).reshape(-1))
            sats.append(criterion.satisfied(out, ref).reshape(-1))
            queries.index_add_(0, oc, torch.ones_like(oc))
        if not losses:
            empty = xs.new_zeros(0)
            return empty, empty.bool()
        return torch.cat(losses), torch.cat(sats)

    def _propose(self, f: Forward, states: torch.Tensor, owner: torch.Tensor, free: torch.Tensor,
                 criterion: Criterion, reference: torch.Tensor, shape: torch.Size, queries: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores (M, k, P) of every one-substitution extension of each state (-inf where not tried)."""
        m, k, p = states.shape
        # a candidate writes base c at a free position where the state does not hold c already
        cand = free[:, None, :] & (states != 1)
        if self.guide == "gradient":
            loss, grad, _ = loss_and_grad(lambda z: f(z.reshape((len(z), k) + tuple(shape))), states, criterion,
                                          reference[owner])
            queries.index_add_(0, owner, torch.ones_like(owner))
            est = loss[:, None, None] + grad - (grad * states).sum(1, keepdim=True)
            est = torch.where(cand, est, torch.full_like(est, float("-inf")))
            top = min(int(self.candidates), k * p)
            vals, idx = est.reshape(m, -1).topk(top, dim=1)
            keep = torch.zeros(m, k * p, dtype=torch.bool, device=states.device)
            keep.scatter_(1, idx, torch.isfinite(vals))
            cand = keep.reshape(m, k, p)
        rows, base, pos = cand.nonzero(as_tuple=True)
        xs = states[rows].clone()
        r = torch.arange(len(rows), device=states.device)
        xs[r, :, pos] = 0
        xs[r, base, pos] = 1
        loss, sat = self._forward(f, xs, owner[rows], criterion, reference, shape, queries)
        scores = torch.full((m, k, p), float("-inf"), device=states.device, dtype=states.dtype)
        satisfied = torch.zeros((m, k, p), dtype=torch.bool, device=states.device)
        scores[rows, base, pos] = loss.to(scores.dtype)
        satisfied[rows, base, pos] = sat
        return scores, satisfied

    def _prune(self, f: Forward, xf: torch.Tensor, result: torch.Tensor, criterion: Criterion,
               reference: torch.Tensor, shape: torch.Size, queries: torch.Tensor) -> torch.Tensor:
        """Undo edits one at a time while the criterion still holds (1-minimal edit sets)."""
        result = result.clone()
        n = len(xf)
        owner = torch.arange(n, device=xf.device)
        loss, sat = self._forward(f, result, owner, criterion, reference, shape, queries)
        active = sat.clone()
        while active.any():
            rows_l, pos_l = [], []
            for i in active.nonzero().flatten().tolist():
                changed = (result[i] != xf[i]).any(0).nonzero().flatten()
                if len(changed) <= 1:
                    active[i] = False
                    continue
                rows_l.append(torch.full_like(changed, i))
                pos_l.append(changed)
            if not rows_l:
                break
            rows, pos = torch.cat(rows_l), torch.cat(pos_l)
            xs = result[rows].clone()
            r = torch.arange(len(rows), device=xf.device)
            xs[r, :, pos] = xf[rows, :, pos]
            loss, sat = self._forward(f, xs, rows, criterion, reference, shape, queries)
            score = torch.where(sat, loss, torch.full_like(loss, float("-inf")))
            for i in rows.unique().tolist():
                sel = (rows == i).nonzero().flatten()
                j = sel[score[sel].argmax()]
                if torch.isfinite(score[j]):
                    result[i] = xs[j]
                else:
                    active[i] = False
        return result


def _apply(state: torch.Tensor, j: int, k: int) -> torch.Tensor:
    """``state`` (B, k, P) flattened over (B, k, P): candidate ``j`` -> the edited (k, P) sequence."""
    b, kk, p = state.shape
    bi, rest = divmod(j, kk * p)
    c, pos = divmod(rest, p)
    out = state[bi].clone()
    out[:, pos] = 0
    out[c, pos] = 1
    return out
