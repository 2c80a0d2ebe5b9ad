"""CPU per event of the pure churn step, and the churn state per user (docs/churn.md "Costs").

Runs ``streams.domain.churn.step`` over a contract-events JSONL (``shopstream generate``)
with the worker's default settings and scorers, three times, and prints the CPU time per
event (``time.process_time``: less sensitive to a busy machine than wall time), then the
JSON size of each user's churn track and whole envelope.

    PYTHONPATH=. .venv/bin/python scripts/bench_churn.py events.jsonl
"""

from __future__ import annotations

import statistics
import sys
import time

import orjson

from streams.core.events import validate
from streams.core.settings import Settings
from streams.domain.churn import step
from streams.domain.churn_state import ChurnConfig, ChurnState, track_to_list
from streams.domain.envelope import Envelope
from streams.domain.profile import Profile
from streams.worker.configs import churn_scorers


def quantiles(values: list[int]) -> str:
    v = sorted(values)
    q = lambda f: v[min(len(v) - 1, int(f * len(v)))]  # noqa: E731
    return f"mean {sum(v) / len(v):.0f}, median {q(0.5)}, p99 {q(0.99)}, max {v[-1]}"


def main(path: str) -> None:
    with open(path, "rb") as fh:
        events = [validate(orjson.loads(line)) for line in fh]
    settings = Settings()
    cfg = ChurnConfig.from_settings(settings)
    runs = []
    for _ in range(3):
        state, scorers, profiles = ChurnState(), churn_scorers(settings), {}
        profiles_get = profiles.get
        started = time.process_time()
        for e in events:
            profiles[e.user_id], _, _ = step(state, profiles_get(e.user_id), e, scorers, cfg,
                                             profiles_get)  # fmt: skip
        runs.append((time.process_time() - started) / len(events) * 1e6)
    final: dict[str, Profile] = profiles
    tracks = [len(orjson.dumps(track_to_list(t))) for t in state.users.values()]
    envelopes = [
        len(Envelope(profile=final[u], track=track_to_list(t)).to_bytes())
        for u, t in state.users.items()
    ]
    sys.stdout.write(
        f"{len(events)} events: CPU {', '.join(f'{r:.2f}' for r in runs)} us/event "
        f"(median {statistics.median(runs):.2f})\n"
        f"churn track per user, bytes: {quantiles(tracks)}\n"
        f"envelope per user, bytes: {quantiles(envelopes)}\n"
    )


if __name__ == "__main__":
    main(sys.argv[1])
