"""End to end on the demo format: generate -> manifest -> extraction -> QC, via snakemake."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from traitlens.ingest.labels import BIG_FIVE

from support.workflow import run_snakemake, write_config
from support.workflow_config import fi_layout

pytestmark = pytest.mark.workflow


def test_tiny_demo_runs_end_to_end(tiny_demo):
    workdir, configfile = tiny_demo
    manifest = pd.read_csv(workdir / "results/tiny/manifest.tsv", sep="\t")
    assert len(manifest) == 5 and set(manifest["split"]) <= {"train", "validation", "test"}
    assert manifest[list(BIG_FIVE)].stack().between(0, 1).all()
    assert manifest["video_id"].str.fullmatch(r"[A-Za-z0-9_-]{11}\.\d{3}").all()
    qc = pd.read_csv(workdir / "results/tiny/qc/videos.tsv", sep="\t")
    assert (qc["status"] == "ok").all() and (qc["n_frames"] == 4).all()
    assert (qc["width"] == 192).all() and (qc["has_audio"]).all()
    assert (qc["n_faces"] == 4).all()  # mediapipe finds the face in every demo frame
    assert (workdir / "results/tiny/figures/face_regions.png").stat().st_size > 10_000
    n_frames = 0
    for shard in sorted(manifest["shard"].unique()):
        with h5py.File(workdir / f"results/tiny/frames/{shard}.h5") as h5:
            n_frames += len(h5["frames"])
            assert h5["frames"][:].std() > 10  # real images, not blank frames
    assert n_frames == 5 * 4
    aus = pd.concat(
        pd.read_csv(workdir / f"results/tiny/aus/{s}.tsv", sep="\t")
        for s in sorted(manifest["shard"].unique())
    )
    assert len(aus) == 5 * 4 and aus["success"].all()
    assert aus[["AU01", "AU12", "AU26", "AU43", "AU45"]].stack().between(0, 1).all()
    validation = pd.read_csv(workdir / "results/tiny/validation/aus.tsv", sep="\t")
    assert set(validation.loc[validation["planted"], "au"]) == {"AU01", "AU12", "AU26", "AU43"}
    truth = workdir / "resources/demo/ground_truth"
    assert {"frames.tsv", "videos.tsv", "planted.json"} <= {p.name for p in truth.iterdir()}

    accuracy = pd.read_csv(workdir / "results/tiny/tables/accuracy.tsv", sep="\t")
    models = ["img+audio", "img", "face", "audio", "aus", "train_mean"]
    assert list(accuracy["model"].unique()) == models
    assert accuracy[["mean", *BIG_FIVE]].stack().between(0, 1).all()
    assert (accuracy["mean_ci_low"] <= accuracy["mean"]).all()
    assert (accuracy["mean"] <= accuracy["mean_ci_high"]).all()
    for model in ("img", "face"):
        history = pd.read_csv(workdir / f"results/tiny/models/{model}/training_log.tsv", sep="\t")
        assert list(history["epoch"]) == [1, 2]
        frames = pd.read_csv(
            workdir / f"results/tiny/models/{model}/frame_predictions.tsv", sep="\t"
        )
        assert len(frames) == 5 * 4
    assert (workdir / "results/tiny/figures/accuracy.png").stat().st_size > 10_000
    check_interpretability(workdir / "results/tiny", manifest)
    check_report(workdir, configfile)

    again = run_snakemake(workdir, configfile, "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def check_interpretability(results, manifest):
    """The issue-5 outputs of a tiny demo run exist and hold what their contract says."""
    import json

    n_test_frames = 4 * int((manifest["split"] == "test").sum())
    for source in ("img", "face", "img_gradcam"):
        with h5py.File(results / f"cam/{source}.h5") as h5:
            assert h5["maps"].shape[:2] == (n_test_frames, 5)
            assert np.isfinite(h5["maps"][:]).all()
        for trait in BIG_FIVE:
            assert (results / f"figures/cam_{source}_{trait}.png").stat().st_size > 5_000
    overlap = pd.read_csv(results / "tables/cam_face_overlap.tsv", sep="\t")
    assert set(overlap["source"]) == {"img", "img_gradcam"}
    assert len(overlap) == 2 * 5 * n_test_frames
    assert overlap["overlap"].dropna().between(0, 1).all()
    for layer in ("conv4_3", "conv5_1", "conv5_2", "conv5_3"):
        with h5py.File(results / f"activations/face/{layer}.h5") as h5:
            assert h5.attrs["n_frames"] == len(manifest) * 4 == len(h5["max"])
            assert h5["top_index"].shape == (h5.attrs["n_units"], h5.attrs["top_k"])
        assert (results / f"figures/units_face_{layer}.png").stat().st_size > 5_000
    detectors = pd.read_csv(results / "tables/detectors.tsv", sep="\t")
    assert set(detectors["region"]) == {"eyebrows", "eyes", "nose", "mouth"}
    assert detectors["score"].between(0, 1 + 1e-6).all()
    emergence = pd.read_csv(results / "tables/au_emergence.tsv", sep="\t")
    assert list(emergence.columns[:8]) == ["au", "unit", "layer", "i_max", "n", "f", "u", "p"]
    decoy = emergence["au"].str.endswith("_decoy")
    assert (~decoy).sum() == 17 and decoy.sum() == 17 and emergence["p"].between(0, 1).all()
    assert emergence["p_perm"].dropna().between(0, 1).all()
    assert set(emergence["permutation"].dropna()) == {"whole videos within group"}
    # the controls: the untrained network through CAM, detectors and AU emergence, and the
    # emergence test on the planted AU values
    with h5py.File(results / "cam/img_random_init.h5") as h5:
        assert h5["maps"].shape[:2] == (n_test_frames, 5)
    for table in ("random_init/detectors.tsv", "random_init/au_emergence.tsv",
                  "planted_aus/au_emergence.tsv"):  # fmt: skip
        assert len(pd.read_csv(results / "controls" / table, sep="\t")) > 0, table
    planted = json.loads((results / "validation/planted.json").read_text())
    for key in (
        "cam_true_face_overlap_share",
        "cam_ideal_overlap_share",
        "cam_offface_overlap_share",
        "cam_random_weights_overlap_share",
        "detector_precision",
        "detector_precision_ci_low",
        "n_detectors",
        "n_detectors_random_init",
        "planted_aus_significant_share",
        "unplanted_aus_significant_share",
        "decoy_aus_significant_share",
        "paper_unplanted_aus_significant_share",
        "null_false_positive_rate",
        "random_init_planted_aus_significant_share",
    ):
        assert key in planted
    # every control was given to the rule: none of their keys is left unmeasured
    assert planted["n_detectors_random_init"] is not None
    assert planted["cam_random_weights_overlap_share"] is not None
    assert planted["truth_planted_aus_significant_share"] is not None


def check_report(workdir, configfile):
    """snakemake --report builds one HTML file holding every study category, in order."""
    report = workdir / "results/tiny/report.html"
    result = run_snakemake(workdir, configfile, "--report", str(report))
    assert result.returncode == 0, result.stderr[-3000:]
    html = report.read_text(encoding="utf-8", errors="replace")
    assert len(html) > 1_000_000  # figures are embedded
    categories = [
        "1. Models",
        "2. Discriminative regions (CAM)",
        "4. Interpretability of the face CNN",
        "5. Action Units",
        "6. Scored against the planted truth",
    ]
    positions = [html.find(c) for c in categories]
    assert all(p >= 0 for p in positions), dict(zip(categories, positions, strict=True))
    for name in ("cam_img_openness.png", "detectors.tsv", "au_emergence.png", "planted.tsv"):
        assert name in html


def test_code_running_label_file_stops_the_run_cleanly(tmp_path):
    from support.pickles import code_running_pickle

    fi_layout(tmp_path, {"training": ["a0000000000.001"], "validation": [], "test": []})
    marker = tmp_path / "pwned"
    (tmp_path / "annotation_validation.pkl").write_bytes(code_running_pickle(str(marker)))
    from support.workflow_config import fi_config

    configfile = write_config(tmp_path / "c.yaml", fi_config(tmp_path))
    result = run_snakemake(tmp_path, configfile, "build_manifest")
    assert result.returncode != 0
    log = (tmp_path / "results/fi/logs/build_manifest.log").read_text()
    assert "annotation_validation.pkl" in log and "os.system" in log and "not executed" in log
    assert "Traceback" not in log
    assert not marker.exists()
    assert not (tmp_path / "results/fi/manifest.tsv").exists()
