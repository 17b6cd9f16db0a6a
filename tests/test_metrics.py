"""har.metrics (classification figures, ActivityNet detection mAP) and har.plots (PNG charts)."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

from har.fsutil import TEMP_PREFIX
from har.metrics import (activitynet_document, activitynet_map, classification_metrics,
                         load_activitynet_ground_truth, segment_iou, video_id_for,
                         write_confusion_csv)
from har.plots import SERIES_COLOURS, confusion_png, curves_png

THRESHOLDS = np.linspace(0.5, 0.95, 10)

# --------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------

LABELS = ["a", "b", "c", "d"]  # "d" never occurs as a true class
Y_TRUE = [0, 0, 1, 2, 2, 1]
SCORES = np.array([
    [0.9, 0.05, 0.05, 0.0],  # true a, predicted a            top-2 {a, b}: hit
    [0.2, 0.5, 0.3, 0.0],    # true a, predicted b            top-2 {b, c}: miss
    [0.1, 0.6, 0.3, 0.0],    # true b, predicted b            hit
    [0.4, 0.4, 0.2, 0.0],    # true c, tie a/b -> a           top-2 {a, b}: miss
    [0.3, 0.3, 0.3, 0.0],    # true c, three-way tie -> a     top-2 {a, b}: miss
    [0.5, 0.4, 0.1, 0.0],    # true b, predicted a            top-2 {a, b}: hit
])


def test_classification_hand_computed():
    m = classification_metrics(Y_TRUE, SCORES, LABELS, k=2)
    assert m["count"] == 6
    assert m["top1"] == pytest.approx(2 / 6)
    assert m["top5"] == pytest.approx(3 / 6)  # top-k under the fixed key name
    # per-class recall: a 1/2, b 1/2, c 0/2; d has no support and is left out
    assert m["mean_class_accuracy"] == pytest.approx((0.5 + 0.5 + 0.0) / 3)
    assert m["confusion"] == [[1, 1, 0, 0],
                              [1, 1, 0, 0],
                              [2, 0, 0, 0],
                              [0, 0, 0, 0]]
    assert m["per_class"] == [
        {"label": "a", "support": 2, "correct": 1, "accuracy": 0.5},
        {"label": "b", "support": 2, "correct": 1, "accuracy": 0.5},
        {"label": "c", "support": 2, "correct": 0, "accuracy": 0.0},
        {"label": "d", "support": 0, "correct": 0, "accuracy": None},
    ]
    json.dumps(m)  # JSON-able: no numpy scalars


def test_classification_top_k_is_capped_and_ties_rank_by_index():
    # k=5 with 4 classes: every row is a top-4 hit
    assert classification_metrics(Y_TRUE, SCORES, LABELS)["top5"] == 1.0
    # k=3: rows 3 and 4 (true c, ranked third after the tie a/b) become hits, so every
    # row is: the top-3 sets are {a,b,c} or {a,c,b} and no true class is d.
    assert classification_metrics(Y_TRUE, SCORES, LABELS, k=3)["top5"] == 1.0
    # A true class tied with the predicted one but at a higher index is not top-1.
    tie = classification_metrics([1], [[0.5, 0.5]], ["x", "y"], k=1)
    assert tie["top1"] == 0.0 and tie["confusion"] == [[0, 0], [1, 0]]
    tie = classification_metrics([0], [[0.5, 0.5]], ["x", "y"], k=1)
    assert tie["top1"] == 1.0


def test_classification_empty():
    for scores in (np.zeros((0, 3)), []):
        m = classification_metrics([], scores, ["x", "y", "z"])
        assert m["count"] == 0
        assert m["top1"] is None and m["top5"] is None and m["mean_class_accuracy"] is None
        assert [c["accuracy"] for c in m["per_class"]] == [None, None, None]
        assert m["confusion"] == [[0, 0, 0]] * 3
        json.dumps(m)


@pytest.mark.parametrize("y, scores, labels, words", [
    ([0, 1], np.zeros((3, 2)), ["x", "y"], "(3, 2)"),          # N disagrees
    ([0, 1], np.zeros((2, 3)), ["x", "y"], "2 labels"),        # C disagrees
    ([0, 1], np.zeros(2), ["x", "y"], "2-D"),
    ([0, 2], np.zeros((2, 2)), ["x", "y"], "class index 2"),
    ([[0], [1]], np.zeros((2, 2)), ["x", "y"], "1-D"),
    ([0, 1], np.zeros((2, 0)), [], "labels is empty"),
    ([0.5, 1], np.zeros((2, 2)), ["x", "y"], "integer"),
])
def test_classification_rejects_bad_shapes(y, scores, labels, words):
    with pytest.raises(ValueError) as info:
        classification_metrics(y, scores, labels)
    assert words in str(info.value)


def test_confusion_csv(tmp_path):
    out = tmp_path / "confusion.csv"
    out.write_text("old contents")
    labels = ["walk", "café, bar", "run"]
    write_confusion_csv(out, np.array([[3, 1, 0], [0, 2, 0], [1, 0, 4]]), labels)
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows == [["true\\predicted", "walk", "café, bar", "run"],
                    ["walk", "3", "1", "0"],
                    ["café, bar", "0", "2", "0"],
                    ["run", "1", "0", "4"]]
    assert out.read_text(encoding="utf-8").splitlines()[0] == 'true\\predicted,walk,"café, bar",run'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.csv"]
    with pytest.raises(ValueError, match="expected"):
        write_confusion_csv(tmp_path / "bad.csv", [[1, 2]], ["x", "y"])
    assert not (tmp_path / "bad.csv").exists()


# --------------------------------------------------------------------------------------
# ActivityNet
# --------------------------------------------------------------------------------------

def det(label, score, start, end):
    return {"label": label, "score": score, "segment": [start, end]}


def test_segment_iou():
    iou = segment_iou([0, 10], [[0, 10], [5, 15], [20, 30], [2, 4], [-5, 5]])
    np.testing.assert_allclose(iou, [1.0, 5 / 15, 0.0, 0.2, 5 / 15])
    assert segment_iou([3, 3], [[3, 3]]).tolist() == [0.0]  # no division by zero
    assert segment_iou([0, 1], np.zeros((0, 2))).shape == (0,)


def test_activitynet_perfect_predictions():
    gt = {"v1": [("run", 0.0, 10.0), ("jump", 20.0, 30.0)], "v2": [("run", 5.0, 15.0)]}
    preds = {"v1": [det("run", 0.9, 0, 10), det("jump", 0.8, 20, 30)],
             "v2": [det("run", 0.7, 5, 15)],
             "not-in-gt": [det("run", 1.0, 0, 10)] * 3}  # ignored
    r = activitynet_map(gt, preds)
    assert r["thresholds"] == pytest.approx(THRESHOLDS.tolist())
    assert r["map"] == [1.0] * 10
    assert r["average_map"] == 1.0
    assert r["per_class_ap"] == {"jump": [1.0] * 10, "run": [1.0] * 10}
    json.dumps(r)


def test_activitynet_tiou_07_counts_up_to_07():
    gt = {"v1": [("run", 0.0, 10.0)]}
    r = activitynet_map(gt, {"v1": [det("run", 0.5, 0, 7)]})  # tIoU 7/10
    assert r["map"] == [1.0] * 5 + [0.0] * 5
    assert r["average_map"] == pytest.approx(np.mean(THRESHOLDS <= 0.7)) == pytest.approx(0.5)


def test_activitynet_duplicate_is_false_positive():
    gt = {"v1": [("run", 0.0, 10.0), ("run", 20.0, 30.0)]}
    clean = {"v1": [det("run", 0.9, 0, 10), det("run", 0.7, 20, 30)]}
    assert activitynet_map(gt, clean)["average_map"] == 1.0
    # Ranked: TP, duplicate (FP), TP -> precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    # Interpolated: 1/2 * 1 + 1/2 * 2/3 = 5/6 at every threshold.
    dup = {"v1": [det("run", 0.9, 0, 10), det("run", 0.8, 0, 10), det("run", 0.7, 20, 30)]}
    r = activitynet_map(gt, dup)
    assert r["map"] == pytest.approx([5 / 6] * 10)
    assert r["average_map"] == pytest.approx(5 / 6)
    # A duplicate ranked last costs nothing (precision is made non-increasing from the right).
    late = {"v1": [det("run", 0.9, 0, 10), det("run", 0.7, 20, 30), det("run", 0.1, 0, 10)]}
    assert activitynet_map(gt, late)["average_map"] == pytest.approx(1.0)


def test_activitynet_matches_best_unmatched_instance():
    gt = {"v1": [("run", 0.0, 10.0), ("run", 5.0, 15.0)]}
    # First detection: tIoU 6/14 with the first instance, 9/11 (0.818) with the second.
    preds = {"v1": [det("run", 0.9, 4, 14), det("run", 0.8, 0, 10)]}
    r = activitynet_map(gt, preds)
    # Up to 0.8 both match (AP 1); above 0.818 the first is a FP: precision 0, 1/2 at
    # recall 0, 1/2 -> AP = 1/2 * 1/2 = 1/4.
    assert r["map"] == pytest.approx([1.0] * 7 + [0.25] * 3)
    assert r["average_map"] == pytest.approx((7 + 0.75) / 10)


def test_activitynet_wrong_class_and_missing_class():
    gt = {"v1": [("run", 0.0, 10.0)], "v2": [("jump", 0.0, 5.0)]}
    wrong = {"v1": [det("jump", 0.9, 0, 10)], "v2": [det("run", 0.9, 0, 5)]}
    r = activitynet_map(gt, wrong)
    assert r["map"] == [0.0] * 10 and r["average_map"] == 0.0
    assert r["per_class_ap"] == {"jump": [0.0] * 10, "run": [0.0] * 10}
    # One class perfect, the other without predictions: mAP is the mean, 1/2.
    half = activitynet_map(gt, {"v1": [det("run", 0.9, 0, 10)]})
    assert half["map"] == [0.5] * 10
    assert half["per_class_ap"]["jump"] == [0.0] * 10
    # Nothing at all.
    assert activitynet_map(gt, {})["average_map"] == 0.0
    assert activitynet_map({}, {})["map"] == [0.0] * 10


def test_activitynet_custom_thresholds_and_bad_predictions():
    gt = {"v1": [("run", 0.0, 10.0)]}
    r = activitynet_map(gt, {"v1": [det("run", 0.5, 0, 7)]}, thresholds=[0.1, 0.9])
    assert r["thresholds"] == [0.1, 0.9] and r["map"] == [1.0, 0.0]
    with pytest.raises(ValueError, match="segment"):
        activitynet_map(gt, {"v1": [{"label": "run", "score": 1.0}]})
    with pytest.raises(ValueError, match="score"):
        activitynet_map(gt, {"v1": [det("run", "high", 0, 1)]})


DATABASE = {
    "version": "VERSION 1.3",
    "taxonomy": [],
    "database": {
        "abc": {"subset": "validation", "duration": 30.0, "url": "",
                "annotations": [{"segment": [1.5, 9.0], "label": "Long jump"},
                                {"segment": [12, 20], "label": "Long jump"}]},
        "def": {"subset": "training", "duration": 50.0,
                "annotations": [{"segment": [0, 50], "label": "Archery"}]},
        "ghi": {"subset": "testing", "duration": 10.0, "annotations": []},
    },
}


def test_load_activitynet_ground_truth(tmp_path):
    gt, labels = load_activitynet_ground_truth(DATABASE)
    assert labels == ["Archery", "Long jump"]
    assert gt == {"abc": [("Long jump", 1.5, 9.0), ("Long jump", 12.0, 20.0)],
                  "def": [("Archery", 0.0, 50.0)], "ghi": []}
    path = tmp_path / "activity_net.v1-3.min.json"
    path.write_text(json.dumps(DATABASE))
    gt, labels = load_activitynet_ground_truth(path, subset="validation")
    assert list(gt) == ["abc"] and labels == ["Long jump"]
    gt, labels = load_activitynet_ground_truth(str(path), subset="testing")
    assert gt == {"ghi": []} and labels == []


@pytest.mark.parametrize("content, words", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "'database'"),
    ('{"database": {"x": 3}}', "video 'x'"),
    ('{"database": {"x": {"annotations": [{"label": "a"}]}}}', "needs 'segment' and 'label'"),
    ('{"database": {"x": {"annotations": [{"label": "a", "segment": [1]}]}}}', "[start, end]"),
    ('{"database": {"x": {"annotations": [{"label": "a", "segment": [5, 1]}]}}}', "ends before"),
    ('{"database": {"x": {"annotations": [{"label": 3, "segment": [0, 1]}]}}}', "'label' must be"),
    ('{"database": {"x": {"annotations": {"label": "a"}}}}', "must be a list"),
])
def test_load_activitynet_ground_truth_malformed(tmp_path, content, words):
    path = tmp_path / "gt.json"
    path.write_text(content)
    with pytest.raises(ValueError) as info:
        load_activitynet_ground_truth(path)
    message = str(info.value)
    assert words in message and "\n" not in message and "gt.json" in message


def test_activitynet_round_trip_through_document():
    gt, _ = load_activitynet_ground_truth(DATABASE, subset="validation")
    results = {video_id_for("/data/anet/v_abc.mp4"): [det("Long jump", 0.9, 1.5, 9.0),
                                                      det("Long jump", 0.8, 12, 20)]}
    doc = activitynet_document(results)
    assert doc["version"] == "VERSION 1.3"
    assert doc["external_data"] == {"used": True,
                                    "details": "har: 3D ResNet pretrained on Kinetics-400"}
    doc = json.loads(json.dumps(doc))
    assert activitynet_map(gt, doc["results"])["average_map"] == 1.0


def test_video_id_for():
    assert video_id_for("/data/v_-1Yq3bP1Yys.mp4") == "-1Yq3bP1Yys"
    assert video_id_for("v_abc.mkv") == "abc"
    assert video_id_for("clip.avi") == "clip"
    assert video_id_for("dir/video_v_x.mp4") == "video_v_x"


# --------------------------------------------------------------------------------------
# PNGs
# --------------------------------------------------------------------------------------

def read_png(path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert img is not None, f"{path} is not a readable image"
    return img


def has_colour(img: np.ndarray, bgr) -> bool:
    return bool(np.all(img == np.array(bgr, np.uint8), axis=-1).any())


def no_temp_files(folder) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_confusion_png_small(tmp_path):
    out = tmp_path / "confusion.png"
    confusion_png(out, np.eye(3, dtype=int) * 5, ["walk", "run", "jump"])
    img = read_png(out)
    assert img.shape[0] >= 400 and img.shape[1] >= 400
    assert has_colour(img, (107, 48, 8))  # the darkest colour: a 100% diagonal cell
    confusion_png(out, [[3, 1], [0, 0]], ["a", "b"], normalize=False, title="counts")
    assert read_png(out).shape[0] >= 400
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png"]
    with pytest.raises(ValueError, match="expected"):
        confusion_png(tmp_path / "bad.png", np.eye(3), ["a", "b"])
    assert no_temp_files(tmp_path) and not (tmp_path / "bad.png").exists()


def test_confusion_png_scales_with_classes_and_draws_non_ascii(tmp_path):
    rng = np.random.default_rng(0)
    labels = [f"действие {i} — 日本語 label that is far too long to fit anywhere {i}" for i in range(60)]
    matrix = rng.integers(0, 10, size=(60, 60)) + np.eye(60, dtype=int) * 30
    confusion_png(tmp_path / "c60.png", matrix, labels)
    confusion_png(tmp_path / "c5.png", matrix[:5, :5], labels[:5])
    big, small = read_png(tmp_path / "c60.png"), read_png(tmp_path / "c5.png")
    assert big.shape[0] > small.shape[0] >= 400 and big.shape[1] > small.shape[1] >= 400
    assert max(big.shape[:2]) <= 4100
    labels400 = [f"class {i}" for i in range(400)]
    confusion_png(tmp_path / "c400.png", np.eye(400), labels400)
    huge = read_png(tmp_path / "c400.png")
    assert 2000 <= max(huge.shape[:2]) <= 4100
    assert no_temp_files(tmp_path)


def test_curves_png(tmp_path):
    history = [
        {"epoch": 1, "train_loss": 1.2, "train_acc": 0.3, "val_loss": None, "val_acc": None},
        {"epoch": 2, "train_loss": 0.9, "train_acc": 0.5, "val_loss": 1.0, "val_acc": 0.45,
         "val_video_acc": 0.5},
        {"epoch": 3, "train_loss": float("nan"), "train_acc": 0.6},   # NaN skipped
        {"epoch": 4, "train_loss": 0.5, "train_acc": 0.7, "val_loss": 0.8, "val_acc": 0.6,
         "val_video_acc": 0.65},
    ]
    out = tmp_path / "curves.png"
    curves_png(out, history, title="Fine-tuning — ü")
    img = read_png(out)
    assert img.shape[0] >= 400 and img.shape[1] >= 800
    for key in ("train_loss", "val_loss", "val_video_acc"):
        assert has_colour(img, SERIES_COLOURS[key]), key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curves.png"]


def test_curves_png_one_epoch_and_missing_keys(tmp_path):
    out = tmp_path / "one.png"
    curves_png(out, [{"epoch": 1, "train_loss": 0.7, "train_acc": 0.5, "val_loss": None}])
    img = read_png(out)
    assert img.shape[0] >= 400 and img.shape[1] >= 800
    assert has_colour(img, SERIES_COLOURS["train_loss"])      # drawn as a point
    assert not has_colour(img, SERIES_COLOURS["val_loss"])    # absent: no line, no legend
    assert not has_colour(img, SERIES_COLOURS["val_video_acc"])
    curves_png(tmp_path / "empty.png", [])
    curves_png(tmp_path / "odd.png", [{}, {"val_acc": 0.4}, {"epoch": "x", "train_loss": "y"}])
    for name in ("empty.png", "odd.png"):
        assert read_png(tmp_path / name).shape[0] >= 400
    assert no_temp_files(tmp_path)
