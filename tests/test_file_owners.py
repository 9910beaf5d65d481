"""One owner module per shard file format (frames, audio, faces): it alone names the
datasets, writes the file and reads it, and it imports without torch, cv2 or mediapipe.

The naming rule (:func:`owner_violations`): outside the format's owner, a string
constant equal to one of the format's *distinctive* dataset names is refused where it
addresses an HDF5 object: as a subscript (``f["frames"]``), as an argument of
``create_dataset``/``require_dataset``/``open_checked``, or as an element of a list,
tuple or set literal (a list of required datasets). Names the package also uses as
table columns or as other formats' datasets (:data:`SHARED`) are not distinctive: a
rule on them would flag every ``table["video_id"]``.
"""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

from traitlens.core.errors import UserError
from traitlens.extract import audio_file, frames_file
from traitlens.faces import faces_file

PACKAGE = Path(__file__).resolve().parents[1] / "workflow_scripts" / "traitlens"
OWNERS = {
    "extract/frames_file.py": frames_file,
    "extract/audio_file.py": audio_file,
    "faces/faces_file.py": faces_file,
}
# Also columns of tables (QC, AU, detector and ground-truth TSVs) or datasets of the
# activation dumps and CAM files
SHARED = {"video_id", "frame_index", "success", "reason", "score", "has_audio", "timestamp_s"}
CALLS = {"create_dataset", "require_dataset", "open_checked"}


def distinctive() -> dict[str, set[str]]:
    """{dataset name: owner modules (package-relative paths) whose format has it}."""
    out: dict[str, set[str]] = {}
    for rel, module in OWNERS.items():
        for name in set(module.DATASETS) - SHARED:
            out.setdefault(name, set()).add(rel)
    return out


def owner_violations(source: str, rel: str, names: dict[str, set[str]]) -> list[str]:
    """'rel:line: name' for every use of a distinctive dataset name that addresses an
    HDF5 object in a module that does not own it."""
    tree = ast.parse(source)
    found = []

    def check(node: ast.AST) -> None:
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value in names
            and rel not in names[node.value]
        ):
            found.append(f"{rel}:{node.lineno}: {node.value!r}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript):
            check(node.slice)
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in CALLS:
                for arg in [*node.args, *(k.value for k in node.keywords)]:
                    check(arg)
        elif isinstance(node, ast.List | ast.Tuple | ast.Set):
            for element in node.elts:
                check(element)
    return sorted(set(found))


def test_only_the_owner_names_its_datasets():
    names = distinctive()
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        found += owner_violations(path.read_text(encoding="utf-8"), rel, names)
    assert not found, "dataset names outside their owner module:\n" + "\n".join(found)


def test_the_rule_flags_a_reader_of_its_own():
    names = distinctive()
    source = (
        "import h5py\n"
        "with h5py.File(path) as f:\n"
        "    pixels = f['frames'][:]\n"
        "f = open_checked(path, 'faces', 'detect_faces', ['aligned', 'box'])\n"
        "out.create_dataset('offsets', data=x)\n"
        "table['video_id']\n"  # a shared name: a table column, not flagged
    )
    assert owner_violations(source, "models/x.py", names) == [
        "models/x.py:3: 'frames'",
        "models/x.py:4: 'aligned'",
        "models/x.py:4: 'box'",
        "models/x.py:5: 'offsets'",
    ]
    # the owner itself may
    assert owner_violations("f['frames']", "extract/frames_file.py", names) == []
    assert owner_violations("f['frames']", "faces/faces_file.py", names) != []


def test_shared_names_are_dataset_names():
    every = {name for module in OWNERS.values() for name in module.DATASETS}
    assert SHARED <= every  # a renamed dataset must not hide behind SHARED
    assert {"frames", "aligned", "content_box", "offsets"} <= set(distinctive())


BLOCKED = ("torch", "cv2", "mediapipe", "pandas", "feat", "matplotlib")


def import_without_heavy_packages(name: str) -> None:
    """Import ``name`` afresh (with the traitlens modules it needs) while importing any
    of BLOCKED fails; sys.modules is restored afterwards."""
    saved = dict(sys.modules)
    try:
        for key in list(sys.modules):
            top = key.split(".")[0]
            if top == "traitlens" or top in BLOCKED:
                del sys.modules[key]
        for top in BLOCKED:
            sys.modules[top] = None  # import raises ImportError
        importlib.import_module(name)
    finally:
        for key in list(sys.modules):
            if key not in saved:
                del sys.modules[key]
        sys.modules.update(saved)


@pytest.mark.parametrize("module", [m.__name__ for m in OWNERS.values()])
def test_owners_import_with_numpy_and_h5py_only(module):
    import_without_heavy_packages(module)


def test_the_import_check_can_fail(tmp_path, monkeypatch):
    (tmp_path / "uses_torch_helper.py").write_text("import numpy\nimport torch.nn\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ImportError):
        import_without_heavy_packages("uses_torch_helper")
    assert "uses_torch_helper" not in sys.modules
    assert sys.modules["traitlens.extract.frames_file"] is frames_file  # restored


# --- round trips ------------------------------------------------------------------------


def write_frames(path: Path) -> dict:
    rng = np.random.default_rng(0)
    videos = {
        "v.a": rng.integers(0, 256, (2, 6, 8, 3), dtype=np.uint8),
        "v.b": rng.integers(0, 256, (3, 6, 8, 3), dtype=np.uint8),
    }
    with frames_file.FramesWriter(path, 3, 8, 6, "test") as writer:
        for k, (video_id, pixels) in enumerate(videos.items()):
            index = np.arange(len(pixels)) * 4
            writer.add(video_id, pixels, index, index / 25.0, (0, k, 8, 6 - 2 * k))
    return videos


def test_frames_round_trip(tmp_path):
    path = tmp_path / "s000.h5"
    videos = write_frames(path)
    pixels = np.concatenate(list(videos.values()))
    with frames_file.open_frames(path) as f:
        assert np.array_equal(frames_file.frame_pixels(f)[:], pixels)
        index = frames_file.read_index(f)
        assert dict(f.attrs) == {
            "schema": frames_file.FRAMES_SCHEMA,
            "frames_per_video": 3,
            "frame_width": 8,
            "frame_height": 6,
            "created_by": "test",
        }
        assert f["timestamp_s"][:].tolist() == [0, 0.16, 0, 0.16, 0.32]
    assert index.video_ids == ["v.a", "v.b"]
    assert index.video_index.tolist() == [0, 0, 1, 1, 1]
    assert index.frame_index.tolist() == [0, 4, 0, 4, 8]
    keys = frames_file.read_row_keys(path)
    assert keys.rows.tolist() == [0, 1, 2, 3, 4]
    assert keys.video_id.tolist() == ["v.a", "v.a", "v.b", "v.b", "v.b"]
    assert keys.frame_index.tolist() == [0, 4, 0, 4, 8]
    ds = frames_file.open_pixels(path, rdcc_nbytes=0)
    with ds.file:
        assert np.array_equal(ds[3], pixels[3])
    assert not ds.id.valid  # closing the dataset's file closes the handle
    ds, frame_index = frames_file.open_indexed_pixels(path)
    ds.file.close()
    assert frame_index.tolist() == [0, 4, 0, 4, 8]
    assert frames_file.read_frame_size(path) == (6, 8)
    geometry = frames_file.read_geometry(path)
    assert geometry.video_ids == ["v.a", "v.b"] and geometry[2:] == (6, 8)
    assert geometry.content_box.tolist() == [[0, 0, 8, 6], [0, 1, 8, 4]]


def test_a_failed_frames_writer_leaves_no_index(tmp_path):
    path = tmp_path / "s000.h5"
    with pytest.raises(RuntimeError):
        with frames_file.FramesWriter(path, 3, 8, 6, "test"):
            raise RuntimeError("killed")
    with h5py.File(path) as f:
        assert set(f) == {"frames"}  # atomic_path removes such a file; readers refuse it
    with pytest.raises(UserError, match=r"missing dataset\(s\) \['video_index'"):
        frames_file.open_frames(path)


def test_damaged_frames_files_are_clear_errors(tmp_path):
    path = tmp_path / "s000.h5"
    write_frames(path)
    with h5py.File(path, "r+") as f:
        del f["content_box"]
    with pytest.raises(UserError, match=r"missing dataset\(s\) \['content_box'\].*extract_shard"):
        frames_file.read_geometry(path)
    frames_file.read_frame_size(path)  # what a reader does not need may be missing
    cut = tmp_path / "s001.h5"
    write_frames(cut)
    cut.write_bytes(cut.read_bytes()[:2000])
    for read in (frames_file.open_frames, frames_file.read_frame_size, frames_file.read_row_keys):
        with pytest.raises(
            UserError, match="s001.h5: not a readable HDF5 frames file: the file is"
        ):
            read(cut)
    with pytest.raises(UserError, match="readable HDF5 img file"):  # the training code's word
        frames_file.open_pixels(cut, "img")


def write_audio(path: Path) -> np.ndarray:
    rows = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    attrs = {"log_floor": 1e-10, "created_by": "test", "sample_rate": 16000, "n_mels": 4}
    with audio_file.AudioWriter(path, 4, attrs) as writer:
        writer.add("v.a", rows[:2], True)
        writer.add("v.silent", np.zeros((0, 4), np.float32), False)
        writer.add("v.b", rows[2:], True)
    return rows


def test_audio_round_trip(tmp_path):
    path = tmp_path / "s000.h5"
    rows = write_audio(path)
    with audio_file.AudioReader(path) as audio:
        assert audio.video_ids == ["v.a", "v.silent", "v.b"]
        assert audio.has_audio.tolist() == [True, False, True]
        assert audio.offsets.tolist() == [0, 2, 2, 5] and audio.n_mels == 4
        assert np.array_equal(audio.rows(0), rows[:2]) and audio.rows(1).shape == (0, 4)
        assert np.array_equal(audio.rows(2), rows[2:])
        attrs = dict(audio.file.attrs)
    assert attrs["schema"] == audio_file.AUDIO_SCHEMA and attrs["created_by"] == "test"
    assert attrs["log_floor"] == 1e-10 and attrs["n_mels"] == 4


def test_damaged_audio_files_are_clear_errors(tmp_path):
    path = tmp_path / "s000.h5"
    write_audio(path)
    with h5py.File(path, "r+") as f:
        f["offsets"][3] = 4
    with pytest.raises(UserError, match="offsets are not a non-decreasing cover.*extract_shard"):
        audio_file.AudioReader(path)
    with h5py.File(path, "r+") as f:
        del f["has_audio"]
    with pytest.raises(UserError, match=r"missing dataset\(s\) \['has_audio'\]"):
        audio_file.AudioReader(path)
    path.write_bytes(b"")
    with pytest.raises(UserError, match="HDF5 audio file: the file is empty"):
        audio_file.AudioReader(path)


def write_faces(path: Path, size: int = 4) -> SimpleNamespace:
    n = 3
    rng = np.random.default_rng(2)
    success = np.array([True, False, True])
    nan = np.where(success, 1.0, np.nan)
    faces = SimpleNamespace(
        success=success,
        n_faces_seen=np.array([1, 0, 2], np.int8),
        score=np.array([0.9, np.nan, 0.8], np.float32),
        box=rng.random((n, 4)).astype(np.float32) * nan[:, None],
        landmarks=rng.random((n, 478, 3)).astype(np.float32) * nan[:, None, None],
        transform=rng.random((n, 2, 3)).astype(np.float32) * nan[:, None, None],
        aligned_landmarks=rng.random((n, 478, 2)).astype(np.float32) * nan[:, None, None],
        aligned=rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
        * success[:, None, None, None],
        reason=["", "no face", ""],
    )
    writer = faces_file.FacesWriter(path, n, size, {"created_by": "test", "aligned_size": size})
    try:
        writer.copy_index(
            frames_file.FrameIndex(["v.a", "v.b"], np.array([0, 1, 1]), np.array([0, 0, 4]))
        )
        writer.write(np.array([0]), SimpleNamespace(**{k: v[:1] for k, v in vars(faces).items()}))
        writer.write(
            np.array([1, 2]), SimpleNamespace(**{k: v[1:] for k, v in vars(faces).items()})
        )
    finally:
        writer.close()
    return faces


def test_faces_round_trip(tmp_path):
    path = tmp_path / "s000.h5"
    faces = write_faces(path)
    with h5py.File(path) as f:
        assert set(f) == set(faces_file.DATASETS)
        assert f.attrs["schema"] == faces_file.FACES_SCHEMA and f.attrs["aligned_size"] == 4
        assert [v.decode() for v in f["reason"][:]] == faces.reason
        for name in ("n_faces_seen", "score", "transform"):
            assert np.array_equal(f[name][:], getattr(faces, name), equal_nan=True)
    rows = faces_file.read_faces(path)
    assert rows.video_ids == ("v.a", "v.b") and rows.row_video_ids().tolist() == [
        "v.a",
        "v.b",
        "v.b",
    ]
    assert rows.frame_index.tolist() == [0, 0, 4] and rows.success.tolist() == [True, False, True]
    assert np.array_equal(rows.landmarks, faces.landmarks, equal_nan=True)
    keys = faces_file.read_row_keys(path, "face")
    assert keys.rows.tolist() == [0, 2] and keys.video_id.tolist() == ["v.a", "v.b"]
    assert keys.frame_index.tolist() == [0, 4]
    ds = faces_file.open_pixels(path)
    with ds.file:
        assert np.array_equal(ds[:], faces.aligned)
    assert np.array_equal(faces_file.read_boxes(path), faces.box, equal_nan=True)
    with faces_file.AlignedFaces(path) as aligned:
        assert aligned.size == 4
        batches = list(aligned.successful(batch=2))
    assert [len(crops) for _, crops in batches] == [1, 1]
    assert np.array_equal(np.concatenate([c for _, c in batches]), faces.aligned[[0, 2]])
    assert np.array_equal(
        np.concatenate([lm for lm, _ in batches]), faces.aligned_landmarks[[0, 2]]
    )


def test_damaged_faces_files_are_clear_errors(tmp_path):
    path = tmp_path / "s000.h5"
    write_faces(path)
    with h5py.File(path, "r+") as f:
        del f["landmarks"]
        f["landmarks"] = np.zeros((3, 10, 3), np.float32)
    with pytest.raises(UserError, match=r"landmarks has shape \(3, 10, 3\).*detect_faces"):
        faces_file.read_faces(path)
    with h5py.File(path, "r+") as f:
        del f["aligned"]
    with pytest.raises(UserError, match=r"missing dataset\(s\) \['aligned'\] of a face file"):
        faces_file.read_row_keys(path, "face")
    faces_file.read_boxes(path)  # what a reader does not need may be missing
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(UserError, match="not a readable HDF5 faces file: the file is truncated"):
        faces_file.read_boxes(path)
