"""The in-memory stream of this checkout against the stream of an earlier commit, side by side
on this host: issue 11's "real-time factor not lower than today's", where "today" is the
commit the issue was filed against (the cGAN remover and the runtime of 2026-11-24).

    python -m bench.stream_versions [--commit 1424396] [--lines 10000] [--rounds 4]

The earlier commit is checked out into a temporary git worktree; each round runs one pass of
each version (``kumo_edge.benchmark.run_pass``, hsi32, every tile cloudy), alternating, each in
its own process with that version's package first on ``sys.path`` (this environment's
numpy, numba and onnxruntime for both). Medians over rounds, and the ratio of each round's pair.
Writes ``bench/results/variants/stream_vs_<commit>.json``.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from bench._common import RESULTS, ROOT, environment, write_json
from kumo_edge.benchmark import pass_in_subprocess

#: The commit issue 11 was filed against (the last one before the physics remover).
FILED_AT = "1424396"


def one_pass(root: Path, lines: int) -> dict:
    """One hsi32 pass of the ``kumo_edge`` in checkout ``root``, in its own process."""
    return pass_in_subprocess({"profile_name": "satellogic-hsi", "lines": lines}, root=root)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--commit", default=FILED_AT)
    ap.add_argument("--lines", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=4)
    a = ap.parse_args(argv)
    sha = subprocess.run(
        ["git", "rev-parse", "--short", a.commit],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="kumo-stream-") as tmp:
        old = Path(tmp) / sha
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(old), sha],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            runs: dict[str, list[dict]] = {"this": [], "earlier": []}
            one_pass(old, 300)  # untimed: each version fills its numba cache once
            one_pass(ROOT, 300)
            for i in range(a.rounds):
                runs["earlier"].append(one_pass(old, a.lines))
                runs["this"].append(one_pass(ROOT, a.lines))
                print(
                    f"round {i + 1}: {sha} RTF {runs['earlier'][-1]['real_time_factor']:.2f}, "
                    f"this checkout RTF {runs['this'][-1]['real_time_factor']:.2f}"
                )
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(old)], cwd=ROOT, capture_output=True
            )
    rtf = {k: [r["real_time_factor"] for r in v] for k, v in runs.items()}
    ratios = [t / e for t, e in zip(rtf["this"], rtf["earlier"], strict=True)]
    doc = {
        "benchmark": "stream_versions",
        "lines": a.lines,
        "commits": {"this": head, "earlier": sha},
        "median_rtf": {k: float(np.median(v)) for k, v in rtf.items()},
        "ratio_per_round": ratios,
        "median_ratio": float(np.median(ratios)),
        "median_peak_rss_mb": {
            k: float(np.median([r["peak_rss_mb"] for r in v])) for k, v in runs.items()
        },
        "runs": runs,
        "environment": environment(),
    }
    path = write_json(doc, RESULTS / "variants" / f"stream_vs_{sha}.json")
    print(
        f"median RTF: this {doc['median_rtf']['this']:.2f}, {sha} {doc['median_rtf']['earlier']:.2f}; "
        f"ratio {doc['median_ratio']:.2f} -> {path}"
    )


if __name__ == "__main__":
    main()
