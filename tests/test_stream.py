"""The stream equals whole-image processing with the same tiles, for any chunking."""

from __future__ import annotations

import numpy as np
import pytest

from kumo_edge.bands import BandSet
from kumo_edge.config import sensor_profile
from kumo_edge.errors import BandCountError, InvalidDataError, ShapeError
from kumo_edge.runtime import load_model
from kumo_edge.stream import RING_STEP, StreamConfig, StreamProcessor, process_image

from conftest import fixture_models

RGBN = sensor_profile("rgbn").bands


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    m = fixture_models("seed1")
    return load_model(m["detector"], threads=1), load_model(m["generator"], threads=1)


def _scene(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:rows, 0:cols]
    base = 0.2 + 0.15 * np.sin(yy / 9.0) * np.cos(xx / 7.0)
    cube = np.stack([base * f for f in (0.8, 1.0, 1.2, 1.6)]) + rng.normal(0, 0.02, (4, rows, cols))
    return np.clip(cube, 0, 1).astype(np.float32)


def _run(proc: StreamProcessor, cube: np.ndarray, chunk: int, valid: np.ndarray | None = None):  # noqa: ANN202
    out = []
    for r in range(0, cube.shape[1], chunk):
        out += proc.push(cube[:, r : r + chunk], None if valid is None else valid[r : r + chunk])
    out += proc.flush()
    assert [o.row for o in out] == sorted(o.row for o in out)
    return np.concatenate([o.data for o in out], axis=1), np.concatenate(
        [o.mask for o in out], axis=0
    )


@pytest.mark.parametrize("chunk", [1, 7, 50, 333])
def test_stream_equals_whole_image(models, chunk: int) -> None:  # noqa: ANN001
    det, gen = models
    cube = _scene(203, 150)
    valid = np.ones(cube.shape[1:], bool)
    valid[:10, :20] = False
    ref_data, ref_mask, ref_report = process_image(
        cube, RGBN, det, gen, StreamConfig(min_fraction=0.0), valid
    )
    proc = StreamProcessor(150, RGBN, det, gen, StreamConfig(min_fraction=0.0))
    data, mask = _run(proc, cube, chunk, valid)
    assert data.shape == cube.shape and mask.shape == cube.shape[1:]
    # both sides round to the line ring's step; a blend sum at float rounding from a rounding
    # boundary may land one step apart
    from kumo_edge.stream import RING_STEP

    diff = np.abs(data - ref_data)
    assert diff.max() <= RING_STEP * 1.01 and (diff > 0).mean() < 0.01
    assert (mask == ref_mask).mean() > 0.999  # class ties at float rounding may differ
    assert (mask[~valid] == 0).all() and (data[:, ~valid] == 0).all()
    assert len(proc.report.tiles) == len(ref_report.tiles)
    # the generator changed something (otherwise the test would prove little)
    assert np.abs(data - cube)[:, valid].max() > 0.01


def test_memory_is_one_tile_plus_overlap(models) -> None:  # noqa: ANN001
    det, gen = models
    proc = StreamProcessor(150, RGBN, det, gen)
    assert proc.buf.shape[1] == proc.T == 64
    before = {k: v.nbytes for k, v in vars(proc).items() if isinstance(v, np.ndarray)}
    _run(proc, _scene(1000, 150), 37)
    after = {k: v.nbytes for k, v in vars(proc).items() if isinstance(v, np.ndarray)}
    assert before == after


def test_small_swath_and_short_pass_are_padded(models) -> None:  # noqa: ANN001
    det, gen = models
    cube = _scene(40, 30)
    ref, _, _ = process_image(cube, RGBN, det, gen)
    data, mask = _run(StreamProcessor(30, RGBN, det, gen), cube, 16)
    assert data.shape == (4, 40, 30)
    np.testing.assert_allclose(data, ref, atol=RING_STEP * 1.01)  # one ring step at most


def test_clear_tiles_pass_through(models) -> None:  # noqa: ANN001
    det, gen = models
    cube = _scene(100, 80)
    data, _ = _run(StreamProcessor(80, RGBN, det, gen, StreamConfig(remove=False)), cube, 25)
    # without removal, outputs are a blend of the input with itself: the input
    np.testing.assert_allclose(data, cube, atol=RING_STEP)  # the line ring rounds to its step


def test_bad_lines(models) -> None:  # noqa: ANN001
    det, gen = models
    proc = StreamProcessor(80, RGBN, det, gen)
    proc.push(_scene(10, 80))
    with pytest.raises(ShapeError, match="90 pixels wide"):
        proc.push(_scene(10, 90))
    with pytest.raises(BandCountError, match="3 bands"):
        proc.push(_scene(10, 80)[:3])
    bad = _scene(10, 80)
    bad[1, 4, 5] = np.nan
    with pytest.raises(InvalidDataError, match="line 14"):
        proc.push(bad)
    with pytest.raises(ShapeError):
        proc.push(np.zeros((4, 80), np.float32))


def test_resampling_on_the_fly(models) -> None:  # noqa: ANN001
    det, gen = models
    l8 = sensor_profile("landsat8-oli").bands
    cube8 = np.concatenate([_scene(70, 64)[[0]] * 0.9, _scene(70, 64), _scene(70, 64)[:3]], axis=0)[
        :8
    ]
    data, _ = _run(StreamProcessor(64, l8, det, gen), cube8, 30)
    assert data.shape == (4, 70, 64)
    with pytest.raises(Exception, match="nir"):
        StreamProcessor(64, sensor_profile("rgb").bands, det, gen)


class _StubDetector:
    """Returns fixed class probabilities: tiles 0 and 2 thin cloud, tile 1 clear, and a thick
    block in tile 2."""

    bands = BandSet((560.0, 842.0), (35.0, 115.0))

    def run(self, batch: np.ndarray) -> np.ndarray:
        n, _, t, _ = batch.shape
        p = np.zeros((n, 4, t, t), np.float32)
        p[:, 0] = 1.0
        for i in (0, 2):
            if i < n:
                p[i, 0], p[i, 1] = 0.0, 1.0
        if n > 2:
            p[2, 1, :8, :8], p[2, 2, :8, :8] = 0.0, 1.0
        return p

    def classify(self, probs: np.ndarray, axis: int = 1) -> np.ndarray:
        from kumo_edge.runtime import classify

        return classify(probs, 0.5, axis)


class _StubGenerator:
    def run(self, batch: np.ndarray) -> np.ndarray:
        return batch + 0.1


def test_generator_only_where_cloud_and_never_on_thick_pixels() -> None:
    from kumo_edge.stream import Report, process_tiles

    tiles = np.full((3, 2, 16, 16), 0.2, np.float32)
    valid = np.ones((3, 16, 16), bool)
    rep = Report()
    out, probs = process_tiles(
        tiles.copy(), valid, _StubDetector(), _StubGenerator(), StreamConfig(batch=8), rep
    )
    np.testing.assert_allclose(out[0], 0.3)  # thin cloud: generated
    np.testing.assert_allclose(out[1], 0.2)  # clear: passed through
    np.testing.assert_allclose(out[2, :, :8, :8], 0.2)  # thick: input kept, not invented
    np.testing.assert_allclose(out[2, :, 8:, 8:], 0.3)
    assert [t["decision"] for t in rep.tiles] == ["removed", "clear", "removed"]
    assert rep.tiles[2]["thick_fraction"] == pytest.approx(64 / 256)


class _ShadowDetector:
    """P(shadow) / (P(shadow) + P(clear)) = 0.3 on tile 0 (shadow at a 0.125 operating point,
    clear at the balanced 0.5) and 0.8 on tile 1 (shadow at both), below a thick cloud on the
    top two rows of each (a shadow needs a cloud in its tile; thick sends no tile to the
    remover)."""

    bands = BandSet((560.0, 842.0), (35.0, 115.0))

    def __init__(self, shadow_threshold: float) -> None:
        from types import SimpleNamespace

        self.contract = SimpleNamespace(cloud_threshold=0.5, shadow_threshold=shadow_threshold)

    def run(self, batch: np.ndarray) -> np.ndarray:
        p = np.zeros((len(batch), 4, *batch.shape[2:]), np.float32)
        p[0, 0], p[0, 3] = 0.7, 0.3
        p[1, 0], p[1, 3] = 0.2, 0.8
        p[:, :, :2] = 0.0
        p[:, 2, :2] = 1.0
        return p

    def classify(self, probs: np.ndarray, axis: int = 1) -> np.ndarray:
        from kumo_edge.runtime import classify

        return classify(probs, 0.5, axis, self.contract.shadow_threshold)


class _ClassRecorder:
    """A class-driven remover (as HOT and inpainting are) that records the classes it gets."""

    needs_classes = True

    def __init__(self) -> None:
        self.calls: list[np.ndarray] = []

    def run(self, batch: np.ndarray, classes: np.ndarray) -> np.ndarray:
        self.calls.append(classes.copy())
        return batch + 0.1


def test_shadow_operating_point_sets_the_mask_not_the_removal() -> None:
    from kumo_edge.stream import Report, process_tiles

    tiles = np.full((2, 2, 16, 16), 0.2, np.float32)
    valid = np.ones((2, 16, 16), bool)
    fractions = {}
    for point in (0.5, 0.125):
        rep, rec = Report(), _ClassRecorder()
        out, _ = process_tiles(
            tiles.copy(), valid, _ShadowDetector(point), rec, StreamConfig(batch=8), rep
        )
        fractions[point] = [t["shadow_fraction"] for t in rep.tiles]
        # the removal acts at the balanced point whatever the mask's: only tile 1 goes to the
        # remover, and it is told shadow there; tile 0 is left as it came
        assert len(rec.calls) == 1 and rec.calls[0].shape == (1, 16, 16)
        assert (rec.calls[0][:, 2:] == 3).all() and (rec.calls[0][:, :2] == 2).all()
        np.testing.assert_array_equal(out[0], tiles[0])
        assert [t["decision"] for t in rep.tiles] == ["passed", "removed"]
    # the report (and the mask, by the same rule) calls tile 0 shadow only at the 0.125 point
    assert fractions[0.5] == [0.0, 0.875] and fractions[0.125] == [0.875, 0.875]


def test_output_resampled_back_to_input_bands(models) -> None:  # noqa: ANN001
    det, gen = models
    l7 = sensor_profile("landsat7-etm").bands
    vnir = l7.subset([0, 1, 2, 3])  # 483, 560, 662, 835 nm: maps to rgbn and back
    cube = _scene(70, 64)
    ref, _ = _run(StreamProcessor(64, vnir, det, gen), cube, 30)
    proc = StreamProcessor(64, vnir, det, gen, StreamConfig(output_bands="input"))
    data, _ = _run(proc, cube, 30)
    assert data.shape == (4, 70, 64) and proc.out_bands == vnir
    np.testing.assert_array_equal(data, ref)  # nearest-band both ways: the same values, relabelled
    # an input band the models cannot give back (SWIR 1648 nm) is refused, not invented
    with pytest.raises(Exception, match="1648 nm") as refused:
        StreamProcessor(64, l7, det, gen, StreamConfig(output_bands="input"))
    # the message says it is the models' bands that cannot give it, not the input that lacks it
    assert "cannot give the input's bands back" in str(refused.value)
    assert "input lacks" not in str(refused.value)
    # and a gap in the models' bands (615 nm between 560 and 665) as well
    from kumo_edge.bands import BandSet

    dense = BandSet(tuple(float(v) for v in np.linspace(480, 850, 12)), (30.0,) * 12)
    with pytest.raises(Exception, match="615 nm"):
        StreamProcessor(64, dense, det, gen, StreamConfig(output_bands="input"))


def test_blend_removed_follows_the_detector() -> None:
    from kumo_edge.runtime import classify
    from kumo_edge.stream import blend_removed

    tiles = np.full((1, 2, 1, 4), 0.2, np.float32)
    removed = np.full((1, 2, 1, 4), 0.6, np.float32)
    # per pixel: certain clear, certain thin, half clear / half thin, thick
    probs = np.zeros((1, 4, 1, 4), np.float32)
    probs[0, :, 0, 0] = (1, 0, 0, 0)
    probs[0, :, 0, 1] = (0, 1, 0, 0)
    probs[0, :, 0, 2] = (0.5, 0.5, 0, 0)
    probs[0, :, 0, 3] = (0.1, 0.2, 0.7, 0)
    blend_removed(tiles, removed, probs, classify(probs, axis=1))
    np.testing.assert_allclose(tiles[0, :, 0], [[0.2, 0.6, 0.4, 0.2]] * 2, atol=1e-6)


@pytest.mark.slow
def test_memory_stays_flat_over_a_long_pass(models) -> None:  # noqa: ANN001
    """Streaming 20x more lines holds no more memory than the per-tile report records it adds
    (the only thing that grows with the pass, by design: one small dict per tile)."""
    import gc
    import tracemalloc

    det, gen = models
    proc = StreamProcessor(128, RGBN, det, gen)
    block = _scene(64, 128)

    def stream(lines: int) -> tuple[int, int]:
        for _ in range(lines // 64):
            proc.push(block, None, lambda lines_: None)  # outputs dropped as they come
        gc.collect()
        return tracemalloc.get_traced_memory()[0], len(proc.report.tiles)

    stream(512)  # warm-up: first-call caches
    tracemalloc.start()
    m0, t0 = stream(1_024)
    m1, t1 = stream(19_456)
    tracemalloc.stop()
    assert t1 - t0 > 500
    per_tile = (m1 - m0) / (t1 - t0)
    print(f"{per_tile:.0f} bytes per extra tile")
    assert per_tile < 2_000, f"{per_tile:.0f} bytes held per extra tile"


def test_embedding_through_callbacks(models) -> None:  # noqa: ANN001
    """The documented pattern: another program's line buffers in, cleaned lines and per-tile
    decisions out through callbacks, no files; the same lines as a plain run."""
    det, gen = models
    cube = _scene(230, 150, seed=3)
    decisions: list[dict] = []
    lines = []
    proc = StreamProcessor(150, RGBN, det, gen, on_tile=decisions.append)
    for r in range(0, 230, 40):  # the other program's buffers
        assert proc.push(cube[:, r : r + 40], sink=lines.append) == []
    before_flush = len(decisions)
    proc.flush(sink=lines.append)
    assert 0 < before_flush < len(decisions)  # decisions arrive with their tile rows
    assert decisions == proc.report.tiles and decisions
    assert {"row", "col", "decision", "drop"} <= set(decisions[0])
    assert [x.row for x in lines] == list(np.cumsum([0] + [x.mask.shape[0] for x in lines])[:-1])
    ref, ref_mask = _run(StreamProcessor(150, RGBN, det, gen), cube, 40)
    np.testing.assert_array_equal(np.concatenate([x.data for x in lines], axis=1), ref)
    np.testing.assert_array_equal(np.concatenate([x.mask for x in lines]), ref_mask)


class _SureCloudDetector:
    """Six bands with SWIR; every pixel called thick cloud with P = 0.95."""

    bands = sensor_profile("rgbn-swir").bands

    def run(self, batch: np.ndarray) -> np.ndarray:
        p = np.zeros((batch.shape[0], 4, *batch.shape[2:]), np.float32)
        p[:, 2], p[:, 0] = 0.95, 0.05
        return p

    def classify(self, probs: np.ndarray, axis: int = 1) -> np.ndarray:
        from kumo_edge.runtime import classify

        return classify(probs, 0.5, axis)


def test_drop_rule_never_throws_away_what_might_be_snow() -> None:
    """Two tiles the detector calls cloud with the same certainty: the one as dark in the SWIR as
    snow or ice is ambiguous and not marked drop; the one bright in the SWIR (a water cloud) is."""
    from kumo_edge.stream import Report, process_tiles

    tiles = np.full((2, 6, 16, 16), 0.7, np.float32)
    tiles[0, 4:] = 0.15  # NDSI 0.65: snow, ice or an ice cloud
    tiles[1, 4:] = 0.5  # NDSI 0.17: a water cloud
    rep = Report()
    process_tiles(
        tiles, np.ones((2, 16, 16), bool), _SureCloudDetector(), None, StreamConfig(), rep
    )
    assert [t["cloud_fraction"] for t in rep.tiles] == [1.0, 1.0]
    assert [t["ambiguous_bright"] for t in rep.tiles] == [1.0, 0.0]
    assert [t["drop"] for t in rep.tiles] == [False, True]


def test_darkness_rule_changes_the_mask_and_report_never_the_removal() -> None:
    from types import SimpleNamespace

    from kumo_edge.runtime import classify
    from kumo_edge.stream import Report, process_tiles

    class Det(_ShadowDetector):
        def __init__(self, darker: float) -> None:
            self.contract = SimpleNamespace(
                cloud_threshold=0.5, shadow_threshold=0.5, shadow_darker=darker
            )

        def run(self, batch: np.ndarray) -> np.ndarray:  # left half clear, right half shadow
            p = np.zeros((len(batch), 4, *batch.shape[2:]), np.float32)
            p[:, 0], p[:, 3] = 0.9, 0.1
            p[:, 0, :, 16:], p[:, 3, :, 16:] = 0.2, 0.8
            # a cloud over the top left (12.5 % of the tile): a shadow needs one
            p[:, 0, :8, :16], p[:, 1, :8, :16], p[:, 3, :8, :16] = 0.0, 1.0, 0.0
            return p

    tiles = np.full((1, 2, 32, 32), 0.3, np.float32)
    tiles[0, 1, :16, 16:] = 0.1  # NIR: only the top of the shadow half is darker than the clear
    valid = np.ones((1, 32, 32), bool)
    got = {}
    for darker in (0.0, 0.8):
        rep, rec = Report(), _ClassRecorder()
        out, probs = process_tiles(tiles.copy(), valid, Det(darker), rec, StreamConfig(), rep)
        got[darker] = (out, rep.tiles[0]["shadow_fraction"], rec.calls[0])
        mask = classify(probs, 0.5, 1)  # the mask's rule, on what the stream blends
        assert (mask[0, :16, 16:] == 3).all()
        assert (mask[0, 16:, 16:] == (0 if darker else 3)).all()
    assert got[0.0][1] == 0.5 and got[0.8][1] == 0.25
    np.testing.assert_array_equal(got[0.0][0], got[0.8][0])  # the same cleaned tile
    np.testing.assert_array_equal(got[0.0][2], got[0.8][2])  # the same classes to the remover


@pytest.mark.parametrize("band_set", ["rgbn", "rgb"])
def test_the_clear_sample_scene_gets_no_shadow_in_its_mask(band_set: str) -> None:
    """The bundled Landsat-7 scene is cloud-free: at the shipped shadow points (the recall
    points) the detectors had called a third (rgbn) and half (rgb) of it cloud shadow; without a
    cloud in the tile no shadow call stands. The scene's no-data border goes in as no data, as
    a run of the file gives it (without it the border's zeros read as dark ground beside the
    data; the no-data tests cover that)."""
    from kumo_edge.bands import resample, resampling_matrix
    from kumo_edge.cli import sample_scene_path
    from kumo_edge.io import Raster
    from kumo_edge.runtime import load_models, read_contract, shipped_models
    from kumo_edge.stream import process_image

    bands = read_contract(shipped_models()[band_set]["detector"]).bands
    det, _, _ = load_models(band_set, bands, need_generator=False)
    assert det.contract.shadow_threshold < 0.5  # the recall point, where it mattered
    with Raster(sample_scene_path()) as r:
        strip = r.read_strip(0, r.height)
    assert 0.5 < strip.valid.mean() < 0.9  # a footprint with a no-data border
    x = resample(strip.data, resampling_matrix(r.bands, bands))
    _, mask, _ = process_image(
        np.ascontiguousarray(x), bands, det, None, StreamConfig(remove=False), valid=strip.valid
    )
    share = np.bincount(mask[strip.valid], minlength=5) / strip.valid.sum()
    assert share[4] < 0.01, share
    assert share[1] > 0.95, share  # called clear


@pytest.mark.parametrize("s", [3, 224])
def test_tile_row_shift_moves_rows_without_a_temporary_copy(s: int) -> None:
    """The ring's shift by one stride: rows [s, H) to [0, H - s), the rest untouched, and no
    temporary of the source (numpy copies it first when the whole array is assigned to itself:
    8 MB per tile row at 32 bands x 4000 px)."""
    import tracemalloc

    from kumo_edge.stream import _shift_rows

    a = np.arange(32 * 256 * 64, dtype=np.uint16).reshape(32, 256, 64)
    ref = a.copy()
    _shift_rows(a, s)
    np.testing.assert_array_equal(a[:, : 256 - s], ref[:, s:])
    np.testing.assert_array_equal(a[:, 256 - s :], ref[:, 256 - s :])
    big = np.zeros((32, 256, 1000), np.uint16)  # 16 MB: a source copy would be 0.2-14 MB
    tracemalloc.start()
    try:
        _shift_rows(big, 224)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100_000


def test_emitted_pieces_fill_whole_output_strips() -> None:
    """The stream hands the writer pieces that fill whole strips of the streamed GeoTIFF, so GDAL
    never holds a half-written strip in its cache."""
    from kumo_edge.io import STREAM_ROWS
    from kumo_edge.stream import EMIT_LINES

    assert EMIT_LINES % STREAM_ROWS == 0


def _counts(cube: np.ndarray, valid: np.ndarray, seed: int = 3):  # noqa: ANN202
    """uint16 counts of ``cube`` (reflectance x 10,000, a per-band offset) and their Counts."""
    from kumo_edge.counts import Counts

    rng = np.random.default_rng(seed)
    c = cube.shape[0]
    scale = np.full(c, 1e-4, np.float32)
    offset = rng.uniform(-0.01, 0.0, c).astype(np.float32)
    raw = np.round((cube - offset[:, None, None]) / scale[:, None, None]).astype(np.uint16)
    raw[:, ~valid] = rng.integers(0, 65535, (c, int((~valid).sum())))  # junk under no data
    return raw, lambda r0, r1: Counts(raw[:, r0:r1], valid[r0:r1], scale, offset, f"rows {r0}")


@pytest.mark.parametrize("bands", ["rgbn", "landsat8-oli"])
def test_stored_counts_stream_as_their_float32_strips_do(models, bands: str) -> None:  # noqa: ANN001
    """``push_counts`` (integer values straight into the line ring) gives bitwise the lines of
    ``push`` on the float32 reflectance strip those values make; through the float32 strip
    where the input's bands must be resampled to the models' (landsat8-oli)."""
    det, gen = models
    cube = _scene(150, 96, seed=5)
    if bands != "rgbn":
        cube = np.concatenate([cube[[0]] * 0.9, cube, cube[:3]], axis=0)[:8]
    cube[1, 40:44, 10:20] = 1.3  # clipped to 1
    valid = np.ones(cube.shape[1:], bool)
    valid[5:30, 50:70] = False
    raw, counts = _counts(cube, valid)
    band_set = sensor_profile(bands).bands
    a = StreamProcessor(96, band_set, det, gen, StreamConfig(min_fraction=0.0))
    b = StreamProcessor(96, band_set, det, gen, StreamConfig(min_fraction=0.0))
    out_a, out_b = [], []
    for r in range(0, 150, 37):
        c = counts(r, r + 37)
        out_a += a.push(c.reflectance(), c.valid)
        out_b += b.push_counts(c)
    out_a += a.flush()
    out_b += b.flush()
    assert [o.row for o in out_a] == [o.row for o in out_b]
    for x, y in zip(out_a, out_b, strict=True):
        assert np.array_equal(x.data, y.data) and np.array_equal(x.mask, y.mask)
    assert a.report.to_dict()["tiles"] == b.report.to_dict()["tiles"]


def test_stored_counts_that_cannot_be_reflectance_are_refused_as_the_float_strip_is(
    models,  # noqa: ANN001
) -> None:
    from kumo_edge.counts import Counts

    det, gen = models
    cube = _scene(20, 80)
    valid = np.ones(cube.shape[1:], bool)
    raw, _ = _counts(cube, valid)
    for scale, offset in ((1e-3, 0.0), (1e-4, -0.2)):  # too bright; mostly negative
        c = Counts(raw, valid, np.full(4, scale, np.float32), np.full(4, offset, np.float32), "s")
        with pytest.raises(InvalidDataError) as float_way:
            c.reflectance()
        proc = StreamProcessor(80, RGBN, det, gen)
        with pytest.raises(InvalidDataError) as counts_way:
            proc.push_counts(c)
        assert str(counts_way.value) == str(float_way.value)
        assert proc.received == 0  # refused before any line entered the ring
    # values under no data are not judged
    bad = raw.copy()
    bad[:, :3, :4] = 65535
    valid[:3, :4] = False
    c = Counts(bad, valid, np.full(4, 1e-4, np.float32), np.zeros(4, np.float32), "s")
    StreamProcessor(80, RGBN, det, gen).push_counts(c)
    with pytest.raises(BandCountError, match="3 bands"):
        StreamProcessor(80, RGBN, det, gen).push_counts(
            Counts(raw[:3], valid, np.ones(3, np.float32), np.zeros(3, np.float32), "s")
        )


def test_fill_invalid_mirrors_the_row_about_the_nearest_valid_pixel() -> None:
    from kumo_edge._runtime_kernels import fill_invalid

    t = np.arange(2 * 2 * 4 * 6, dtype=np.float32).reshape(2, 2, 4, 6) + 1
    v = np.ones((2, 4, 6), bool)
    v[0, 0, [0, 3, 4, 5]] = False  # row 0: valid at 1 and 2
    v[0, 1, 2] = False  # between two valid pixels: the left one (its mirror, 0, is valid)
    v[0, 1, 5] = False  # the edge: mirrored about 4 -> 3
    v[0, 2] = False  # a row with none: the nearest row (1 and 3 tie: the upper)
    v[1] = False  # nothing valid: left alone
    x = t.copy()
    fill_invalid(x, v)
    e = t[0].copy()
    # row 0: 0 mirrors 2 about 1; 3 mirrors 1 about 2; 4 would mirror 0 (invalid): 2 itself;
    # 5 would mirror -1: 2 itself
    e[:, 0, 0], e[:, 0, 3] = t[0, :, 0, 2], t[0, :, 0, 1]
    e[:, 0, 4], e[:, 0, 5] = t[0, :, 0, 2], t[0, :, 0, 2]
    e[:, 1, 2], e[:, 1, 5] = t[0, :, 1, 0], t[0, :, 1, 3]
    e[:, 2] = e[:, 1]
    np.testing.assert_array_equal(x[0], e)
    np.testing.assert_array_equal(x[1], t[1])
    w = t.copy()
    fill_invalid(w, np.ones((2, 4, 6), bool))  # all valid: untouched
    np.testing.assert_array_equal(w, t)


def test_no_data_beside_data_is_not_read_as_cloud(monkeypatch) -> None:  # noqa: ANN001
    """The bundled clear Landsat-7 scene has no-data borders (38 % of it); with a slanted
    swath edge added, the shipped rgbn models call under 1 % of its valid pixels cloud or
    shadow and leave it as it is. The models used to see the gaps as zeros, dark edges
    beside bright land, and called 8 % of it cloud (checked below with the fill switched off)."""
    from kumo_edge import stream
    from kumo_edge.cli import sample_scene_path
    from kumo_edge.io import Raster
    from kumo_edge.runtime import load_models, read_contract, shipped_models

    bands = read_contract(shipped_models()["rgbn"]["detector"]).bands
    det, rem, _ = load_models("rgbn", bands)
    with Raster(sample_scene_path()) as r:
        s = r.read_strip(0, r.height)
        x = np.ascontiguousarray(stream.resample(s.data, stream.resampling_matrix(r.bands, bands)))
    h, w = s.valid.shape
    yy, xx = np.mgrid[0:h, 0:w]
    valid = s.valid & ((xx + 0.6 * yy) > 0.45 * w)
    x[:, ~valid] = 0.0

    def run() -> tuple[float, float]:
        y, mask, _ = process_image(x.copy(), bands, det, rem, StreamConfig(), valid)
        called = np.isin(mask[valid], (2, 3, 4)).mean()
        return float(called), float(np.abs(y - x).mean(axis=0)[valid].mean())

    called, change = run()
    assert called < 0.01 and change < 0.0005, (called, change)
    monkeypatch.setattr(stream, "fill_invalid", lambda tiles, valid: None)
    called_zeros, change_zeros = run()
    assert called_zeros > 0.05 and change_zeros > 0.002, (called_zeros, change_zeros)


@pytest.mark.parametrize("point", [0.05, 0.5, 0.8])
def test_tile_counts_are_the_numpy_reductions_they_replace(point: float) -> None:
    """One numba pass gives each tile's valid pixels, per class, ambiguous, cloud not ambiguous
    (``drop_flags``) and the removal's shadow as counted from ``removal_classes``, at a detector
    shadow point below, at and above the removal's."""
    from types import SimpleNamespace

    from kumo_edge import _runtime_kernels as _rk
    from kumo_edge.runtime import classify
    from kumo_edge.stream import _drop, drop_flags, removal_classes, tile_counts

    rng = np.random.default_rng(5)
    probs = rng.dirichlet(np.ones(4), (3, 24, 20)).astype(np.float32).transpose(0, 3, 1, 2)
    probs = np.ascontiguousarray(probs)
    det = SimpleNamespace(contract=SimpleNamespace(shadow_threshold=point, cloud_threshold=0.5))
    cls = classify(probs, 0.5, 1, point)
    valid = rng.random((3, 24, 20)) > 0.2
    valid[2] = False  # a tile with no data
    amb = rng.random((3, 24, 20)) > 0.7
    got = tile_counts(det, probs, cls, valid, amb)
    for k in range(4):
        np.testing.assert_array_equal(got[:, _rk.N_CLEAR + k], ((cls == k) & valid).sum((1, 2)))
    np.testing.assert_array_equal(got[:, _rk.N_VALID], valid.sum((1, 2)))
    np.testing.assert_array_equal(got[:, _rk.N_AMBIGUOUS], (amb & valid).sum((1, 2)))
    cloud = (cls == 1) | (cls == 2)
    np.testing.assert_array_equal(
        got[:, _rk.N_CLOUD_NOT_AMBIGUOUS], (cloud & ~amb & valid).sum((1, 2))
    )
    rcls = removal_classes(det, probs, cls)
    want = ((rcls == 3) & valid).sum((1, 2))
    np.testing.assert_array_equal(got[:, _rk.N_REMOVAL_SHADOW], want)
    assert want[:2].min() > 0 and (point == 0.5 or not np.array_equal(want, got[:, _rk.N_SHADOW]))
    for limit in (0.1, 0.3, 0.5):  # the stream's drop rule from the counts = drop_flags
        frac = (cloud & ~amb & valid).sum((1, 2)) / np.maximum(valid.sum((1, 2)), 1)
        np.testing.assert_array_equal(drop_flags(cloud, amb, valid, limit), frac > limit)
        stream_drop = _drop(got[:, _rk.N_CLOUD_NOT_AMBIGUOUS], got[:, _rk.N_VALID], limit)
        np.testing.assert_array_equal(stream_drop, frac > limit)


class _FourBandDetector:
    """Four bands, no SWIR; tile 0 of each call called clear (P = 0.9), every other tile thick
    cloud (P = ``cloud``, 0.95 by default)."""

    bands = RGBN

    def __init__(self, cloud: float = 0.95) -> None:
        self.cloud = cloud

    def run(self, batch: np.ndarray) -> np.ndarray:
        p = np.zeros((batch.shape[0], 4, *batch.shape[2:]), np.float32)
        p[:, 2], p[:, 0] = self.cloud, 1 - self.cloud
        p[0, 2], p[0, 0] = 0.1, 0.9
        return p

    def classify(self, probs: np.ndarray, axis: int = 1) -> np.ndarray:
        from kumo_edge.runtime import classify

        return classify(probs, 0.5, axis)


def test_the_inputs_own_swir_tests_a_four_band_detectors_mask() -> None:
    """``flags`` (the input's own SWIR, where the detector has none): pixels its spectral test
    calls cloud are cloud in the probabilities and the report however sure the detector is of
    clear; cloud calls on its snow-like pixels are ambiguous and do not count for ``drop``;
    cloud calls its pixel trees are sure of clear are clear where the mask is not sure of
    cloud (P < 0.9), unless the spectral test calls them cloud (its last word). Without the
    flags: the detector's calls."""
    from kumo_edge.runtime import INPUT_CLEAR, INPUT_CLOUD, INPUT_SNOWY
    from kumo_edge.stream import Report, process_tiles

    tiles = np.full((3, 4, 16, 16), 0.7, np.float32)  # bright and white in the visible
    valid = np.ones((3, 16, 16), bool)
    flags = np.zeros((3, 16, 16), np.uint8)
    flags[0, :8] = INPUT_CLOUD  # half the clear-called tile: cloud by the input's test
    flags[1] = INPUT_SNOWY  # a cloud-called tile: as snow-like as ice in the input's SWIR
    flags[2, :8] = INPUT_CLEAR  # a cloud-called tile: half of it sure clear by the trees ...
    flags[2, :4] |= INPUT_CLOUD  # ... a quarter of it cloud by the spectral test as well
    seen = {}
    cfg = StreamConfig(batch=8)  # one detector call: tile 0 clear, the others cloud
    for name, f, sure in (("with", flags, 0.95), ("unsure", flags, 0.8), ("without", None, 0.95)):
        rep = Report()
        det = _FourBandDetector(sure)
        _, probs = process_tiles(tiles.copy(), valid, det, None, cfg, rep, flags=f)
        seen[name] = (probs, rep.tiles)
    probs, recs = seen["with"]
    np.testing.assert_allclose(probs[0, 1:3, :8].sum(0), 1.0)
    np.testing.assert_allclose(probs[0, 0, 8:], 0.9)
    np.testing.assert_allclose(probs[2, 2, 4:], 0.95)  # the mask is sure of that cloud: kept
    assert [t["cloud_fraction"] for t in recs] == [0.5, 1.0, 1.0]
    assert [t["ambiguous_bright"] for t in recs] == [0.0, 1.0, 0.0]
    assert [t["drop"] for t in recs] == [False, False, True]
    probs, recs = seen["unsure"]
    np.testing.assert_allclose(probs[2, 0, 4:8], 1.0)  # the thick 0.8 moved to clear
    np.testing.assert_allclose(probs[2, 2, :4], 1.0)  # the spectral test's last word
    np.testing.assert_allclose(probs[2, 2, 8:], 0.8)
    assert [t["cloud_fraction"] for t in recs] == [0.5, 1.0, 0.75]
    probs, recs = seen["without"]
    assert [t["cloud_fraction"] for t in recs] == [0.0, 1.0, 1.0]
    assert [t["drop"] for t in recs] == [False, True, True]


def test_snow_too_dark_for_cloud_is_not_cloud_in_the_mask_however_sure_the_detector_is() -> None:
    """``INPUT_DIM_SNOW`` pixels (the input's SWIR finds snow too dark to be cloud) are clear in
    the mask's probabilities and the report even where the detector is sure of cloud (P 0.95),
    where the pixel trees' ``INPUT_CLEAR`` is not; the cloud probability moves to clear (the
    network gave shadow nothing). A six-band detector clears them from its own tiles."""
    from kumo_edge.runtime import INPUT_CLEAR, INPUT_DIM_SNOW
    from kumo_edge.stream import Report, process_tiles

    tiles = np.full((2, 4, 16, 16), 0.25, np.float32)  # dim: no spectral cloud test
    valid = np.ones((2, 16, 16), bool)
    flags = np.zeros((2, 16, 16), np.uint8)
    flags[1, :4] = INPUT_DIM_SNOW
    flags[1, 4:8] = INPUT_CLEAR  # the mask is sure (0.95): the trees' clear does not count
    rep = Report()
    _, probs = process_tiles(
        tiles, valid, _FourBandDetector(), None, StreamConfig(batch=8), rep, flags=flags
    )
    np.testing.assert_allclose(probs[1, 0, :4], 1.0)
    np.testing.assert_allclose(probs[1, 2, :4], 0.0)
    np.testing.assert_allclose(probs[1, 2, 4:], 0.95)
    assert [t["cloud_fraction"] for t in rep.tiles] == [0.0, 0.75]
    # a detector with SWIR of its own: the same test on its tiles, without flags
    six = _FourBandDetector()
    six.bands = sensor_profile("rgbn-swir").bands
    tiles6 = np.empty((2, 6, 16, 16), np.float32)
    tiles6[:] = np.array([0.60, 0.60, 0.60, 0.62, 0.50, 0.40], np.float32)[:, None, None]
    tiles6[1, :, :4] = np.array([0.28, 0.25, 0.26, 0.31, 0.078, 0.063], np.float32)[:, None, None]
    rep = Report()
    _, probs = process_tiles(tiles6, valid, six, None, StreamConfig(batch=8), rep)
    np.testing.assert_allclose(probs[1, 0, :4], 1.0)  # snow in the shade of trees
    np.testing.assert_allclose(probs[1, 2, 4:], 1.0)  # bright cloud: the spectral test's
    assert [t["cloud_fraction"] for t in rep.tiles] == [1.0, 0.75]


@pytest.mark.parametrize("chunk", [9, 128])
def test_a_six_band_input_through_four_band_models_streams_its_swir_tests(chunk: int) -> None:
    """A six-band input through the shipped rgbn pair: the stream carries the input's own
    SWIR tests beside its line ring and equals the whole image; with them the snow field's cloud
    calls are all ambiguous; the cleaned output is the same with or without them (the removal
    is the detector's). The tests run only where the input has a SWIR-1 band and the models'
    bands do not."""
    from kumo_edge.runtime import load_models

    six = sensor_profile("rgbn-swir").bands
    det, rem, _ = load_models("rgbn", six)
    rng = np.random.default_rng(2)
    veg = np.array([0.04, 0.08, 0.05, 0.35, 0.18, 0.09], np.float32)
    grey = np.array([0.34, 0.33, 0.33, 0.34, 0.30, 0.25], np.float32)  # flat, SWIR-bright
    snow = np.array([0.85, 0.85, 0.83, 0.78, 0.06, 0.04], np.float32)
    x = np.empty((6, 128, 128), np.float32)
    x[:] = veg[:, None, None]
    x[:, 20:70, 20:70] = grey[:, None, None]
    x[:, 80:120, 60:120] = snow[:, None, None]
    x *= (1 + 0.03 * rng.standard_normal((1, 128, 128))).astype(np.float32)
    on, off = StreamConfig(input_swir=True), StreamConfig(input_swir=False)
    d_on, m_on, r_on = process_image(x, six, det, rem, on)
    d_off, m_off, _ = process_image(x, six, det, rem, off)
    np.testing.assert_array_equal(d_on, d_off)
    snow_px = 40 * 60 / 128**2
    assert np.isin(m_on[80:120, 60:120], (2, 3)).mean() > 0.9  # the network calls snow cloud
    assert r_on.tiles[0]["ambiguous_bright"] == pytest.approx(snow_px, abs=2e-3)
    assert not r_on.tiles[0]["drop"]
    proc = StreamProcessor(128, six, det, rem, on)
    assert proc.test_matrix is not None
    d_s, m_s = _run(proc, x, chunk)
    np.testing.assert_array_equal(m_s, m_on)
    np.testing.assert_array_equal(d_s, d_on)
    assert proc.report.tiles == r_on.tiles
    assert StreamProcessor(128, six, det, rem, off).test_matrix is None
    det6, _, _ = load_models("swir6", six)  # its own SWIR: the tests ride on its tiles
    assert StreamProcessor(128, six, det6, None, on).test_matrix is None
    assert StreamProcessor(128, RGBN, det, rem, on).test_matrix is None  # no SWIR to read


@pytest.mark.parametrize("chunk", [5, 64])
def test_the_input_pixel_trees_stream_as_the_whole_image_at_any_width(chunk: int) -> None:
    """A six-band input of a width no multiple of the trees' 8-px blocks, through the shipped
    rgbn pair: the stream's mask equals the whole image's (the blocks are cut from the first
    column in both), the trees clear part of what the network calls cloud on SWIR-dark
    ground, no cloud stands on snow too dark to be cloud, and with the input's tests off the
    cleaned output is the same (mask only)."""
    from kumo_edge.runtime import (
        INPUT_CLEAR,
        INPUT_DIM_SNOW,
        input_flags,
        input_test_matrix,
        input_trees,
        load_models,
    )

    six = sensor_profile("rgbn-swir").bands
    det, rem, _ = load_models("rgbn", six)
    rng = np.random.default_rng(4)
    veg = np.array([0.04, 0.08, 0.05, 0.35, 0.18, 0.09], np.float32)
    turbid = np.array([0.16, 0.17, 0.15, 0.09, 0.02, 0.01], np.float32)  # SWIR-dark water
    snow = np.array([0.32, 0.29, 0.31, 0.35, 0.07, 0.06], np.float32)  # under trees
    x = np.empty((6, 96, 101), np.float32)
    x[:] = veg[:, None, None]
    x[:, 10:50, 7:60] = turbid[:, None, None]
    x[:, 55:90, 40:97] = snow[:, None, None]
    x[:, 60:80, 70:97] *= 0.8  # in the shade: too dark to be cloud (INPUT_DIM_SNOW)
    x *= (1 + 0.03 * rng.standard_normal((1, 96, 101))).astype(np.float32)
    f = input_flags(x, six, False, input_test_matrix(six, det.bands), input_trees())
    assert (f & INPUT_CLEAR).any() and (f & INPUT_DIM_SNOW).any()
    on = StreamConfig(input_swir=True)
    d_on, m_on, r_on = process_image(x, six, det, rem, on)
    proc = StreamProcessor(101, six, det, rem, on)
    d_s, m_s = _run(proc, x, chunk)
    np.testing.assert_array_equal(m_s, m_on)
    # the cleaned values: one ring step apart at most, rarely (test_stream_equals_whole_image)
    from kumo_edge.stream import RING_STEP

    diff = np.abs(d_s - d_on)
    assert diff.max() <= RING_STEP * 1.01 and (diff > 0).mean() < 0.001
    assert len(proc.report.tiles) == len(r_on.tiles)
    for a, b in zip(proc.report.tiles, r_on.tiles, strict=True):
        assert a["cloud_fraction"] == b["cloud_fraction"] and a["drop"] == b["drop"]
    d_off, m_off, _ = process_image(x, six, det, rem, StreamConfig(input_swir=False))
    np.testing.assert_array_equal(d_on, d_off)
    called = np.isin(m_off, (2, 3)) & ((f & INPUT_CLEAR) > 0)
    assert called.any() and (np.isin(m_on, (2, 3)) & called).sum() < called.sum()
    dim = (f & INPUT_DIM_SNOW) > 0
    assert np.isin(m_off, (2, 3))[dim].mean() > 0.5 and not np.isin(m_on, (2, 3))[dim].any()
