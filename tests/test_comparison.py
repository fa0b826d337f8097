"""Result-folder pairing rules and alignment, the paired bootstrap, and the LaTeX table."""
from __future__ import annotations

import re

import numpy as np
import pytest

from utils.io.images import as_saved, read_image, write_image
from utils.io.latex import latex_table
from utils.metrics.bootstrap import paired_bootstrap
from utils.metrics.result_folders import ResultsError, align, pair_results


def touch(folder, names):
    for name in names:
        write_image(folder / name, np.zeros((4, 4, 3)))
    return folder


@pytest.mark.parametrize("truth,results", [
    (["1", "2", "10"], ["1.png", "2.png", "10.png"]),  # exact
    (["rain-001", "rain-002"], ["norain-001.png", "norain-002.png"]),  # rain/norain tokens
    (["rain-001", "rain-002"], ["001_derain.png", "002_derain.png"]),  # method suffix
    (["norain-1x2", "norain-2x2"], ["norain-1_out.png", "norain-2_out.png"]),  # Rain200 x2 + suffix
    (["rain-001", "rain-002"], ["1_result.png", "2_result.png"]),  # numbers: 1 ~ 001
    (["7_3", "7_4"], ["7_3_derained.png", "7_4_derained.png"]),  # DDN names keep i_j
])
def test_pairing_rules(tmp_path, truth, results):
    folder = touch(tmp_path / "r", results)
    assert [p.name for p in pair_results(folder, truth)] == results


def test_pairing_with_match_regex_and_errors(tmp_path):
    folder = touch(tmp_path / "r", ["img_PReNet_001_v2.png", "img_PReNet_002_v2.png", "notes.jpg"])
    with pytest.raises(ResultsError, match=r"without ground truth: notes.jpg"):
        pair_results(folder, ["rain-1", "rain-2"], pattern=r"PReNet_(\d+)_")
    (folder / "notes.jpg").unlink()
    with pytest.raises(ResultsError):  # "1" and "2" appear in v2 too: the rules cannot tell
        pair_results(folder, ["rain-1", "rain-2"])
    paired = pair_results(folder, ["rain-1", "rain-2"], pattern=r"PReNet_(\d+)_")
    assert [p.name for p in paired] == ["img_PReNet_001_v2.png", "img_PReNet_002_v2.png"]
    with pytest.raises(ResultsError, match="needs a group"):
        pair_results(folder, ["1"], pattern=r"\d+")
    message = ""
    try:
        pair_results(touch(tmp_path / "s", [f"{i}.png" for i in range(8)]), [str(i) for i in range(2, 12)])
    except ResultsError as exc:
        message = str(exc)
    assert "4 ground-truth image(s) without a result: 8, 9, 10, 11" in message
    assert "2 result file(s) without ground truth: 0.png, 1.png" in message and "\n" not in message


def test_align_crop_is_top_left():
    truth = np.random.default_rng(0).random((21, 17, 3))
    result = truth[:20, :16] * 0.5
    with pytest.raises(ResultsError, match="16x20 vs 17x21"):
        align(result, truth)
    got, cropped = align(result, truth, "crop")
    assert np.array_equal(got, result) and np.array_equal(cropped, truth[:20, :16])
    padded = np.pad(truth, ((0, 3), (0, 1), (0, 0)))  # a method that pads: its output is cropped
    got, same = align(padded, truth, "crop")
    assert np.array_equal(got, truth) and np.array_equal(same, truth)
    with pytest.raises(ResultsError):
        align(np.zeros((60, 60, 3)), np.zeros((100, 100, 3)), "crop")  # beyond cropping or padding


def test_as_saved_is_what_read_image_returns(tmp_path):
    image = np.random.default_rng(1).random((9, 7, 3)).astype(np.float32) * 1.2 - 0.1
    for bits in (8, 16):
        write_image(tmp_path / f"x{bits}.png", image, bits=bits)
        assert np.array_equal(as_saved(image, bits), read_image(tmp_path / f"x{bits}.png"))


def test_bootstrap_interval_contains_known_shift():
    rng = np.random.default_rng(0)
    base = rng.normal(30.0, 3.0, 400)  # image difficulty, shared by both methods
    a, b = base + rng.normal(0, 0.4, 400), base + 0.25 + rng.normal(0, 0.4, 400)
    stats = paired_bootstrap(a, b)
    assert stats["low"] < 0.25 < stats["high"] and not stats["within_noise"]
    assert stats["mean"] == pytest.approx(np.mean(b - a)) and stats == paired_bootstrap(a, b)  # fixed seed
    assert paired_bootstrap(a, base + rng.normal(0, 0.4, 400))["within_noise"]
    # Coverage: the 95% interval holds the true shift in about 95% of repeated experiments.
    intervals = [paired_bootstrap(np.zeros(40), 0.25 + np.random.default_rng(s).normal(0, 0.5, 40),
                                  resamples=1000, seed=s) for s in range(200)]
    coverage = np.mean([i["low"] <= 0.25 <= i["high"] for i in intervals])
    assert 0.88 <= coverage <= 0.99
    # Infinite PSNRs (identical images) are left out and counted.
    inf = paired_bootstrap([1.0, 2.0, 3.0], [np.inf, 2.5, 3.5])
    assert inf["images"] == 2 and inf["excluded"] == 1 and inf["mean"] == pytest.approx(0.5)
    assert paired_bootstrap([np.inf], [np.inf])["within_noise"] is None


def test_latex_table_structure_and_marks():
    rows = [{"dataset": d, "method": m, "rgb/psnr": p, "rgb/ssim": s, "params": k, "gmacs": g}
            for d, m, p, s, k, g in [
                ("Rain100L", "rainy input", 40.0, 0.99, None, None),  # never ranked
                ("Rain100L", "PReNet", 37.48, 0.9790, None, None),
                ("Rain100L", "HCN_ours", 38.20, 0.9801, 2_068_443, 140.6),
                ("Rain100L", "RCDNet", 38.20, 0.9700, None, None),  # a tie shares the mark
                ("Rain100H", "rainy input", 13.5, 0.38, None, None),
                ("Rain100H", "PReNet", 29.46, 0.8990, None, None),
                ("Rain100H", "HCN_ours", 30.10, 0.9050, 2_068_443, 140.6),
                ("Rain100H", "RCDNet", float("inf"), 0.9100, None, None)]]
    tex = latex_table(rows, ["Rain100L", "Rain100H"], ["rainy input", "PReNet", "HCN_ours", "RCDNet"], "rgb",
                      unranked=("rainy input",), caption="c")
    lines = tex.splitlines()
    assert lines.count(r"\begin{tabular}{lrrcccc}") == 1 and lines.count(r"\end{tabular}") == 1
    order = [lines.index(x) for x in (r"\toprule", r"\midrule", r"\bottomrule", r"\end{tabular}")]
    assert order == sorted(order)
    assert r"\cmidrule(lr){4-5} \cmidrule(lr){6-7}" in tex and r"\multicolumn{2}{c}{Rain100L}" in tex
    body = {line.split(" & ")[0]: line.removesuffix(r" \\").split(" & ") for line in lines
            if line.endswith(r"\\") and " & " in line}
    assert body["rainy input"][3:] == ["40.00", "0.9900", "13.50", "0.3800"]
    assert body[r"HCN\_ours"][1:5] == ["2.068", "140.60", r"\textbf{38.20}", r"\textbf{0.9801}"]
    assert body[r"HCN\_ours"][5:7] == [r"\underline{30.10}", r"\underline{0.9050}"]
    assert body["RCDNet"][1:] == ["--", "--", r"\textbf{38.20}", "0.9700", r"\textbf{$\infty$}",
                                  r"\textbf{0.9100}"]
    assert body["PReNet"][3:] == [r"\underline{37.48}", r"\underline{0.9790}", "29.46", "0.8990"]
    assert len(re.findall(r"\\textbf\{", tex)) == 5 and tex.count(r"\begin{") == tex.count(r"\end{")
