"""Stream benchmark with plots: ``kumo-edge bench stream`` plus PNG.

python -m bench.stream --sensor satellogic-hsi --lines 1000,10000,100000 [--threads 2] [--batch 2]
python -m bench.stream --sweep-batches 1,2,4,8 --lines 10000   # memory/speed vs tiles per call
python -m bench.stream --lines 10000 --models DIR --json OUT.json  # other models (DIR/detector.onnx, DIR/generator.onnx)
python -m bench.stream --modes memory,file-tiled,file-striped,stdin --lines 1000,20000  # the path users run
python -m bench.stream --modes ... --python /tmp/flight/bin/python  # passes run by a flight install
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench._common import RESULTS, pyplot, save_figure, write_json
from kumo_edge.benchmark import bench_file, bench_stream, file_case_line
from kumo_edge.config import DEFAULT_BATCH


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


def sweep(a: argparse.Namespace, lines: int) -> None:
    """Peak RSS and real-time factor against tiles per inference call, in one run."""
    cases = []
    for b in [int(v) for v in a.sweep_batches.split(",")]:
        doc = bench_stream(a.sensor, [lines], a.strip_lines, None, a.threads, True, batch=b)
        cases.append(doc["cases"][0])
        c = cases[-1]
        print(f"batch {b}: RTF {c['real_time_factor']:.2f}, peak RSS {c['peak_rss_mb']:.0f} MB")
    out = {
        "benchmark": "stream_batch_sweep",
        "environment": doc["environment"],
        "cases": cases,
    }
    write_json(out, a.json or RESULTS / f"stream_batches_{a.sensor}.json")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sensor", default="satellogic-hsi")
    ap.add_argument("--lines", default="1000,10000,100000")
    ap.add_argument("--strip-lines", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    ap.add_argument("--sweep-batches", help="comma-separated batch sizes: one pass each, one JSON")
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--models",
        help="a shipped band set or a folder with detector.onnx and generator.onnx (default: the "
        "first shipped set that fits the sensor); e.g. the previous cGAN beside the physics remover",
    )
    ap.add_argument(
        "--modes",
        default="memory",
        help="memory (default), or any of memory,file-tiled,file-striped,stdin side by side "
        "(kumo-edge run file to file / stdin to file, each pass in its own process)",
    )
    ap.add_argument(
        "--python",
        help="interpreter of the file/stdin passes (default this one), e.g. a flight install's "
        "(`python3 -m venv /tmp/flight && /tmp/flight/bin/pip install .`): only the runtime's "
        "dependencies, as users run it",
    )
    a = ap.parse_args()
    lengths = [int(v) for v in a.lines.split(",")]
    modes = tuple(m for m in a.modes.split(",") if m)
    if modes != ("memory",):
        doc = bench_file(a.sensor, lengths, modes, a.models, a.threads, python=a.python)
        path = write_json(doc, a.json or RESULTS / f"stream_file_{a.sensor}.json")
        for c in doc["cases"]:
            print(file_case_line(c))
        print(f"-> {path}")
        return
    if a.sweep_batches:
        sweep(a, lengths[0])
        return
    doc = bench_stream(a.sensor, lengths, a.strip_lines, a.models, a.threads, True, batch=a.batch)
    path = write_json(doc, a.json or RESULTS / f"stream_{a.sensor}.json")
    png = plot(doc, path.with_suffix(".png"))
    for c in doc["cases"]:
        print(
            f"{c['lines']:>7} lines: RTF {c['real_time_factor']:.2f}, p50 {c['strip_latency_ms']['p50']:.0f} ms, p99 {c['strip_latency_ms']['p99']:.0f} ms, {c['mpx_per_s']:.2f} Mpx/s, peak RSS {c['peak_rss_mb']:.0f} MB"
        )
    print(f"-> {path}" + (f", {png}" if png else ""))


if __name__ == "__main__":
    main()
