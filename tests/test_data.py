"""Training data: synthetic snow for detectors with SWIR bands, and the threshold baseline's
snow rule. Runs on the bundled Landsat-7 sample scene (no ../shared needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from export.data import CloudRanges, CloudyTiles, scene_from_raster  # noqa: E402
from kumo_edge.cli import sample_scene_path  # noqa: E402
from kumo_edge.config import sensor_profile  # noqa: E402
from kumo_edge.runtime import spectral_cloud_test  # noqa: E402

SWIR = sensor_profile("rgbn-swir").bands


def _ndsi(cube: np.ndarray) -> np.ndarray:
    g, s = cube[1], cube[4]
    return (g - s) / np.maximum(g + s, 1e-6)


@pytest.fixture(scope="module")
def scene():  # noqa: ANN201
    return scene_from_raster(sample_scene_path(), "sample").to(SWIR)


def test_snow_is_white_in_the_vnir_dark_in_the_swir_and_labelled_clear(scene) -> None:  # noqa: ANN001
    no_cloud = dict(clear_fraction=1.0)
    plain = CloudyTiles([scene], 64, 8, seed=3, ranges=CloudRanges(**no_cloud))
    snowy = CloudyTiles([scene], 64, 8, seed=3, ranges=CloudRanges(snow_fraction=1.0, **no_cloud))
    for i in range(8):
        a, b = plain[i], snowy[i]
        assert (b["classes"] == 0).all()  # snow is ground, never cloud
        snow = (b["clear"][1] > 0.4) & (_ndsi(b["clear"]) > 0.4)
        assert snow.mean() > 0.1
        assert ((a["clear"][1] > 0.4) & (_ndsi(a["clear"]) > 0.4)).mean() < 0.01
        vis = b["clear"][:3, snow]
        assert (vis.std(0) / vis.mean(0)).max() < 0.25  # nearly white in the visible


def test_zero_snow_fraction_leaves_every_item_as_it_was(scene) -> None:  # noqa: ANN001
    a = CloudyTiles([scene], 64, 6, seed=1)
    b = CloudyTiles([scene], 64, 6, seed=1, ranges=CloudRanges(snow_fraction=0.0))
    for i in range(6):
        for k in ("cloudy", "clear", "classes"):
            np.testing.assert_array_equal(a[i][k], b[i][k])


def test_threshold_test_spares_snow_only_where_a_swir_band_exists() -> None:
    #               blue  green red   nir   swir1 swir2
    snow = np.array([0.90, 0.90, 0.88, 0.80, 0.10, 0.08])
    cloud = np.array([0.80, 0.80, 0.80, 0.80, 0.60, 0.50])
    grass = np.array([0.05, 0.08, 0.05, 0.40, 0.20, 0.10])
    cube = np.stack([snow, cloud, grass], 1)[:, :, None].astype(np.float32)  # (6, 3, 1)
    assert spectral_cloud_test(cube, SWIR)[:, 0].tolist() == [False, True, False]
    rgbn = sensor_profile("rgbn").bands
    # without SWIR, snow is as bright and white as cloud
    assert spectral_cloud_test(cube[:4], rgbn)[:, 0].tolist() == [True, True, False]


def test_overcast_samples_are_full_cover_and_flat_and_leave_other_recipes_as_they_were() -> None:
    from kumo_edge.clouds import CloudField

    base, off, on = (
        CloudRanges(),
        CloudRanges(overcast_fraction=0.0),
        CloudRanges(overcast_fraction=1.0),
    )
    for i in range(20):  # a zero share draws exactly what the recipes before it drew
        assert base.draw(np.random.default_rng(i), 30.0) == off.draw(np.random.default_rng(i), 30.0)
    covers = []
    for i in range(20):
        p = on.draw(np.random.default_rng(i), 30.0)
        covers.append(p.cover)
        if p.cover == 0.0:  # the clear samples stay clear
            continue
        assert p.cover == 1.0 and 0.05 <= p.gamma <= 0.2
        tau = CloudField(p, 64, 64, seed=i).tau550(0, 64)
        assert tau.min() > 0.5 * tau.max() > 0  # a sheet, not scattered cumuli
    assert sum(c == 1.0 for c in covers) >= 15


def test_rice2_pairs_come_blue_to_red_as_the_rgb_band_set(tmp_path) -> None:  # noqa: ANN001
    """The RICE2 PNGs store red, green, blue; fed as stored, the rgb models (blue, green, red)
    read red as blue, which every RICE2 figure did until 2026-12-05."""
    from PIL import Image

    from export.data import RICE2_ORDER, rice2_pairs

    folder = tmp_path / "real_clouds" / "rice2_pairs"
    folder.mkdir(parents=True)
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 200, 100, 50  # a reddish pixel everywhere
    Image.fromarray(rgb).save(folder / "7_real_A.png")
    Image.fromarray(rgb // 2).save(folder / "7_real_B.png")
    ((name, cloudy, clear),) = rice2_pairs(tmp_path)
    assert name == "7" and cloudy.shape == (3, 4, 5) and cloudy.dtype == np.float32
    red, blue = RICE2_ORDER.index("red"), RICE2_ORDER.index("blue")
    assert sensor_profile("rgb").bands.names == RICE2_ORDER
    np.testing.assert_allclose(cloudy[red], 200 / 255)
    np.testing.assert_allclose(cloudy[blue], 50 / 255)
    np.testing.assert_allclose(clear[red], 100 / 255)


EOLEARN = Path(__file__).resolve().parents[2] / "shared" / "data" / "sentinel2"


@pytest.mark.skipif(
    not (EOLEARN / "eolearn_reference_scenes_s2_l1c.npy").exists(),
    reason="../shared/data not present",
)
def test_the_cloudy_eolearn_dates_are_not_clear_training_scenes() -> None:
    """The eo-learn dates left out are the cloudy ones (blue reflectance twice the clear dates'
    and more), and every clear date is kept."""
    from export.data import EOLEARN_CLOUDY, shared_scenes

    arr = np.load(EOLEARN / "eolearn_reference_scenes_s2_l1c.npy")
    blue = np.median(arr[..., 1], axis=(1, 2))  # B2, in ESA band order B1 ... B12
    clear = [i for i in range(len(arr)) if i not in EOLEARN_CLOUDY]
    assert min(blue[list(EOLEARN_CLOUDY)]) > 1.5 * max(blue[clear])
    names = {s.name for s in shared_scenes() if s.name.startswith("s2_eolearn_")}
    assert names == {f"s2_eolearn_{i}" for i in clear}
    # asked for (a brightness companion's bright ground), they come back, marked as cloudy
    extra = {
        s.name: s.source
        for s in shared_scenes(cloudy_eolearn=True)
        if s.name.startswith("s2_eolearn_")
    }
    assert set(extra) == names | {f"s2_eolearn_{i}" for i in EOLEARN_CLOUDY}
    assert all(("cloudy" in extra[f"s2_eolearn_{i}"]) == (i in EOLEARN_CLOUDY) for i in range(5))
    from export.train import TrainConfig
    from export.train.cli import parse

    cfg, _ = parse(["generator", "--bands", "rgbn", "--cloudy-eolearn"])
    assert cfg.cloudy_eolearn
    with pytest.raises(ValueError, match="detector"):
        TrainConfig(task="detector", cloudy_eolearn=True)


def test_the_gain_range_sets_the_training_brightness_and_reaches_the_trainer(scene) -> None:  # noqa: ANN001
    """``--gain`` widens the brightness augmentation (a generator trained only on dark scenes
    learns to output dark ground); the default range draws what it always drew."""
    from export.train import TrainConfig
    from export.train.cli import parse

    base = CloudyTiles([scene], 64, 16, seed=2)
    same = CloudyTiles([scene], 64, 16, seed=2, gain=(0.6, 1.6))
    wide = CloudyTiles([scene], 64, 16, seed=2, gain=(3.0, 3.0))
    ratios = []
    for i in range(16):
        np.testing.assert_array_equal(base[i]["clear"], same[i]["clear"])
        ratios.append(wide[i]["clear"].mean() / base[i]["clear"].mean())
    # the same tile, three times brighter before clipping, instead of 0.6-1.6 times
    assert np.median(ratios) > 1.8
    cfg, _ = parse(["generator", "--bands", "rgbn", "--gain", "0.5,4"])
    assert cfg.gain == (0.5, 4.0)
    with pytest.raises(ValueError, match="gain"):
        TrainConfig(gain=(2.0, 1.0))


def test_spectral_trees_ignore_the_faint_cloud_edges_unless_told_to_call_them_cloud(
    scene,  # noqa: ANN001
) -> None:
    """export.trees.spectral_table: the same blocks either way; with ``edges="ignore"`` (the
    default) the blocks that are mostly an invisible cloud edge carry no label (NaN), with
    ``edges="cloud"`` they carry their cloud share, which counts the edges."""
    from export.trees import SPECTRAL_EDGES, spectral_table

    assert SPECTRAL_EDGES == "ignore"
    xc, yc = spectral_table([scene], n=8, seed=4, edges="cloud")
    xi, yi = spectral_table([scene], n=8, seed=4)
    np.testing.assert_array_equal(xc, xi)
    unlabelled = np.isnan(yi)
    assert np.isfinite(yc).all() and unlabelled.any()
    np.testing.assert_array_equal(yc[~unlabelled], yi[~unlabelled])
    assert yc[unlabelled].mean() > 0.5  # mostly edge: counted as cloud
    with pytest.raises(ValueError, match="edges must be"):
        spectral_table([scene], n=1, edges="thin")
