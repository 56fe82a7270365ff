"""Markdown tables for the README, rendered from the benchmark JSON files.

python -m bench.tables                 # print the tables
python -m bench.tables --update-readme # rewrite the blocks between <!-- bench:NAME --> markers
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from bench._common import RESULTS, bootstrap, clear_changes, fmt_ci
from kumo_edge.config import DEFAULT_BATCH

README = Path(__file__).resolve().parents[1] / "README.md"


def tiling_table(doc: dict) -> str:
    r = doc["results"]
    env = doc["environment"]
    cfg = doc["config"]
    ref = r["memcpy_numpy_1thread"]["gb_per_s"]
    lines = [
        f"Strip of {cfg['bands']} bands x {cfg['width']} px, tile {cfg['tile']}, halo {cfg['halo']} "
        f"({cfg['tiles_per_strip']} tiles), float32; medians of {r['extract']['n']} runs; "
        f"{env['cpu']}, {env['cpu_count']} cores, numba {env['numba_threads']} threads, {env['date_utc'][:10]}.",
        "",
        "| case | GB/s | x memcpy (1 thread) |",
        "|---|---:|---:|",
        f"| memcpy, numpy, 1 thread (reference) | {ref:.2f} | 1.00 |",
        f"| copy, numba, {env['numba_threads']} threads | {r['memcpy_numba_parallel']['gb_per_s']:.2f} | {r['memcpy_numba_parallel']['gb_per_s'] / ref:.2f} |",
        f"| tile extraction | {r['extract']['gb_per_s']:.2f} | **{r['extract']['fraction_of_memcpy']:.2f}** |",
        f"| tile blending | {r['blend']['gb_per_s']:.2f} | **{r['blend']['fraction_of_memcpy']:.2f}** |",
        "",
        f"Valid-footprint grid search: {r['footprint_search']['mpx_per_s']:.0f} Mpx/s "
        f"({r['footprint_search']['pixels'] / 1e6:.1f} Mpx mask, all {cfg['tile']}x{cfg['tile']} grid offsets).",
    ]
    return "\n".join(lines)


def models_table(cards: list[dict]) -> str:
    """The README "Models" table, from the model cards shipped in kumo_edge/models/."""
    lines = [
        "| model | bands | file | size | params | MMAC / 256 tile | held-out metrics (test scenes / patches) |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for c in cards:
        m = c["metrics"]
        if c["kind"] == "generator" and "cross_validation" in m:
            cv = m["cross_validation"]["summary"]
            bright = bool(c.get("brightness_model"))
            row = (
                cv.get(
                    "physics INT8+cgan brightness+detector" if bright else "physics INT8+detector"
                )
                or cv.get("physics INT8")
                or {}
            )
            what = "physics, cGAN brightness (`brightness.onnx`)" if bright else "physics"
            metric = (
                f"{what}; CV by place ({row.get('scenes', 0)} held-out scenes, out-of-range clouds): "
                f"PSNR gain {row.get('mean_gain_db', float('nan')):+.2f} dB mean, {row.get('min_gain_db', float('nan')):+.2f} worst; "
                f"SAM below input on {row.get('sam_lower_than_input', 0)}/{row.get('scenes', 0)}"
            )
        elif c["kind"] == "generator":
            q = m.get("held_out_shipped_int8", {})
            metric = (
                f"PSNR {q.get('psnr', float('nan')):.2f} dB (cloudy input {q.get('psnr_input', float('nan')):.2f}), "
                f"SAM {q.get('sam_deg', float('nan')):.2f} deg (input {q.get('sam_input_deg', float('nan')):.2f}), "
                f"SSIM {q.get('ssim', float('nan')):.3f}"
            )
        elif "synthetic_held_out" in m:
            syn = m["synthetic_held_out"]["int8"]
            parts = [
                f"band-agnostic; synthetic acc {syn['accuracy']:.3f} / FPR {syn['false_positive_rate']:.3f}"
            ]
            for k, v in m.items():
                if k.startswith("cv_real_int8"):
                    view = k.split("(")[-1].rstrip(")")
                    parts.append(
                        f"real CV, {v.get('patches', '?')} patches ({view}): acc {v['accuracy']:.3f} / FPR {v['false_positive_rate']:.3f}"
                    )
            metric = "; ".join(parts)
        else:
            q = m.get("held_out_int8", {})
            parts = []
            if "synthetic" in q:
                parts.append(
                    f"synthetic acc {q['synthetic']['cnn']['accuracy']:.3f} / FPR {q['synthetic']['cnn']['false_positive_rate']:.3f}"
                )
            if "real_l8biome" in q:
                parts.append(
                    f"real L8 Biome acc {q['real_l8biome']['cnn']['accuracy']:.3f} / FPR {q['real_l8biome']['cnn']['false_positive_rate']:.3f}"
                )
            metric = "; ".join(parts)
        lines.append(
            f"| `{c['name']}` | {len(c['bands']['centers_nm'])} | `{c['file']}` ({c['precision']}) | {c['size_bytes'] / 1e6:.2f} MB | "
            f"{c['parameters']:,} | {c['macs_per_256_tile'] / 1e6:.0f} | {metric} |"
        )
    return "\n".join(lines)


def compression_table(cards: list[dict]) -> str:
    """Held-out quality of each generator before and after compression (from the cards)."""
    lines = [
        "| band set | test scenes | cloudy input | parent FP32 | pruned FP32 | shipped INT8 | shipped - parent | on 256-px tiles: parent / shipped |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cards:
        if c["kind"] != "generator" or "cross_validation" in c["metrics"]:
            continue  # physics removers: FP32 vs INT8 is in their cross-validation table
        m = c["metrics"]
        par, pru, q = (
            m.get("held_out_parent_fp32", {}),
            m.get("held_out_pruned_fp32", {}),
            m.get("held_out_shipped_int8", {}),
        )

        def cell(d: dict) -> str:
            return f"{d['psnr']:.2f} dB / {d['sam_deg']:.2f} deg" if d else "-"

        def big(m: dict) -> str:
            p2, q2 = m.get("held_out_parent_fp32_256"), m.get("held_out_shipped_int8_256")
            if not p2 or not q2:
                return "no test scene that large"
            return f"{p2['psnr']:.2f} / {q2['psnr']:.2f} dB ({q2['psnr'] - p2['psnr']:+.2f}; {', '.join(q2['scenes'])})"

        lines.append(
            f"| {c['band_set']} | {', '.join(q.get('scenes', []))} | {q.get('psnr_input', float('nan')):.2f} dB / {q.get('sam_input_deg', float('nan')):.2f} deg | "
            f"{cell(par)} | {cell(pru)} | {cell(q)} | {q.get('psnr', float('nan')) - par.get('psnr', float('nan')):+.2f} dB | {big(m)} |"
        )
    return "\n".join(lines)


def models_bench_table(doc: dict) -> str:
    env = doc["environment"]
    by = doc.get("by_batch") or {str(doc["config"]["batch"]): doc}
    bs = list(by)
    first = by[bs[0]]["results"]
    lines = [
        f"Band set `{doc['bands']}`, 256 x 256 tiles, ONNX Runtime CPU with {env['ort_threads']} threads, "
        f"per tile at {' and '.join(f'batch {b}' for b in bs)} (the stream runs batch {DEFAULT_BATCH}); medians of "
        f"{next(iter(first.values()))['n']} alternating runs in {doc['config'].get('blocks', 1)} blocks; {env['cpu']}, {env['date_utc'][:10]}.",
        "",
        "| model | " + " | ".join(f"ms / tile, batch {b} (median, p95)" for b in bs) + " | file |",
        "|---|" + "---:|" * len(bs) + "---:|",
    ]
    for k, v in first.items():
        cells = [
            f"{by[b]['results'][k]['median_ms']:.2f} ({by[b]['results'][k]['p95_ms']:.2f})"
            for b in bs
        ]
        size = f"{v['file_mb']:.2f} MB" if "file_mb" in v else ""
        lines.append(f"| {k} | " + " | ".join(cells) + f" | {size} |")
    lines.append("")
    for k in by[bs[0]]["ratios"]:
        vals = ", ".join(
            f"batch {b}: **{by[b]['ratios'][k]:.2f}x**"
            + (
                f" (blocks {min(by[b]['ratios_per_block'][k]):.2f}-{max(by[b]['ratios_per_block'][k]):.2f})"
                if by[b].get("ratios_per_block")
                else ""
            )
            for b in bs
        )
        lines.append(f"- {k}: {vals}")
    return "\n".join(lines)


def stream_table(doc: dict) -> str:
    cs = doc["cases"]
    env = doc["environment"]
    c0 = cs[0]
    lines = [
        f"Profile `{c0['profile']}` ({c0['width']} px x {c0['bands_in']} bands, {c0['sensor_lines_per_s']:.0f} lines/s), models `{c0['models']}`, "
        f"{'every tile through the generator (worst case)' if c0['worst_case'] else 'generator where the detector finds cloud'}, "
        f"{c0['strip_lines']} lines per push, ONNX Runtime threads {env.get('ort_threads')}; {env.get('cpu', '')}, {env.get('cpu_count')} cores, {env.get('date_utc', '')[:10]}.",
        "",
        "| pass (lines) | real-time factor | lines/s | Mpx/s | strip p50 / p99 (ms) | peak RSS (MB) | RSS vs first |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cs:
        lines.append(
            f"| {c['lines']:,} | **{c['real_time_factor']:.2f}** | {c['lines_per_s']:.0f} | {c['mpx_per_s']:.2f} | "
            f"{c['strip_latency_ms']['p50']:.0f} / {c['strip_latency_ms']['p99']:.0f} | {c['peak_rss_mb']:.0f} | {100 * c['rss_growth_vs_first']:+.1f} % |"
        )
    return "\n".join(lines)


def quality_table(doc: dict) -> str:
    """README summary of bench/results/quality.json (the full report is docs/results.md)."""
    lines = [
        "Synthetic clouds on held-out scenes; mean over tiles with 95 % bootstrap intervals; "
        "thick-cloud pixels (flagged, not restored) left out. Full report, data and limits: "
        "[docs/results.md](docs/results.md).",
        "",
        "| band set | method | PSNR dB | SAM deg |",
        "|---|---|---|---|",
    ]
    for b, d in doc["methods"].items():
        for m, v in d["methods"].items():
            o = v["overall"]
            star = " *" if m.startswith("physics") else ""
            lines.append(f"| {b} | {m}{star} | {fmt_ci(o['psnr'])} | {fmt_ci(o['sam_deg'])} |")
    if any(m.startswith("physics") for d in doc["methods"].values() for m in d["methods"]):
        lines += [
            "",
            "\\* The physics remover was trained on these test scenes (all 15 hyperspectral crops, and "
            "for rgbn/rgb the clear Landsat-8/Sentinel-2 scenes): not held out here. Its held-out figures "
            "are the cross-validation by place above. For rgbn and rgb it runs with its brightness "
            "companion, the cGAN of the 'cGAN INT8 shipped' row (shipped alone until 2026-11-30).",
        ]
    st = doc["band_sets"]
    lines += [
        "",
        f"Band sets (same architecture, budget, training scene and cloud fields; test `{st['test_scene']}`; "
        "visible bands common to all three):",
        "",
        "| band set | PSNR visible dB | SAM visible deg | PSNR full bands dB |",
        "|---|---|---|---|",
    ]
    for b, v in st["sets"].items():
        if "missing" in v:
            continue
        lines.append(
            f"| {b} | {fmt_ci(v['visible_common']['cGAN']['psnr'])} | {fmt_ci(v['visible_common']['cGAN']['sam_deg'])} | "
            f"{fmt_ci(v['full_bands']['cGAN']['psnr'])} |"
        )
    return "\n".join(lines)


def sweep_table(doc: dict) -> str:
    """Tiles per inference call against speed and memory (``bench.stream --sweep-batches``)."""
    c0 = doc["cases"][0]
    lines = [
        f"`{c0['profile']}`, {c0['lines']:,} lines, worst case, one run; {doc['environment'].get('cpu', '')}, {doc['environment'].get('date_utc', '')[:10]}.",
        "",
        "| tiles per call (`--batch`) | real-time factor | peak RSS (MB) |",
        "|---:|---:|---:|",
    ]
    for c in doc["cases"]:
        lines.append(f"| {c['batch']} | {c['real_time_factor']:.2f} | {c['peak_rss_mb']:.0f} |")
    return "\n".join(lines)


def new_sensors_table(doc: dict) -> str:
    """Band sets no model was trained on, file to file (bench/new_sensors.py)."""
    env = doc["environment"]
    first = next(iter(doc["sensors"].values()))
    lines = [
        f"{len(first)} scenes per band set (procedural land, clouds from the out-of-range cloud "
        f"model), each through `kumo-edge run FILE OUT` with the default models; {env.get('date_utc', '')[:10]}. "
        "Scored in the models' band set; gain and angle on recoverable pixels, change on "
        "cloud-free ones, cloud found on pixels of two-way transmittance < 0.5.",
        "",
        "| band set (file) | models' bands | PSNR gain dB, mean (min) | SAM in -> out deg | lower SAM | cloud-free change, mean (max) | cloud found | clear called cloud |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, rows in doc["sensors"].items():
        ok = [r for r in rows if "error" not in r]
        if len(ok) < len(rows):
            err = next(r["error"] for r in rows if "error" in r)
            lines.append(f"| {name} | failed: {err} | | | | | | |")
            continue
        mean = lambda k, ok=ok: sum(r[k] for r in ok) / len(ok)  # noqa: E731
        found = [r["cloud_found"] for r in ok if r["cloud_found"] is not None]
        lines.append(
            f"| {name} | {ok[0]['model_bands']} | {mean('gain_db'):+.2f} ({min(r['gain_db'] for r in ok):+.2f}) "
            f"| {mean('sam_in'):.2f} -> {mean('sam_out'):.2f} | {sum(r['sam_out'] < r['sam_in'] for r in ok)}/{len(ok)} "
            f"| {mean('clear_change'):.4f} ({max(r['clear_change'] for r in ok):.4f}) "
            f"| {sum(found) / len(found):.0%} | {mean('clear_called_cloud'):.1%} |"
        )
    return "\n".join(lines)


def swir6_table(doc: dict) -> str:
    """bench/swir6_removal.py: the rgbn pair against ``--models swir6`` on files with SWIR."""
    lines = [
        "| scene | VNIR gain: rgbn / swir6 | swir6, six bands | VNIR SAM: input / rgbn / swir6 "
        "| cloud-free change: rgbn / swir6 |",
        "|---|---:|---:|---:|---:|",
    ]
    for part, note in (("shared", ""), ("held_out", " (fold network, held out)")):
        for name, r in doc[part].items():
            star = "*" if r.get("in_remover_training") else ""
            a, b = r["rgbn"], r["swir6"]
            lines.append(
                f"| {name}{star}{note} | {a['gain_db']:+.2f} / {b['gain_db_vnir']:+.2f} dB "
                f"| {b['gain_db']:+.2f} dB | {r['input_sam_deg_vnir']:.2f} / {a['sam_deg']:.2f} "
                f"/ {b['sam_deg_vnir']:.2f} deg | {a['cloud_free_change']:.4f} / "
                f"{b['cloud_free_change']:.4f} |"
            )
    rows = doc["procedural_sentinel2"]
    d = np.array([r["swir6"]["gain_db_vnir"] - r["rgbn"]["gain_db"] for r in rows])
    worse = sum(r["swir6"]["sam_deg_vnir"] > r["rgbn"]["sam_deg"] for r in rows)
    lines += [
        "",
        "\\* training scene of the shipped rgbn remover (its card). "
        "Procedural Sentinel-2 files, "
        f"{len(rows)} draws: swir6 minus rgbn VNIR gain {d.mean():+.2f} dB on average "
        f"({d.min():+.2f} to {d.max():+.2f}); VNIR angle higher than rgbn's on {worse} of "
        f"{len(rows)}. Host: {doc['environment'].get('cpu', '?')}.",
    ]
    real = doc.get("real_patches")
    if real:
        parts = []
        for m in ("rgbn", "swir6"):
            ch = clear_changes(real, m)
            th = [r[m]["thin_change"] for r in real.values() if r[m]["thin_change"] is not None]
            worst = max(
                (r for r in real.items() if r[1][m]["clear_change"] is not None),
                key=lambda r: r[1][m]["clear_change"],
            )
            parts.append(
                f"{m} {np.mean(ch):.4f} (worst {worst[0]} {worst[1][m]['clear_change']:.4f}), "
                f"thin-cloud pixels {np.mean(th):.4f}"
            )
        lines[-1] += (
            f" Real clouds, the {len(real)} labelled patches with the six bands (L8 Biome): "
            "clear pixels changed by " + "; ".join(parts) + " (target < 0.005)."
        )
    return "\n".join(lines)


def snow_spare_table(doc: dict) -> str:
    """bench/snow_spare.py: the snow test with each NIR share, what it saves and what it costs."""
    lines = [
        "| NIR share | snow scene change, rgbn / rgb (spared) | new-sensor files: gain off -> on, "
        "dB (cloudy pixels spared, most) | shared scenes under clouds: gain change, dB (worst) "
        "| real cloud / clear pixels taken for snow |",
        "|---|---|---|---|---|",
    ]
    for r, run in doc["runs"].items():
        ns = run["new_sensors"]
        worst = min(ns, key=lambda v: v["gain_db_on"] - v["gain_db_off"])
        sh = [v["gain_db_on"] - v["gain_db_off"] for v in run["shared"].values()]
        mark = " (shipped)" if float(r) == doc["shipped_nir_ratio"] else ""
        lines.append(
            f"| {r}{mark} | {run['snow_scene']['rgbn']:.4f} / {run['snow_scene']['rgb']:.4f} "
            f"({run['snow_scene']['spared']:.0%}) | worst {worst['file'].split(',')[0]} seed "
            f"{worst['seed']}: {worst['gain_db_off']:+.2f} -> {worst['gain_db_on']:+.2f} "
            f"({max(v['cloudy_spared'] for v in ns):.1%}) | {min(sh):+.2f} over {len(sh)} scenes "
            f"| {run['real_patches']['cloud_taken_for_snow']:.1%} / "
            f"{run['real_patches']['clear_taken_for_snow']:.1%} |"
        )
    return "\n".join(lines)


def other_clouds_table(doc: dict) -> str:
    """bench/other_clouds.py: held-out scenes under cloud models that are not ours."""
    lines = [
        "| band set | cloud model | shipped recipe: mean / worst gain, dB (scenes worse) | "
        "physics alone | HOT | SAM below the input's (shipped) |",
        "|---|---|---|---|---|---|",
    ]
    for b, res in doc["band_sets"].items():
        rows = res["scenes"].values()
        for kind in ("alpha", "haze"):
            cells = []
            for m in ("shipped recipe", "physics alone", "hot"):
                g = np.array([r[kind][m]["gain_db"] for r in rows])
                cells.append(f"{g.mean():+.2f} / {g.min():+.2f} ({int((g < 0).sum())})")
            sam = sum(r[kind]["shipped recipe"]["sam_deg"] < r[kind]["input_sam_deg"] for r in rows)
            lines.append(f"| {b} | {kind} | {' | '.join(cells)} | {sam}/{len(rows)} |")
    worse = [
        f"{b} {n} ({r['haze']['shipped recipe']['gain_db']:+.2f})"
        for b, res in doc["band_sets"].items()
        for n, r in res["scenes"].items()
        if r["haze"]["shipped recipe"]["gain_db"] < 0
    ]
    lines += ["", "Scenes left worse by the shipped recipe: " + (", ".join(worse) or "none") + "."]
    return "\n".join(lines)


def spectral_trees_table(doc: dict) -> str:
    """bench/spectral_trees.py: the hsi32 mask with and without its spectral trees."""
    from bench.spectral_trees import table

    return table(doc)


TABLES = {
    "other-clouds": ("other_clouds.json", other_clouds_table),
    "spectral-trees": ("spectral_trees.json", spectral_trees_table),
    "snow-spare": ("snow_spare.json", snow_spare_table),
    "tiling": ("tiling.json", tiling_table),
    "quality": ("quality.json", quality_table),
    "new-sensors": ("new_sensors.json", new_sensors_table),
    "swir6": ("swir6_removal.json", swir6_table),
}
MODELS_DIR = Path(__file__).resolve().parents[1] / "kumo_edge" / "models"


def _knee_grid_row(method: str) -> bool:
    """A row of one depth knee of bench.removal_cv's ``--knees`` study (not the nested one)."""
    head, _, last = method.rpartition(" ")
    return head.endswith(", knee") and last.replace(".", "", 1).isdigit()


def removal_cv_table(doc: dict) -> str:
    """Cross-validation of cloud removal by place (bench/removal_cv.py): per held-out scene, PSNR
    gain over the cloudy input and SAM, every method; then the summary."""
    env = doc["environment"]
    methods = list(next(iter(doc["per_scene"].values())).keys())
    # the per-knee rows of the depth-knee study and the oracle analysis go to the summary only
    methods = [
        m
        for m in methods
        if m not in ("fold", "input") and not _knee_grid_row(m) and not m.endswith("(oracle)")
    ]
    lines = [
        f"Band set `{doc['bands']}`, {len(doc['per_scene'])} held-out scenes in {len(doc['folds'])} folds by place, "
        + (
            f"physics folds of `--variant {doc['variant']}`"
            + (f" trained with `{doc['train_args']}`" if doc.get("train_args") else "")
            + ", "
            if doc.get("variant")
            else ""
        )
        + f"{doc['tiles_per_scene']} tiles of {doc['tile']} px per scene, clouds from outside the training ranges and "
        f"from another cloud model; scored on pixels with true two-way transmittance >= 0.2. "
        f"Cells: PSNR gain over the input in dB [95 % bootstrap interval] / SAM in degrees. "
        f"{env['cpu']}, {env['date_utc'][:10]}.",
        "",
        "| fold | scene | input PSNR / SAM | " + " | ".join(methods) + " |",
        "|---|---|---|" + "---|" * len(methods),
    ]
    for name, v in doc["per_scene"].items():
        cells = [
            f"{v[m]['gain_db']:+.2f} [{v[m]['gain_ci95'][0]:+.1f}, {v[m]['gain_ci95'][1]:+.1f}] / {v[m]['sam_deg']:.1f}"
            for m in methods
        ]
        lines.append(
            f"| {v['fold']} | {name} | {v['input']['psnr']:.2f} / {v['input']['sam_deg']:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    lines += [
        "",
        "| method | mean gain dB [95 % CI over scenes] | worst scene | scenes < +1 dB | SAM below input | gain by true thickness (clear / thin / medium) | SAM by true thickness, deg | cloud-free shadow: gain dB, scenes made worse |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    sam_in = next(iter(doc["summary"].values())).get("input_sam_by_thickness_deg")
    if sam_in:
        lines.append(
            "| input | | | | | | "
            + " / ".join(f"{sam_in[b]:.2f}" for b in ("clear", "thin", "medium"))
            + " | |"
        )
    for m, v in doc["summary"].items():
        t = v["gain_by_thickness_db"]
        sam = v.get("sam_by_thickness_deg")
        lines.append(
            f"| {m} | {v['mean_gain_db']:+.2f} [{v['mean_gain_ci95'][0]:+.2f}, {v['mean_gain_ci95'][1]:+.2f}] | "
            f"{v['min_gain_db']:+.2f} | {len(v['scenes_below_1db'])} | {v['sam_lower_than_input']}/{v['scenes']} | "
            f"{t['clear']:+.2f} / {t['thin']:+.2f} / {t['medium']:+.2f} | "
            + (" / ".join(f"{sam[b]:.2f}" for b in ("clear", "thin", "medium")) if sam else "-")
            + (
                f" | {v['cloud_free_shadow_gain_db']:+.2f}, {v['cloud_free_shadow_scenes_worse']}/{v['scenes']} |"
                if "cloud_free_shadow_gain_db" in v
                else " | - |"
            )
        )
    return "\n".join(lines)


def removal_real_table(doc: dict) -> str:
    """Removers on real clouds (bench/removal_real.py)."""
    l8 = doc["l8biome"]
    methods = [m for m in next(iter(l8.values())) if m not in ("land", "clear_fraction")]
    lines = [
        f"L8 Biome ({len(l8)} real labelled patches): change of the pixels the truth calls clear (mean absolute reflectance; target < 0.005) and of those it calls thick cloud (kept as they are unless a remover reads them as thin). "
        f"RICE2 ({doc['rice2']['summary'][methods[0]]['pairs']} real pairs, the clear image from another date, DN / 255): PSNR gain over the cloudy input.",
        "",
        "| method | L8 clear-pixel change, mean (max) | L8 patches >= 0.005 | L8 thick-cloud change, mean (patches > 0.05) | RICE2 mean gain dB (median) | RICE2 pairs made worse |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for m in methods:
        ch = clear_changes(l8, m)
        tk = [v[m]["thick_change"] for v in l8.values() if v[m].get("thick_change") is not None]
        thick = f"{np.mean(tk):.4f} ({sum(t > 0.05 for t in tk)}/{len(tk)})" if tk else "-"
        r = doc["rice2"]["summary"].get(m)
        rice = (
            f"{r['mean_gain_db']:+.2f} ({r['median_gain_db']:+.2f}) | {r['pairs_worse']}/{r['pairs']}"
            if r
            else "- | -"
        )
        lines.append(
            f"| {m} | {sum(ch) / len(ch):.4f} ({max(ch):.4f}) | {sum(c >= 0.005 for c in ch)} | {thick} | {rice} |"
        )
    other = doc.get("other_sensors")
    if other:
        ch = [v["not_cloud_change"] for v in other.values() if v["not_cloud_change"] is not None]
        worst = max(other.items(), key=lambda kv: kv[1]["not_cloud_change"] or 0.0)
        lines += [
            "",
            f"Other sensors' real clouds ({len(other)} labelled patches: "
            + ", ".join(sorted({v["sensor"] for v in other.values()}))
            + "; each in its own bands, default model choice): pixels labelled not cloud changed "
            f"by {np.mean(ch):.4f} on average, at most {worst[1]['not_cloud_change']:.4f} "
            f"({worst[0]}; target < 0.005); the cloud-labelled ones by "
            f"{np.mean([v['cloud_change'] for v in other.values() if v['cloud_change'] is not None]):.3f}.",
        ]
    if doc.get("clear_scenes"):
        lines += ["", clear_scenes_table(doc["clear_scenes"])]
    return "\n".join(lines)


def clear_scenes_table(scenes: dict) -> str:
    """Section 3 of bench/removal_real.py: every remover on the clear multispectral scenes."""
    first = next(iter(next(iter(scenes.values())).values()))
    methods = [
        m
        for m in first
        if m not in ("in_remover_training", "pixels", "input", "shipped_native_bands")
    ]
    names = " / ".join(methods)
    lines = [
        "Clear scenes of `../shared` (cloud-free: the whole scene's mean change, target < 0.005; "
        "under clouds: 48 64-px tiles with the cross-validation's out-of-range synthetic clouds, "
        "PSNR gain over the cloudy input). * the scene was among the shipped remover's training "
        "scenes (its card). The scene given with all its own bands, as a user's file brings them, "
        "with the snow test (`--spare-snow`, on by default): where they include a SWIR-1 band, it "
        "spares snow from the removal.",
        "",
        f"| band set | scene | cloud-free change: {names} | the shipped remover given all the "
        f"scene's bands (count) | gain under clouds, dB: {names} | "
        "SAM input -> shipped |",
        "|---|---|---:|---:|---:|---:|",
    ]
    ship = next(m for m in methods if m.startswith("shipped"))
    for b, recs in scenes.items():
        for name, r in recs.items():
            change = " / ".join(f"{r[m]['cloud_free_change']:.4f}" for m in methods)
            gain = " / ".join(f"{r[m]['gain_db']:+.2f}" for m in methods)
            star = "*" if r["in_remover_training"] else ""
            nat = r.get("shipped_native_bands")
            native = f"{nat['cloud_free_change']:.4f} ({nat['bands']})" if nat else "-"
            lines.append(
                f"| {b} | {name}{star} | {change} | {native} | {gain} | "
                f"{r['input']['sam_deg']:.2f} -> {r[ship]['sam_deg']:.2f} |"
            )
    return "\n".join(lines)


METHOD_NAMES = {
    "ours": "ours (shadow at 0.5)",
    "ours_shadow_op": "ours, shipped shadow point",
    "ours_trees": "ours + trees (shadow at 0.5; shipped for rgbn since 2026-12-06 evening)",
    "ours_trees_shadow_op": "ours + trees, shipped shadow point",
    "ours_input_swir": "ours as shipped (rgbn: + trees) with the input's own SWIR tests (the "
    "runtime's default for a file with SWIR; shadow at 0.5)",
    "shipped": "ours, the recipe shipped for this band set (shadow at 0.5)",
    "shipped_shadow_op": "ours, the recipe shipped for this band set, shipped shadow point",
}
#: Band sets whose shipped detector comes from another recipe than ``detector_real.json``'s,
#: with that recipe's cross-validation (``export.detector release --results``).
SHIPPED_DETECTOR_RESULTS = {
    "swir6": "detector_real_rf85.json",
    "rgb": "detector_real_overcast.json",
}


def with_shipped_recipes(doc: dict, results: Path = RESULTS) -> dict:
    """``doc`` (detector_real.json) with rows ``shipped/<set>`` and ``shipped_shadow_op/<set>``
    from the cross-validation of each band set that ships another recipe."""
    res = dict(doc["results"])
    for view, name in SHIPPED_DETECTOR_RESULTS.items():
        f = results / name
        if not f.exists():
            continue
        other = json.loads(f.read_text())["results"]
        for method in ("ours", "ours_shadow_op"):
            if f"{method}/{view}" in other:
                res[f"{method.replace('ours', 'shipped')}/{view}"] = other[f"{method}/{view}"]
    return {**doc, "results": res}


def _patch_bootstrap(r: dict, minus: dict | None = None) -> dict[str, float]:
    """Pixel accuracy of one row of detector_real.json with a 95 % interval from resampling
    whole patches (each weighted by its scored pixels: the pooled accuracy); with ``minus``,
    that of the per-patch difference to another row on the same patches."""
    names = sorted(r["per_patch"])
    acc = [r["per_patch"][k]["accuracy"] for k in names]
    if minus is not None:
        acc = [a - minus["per_patch"][k]["accuracy"] for a, k in zip(acc, names, strict=True)]
    return bootstrap(acc, weights=[r["per_patch"][k]["pixels"] for k in names])


def _best_of(a: dict, b: dict) -> float:
    """Pooled pixel accuracy of two rows of detector_real.json taking, on every patch both
    scored, the more accurate of the two."""
    names = sorted(set(a["per_patch"]) & set(b["per_patch"]))
    px = [a["per_patch"][k]["pixels"] for k in names]
    acc = [max(a["per_patch"][k]["accuracy"], b["per_patch"][k]["accuracy"]) for k in names]
    return sum(x * w for x, w in zip(acc, px, strict=True)) / sum(px)


def detector_real_table(doc: dict) -> str:
    """Detectors on real clouds, cross-validated (bench/detector_real.py)."""
    res = doc["results"]
    n = len(doc["patches"])
    lines = [
        f"Cross-validation over {n} real labelled patches from 4 sensors ({len(doc['folds'])} folds by patch, "
        "stratified by sensor and land type); every patch scored by a model that never saw it. "
        "Ours: INT8 through the runtime. Cloud = thin + thick; shadow on the patches that label it."
        + (
            " Rows 'shipped': the band sets whose detector comes from another recipe, from that "
            "recipe's cross-validation ("
            + ", ".join(
                f"{v}: `{SHIPPED_DETECTOR_RESULTS[v]}`"
                for v in SHIPPED_DETECTOR_RESULTS
                if f"shipped/{v}" in res
            )
            + ")."
            if any(k.startswith("shipped/") for k in res)
            else ""
        ),
        "",
        "| band set | method | accuracy [95 % interval, patches resampled] | clear called cloud | without the peer's own test patches | snow/ice patches: clear called cloud | shadow recall / precision |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for view in ("rgbn", "swir6", "rgb"):
        for method in (
            "ours",
            "ours_shadow_op",
            "ours_trees",
            "ours_trees_shadow_op",
            "ours_input_swir",
            "shipped",
            "shipped_shadow_op",
            "ukis_csmask",
            "threshold_test",
        ):
            r = res.get(f"{method}/{view}")
            if not r:
                continue
            a, w, sh = r["all"], r["without_ukis_tests"], r["shadow"]
            snow = ", ".join(
                f"{v['false_positive_rate']:.1%}" for v in r["snow_patches"].values() if v
            )
            shadow = f"{sh['recall']:.0%} / {sh['precision']:.0%}" if sh and sh["recall"] else "-"
            ci = _patch_bootstrap(r) if r.get("per_patch") else None
            acc = f"{a['accuracy']:.1%}" + (f" [{ci['lo']:.1%}, {ci['hi']:.1%}]" if ci else "")
            lines.append(
                f"| {view} | {METHOD_NAMES.get(method, method.replace('_', '-'))} | {acc} | {a['false_positive_rate']:.1%} | "
                f"{w['accuracy']:.1%} / {w['false_positive_rate']:.1%} | {snow} | {shadow} |"
            )
    # ours (and the recipe shipped for the band set) against the peer, on the same patches
    suffix = {
        "shipped": " (the recipe shipped for this band set)",
        "ours_trees": " + trees",
        "ours_input_swir": " as shipped with the input's SWIR tests",
    }
    pairs = [
        (view + suffix.get(method, ""), m, p)
        for view in ("rgbn", "swir6")
        for method in ("ours", "ours_trees", "ours_input_swir", "shipped")
        if (m := res.get(f"{method}/{view}", {})).get("per_patch")
        and (p := res.get(f"ukis_csmask/{view}", {})).get("per_patch")
    ]
    diffs = [
        f"{name} {d['mean'] * 100:+.1f} points [{d['lo'] * 100:+.1f}, {d['hi'] * 100:+.1f}]"
        for name, mine, peer in pairs
        if sorted(mine["per_patch"]) == sorted(peer["per_patch"])
        and (d := _patch_bootstrap(mine, peer))
    ]
    best = [f"{name} {_best_of(mine, peer):.1%}" for name, mine, peer in pairs]
    if diffs:
        px = sum(v["pixels"] for v in res["ours/rgbn"]["per_patch"].values())
        lines += [
            "",
            "Intervals: 2,000 resamples of the patches, each weighted by its pixels (a pixel "
            f"interval would pretend {px / 1e6:.1f} M independent pixels; the unit that varies "
            "is the patch). Accuracy of ours minus ukis-csmask's, the same resamples of the "
            "same patches: "
            + "; ".join(diffs)
            + "."
            + (
                " On each patch the better of the two, as if one knew which is right where (an "
                "oracle, not a method): " + "; ".join(best) + "."
                if best
                else ""
            ),
        ]
    ops = doc.get("shadow_operating_point", {})
    if ops:
        lines += [
            "",
            "Shadow operating point (shadow where P(shadow) / (P(shadow) + P(clear)) exceeds the "
            "threshold, and, with a darkness factor q > 0, only where the pixel is darker in the "
            "band nearest the NIR than q x the median of its 256-px tile's clear pixels), fitted "
            "on the other folds to reach "
            f"{next(iter(ops.values()))['aim_recall_on_other_folds']:.0%} shadow recall there at "
            "the best precision; cloud decisions do not depend on it: "
            + "; ".join(
                f"{v}: per fold "
                + ", ".join(
                    f"{t:g}/{q:g}"
                    for t, q in zip(
                        o["fold_thresholds"].values(),
                        o.get("fold_darker", {k: 0 for k in o["fold_thresholds"]}).values(),
                        strict=True,
                    )
                )
                + f", all folds {o['threshold_all_folds']:g}/{o.get('darker_all_folds', 0):g}"
                for v, o in ops.items()
            )
            + " (threshold/q)"
            + ".",
        ]
    lines += ["", "Per sensor (accuracy / clear called cloud):", ""]
    sensors = sorted(next(iter(res.values()))["per_sensor"])
    lines.append("| band set | method | " + " | ".join(sensors) + " |")
    lines.append("|---|---|" + "---:|" * len(sensors))
    for key, r in res.items():
        method, view = key.split("/")
        if method.endswith("shadow_op"):
            continue  # the same cloud decisions as "ours" / "shipped"
        cells = [
            f"{v['accuracy']:.1%} / {v['false_positive_rate']:.1%}"
            if (v := r["per_sensor"].get(s))
            else "-"
            for s in sensors
        ]
        lines.append(f"| {view} | {method.replace('_', '-')} | " + " | ".join(cells) + " |")
    lands = sorted(next(iter(res.values()))["per_land"])
    lines += ["", "Per land type (accuracy / clear called cloud):", ""]
    lines.append("| band set | method | " + " | ".join(lands) + " |")
    lines.append("|---|---|" + "---:|" * len(lands))
    for key, r in res.items():
        method, view = key.split("/")
        if method.endswith("shadow_op"):
            continue  # the same cloud decisions as "ours" / "shipped"
        cells = []
        for g in lands:
            v = r["per_land"].get(g)
            fpr = v["false_positive_rate"] if v else None
            cells.append(
                "-" if not v else f"{v['accuracy']:.1%} / " + ("-" if fpr != fpr else f"{fpr:.1%}")
            )
        lines.append(f"| {view} | {method.replace('_', '-')} | " + " | ".join(cells) + " |")
    cal = doc.get("calibration", {})
    if cal:
        lines += [
            "",
            "| band set | ECE of P(cloud) | after the cross-fold temperature | temperature fitted on all folds (a released file carries the one of the cross-validation it was released from) |",
            "|---|---:|---:|---:|",
        ]
        for view, c in cal.items():
            lines.append(
                f"| {view} | {c['before']['ece']:.3f} | {c['after_cross_fold_temperature']['ece']:.3f} | {c['temperature_all_folds']:.2f} |"
            )
    amb = doc.get("ambiguous_bright", {})
    if amb:
        lines += [
            "",
            "`ambiguous_bright` (bright, white pixels whose P(cloud) lies in 0.2-0.8, or, with a "
            "SWIR-1 band, that are called cloud while as snow-like as ice: NDSI >= 0.4), out of fold:",
            "",
            "| band set | snow/ice patches | other patches (mean) | clear pixels called cloud that it flags | cloud pixels called cloud that it flags |",
            "|---|---|---:|---:|---:|",
        ]
        for view, a in amb.items():
            snow = ", ".join(
                f"{n} {v['ambiguous_bright']:.1%}" for n, v in a["snow_ice_patches"].items()
            )
            true = a.get("true_cloud_pixels_flagged_all")
            lines.append(
                f"| {view} | {snow} | {a['other_patches_mean']:.1%} | {a['false_cloud_pixels_flagged_all']:.1%} | "
                + (f"{true:.1%}" if true is not None else "-")
                + " |"
            )
    drop = doc.get("drop_rule", {})
    if drop:
        lim = next(iter(drop.values()))["drop_fraction"]
        lines += [
            "",
            f"The downlink `drop` rule (cloud fraction above {lim:g}) on the patches cut into 256-px tiles, out of fold: "
            "every cloud call counted (before) and without the calls on `ambiguous_bright` pixels (now, the runtime's rule); "
            "rows 'input's SWIR': the band sets without SWIR where the input has it, the input's own spectral cloud test deciding and its snow-like cloud calls ambiguous (the runtime's default; patches without SWIR as now):",
            "",
            "| band set | tiles | dropped before / now | mostly clear tiles dropped before | ... now | cloudy tiles kept before / now |",
            "|---|---:|---:|---|---|---:|",
        ]
        for view, r in drop.items():
            b = r["before"]
            for label, key in ((view, "now"), (f"{view}, input's SWIR", "with_input_swir")):
                if key not in r:
                    continue
                n = r[key]
                lines.append(
                    f"| {label} | {r['tiles']} | {b['dropped']} / {n['dropped']} | "
                    f"{', '.join(b['mostly_clear_dropped']) or 'none'} | {', '.join(n['mostly_clear_dropped']) or 'none'} | "
                    f"{b['cloudy_kept']} / {n['cloudy_kept']} |"
                )
    sp = doc.get("speed", {})
    if sp:
        lines += ["", "Speed, one run, " + doc["environment"].get("cpu", "") + ":", ""]
        lines += ["| detector | per 256 x 256 tile | Mpx/s |", "|---|---:|---:|"]
        for k, v in sp.items():
            t = (
                f"{v['ms_per_256_tile']:.1f} ms"
                if "ms_per_256_tile" in v
                else f"{v['s'] * 1e3:.0f} ms per 512 x 512"
            )
            lines.append(f"| {k} | {t} | {v['mpx_per_s']:.2f} |")
    return "\n".join(lines)


def stream_file_table(doc: dict) -> str:
    """The path users run, side by side with the in-memory stream (bench stream --modes)."""
    env = doc.get("environment", {})
    interp = doc.get("interpreter")
    who = ""
    if interp is not None:
        extra = interp.get("optional_packages")
        who = (
            " Passes run by a flight install (the runtime's dependencies only)."
            if extra == []
            else f" Passes run by an environment that can also import {', '.join(extra or ['?'])}."
        )
    lines = [
        f"One run, {env.get('cpu', '')}, {env.get('cpu_count', '')} cores, "
        f"{env.get('date_utc', '')[:10]}; every pass its own process, one untimed run first "
        "(every timed pass a second run); worst case (every tile cloudy). RTF: lines per second "
        "over the sensor's line rate; file and stdin passes timed from process start (imports, "
        "model loading included), the memory pass alone (after loading and one warm-up run). "
        "CPU: the pass's CPU seconds (user + system, every thread; file and stdin from process "
        "start) per second of sensor time, i.e. how many cores must be busy all the time to keep "
        f"up with the sensor: a real-time factor R needs R times that many.{who}",
        "",
        "| mode | lines | RTF | lines/s | CPU s / sensor s | peak RSS MB | growth vs first length | first output line s | output MB |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in doc["cases"]:
        fl = c.get("first_line_s")
        lines.append(
            f"| {c['mode']} | {c['lines']:,} | {c['real_time_factor']:.2f} | {c['lines_per_s']:.0f} | "
            + (f"{c['cpu_per_sensor_s']:.2f}" if "cpu_per_sensor_s" in c else "-")
            + f" | {c['peak_rss_mb']:.0f} | {c['rss_growth_vs_first']:+.1%} | "
            + (f"{fl:.2f}" if fl else "-")
            + f" | {c.get('output_mb', 0):.0f} |"
        )
    return "\n".join(lines)


def batch_table(doc: dict) -> str:
    """Batch throughput with 1 and 2 workers (bench/batch.py) and the cluster estimate."""
    env, cfg, est = doc["environment"], doc["config"], doc["estimate"]
    lines = [
        f"`kumo-edge batch` on {cfg['scenes']} scenes of {cfg['lines']:,} lines x {cfg['width']:,} px x "
        f"{cfg['bands']} bands ({cfg['input']}), models `{cfg['models']}`; one run per configuration, "
        f"wall time from process start; {env['cpu']}, {env['cpu_count']} cores, {env['date_utc'][:10]}.",
        "",
        "| workers x threads | scenes / hour | lines / s | median s per scene | efficiency vs 1 x 1 |",
        "|---|---:|---:|---:|---:|",
    ]
    for c in doc["cases"]:
        eff = c.get("efficiency")
        lines.append(
            f"| {c['workers']} x {c['threads_per_worker']} | {c['scenes_per_hour']:.0f} | "
            f"{c['lines_per_s']:.0f} | {c['scene_seconds_median']:.1f} | "
            + (f"{eff:.2f}" if eff is not None else "-")
            + " |"
        )
    lines += [
        "",
        f"Estimate: a day of downlink ({est['lines_per_day']:,.0f} lines) takes "
        f"{est['node_hours_per_day']:.0f} node-hours at {est['node_lines_per_s']:.0f} lines/s per node: "
        + (
            "**one such node** keeps up. "
            if est["nodes_to_keep_up_ceil"] == 1
            else f"**{est['nodes_to_keep_up_ceil']} such nodes** keep up. "
        )
        + f"Per-scene fixed costs (cluster and worker start, model loading) weigh on these short "
        f"{cfg['lines']}-line scenes (longer passes would amortise them; not measured). Assumptions: "
        + "; ".join(est["assumptions"])
        + ".",
    ]
    return "\n".join(lines)


def render() -> dict[str, str]:
    out = {}
    for name, (fname, fn) in TABLES.items():
        p = RESULTS / fname
        if p.exists():
            out[name] = fn(json.loads(p.read_text()))
    # the networks' cards (the input's pixel trees, models/input/trees.json, have no metrics of
    # their own: their figures are the detector table's ours_input_swir rows)
    cards = [
        json.loads(p.read_text())
        for p in sorted(MODELS_DIR.glob("*/*.json"))
        if p.stem in ("detector", "generator", "brightness")
    ]
    if cards:
        out["models"] = models_table(cards)
        out["compression"] = compression_table(cards)
    for p in sorted(RESULTS.glob("stream_*.json")):
        doc = json.loads(p.read_text())
        fn = {"stream_batch_sweep": sweep_table, "stream_file": stream_file_table}.get(
            doc.get("benchmark"), stream_table
        )
        out[p.stem.replace("_", "-")] = fn(doc)
    for p in sorted(RESULTS.glob("models_*.json")):
        out[p.stem.replace("_", "-")] = models_bench_table(json.loads(p.read_text()))
    for p in sorted(RESULTS.glob("removal_cv_*.json")):
        out[p.stem.replace("_", "-")] = removal_cv_table(json.loads(p.read_text()))
    if (RESULTS / "detector_real.json").exists():
        out["detector-real"] = detector_real_table(
            with_shipped_recipes(json.loads((RESULTS / "detector_real.json").read_text()))
        )
    for p in sorted(RESULTS.glob("batch_*.json")):
        out[p.stem.replace("_", "-")] = batch_table(json.loads(p.read_text()))
    if (RESULTS / "removal_real.json").exists():
        out["removal-real"] = removal_real_table(
            json.loads((RESULTS / "removal_real.json").read_text())
        )
    return out


def update_readme(tables: dict[str, str], path: Path = README) -> None:
    text = path.read_text()
    for name, table in tables.items():
        pat = re.compile(rf"(<!-- bench:{name} -->\n)(?:.*?\n)?(<!-- /bench:{name} -->)", re.S)
        if not pat.search(text):
            print(f"note: README has no <!-- bench:{name} --> block; table not inserted")
            continue
        text = pat.sub(lambda m, t=table: m.group(1) + t + "\n" + m.group(2), text)
    path.write_text(text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--update-readme", action="store_true")
    a = ap.parse_args()
    tables = render()
    if a.update_readme:
        update_readme(tables)
    for name, t in tables.items():
        print(f"## {name}\n{t}\n")


if __name__ == "__main__":
    main()
