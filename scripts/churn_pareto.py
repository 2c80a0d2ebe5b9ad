"""Experiment (docs/churn.md "Long silences"): would Pareto/NBD do better than MBG/NBD?

Both are fitted in one batch on every customer seen before the cutoff (the most the product's
online fit could know), then score P(no purchase in the next H days); the script prints ROC
AUC overall and per recency bucket, next to recency alone. Pareto/NBD (Schmittlein et al.
1987) lets customers leave at any time, not only right after a purchase. Its likelihood
needs the Gaussian hypergeometric function, so this uses scipy (installed with river); P(no
purchase in H | alive) is a Monte Carlo mean over the posterior rates (fixed seed).

    PYTHONPATH=. .venv/bin/python scripts/churn_pareto.py FILE.csv 2011-09-09 90
"""

from __future__ import annotations

import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize, special

from models.alive import fit, p_churn, summary
from streams.tools.churn_metrics import by_bucket, roc_auc
from streams.tools.evaluate_churn import read_transactions

DAY = 86_400_000
ORDER_GAP = 3_600_000  # purchases closer than this are one order (as in profiles)


def pnbd_terms(th: Any, x: Any, tx: Any, T: Any) -> tuple[Any, Any]:
    """log of the 'alive at T' and 'left before T' parts of the Pareto/NBD likelihood."""
    r, a, s, b = np.exp(th)
    rsx = r + s + x
    if a >= b:
        f1 = special.hyp2f1(rsx, s + 1, rsx + 1, (a - b) / (a + tx))
        f2 = special.hyp2f1(rsx, s + 1, rsx + 1, (a - b) / (a + T))
        l1, l2 = np.log(f1) - rsx * np.log(a + tx), np.log(f2) - rsx * np.log(a + T)
    else:
        f1 = special.hyp2f1(rsx, r + x, rsx + 1, (b - a) / (b + tx))
        f2 = special.hyp2f1(rsx, r + x, rsx + 1, (b - a) / (b + T))
        l1, l2 = np.log(f1) - rsx * np.log(b + tx), np.log(f2) - rsx * np.log(b + T)
    alive = -(r + x) * np.log(a + T) - s * np.log(b + T)
    left = np.log(s / rsx) + l1 + np.log1p(-np.exp(np.minimum(l2 - l1, -1e-300)))
    return alive, left


def main(path: str, cutoff: str, horizon: float) -> None:
    day = date.fromisoformat(cutoff)
    t = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000) + DAY
    rows = read_transactions(Path(path))
    back = {r.user_id for r in rows if t <= r.ts_ms < t + horizon * DAY}
    cust: dict[str, list[int]] = {}  # first, last purchase, orders, last order
    for r in sorted((r for r in rows if r.ts_ms < t), key=lambda r: r.ts_ms):
        c = cust.setdefault(r.user_id, [r.ts_ms, r.ts_ms, 1, r.ts_ms])
        if r.ts_ms > c[3] + ORDER_GAP:
            c[2], c[3] = c[2] + 1, r.ts_ms
        c[1] = max(c[1], r.ts_ms)
    users = sorted(cust)
    summ = [summary(cust[u][0], cust[u][3], cust[u][2], t) for u in users]
    x = np.array([s[0] for s in summ])
    tx, T = np.array([s[1] for s in summ]), np.array([s[2] for s in summ])
    truth = [u not in back for u in users]
    recency = [(t - cust[u][1]) / DAY for u in users]

    mbg = fit(x, tx, T, max_iter=60)
    p_mbg = [p_churn(mbg, s[0], s[1], s[2], horizon) for s in summ]

    def nll(th: Any) -> float:
        r, a, s, b = np.exp(th)
        alive, left = pnbd_terms(th, x, tx, T)
        ll = special.gammaln(r + x) - special.gammaln(r) + r * np.log(a) + s * np.log(b)
        v = -float(np.mean(ll + np.logaddexp(alive, left)))
        return v if np.isfinite(v) else 1e10

    res = optimize.minimize(nll, np.log([0.5, 30.0, 0.5, 300.0]), method="Nelder-Mead",
                            options={"maxiter": 4000, "xatol": 1e-6, "fatol": 1e-9})  # fmt: skip
    r, a, s, b = np.exp(res.x)
    alive, left = pnbd_terms(res.x, x, tx, T)
    p_alive = 1.0 / (1.0 + np.exp(left - alive))
    rng = np.random.default_rng(0)
    quiet = []  # P(no purchase in H | alive): rates ~ posterior gammas, leaving ~ Exp(mu)
    for i in range(len(users)):
        lam = rng.gamma(r + x[i], 1.0 / (a + T[i]), 4000)
        mu = rng.gamma(s, 1.0 / (b + T[i]), 4000)
        e = np.exp(-(lam + mu) * horizon)
        quiet.append(float(np.mean(e + mu / (lam + mu) * (1.0 - e))))
    p_pnbd = [1.0 - pa * (1.0 - q) for pa, q in zip(p_alive, quiet, strict=True)]

    sys.stdout.write(
        f"{Path(path).name} cutoff {cutoff} H={horizon:g}: {len(users)} customers\n"
        f"MBG/NBD (r, alpha, a, b) {[round(v, 4) for v in mbg.as_list()]}\n"
        f"Pareto/NBD (r, alpha, s, beta) {[round(float(v), 4) for v in (r, a, s, b)]}\n"
        f"ROC AUC: MBG/NBD {roc_auc(p_mbg, truth):.4f}  Pareto/NBD {roc_auc(p_pnbd, truth):.4f}"
        f"  recency {roc_auc(recency, truth):.4f}\n"
    )
    for row in by_bucket(recency, truth, {"mbg": p_mbg, "pnbd": p_pnbd, "recency": recency}):
        sys.stdout.write(
            f"  days {row['days']:>7}: share {row['share']:.3f}  MBG/NBD {row['mbg_auc']:.3f}"
            f"  Pareto/NBD {row['pnbd_auc']:.3f}  recency {row['recency_auc']:.3f}\n"
        )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]))
