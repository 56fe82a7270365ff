"""Stream benchmark with plots: ``kumo-edge bench stream`` plus PNG.

python -m bench.stream --sensor satellogic-hsi --lines 1000,10000,100000 [--threads 2]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench._common import RESULTS, environment, pyplot, save_figure, write_json
from kumo_edge.benchmark import bench_stream


def plot(doc: dict, path: Path) -> Path | None:
    plt = pyplot()
    if plt is None:
        return None
    cs = doc["cases"]
    n = [c["lines"] for c in cs]
    fig, ax = plt.subplots(1, 2, figsize=(8, 3))
    ax[0].plot(n, [c["real_time_factor"] for c in cs], "o-")
    ax[0].axhline(2.0, color="k", ls="--", lw=1, label="target 2")
    ax[0].set_xscale("log")
    ax[0].set_xlabel("lines in the pass")
    ax[0].set_ylabel("real-time factor")
    ax[0].legend(fontsize=8)
    ax[1].plot(n, [c["peak_rss_mb"] for c in cs], "o-")
    ax[1].axhline(500, color="k", ls="--", lw=1, label="target 500 MB")
    ax[1].set_xscale("log")
    ax[1].set_xlabel("lines in the pass")
    ax[1].set_ylabel("peak RSS (MB)")
    ax[1].legend(fontsize=8)
    fig.suptitle(
        f"stream, {cs[0]['profile']} ({cs[0]['width']} px, {cs[0]['bands_in']} bands), worst case={cs[0]['worst_case']}",
        fontsize=9,
    )
    return save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensor", default="satellogic-hsi")
    ap.add_argument("--lines", default="1000,10000,100000")
    ap.add_argument("--strip-lines", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    doc = bench_stream(
        a.sensor, [int(v) for v in a.lines.split(",")], a.strip_lines, None, a.threads, True
    )
    doc["environment"] = {**environment(), **doc["environment"]}
    path = write_json(doc, a.json or RESULTS / f"stream_{a.sensor}.json")
    png = plot(doc, path.with_suffix(".png"))
    for c in doc["cases"]:
        print(
            f"{c['lines']:>7} lines: RTF {c['real_time_factor']:.2f}, p50 {c['strip_latency_ms']['p50']:.0f} ms, p99 {c['strip_latency_ms']['p99']:.0f} ms, {c['mpx_per_s']:.2f} Mpx/s, peak RSS {c['peak_rss_mb']:.0f} MB"
        )
    print(f"-> {path}" + (f", {png}" if png else ""))


if __name__ == "__main__":
    main()
