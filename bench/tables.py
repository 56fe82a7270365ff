"""Markdown tables for the README, rendered from the benchmark JSON files.

    python -m bench.tables                 # print the tables
    python -m bench.tables --update-readme # rewrite the blocks between <!-- bench:NAME --> markers
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from bench._common import RESULTS

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


TABLES = {"tiling": ("tiling.json", tiling_table)}


def render() -> dict[str, str]:
    out = {}
    for name, (fname, fn) in TABLES.items():
        p = RESULTS / fname
        if p.exists():
            out[name] = fn(json.loads(p.read_text()))
    return out


def update_readme(tables: dict[str, str], path: Path = README) -> None:
    text = path.read_text()
    for name, table in tables.items():
        pat = re.compile(rf"(<!-- bench:{name} -->\n)(?:.*?\n)?(<!-- /bench:{name} -->)", re.S)
        if not pat.search(text):
            raise SystemExit(f"README has no <!-- bench:{name} --> block")
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
