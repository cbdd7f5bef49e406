"""Scoring what ``detect`` writes, on hand-built derivatives whose answers are known."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve

from pseudohealthy.evaluation.native_scores import pooled_auprc, score_unit, summarise_outputs

HEADER = ["index", "name", "rank", "peak_score", "peak_x", "peak_y", "peak_z", "above_threshold"]
AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])  # 3 mm voxels: peak (i, j, k) lies at (3i, 3j, 3k) mm


def _write(out: Path, unit: str, probseg: np.ndarray, clusters: np.ndarray, candidates: np.ndarray,
           rows: list[tuple[int, bool, tuple[int, int, int]]]) -> None:
    anat = out / unit / "anat"
    anat.mkdir(parents=True)
    for suffix, data in (("label-FCD_desc-anomaly_probseg", probseg), ("desc-clusters_dseg", clusters),
                         ("desc-candidates_dseg", candidates)):
        nib.save(nib.Nifti1Image(data, AFFINE), anat / f"{unit}_acq-x_{suffix}.nii.gz")
    lines = ["\t".join(HEADER)] + [f"{rank}\tx\t{rank}\t0.6\t" + "\t".join(str(3 * v) for v in peak)
                                   + f"\t{str(above).lower()}" for rank, above, peak in rows]
    (anat / f"{unit}_acq-x_desc-clusters_dseg.tsv").write_text("\n".join(lines) + "\n")


def _case(tmp_path: Path):
    shape = (10, 10, 10)
    probseg = np.zeros(shape, np.float32)
    clusters = np.zeros(shape, np.uint16)
    candidates = np.zeros(shape, np.uint16)
    clusters[0:2, 0:2, 0:2] = 1  # rank 1: peak 26 mm from the lesion, a miss
    clusters[4:6, 4:6, 4:6] = 2  # rank 2: peak inside the lesion, a hit
    candidates[8:10, 8:10, 8:10] = 3  # rank 3 (below threshold): peak inside the lesion too
    probseg[clusters > 0] = 0.7
    probseg[candidates > 0] = 0.4
    lesion = np.zeros(shape, np.uint8)
    lesion[5:9, 5:9, 5:9] = 1  # 64 voxels; overlaps cluster 2 in 1 voxel and candidate 3 in 1 voxel
    _write(tmp_path / "out", "sub-p", probseg, clusters, candidates,
           [(1, True, (0, 0, 0)), (2, True, (5, 5, 5)), (3, False, (8, 8, 8))])
    nib.save(nib.Nifti1Image(lesion, AFFINE), tmp_path / "lesion.nii.gz")
    control_clusters = np.zeros(shape, np.uint16)
    control_clusters[1:3, 1:3, 1:3] = 1
    _write(tmp_path / "out", "sub-c", (control_clusters > 0).astype(np.float32) * 0.8, control_clusters,
           np.zeros(shape, np.uint16), [(1, True, (1, 1, 1))])
    return probseg, lesion


def test_scores_from_the_written_outputs(tmp_path):
    probseg, lesion = _case(tmp_path)
    patient = score_unit(tmp_path / "out", "sub-p", tmp_path / "lesion.nii.gz")
    assert (patient.clusters, patient.false_clusters, patient.hit_rank, patient.ranked_hit) == (2, 1, 2, 2)
    assert patient.dice == pytest.approx(2 * 1 / (16 + 64))  # both clusters (16 voxels) vs the lesion
    control = score_unit(tmp_path / "out", "sub-c", None)
    assert not control.patient and control.clusters == 1 and control.dice is None
    summary = summarise_outputs([patient, control])
    assert summary["detected"] == 1.0 and summary["top1"] == 0.0 and summary["top3"] == 1.0
    assert summary["ranked_top1"] == 0.0 and summary["fp_clusters_per_control"] == 1.0
    # pooled AUPRC over all voxels of the FLAIR, as sklearn computes it on the full arrays
    assert summary["native_auprc"] == pytest.approx(average_precision_score(lesion.ravel() > 0, probseg.ravel()))
    assert pooled_auprc([control]) != pooled_auprc([control])  # NaN without patients


def test_a_cluster_that_only_touches_the_lesion_far_from_its_peak_is_a_miss(tmp_path):
    """A cluster spread over much of the brain touches every lesion; only its peak says where it points."""
    _case(tmp_path)
    anat = tmp_path / "out" / "sub-p" / "anat"
    clusters = nib.load(anat / "sub-p_acq-x_desc-clusters_dseg.nii.gz")
    data = np.asarray(clusters.dataobj).copy()
    data[0:9, 0:9, 0:9][data[0:9, 0:9, 0:9] == 0] = 1  # cluster 1 grows over the lesion; its peak stays put
    nib.save(nib.Nifti1Image(data, clusters.affine), anat / "sub-p_acq-x_desc-clusters_dseg.nii.gz")
    patient = score_unit(tmp_path / "out", "sub-p", tmp_path / "lesion.nii.gz")
    assert (patient.hit_rank, patient.false_clusters) == (2, 1)  # cluster 1 is still a miss
    # 10 mm is the tolerance: a peak 9 mm (3 voxels) from the lesion's edge hits, 12 mm (4 voxels) misses
    table = anat / "sub-p_acq-x_desc-clusters_dseg.tsv"
    for offset, hit in ((3, True), (4, False)):
        text = table.read_text().splitlines()
        fields = text[1].split("\t")
        fields[4:7] = [str(3 * (5 - offset)), "15", "15"]  # x = lesion's first column (5) minus offset
        table.write_text("\n".join([text[0], "\t".join(fields), *text[2:]]) + "\n")
        assert (score_unit(tmp_path / "out", "sub-p", tmp_path / "lesion.nii.gz").hit_rank == 1) is hit


def test_a_lesion_found_only_among_the_candidates(tmp_path):
    _case(tmp_path)
    anat = tmp_path / "out" / "sub-p" / "anat"
    table = anat / "sub-p_acq-x_desc-clusters_dseg.tsv"
    clusters = nib.load(anat / "sub-p_acq-x_desc-clusters_dseg.nii.gz")
    data = np.asarray(clusters.dataobj).copy()
    data[data == 2] = 0  # drop the cluster on the lesion: only the candidate hits it now
    nib.save(nib.Nifti1Image(data, clusters.affine), anat / "sub-p_acq-x_desc-clusters_dseg.nii.gz")
    table.write_text("\n".join(line for line in table.read_text().splitlines() if not line.startswith("2\t")) + "\n")
    patient = score_unit(tmp_path / "out", "sub-p", tmp_path / "lesion.nii.gz")
    assert (patient.clusters, patient.hit_rank, patient.ranked_hit, patient.false_clusters) == (1, None, 3, 1)


def _unit(name: str, lesion_scores, other_scores, mm3: float = 0.0, contrast: float | None = None):
    from pseudohealthy.evaluation.native_scores import OutputScore, _histogram

    lesion_scores = np.asarray(lesion_scores, np.float32)
    return OutputScore(unit=name, patient=lesion_scores.size > 0, clusters=0, false_clusters=0, hit_rank=None,
                       ranked_hit=1 if lesion_scores.size and lesion_scores.max() >= np.max(other_scores) else None,
                       dice=0.0 if lesion_scores.size else None, lesion_voxels=lesion_scores.size, lesion_mm3=mm3,
                       lesion_contrast=contrast, positives=_histogram(lesion_scores),
                       negatives=_histogram(np.asarray(other_scores, np.float32)))


def test_pooled_auprc_and_curve_match_sklearn_on_random_maps():
    from pseudohealthy.evaluation.native_scores import pr_curve

    rng = np.random.default_rng(3)
    units, truth, score = [], [], []
    for i in range(4):  # distinct scores (no two in one bin): the histogram is exact
        values = rng.permutation(np.arange(1, 4001) / 4001.0)
        lesion = rng.random(4000) < 0.05 + 0.1 * values
        units.append(_unit(f"sub-{i}", values[lesion], values[~lesion]))
        truth.append(lesion)
        score.append(values)
    expected = average_precision_score(np.concatenate(truth), np.concatenate(score))
    assert pooled_auprc(units) == pytest.approx(expected, abs=1e-9)
    curve = pr_curve(units)
    assert curve["recall"][-1] == 1.0 and curve["recall"] == sorted(curve["recall"])
    precision, recall, _ = precision_recall_curve(np.concatenate(truth), np.concatenate(score))
    assert curve["precision"][-1] == pytest.approx(precision[recall == 1].max(), abs=1e-5)  # full recall first reached


def test_strata_split_patients_by_lesion_size_and_contrast():
    from pseudohealthy.evaluation.native_scores import stratified

    small_faint = _unit("a", [0.9], [0.1, 0.2], mm3=400, contrast=1.05)
    small_bright = _unit("b", [0.1], [0.9, 0.2], mm3=900, contrast=1.30)
    large = _unit("c", [0.8], [0.1], mm3=5000, contrast=1.15)
    control = _unit("d", [], [0.5])
    strata = stratified([small_faint, small_bright, large, control])
    assert strata["size"]["< 1 cm³"]["patients"] == 2 and strata["size"]["< 1 cm³"]["ranked_top1"] == 0.5
    twice = stratified([small_faint, small_bright, small_faint])  # a second seed's run of one patient
    assert twice["size"]["< 1 cm³"]["patients"] == 2 and twice["size"]["< 1 cm³"]["runs"] == 3
    assert strata["size"]["> 3 cm³"]["ranked_top1"] == 1.0 and "1–3 cm³" not in strata["size"]
    assert strata["contrast"]["faint (< 1.10)"]["patients"] == 1
    assert strata["contrast"]["subtle (1.10–1.20)"]["patients"] == 1


def test_seed_subject_cis_resample_subjects_and_seeds():
    from pseudohealthy.metrics import seed_subject_cis

    found = _unit("a", [0.9], [0.1])
    missed = _unit("a", [0.1], [0.9])
    # one subject found by every seed, one found by one seed of two: the CI of ranked top-1 spans what the
    # resamples can give (0.0 to 1.0) and holds the mean over seeds (0.75)
    runs = [[found, found], [found, missed]]
    cis = seed_subject_cis(runs, summarise_outputs, n_resamples=400, seed=0)
    low, high = cis["ranked_top1"]
    assert low <= 0.75 <= high and low >= 0.0 and high == 1.0
    always = seed_subject_cis([[found, found], [found, found]], summarise_outputs, n_resamples=50)
    assert always["ranked_top1"] == (1.0, 1.0)  # no spread when every seed agrees on every subject
    with pytest.raises(ValueError):
        seed_subject_cis([[found], [found, found]], summarise_outputs)


def test_paired_difference_cis_pair_units_across_methods():
    from pseudohealthy.metrics import paired_difference_cis

    def unit(name, found):
        return _unit(name, [0.9 if found else 0.1], [0.5])

    # the same subjects found and missed by both methods: every paired resample gives a difference of 0
    # (an unpaired bootstrap would not: it can draw 'a' for one method and 'b' for the other)
    same = [[unit("a", True), unit("b", False), unit("c", False)]] * 2
    cis = paired_difference_cis(same, same, summarise_outputs, n_resamples=200)
    assert cis["ranked_top1"] == (0.0, 0.0) and cis["native_auprc"] == (0.0, 0.0)
    # A finds every lesion, B none: +1 whatever is drawn
    a = [[unit(n, True) for n in "abc"]] * 2
    b = [[unit(n, False) for n in "abc"]] * 2
    assert paired_difference_cis(a, b, summarise_outputs, n_resamples=50)["ranked_top1"] == (1.0, 1.0)
    # A finds 'a' in one seed of two, B never: the CI spans 0 (seeds and subjects resampled) to 1
    half = [[unit("a", True), unit("b", False)], [unit("a", False), unit("b", False)]]
    never = [[unit("a", False), unit("b", False)]] * 2
    low, high = paired_difference_cis(half, never, summarise_outputs, n_resamples=400)["ranked_top1"]
    assert low == 0.0 and high == 1.0
    with pytest.raises(ValueError):
        paired_difference_cis(a, [[unit(n, False) for n in "abd"]] * 2, summarise_outputs)
