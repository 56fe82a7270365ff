"""``bench stream`` / ``bench models``: the benchmarks that ship with the package."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ..config import DEFAULT_BATCH
from ._base import (
    cli,
    handle_errors,
)


@cli.group()
def bench() -> None:
    """Benchmarks that write JSON (see also bench/ in the repository)."""


@bench.command("stream")
@click.option(
    "--sensor",
    default="satellogic-hsi",
    show_default=True,
    help="Sensor profile (band set, swath width, line rate).",
)
@click.option(
    "--lines",
    "lengths",
    default="1000,10000,100000",
    show_default=True,
    help="Pass lengths, comma-separated; each runs in its own process.",
)
@click.option(
    "--strip-lines",
    default=64,
    show_default=True,
    type=click.IntRange(1),
    help="Lines pushed at a time.",
)
@click.option("--models", help="Model set (default: the first shipped set the sensor's bands fit).")
@click.option("--threads", type=click.IntRange(1), help="ONNX Runtime intra-op threads.")
@click.option("--width", type=click.IntRange(1), help="Override the swath width.")
@click.option(
    "--typical",
    is_flag=True,
    help="Run the generator only where the detector finds cloud (default: every tile, the worst case).",
)
@click.option(
    "--providers",
    default="cpu",
    show_default=True,
    help="Execution providers: cpu, cuda, tensorrt (comma-separated).",
)
@click.option(
    "--batch",
    default=DEFAULT_BATCH,
    show_default=True,
    type=click.IntRange(1),
    help="Tiles per inference call (memory grows with it).",
)
@click.option(
    "--modes",
    default="memory",
    show_default=True,
    help="What to run, comma-separated: memory (lines pushed from RAM, no file), file-tiled and "
    "file-striped (kumo-edge run on a written GeoTIFF: 256 x 256 deflate tiles, or 16-row "
    "uncompressed strips), stdin (kumo-edge run on a BIL stream); with any but memory alone, "
    "all modes run side by side in one run, each pass in its own process.",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False), help="Write the JSON document here."
)
@handle_errors
def bench_stream_cmd(  # noqa: ANN001
    sensor,
    lengths,
    strip_lines,
    models,
    threads,
    width,
    typical,
    providers,
    batch,
    modes,
    json_path,
) -> None:
    """Real-time factor, per-strip latency p50/p99, throughput and peak RSS of passes."""
    from ..benchmark import bench_file, bench_stream, file_case_line

    ns = [int(v) for v in lengths.split(",") if v.strip()]
    mode_list = tuple(m.strip() for m in modes.split(",") if m.strip())
    if mode_list != ("memory",):
        doc = bench_file(sensor, ns, mode_list, models, threads, width)
        for c in doc["cases"]:
            click.echo(file_case_line(c))
        if json_path:
            Path(json_path).write_text(json.dumps(doc, indent=2))
            click.echo(f"-> {json_path}")
        return
    doc = bench_stream(
        sensor,
        ns,
        strip_lines,
        models,
        threads,
        not typical,
        width,
        [p.strip() for p in providers.split(",") if p.strip()],
        batch,
    )
    for c in doc["cases"]:
        click.echo(
            f"{c['lines']:>7} lines x {c['width']} px: RTF {c['real_time_factor']:.2f} ({c['lines_per_s']:.0f} lines/s vs {c['sensor_lines_per_s']:.0f}), "
            f"strip p50 {c['strip_latency_ms']['p50']:.0f} ms p99 {c['strip_latency_ms']['p99']:.0f} ms, {c['mpx_per_s']:.2f} Mpx/s, peak RSS {c['peak_rss_mb']:.0f} MB"
        )
    if json_path:
        Path(json_path).write_text(json.dumps(doc, indent=2))
        click.echo(f"-> {json_path}")


@bench.command("models")
@click.option("--models", "bands", metavar="hsi32|rgbn|rgb", help="One shipped set [default: all].")
@click.option(
    "--repeats", default=20, show_default=True, type=click.IntRange(1), help="Timed runs per model."
)
@click.option(
    "--batch",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Tiles per call (time is per tile).",
)
@click.option("--threads", type=click.IntRange(1), help="ONNX Runtime intra-op threads.")
@click.option(
    "--providers",
    default="cpu",
    show_default=True,
    help="Execution providers: cpu, cuda, tensorrt (comma-separated).",
)
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False), help="Write the JSON document here."
)
@handle_errors
def bench_models_cmd(bands, repeats, batch, threads, providers, json_path) -> None:  # noqa: ANN001
    """Per-tile latency of the shipped detector and generator models, as installed.

    For the comparison with the unpruned FP32 parent, the pruned FP32 model and a full-size
    pix2pix U-Net (the compression targets), run `python -m bench.models` in the repository
    with the `train` extra.
    """
    from ..benchmark import bench_models

    prov = [p.strip() for p in providers.split(",") if p.strip()]
    doc = bench_models(bands, repeats, threads, prov, batch)
    for k, v in doc["results"].items():
        click.echo(
            f"{k:>16}: {v['median_ms']:.2f} ms / {v['tile']} px tile (p95 {v['p95_ms']:.2f}), {v['precision']}, {v['file_mb']:.2f} MB"
        )
    if json_path:
        Path(json_path).write_text(json.dumps(doc, indent=2))
        click.echo(f"-> {json_path}")
