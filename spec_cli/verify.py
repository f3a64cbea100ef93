"""Pure numpy verification of a drafted chain against the target's distributions.

Both functions return `(n_accepted, next_token)`: the first `n_accepted` draft tokens are
kept, and `next_token` is the target's own token at the first rejection (a correction) or,
when every draft passed, the bonus token sampled from the last row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from spec_cli.sampling import sample, sample_race

Probs = npt.NDArray[np.float64]


def verify_greedy(draft: Sequence[int], target_argmax: Sequence[int]) -> tuple[int, int]:
    """Exact-match acceptance: keep drafts while they equal the target's argmax.

    `target_argmax` has one entry per draft position plus one for the bonus position.
    """
    if len(target_argmax) != len(draft) + 1:
        raise ValueError("need one target row per draft token plus one")
    n = 0
    while n < len(draft) and draft[n] == target_argmax[n]:
        n += 1
    return n, int(target_argmax[n])


def residual(p: Probs, q: Probs) -> Probs:
    """Normalized (p - q)+; falls back to p when q covers p everywhere (p == q)."""
    r = np.maximum(p - q, 0.0)
    total = float(r.sum())
    if total <= 0.0:
        return p
    out: Probs = r / total
    return out


def verify_sampled(
    draft: Sequence[int],
    q_rows: Sequence[Probs | None],
    p_rows: Sequence[Probs],
    rng: np.random.Generator,
) -> tuple[int, int]:
    """Leviathan/Chen rejection sampling over a draft chain.

    Token i is accepted with probability min(1, p_i[x] / q_i[x]). A `None` row in `q_rows`
    means the drafter was deterministic (q is one-hot on the drafted token), so acceptance
    is p_i[x] and the residual is p with x removed. On rejection the next token comes from
    the normalized residual; after a full accept it is sampled from the extra row of p.
    """
    if len(p_rows) != len(draft) + 1 or len(q_rows) != len(draft):
        raise ValueError("need one q row per draft token and one more p row")
    for i, x in enumerate(draft):
        p = p_rows[i]
        q = q_rows[i]
        qx = 1.0 if q is None else float(q[x])
        px = float(p[x])
        if qx > 0.0 and rng.random() * qx < px:
            continue
        if q is None:
            q = np.zeros_like(p)
            q[x] = 1.0
        return i, sample(residual(p, q), rng)
    return len(draft), sample(p_rows[len(draft)], rng)


def verify_matching(
    draft: Sequence[int], p_rows: Sequence[Probs], rngs: Sequence[np.random.Generator]
) -> tuple[int, int]:
    """Seeded verification: draw the target's own token at each position from that
    position's generator and keep a draft token only when it equals that draw.

    For any draft chosen independently of these draws this is rejection sampling with a
    one-hot q (accept with probability p[x], otherwise a draw from p without x), so the
    output follows p. A draft made with these same draws (the seeded draft model) does
    not change that either: every token emitted is the target's own draw at its position,
    so a seeded run gives the same text whatever the drafter proposed.
    """
    if len(p_rows) != len(draft) + 1 or len(rngs) != len(p_rows):
        raise ValueError("need one p row and one generator per draft token plus one")
    for i, x in enumerate(draft):
        y = sample_race(p_rows[i], rngs[i])
        if y != x:
            return i, y
    return len(draft), sample_race(p_rows[len(draft)], rngs[len(draft)])
