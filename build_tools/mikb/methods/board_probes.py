"""Linear board-state probes on a residual stream, and edits along their directions.

A probe reads, from one residual-stream vector, the state of every square as one of three
classes: affine scores ``score[s, c] = x . W[:, s, c] + b[s, c]``, argmax over ``c``, fitted
by least squares onto one-hot targets (closed form; cheaper than the logistic regression
Nanda et al. fit and, unlike it, needs no optimiser settings). Two encodings of the same board
are compared: *colour* (empty / black / white) and *relative* (empty / the mover's / the
opponent's, "mine / theirs"), as in Nanda et al.

An edit moves a residual vector across one square's mine-vs-theirs decision boundary of a
probe: with ``d = W[:, s, theirs] - W[:, s, mine]`` and the probe's margin
``m = x . d + b_t - b_m``, the edited vector is ``x - (1 + scale) m d / |d|^2``, which
leaves every direction orthogonal to ``d`` alone and gives margin ``-scale * m``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

EMPTY_CLS, FIRST_CLS, SECOND_CLS = 0, 1, 2


def board_classes(board: torch.Tensor) -> torch.Tensor:
    """Cells ``0 / 1 / -1`` to classes ``0 / 1 / 2`` (empty / first / second)."""
    out = torch.zeros_like(board, dtype=torch.long)
    out[board == 1] = FIRST_CLS
    out[board == -1] = SECOND_CLS
    return out


@dataclass
class Probe:
    weight: torch.Tensor  # [d_model, squares, 3]
    bias: torch.Tensor  # [squares, 3]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        d, s, c = self.weight.shape
        return (x @ self.weight.reshape(d, s * c)).view(-1, s, c) + self.bias

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x).argmax(-1)


def fit_probe(x: torch.Tensor, y: torch.Tensor, ridge: float = 1e-3) -> Probe:
    """Fit a 3-class linear probe for every square at once: ``x [N, d]``, ``y [N, squares]``
    class ids.

    Least squares onto one-hot targets with a small ridge (closed form, so it is exact,
    deterministic and costs one ``d x d`` solve); the predicted class is the largest of the
    three affine scores. ``ridge`` is relative to the mean variance of the inputs.
    """
    x = x.double()
    mu = x.mean(0)
    z = x - mu
    d, s = x.shape[1], y.shape[1]
    onehot = F.one_hot(y, 3).double().reshape(len(x), s * 3)
    ybar = onehot.mean(0)
    gram = z.T @ z / len(x)
    lam = ridge * float(gram.diagonal().mean())
    w = torch.linalg.solve(gram + lam * torch.eye(d, dtype=gram.dtype), z.T @ (onehot - ybar) / len(x))
    w = w.view(d, s, 3)
    b = ybar.view(s, 3) - torch.einsum("d,dsc->sc", mu, w)
    return Probe(weight=w.float(), bias=b.float())


def probe_accuracy(probe: Probe, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Accuracy over all squares, over occupied squares only, and over empty squares only."""
    pred = probe.predict(x)
    ok = pred == y
    occ = y != EMPTY_CLS
    return {
        "all": float(ok.float().mean()),
        "occupied": float(ok[occ].float().mean()) if occ.any() else None,
        "empty": float(ok[~occ].float().mean()) if (~occ).any() else None,
    }


def flip_edit(
    probe: Probe, x: torch.Tensor, squares: torch.Tensor, scale: float = 1.0, target: torch.Tensor | None = None
) -> torch.Tensor:
    """The change to add to each ``x[i]`` that flips square ``squares[i]`` between the probe's
    classes 1 and 2 (mine and theirs).

    Without ``target`` the margin is reflected to ``-scale`` times itself. With ``target``
    (``+1``: make it class 2, ``-1``: class 1) the new margin is ``target * scale * |m|``, so a
    vector already on the target side is left as it is (for ``scale`` 1), which lets the same
    edit be applied again at later layers.
    """
    d = (probe.weight[:, squares, SECOND_CLS] - probe.weight[:, squares, FIRST_CLS]).T  # [N, d_model]
    margin = (x * d).sum(-1) + probe.bias[squares, SECOND_CLS] - probe.bias[squares, FIRST_CLS]
    new = -scale * margin if target is None else target * scale * margin.abs()
    return ((new - margin) / d.pow(2).sum(-1))[:, None] * d
