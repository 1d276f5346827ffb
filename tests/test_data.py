"""Tests of dynn_lib.data: info, splits, sources (folder/archive/torchvision), cache, loader,
corruptions. Unit tests use generated data; tests marked ``data`` read the real data dir."""
from __future__ import annotations

import dataclasses
import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dynn_lib.data as D
from dynn_lib.data import sources

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


@pytest.fixture(autouse=True)
def _isolated_cache(request, tmp_path, monkeypatch):
    """Unit tests write decoded tensors under tmp_path; real-data tests keep the user's cache."""
    if request.node.get_closest_marker("data") is None:
        monkeypatch.setenv("DYNN_CACHE_DIR", str(tmp_path / "tensor-cache"))


# ----------------------------------------------------------------------------- fake data builders

def _jpeg(arr: np.ndarray, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, quality=95)
    return buf.getvalue()


def _img(rng: np.random.Generator, size: int, gray: bool = False) -> np.ndarray:
    shape = (size, size) if gray else (size, size, 3)
    return rng.integers(0, 256, shape, dtype=np.uint8)


def _tar_dir(src_dir: Path, arcname: str, dest: Path, only: list[str] | None = None) -> None:
    with tarfile.open(dest, "w:gz") as tf:
        if only is None:
            tf.add(src_dir, arcname=arcname)
        else:
            for rel in only:
                tf.add(src_dir / rel, arcname=f"{arcname}/{rel}")


@pytest.fixture
def fake_cifar10_jpeg(tmp_path) -> tuple[Path, Path]:
    """(folder data dir, archive data dir) holding the same tiny cifar10-jpeg: 2 train / 1 test
    image per class, one test image stored as PNG (PIL fallback path)."""
    rng = np.random.default_rng(0)
    fdir = tmp_path / "folder"
    for split, n in (("train", 2), ("test", 1)):
        for cls in CIFAR10_CLASSES:
            d = fdir / "cifar10-jpeg" / split / cls
            d.mkdir(parents=True)
            for i in range(n):
                if split == "test" and cls == "dog":
                    (d / f"{i:04d}.png").write_bytes(_jpeg(_img(rng, 32), "PNG"))
                else:
                    (d / f"{i:04d}.jpg").write_bytes(_jpeg(_img(rng, 32)))
            (d / "notes.txt").write_text("ignored")
    adir = tmp_path / "archive"
    adir.mkdir()
    _tar_dir(fdir / "cifar10-jpeg", "cifar10-jpeg", adir / "cifar10-jpeg.tar.gz")
    return fdir, adir


@pytest.fixture
def fake_tinyimagenet(tmp_path) -> tuple[Path, Path]:
    """(folder data dir, archive data dir): 200 wnids (wnids.txt deliberately unsorted),
    1 train image per class (every 7th grayscale), 12 val images; archives as the shards."""
    rng = np.random.default_rng(1)
    wnids = [f"n{9000000 - 7 * i:08d}" for i in range(200)]  # descending: file order != sorted
    base = tmp_path / "folder" / "tiny-imagenet-200"
    (base / "val" / "images").mkdir(parents=True)
    (base / "wnids.txt").write_text("\n".join(wnids) + "\n")
    (base / "words.txt").write_text("".join(f"{w}\tthing {w}\n" for w in wnids))
    for k, w in enumerate(wnids):
        d = base / "train" / w / "images"
        d.mkdir(parents=True)
        (d / f"{w}_0.JPEG").write_bytes(_jpeg(_img(rng, 64, gray=(k % 7 == 0))))
        (base / "train" / w / f"{w}_boxes.txt").write_text(f"{w}_0.JPEG\t0\t0\t10\t10\n")
    ann = []
    for i in range(12):
        (base / "val" / "images" / f"val_{i}.JPEG").write_bytes(_jpeg(_img(rng, 64, gray=(i == 3))))
        ann.append(f"val_{i}.JPEG\t{wnids[(5 * i) % 200]}\t0\t0\t63\t63")
    (base / "val" / "val_annotations.txt").write_text("\n".join(ann) + "\n")
    adir = tmp_path / "archive" / "tiny-imagenet-200"
    adir.mkdir(parents=True)
    for s in range(4):
        _tar_dir(base, "tiny-imagenet-200", adir / f"train-{s}.tar.gz",
                 only=[f"train/{w}" for w in wnids[50 * s:50 * (s + 1)]])
    _tar_dir(base, "tiny-imagenet-200", adir / "val.tar.gz", only=["val", "wnids.txt", "words.txt"])
    return base.parent, adir.parent


def _same(a: D.ImageSet, b: D.ImageSet) -> bool:
    return (a.classes == b.classes and torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels))


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- info and errors

def test_info_table():
    assert set(D.DATASETS) == {"cifar10", "cifar100", "cifar10-jpeg", "tinyimagenet", "synthetic"}
    c10, jp, c100, tin = (D.get_info(n) for n in ("cifar10", "cifar10-jpeg", "cifar100", "tinyimagenet"))
    assert c10.mean == jp.mean == (0.485, 0.456, 0.406) and c10.std == (0.229, 0.224, 0.225)
    assert c100.mean == (0.507, 0.487, 0.441) and c100.num_classes == 100
    assert (tin.input_size, tin.crop_padding, tin.colour_jitter, tin.num_classes) == (64, 8, 0.2, 200)
    assert (c10.crop_padding, c10.colour_jitter) == (4, 0.0)
    assert c10.noise_sigma(1) == 0.04 and c10.noise_sigma(5) == 0.10 and c10.brightness_shift(5) == 0.30
    assert tin.noise_sigma(5) == 0.18 and tin.brightness_shift(1) == 0.1 and tin.brightness_shift(5) == 0.5
    assert "JPEG" in jp.label and "quality 75" in jp.label
    assert D.get_info("synthetic").generated and "ynthetic" in D.get_info("synthetic").label
    with pytest.raises(dataclasses.FrozenInstanceError):
        c10.num_classes = 3  # type: ignore[misc]
    for bad in (0, 6, 2.0):
        with pytest.raises(ValueError, match="severity"):
            c10.noise_sigma(bad)  # type: ignore[arg-type]


def test_unknown_name_and_split():
    with pytest.raises(ValueError, match=r"'imagenet'.*cifar10-jpeg.*tinyimagenet"):
        D.get_info("imagenet")
    with pytest.raises(ValueError, match="imagenet"):
        D.load("imagenet", "train")
    with pytest.raises(ValueError, match="'val'"):
        D.load("synthetic", "val")  # type: ignore[arg-type]


def test_resolve_dirs(monkeypatch, tmp_path):
    monkeypatch.delenv("DYNN_DATA_DIR", raising=False)
    monkeypatch.delenv("DYNN_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert D.resolve_data_dir() == tmp_path / "xdg" / "dynn" / "data"
    assert D.resolve_cache_dir() == tmp_path / "xdg" / "dynn" / "tensors"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert D.resolve_data_dir() == Path.home() / ".cache" / "dynn" / "data"
    monkeypatch.setenv("DYNN_DATA_DIR", str(tmp_path / "env"))
    monkeypatch.setenv("DYNN_CACHE_DIR", str(tmp_path / "cenv"))
    assert D.resolve_data_dir() == tmp_path / "env"
    assert D.resolve_cache_dir() == tmp_path / "cenv"
    assert D.resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"


@pytest.mark.parametrize("name", ["cifar10-jpeg", "tinyimagenet", "cifar10", "cifar100"])
def test_missing_dataset_lists_searched_paths(tmp_path, name):
    empty = tmp_path / "nothing-here"
    with pytest.raises(D.DatasetNotFoundError) as ei:
        D.load(name, "train", empty)
    msg = str(ei.value)
    assert isinstance(ei.value, FileNotFoundError)
    assert repr(name) in msg and "--data-dir" in msg and "DYNN_DATA_DIR" in msg and str(empty) in msg
    expected = {
        "cifar10-jpeg": [empty / "cifar10-jpeg" / "train", empty / "cifar10-jpeg.tar.gz"],
        "tinyimagenet": [empty / "tiny-imagenet-200" / "wnids.txt", empty / "tiny-imagenet-200" / "train",
                         *(empty / "tiny-imagenet-200" / f"train-{i}.tar.gz" for i in range(4)),
                         empty / "tiny-imagenet-200" / "val.tar.gz"],
        "cifar10": [empty / "cifar-10-batches-py"],
        "cifar100": [empty / "cifar-100-python"],
    }[name]
    for p in expected:
        assert str(p) in msg
    assert ("download=True" in msg) == (name in ("cifar10", "cifar100"))
    assert not (tmp_path / "tensor-cache").exists()  # nothing written


# ----------------------------------------------------------------------------- split

def test_query_eval_split_properties():
    labels = torch.arange(10_000) // 1000  # sorted by class, like cifar10-jpeg
    q, e = D.query_eval_split(labels, seed=D.SPLIT_SEED)
    assert D.SPLIT_SEED == 0
    assert len(q) == len(e) == 5000 and q.dtype == e.dtype == torch.int64
    assert torch.equal(torch.sort(torch.cat([q, e])).values, torch.arange(10_000))
    assert torch.all(q[1:] > q[:-1]) and torch.all(e[1:] > e[:-1])
    assert torch.bincount(labels[q]).tolist() == [500] * 10 == torch.bincount(labels[e]).tolist()
    q2, e2 = D.query_eval_split(labels, seed=0)
    assert torch.equal(q, q2) and torch.equal(e, e2)
    q3, _ = D.query_eval_split(labels, seed=1)
    assert not torch.equal(q, q3)
    assert q[:10].tolist() != list(range(10))  # not an index range
    # uneven classes and another fraction
    lab = torch.tensor([0] * 7 + [1] * 3 + [2] * 10)
    q, e = D.query_eval_split(lab, seed=3, query_fraction=0.2)
    assert torch.bincount(lab[q], minlength=3).tolist() == [1, 1, 2]
    assert set(q.tolist()).isdisjoint(e.tolist()) and len(q) + len(e) == 20


# ----------------------------------------------------------------------------- synthetic

def test_synthetic_deterministic_and_learnable():
    tr, te = D.make_synthetic(num_classes=4, size=16, n_train=400, n_test=200, seed=5)
    tr2, _ = D.make_synthetic(num_classes=4, size=16, n_train=400, n_test=200, seed=5)
    assert _same(tr, tr2) and tr.dataset == "synthetic" and te.split == "test"
    assert tr.images.shape == (400, 3, 16, 16) and tr.images.dtype == torch.uint8
    assert torch.bincount(tr.labels).tolist() == [100] * 4 and len(te) == 200
    # nearest class mean in pixel space separates the classes
    x, xt = tr.images.float().flatten(1), te.images.float().flatten(1)
    means = torch.stack([x[tr.labels == c].mean(0) for c in range(4)])
    acc = (torch.cdist(xt, means).argmin(1) == te.labels).float().mean()
    assert acc > 0.9
    assert _same(D.load("synthetic", "test"), D.make_synthetic()[1])


# ----------------------------------------------------------------------------- readers and cache

def test_cifar10_jpeg_folder_and_archive_agree(fake_cifar10_jpeg):
    fdir, adir = fake_cifar10_jpeg
    for split, n in (("train", 2), ("test", 1)):
        a = D.load("cifar10-jpeg", split, fdir)
        b = D.load("cifar10-jpeg", split, adir)
        assert _same(a, b) and a.classes == CIFAR10_CLASSES
        assert a.images.shape == (10 * n, 3, 32, 32) and a.images.dtype == torch.uint8
        assert a.labels.tolist() == [c for c in range(10) for _ in range(n)]
        assert "folder" in a.source and "archive" in b.source and b.split == split
    # the decoded pixels are those of the file (PIL as reference)
    p = fdir / "cifar10-jpeg" / "train" / "cat" / "0001.jpg"
    ref = torch.from_numpy(np.array(Image.open(p).convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(D.load("cifar10-jpeg", "train", adir).images[3 * 2 + 1], ref)


def test_tinyimagenet_folder_and_shards_agree(fake_tinyimagenet):
    fdir, adir = fake_tinyimagenet
    wnids = sorted(f"n{9000000 - 7 * i:08d}" for i in range(200))
    for split in ("train", "test"):
        a = D.load("tinyimagenet", split, fdir)
        b = D.load("tinyimagenet", split, adir)
        assert _same(a, b) and a.classes == tuple(wnids)  # sorted wnids, not wnids.txt order
        assert a.images.shape[1:] == (3, 64, 64)
    tr = D.load("tinyimagenet", "train", adir)
    assert len(tr) == 200 and tr.labels.tolist() == list(range(200))
    gray = tr.images[wnids.index("n09000000")]  # k=0 was written grayscale
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])
    te = D.load("tinyimagenet", "test", adir)
    file_order = [f"n{9000000 - 7 * ((5 * i) % 200):08d}" for i in range(12)]  # val_0..val_11
    assert [te.classes[k] for k in te.labels.tolist()] == file_order


def test_cache_reused_invalidated_and_corrupt_rebuilt(fake_cifar10_jpeg, monkeypatch, tmp_path):
    fdir, adir = fake_cifar10_jpeg
    before = _files(adir)
    first = D.load("cifar10-jpeg", "train", adir)
    assert _files(adir) == before  # nothing written into the (possibly read-only) data dir
    # one pass over the archive decodes and caches both splits
    cache = _files(tmp_path / "tensor-cache")
    assert [p.name.split("-")[2] for p in cache] == ["test", "train"]
    cache = cache[1:]
    real_decode = sources._decode_images
    calls = []

    def counting(*a, **k):
        calls.append(1)
        return real_decode(*a, **k)

    monkeypatch.setattr(sources, "_decode_images", counting)
    assert _same(D.load("cifar10-jpeg", "train", adir), first) and calls == []  # cache hit
    assert len(D.load("cifar10-jpeg", "test", adir)) == 10 and calls == []
    # corrupt the cache file: reported, rebuilt, then clean again
    cache[0].write_bytes(b"not a torch file")
    with pytest.warns(RuntimeWarning, match="corrupt tensor cache") as rec:
        again = D.load("cifar10-jpeg", "train", adir)
    assert str(cache[0]) in str(rec[0].message)
    assert _same(again, first) and calls == [1]
    assert _same(D.load("cifar10-jpeg", "train", adir), first) and calls == [1]
    assert not [p for p in _files(tmp_path / "tensor-cache") if p.name.endswith(".tmp")]
    # a truncated file is caught too
    data = cache[0].read_bytes()
    cache[0].write_bytes(data[: len(data) // 2])
    with pytest.warns(RuntimeWarning, match="corrupt tensor cache"):
        D.load("cifar10-jpeg", "train", adir)
    # a changed folder source gets a new key (checksum of names, sizes, mtimes)
    D.load("cifar10-jpeg", "train", fdir)
    n_calls = len(calls)
    f = fdir / "cifar10-jpeg" / "train" / "bird" / "0000.jpg"
    os.utime(f, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns + 10**9))
    D.load("cifar10-jpeg", "train", fdir)
    assert len(calls) == n_calls + 1
    # use_cache=False decodes without reading or writing the cache
    D.load("cifar10-jpeg", "train", adir, use_cache=False)
    assert len(calls) == n_calls + 2


def test_undecodable_image_is_named(tmp_path):
    d = tmp_path / "cifar10-jpeg" / "train"
    for i, cls in enumerate(CIFAR10_CLASSES):
        (d / cls).mkdir(parents=True)
        (d / cls / "0000.jpg").write_bytes(b"garbage" if i == 4 else _jpeg(_img(np.random.default_rng(i), 32)))
    with pytest.raises(ValueError, match="deer/0000.jpg"):
        D.load("cifar10-jpeg", "train", tmp_path)
    assert not (tmp_path / "tensor-cache").exists()


def test_torchvision_cifar_with_generated_batches(tmp_path, monkeypatch):
    """cifar10/cifar100 go through torchvision's loader (checksums patched for generated files)."""
    import torchvision.datasets.cifar as tvc

    monkeypatch.setattr(tvc, "check_integrity", lambda *a, **k: True)
    monkeypatch.setattr(tvc.CIFAR10, "_check_integrity", lambda self: True)
    rng = np.random.default_rng(2)
    d10 = tmp_path / "cifar-10-batches-py"
    d10.mkdir()
    for i in range(1, 6):
        pickle.dump({"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": [i % 10, 1, 2, 3]},
                    open(d10 / f"data_batch_{i}", "wb"))
    test = rng.integers(0, 256, (3, 3072), dtype=np.uint8)
    pickle.dump({"data": test, "labels": [9, 0, 5]}, open(d10 / "test_batch", "wb"))
    pickle.dump({"label_names": list(CIFAR10_CLASSES)}, open(d10 / "batches.meta", "wb"))
    d100 = tmp_path / "cifar-100-python"
    d100.mkdir()
    pickle.dump({"data": rng.integers(0, 256, (5, 3072), dtype=np.uint8), "fine_labels": [99, 0, 1, 2, 3]},
                open(d100 / "train", "wb"))
    pickle.dump({"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), "fine_labels": [7, 8]},
                open(d100 / "test", "wb"))
    pickle.dump({"fine_label_names": [f"c{i}" for i in range(100)]}, open(d100 / "meta", "wb"))

    tr = D.load("cifar10", "train", tmp_path)
    te = D.load("cifar10", "test", tmp_path)
    assert tr.images.shape == (20, 3, 32, 32) and tr.images.dtype == torch.uint8 and tr.labels.dtype == torch.int64
    assert te.labels.tolist() == [9, 0, 5] and te.classes == CIFAR10_CLASSES
    assert torch.equal(te.images[1], torch.from_numpy(test[1].reshape(3, 32, 32)))
    c = D.load("cifar100", "train", tmp_path)
    assert len(c) == 5 and c.num_classes == 100 and c.labels[0] == 99


def test_channel_stats_exact():
    x = torch.randint(0, 256, (50, 3, 5, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = D.channel_stats(x, chunk=7)
    f = x.double() / 255
    assert np.allclose(mean, f.mean((0, 2, 3))) and np.allclose(std, f.std((0, 2, 3), unbiased=False))


def test_check_report_text(fake_cifar10_jpeg):
    _, adir = fake_cifar10_jpeg
    text = D.check_report("cifar10-jpeg", adir)
    assert "CIFAR-10 (JPEG" in text and "train: 20 images" in text and "test: 10 images" in text
    assert "airplane=2" in text and "truck=1" in text and text.count("mean (x/255)") == 2


# ----------------------------------------------------------------------------- loader

def test_crop_equals_shifted_original():
    torch.manual_seed(0)
    img = torch.randint(1, 256, (1, 3, 6, 5), dtype=torch.uint8)
    pad = 2
    for dy in range(2 * pad + 1):
        for dx in range(2 * pad + 1):
            for flip in (False, True):
                out = D.random_crop_flip(img, torch.tensor([[dy, dx]]), torch.tensor([flip]), pad)[0]
                ref = torch.zeros_like(img[0])
                sy, sx = dy - pad, dx - pad  # out[:, i, j] = img[:, i + sy, j + sx] (0 outside)
                for i in range(6):
                    for j in range(5):
                        if 0 <= i + sy < 6 and 0 <= j + sx < 5:
                            ref[:, i, j] = img[0, :, i + sy, j + sx]
                assert torch.equal(out, ref.flip(-1) if flip else ref), (dy, dx, flip)


def test_loader_plain_order_and_len():
    imgs = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    labels = torch.arange(10)
    ld = D.GpuLoader(imgs, labels, batch_size=4)
    assert len(ld) == 3 and len(D.GpuLoader(imgs, labels, batch_size=4, drop_last=True)) == 2
    xs, ys = zip(*ld)
    assert [len(y) for y in ys] == [4, 4, 2]
    x = torch.cat(xs)
    assert x.dtype == torch.float32 and torch.equal(x, imgs.float() / 255) and torch.equal(torch.cat(ys), labels)
    assert sum(1 for _ in D.GpuLoader(imgs, labels, batch_size=4, drop_last=True, shuffle=True)) == 2


def test_loader_determinism_and_augmentation():
    n = 37
    labels = torch.arange(n) % 5
    imgs = ((labels + 1) * 40).to(torch.uint8).view(n, 1, 1, 1).expand(n, 3, 8, 8).contiguous()

    def run(seed, epoch, jitter=0.0):
        ld = D.GpuLoader(imgs, labels, batch_size=8, shuffle=True, augment=True, pad=4, jitter=jitter, seed=seed)
        ld.set_epoch(epoch)
        return [(x.clone(), y.clone()) for x, y in ld]

    a, b = run(0, 3), run(0, 3)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(a, b))
    assert not all(torch.equal(y1, y2) for (_, y1), (_, y2) in zip(a, run(0, 4)))
    assert not all(torch.equal(y1, y2) for (_, y1), (_, y2) in zip(a, run(1, 3)))
    ys = torch.cat([y for _, y in a])
    assert sorted(ys.tolist()) == sorted(labels.tolist())  # a permutation of the data
    for x, y in a:
        assert x.shape[1:] == (3, 8, 8) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
        # the crop keeps the centre pixel: the image content still matches its label
        assert torch.allclose(x.amax(dim=(1, 2, 3)), (y + 1).float() * 40 / 255)
    assert any((x == 0).any() for x, _ in a)  # zero padding shows up
    # the epoch advances by itself between iterations
    ld = D.GpuLoader(imgs, labels, batch_size=8, shuffle=True, seed=0)
    e0, e1 = torch.cat([y for _, y in ld]), torch.cat([y for _, y in ld])
    assert not torch.equal(e0, e1)
    ld.set_epoch(0)
    assert torch.equal(torch.cat([y for _, y in ld]), e0)
    # colour jitter keeps the range and changes the pixels
    j = run(0, 3, jitter=0.2)
    assert all(0 <= x.min() and x.max() <= 1 and x.shape == xa.shape for (x, _), (xa, _) in zip(j, a))
    assert not all(torch.equal(x, xa) for (x, _), (xa, _) in zip(j, a))


# ----------------------------------------------------------------------------- corruptions

def test_hsv_roundtrip():
    x = torch.rand(2, 3, 7, 7)
    x[0, :, 0, 0] = 0.0
    x[0, :, 1, 1] = 0.4
    hsv = D.rgb_to_hsv(x)
    assert torch.allclose(D.hsv_to_rgb(hsv), x, atol=1e-6)
    assert hsv[0, 1, 0, 0] == 0 and hsv[0, 1, 1, 1] == 0 and hsv[0, 2, 1, 1] == pytest.approx(0.4)
    red = D.rgb_to_hsv(torch.tensor([1.0, 0.5, 0.0]).view(3, 1, 1))
    assert torch.allclose(red.flatten(), torch.tensor([30 / 360, 1.0, 1.0]))


def test_brightness_hand_values():
    gray = torch.full((1, 3, 2, 2), 100, dtype=torch.uint8)
    # V = 100/255; + shift; * 255; truncated
    assert D.brightness(gray, 1, "cifar10").unique().tolist() == [112]  # 100 + 12.75
    assert D.brightness(gray, 5, "cifar10").unique().tolist() == [176]  # 100 + 76.5
    assert D.brightness(gray, 5, "tinyimagenet").unique().tolist() == [227]  # 100 + 127.5
    colour = torch.tensor([200, 100, 50], dtype=torch.uint8).view(1, 3, 1, 1)
    # same H and S: every channel scales by V'/V = (200/255 + 0.05) / (200/255)
    assert D.brightness(colour, 1, "cifar10").flatten().tolist() == [212, 106, 53]
    white = torch.full((1, 3, 1, 1), 255, dtype=torch.uint8)
    assert D.brightness(white, 3, "cifar10").unique().tolist() == [255]
    with pytest.raises(ValueError, match="severity"):
        D.brightness(gray, 0, "cifar10")


def test_brightness_exact_and_close_to_hsv_round_trip():
    from fractions import Fraction
    from math import floor

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (8, 3, 8, 8), dtype=torch.uint8, generator=g)
    x[0, :, :2, :2] = 0  # black pixels
    x[1, :, :2, :2] = 77  # gray pixels
    x[2, 0] = 255  # saturated max channel
    for ds in ("cifar10", "tinyimagenet"):
        for sev in range(1, 6):
            a = D.brightness(x, sev, ds)
            # exact rational arithmetic on a sample of pixels
            shift = Fraction(str(D.get_info(ds).brightness_shift(sev))) * 255
            for n, i, j in [(0, 0, 0), (1, 1, 1), (2, 3, 4)] + [(k, k % 8, (3 * k) % 8) for k in range(8)]:
                px = [int(c) for c in x[n, :, i, j]]
                v = max(px)
                vn = min(v + shift, Fraction(255))
                ref = [min(255, floor(vn if v == 0 else Fraction(c) * vn / v)) for c in px]
                assert a[n, :, i, j].tolist() == ref, (ds, sev, px)
            b = D.brightness_via_hsv(x, sev, ds)
            diff = (a.int() - b.int()).abs()
            # equal up to float rounding right at integer levels (152.99999 truncates to 152)
            assert diff.max() <= 1 and (diff > 0).float().mean() < 0.06


def test_gaussian_noise_statistics_and_determinism():
    img = torch.full((4, 3, 32, 32), 128, dtype=torch.uint8)
    out = D.gaussian_noise(img, 3, "cifar10", torch.Generator().manual_seed(1))
    d = out.float() - 128
    assert out.dtype == torch.uint8 and out.shape == img.shape
    assert d.std().item() == pytest.approx(0.08 * 255, rel=0.05)
    assert d.mean().item() == pytest.approx(-0.5, abs=0.3)  # truncation, not rounding
    again = D.gaussian_noise(img, 3, "cifar10", torch.Generator().manual_seed(1))
    other = D.gaussian_noise(img, 3, "cifar10", torch.Generator().manual_seed(2))
    assert torch.equal(out, again) and not torch.equal(out, other)
    with pytest.raises(ValueError, match="severity"):
        D.gaussian_noise(img, 6, "cifar10")


def test_corruptions_monotone_in_severity():
    tr, _ = D.make_synthetic(n_train=32, n_test=0, size=16)
    x = tr.images
    for ds in ("cifar10", "tinyimagenet"):
        noise = [(D.gaussian_noise(x, s, ds, torch.Generator().manual_seed(0)).float() - x.float()).abs().mean()
                 for s in range(1, 6)]
        bright = [(D.brightness(x, s, ds).float() - x.float()).abs().mean() for s in range(1, 6)]
        assert all(a < b for a, b in zip(noise, noise[1:])), noise
        assert all(a < b for a, b in zip(bright, bright[1:])), bright


def test_query_set_order():
    tr, _ = D.make_synthetic(n_train=20, n_test=0)
    x, y = tr.images, tr.labels
    q, qy = D.query_set(x, "cifar10", seed=7, labels=y)
    assert q.shape == (11 * 20, 3, 32, 32) and q.dtype == torch.uint8 and torch.equal(qy, y.repeat(11))
    assert torch.equal(q[:20], x)
    g = torch.Generator().manual_seed(7)
    assert torch.equal(q[20:40], D.gaussian_noise(x, 1, "cifar10", g))
    assert torch.equal(q[40:60], D.gaussian_noise(x, 2, "cifar10", g))
    assert torch.equal(q[120:140], D.brightness(x, 1, "cifar10"))
    assert torch.equal(q[200:220], D.brightness(x, 5, "cifar10"))
    assert torch.equal(D.query_set(x, "cifar10", seed=7), q)


# ----------------------------------------------------------------------------- real data

@pytest.mark.data
def test_real_cifar10_jpeg(real_data_dir):
    tr = D.load("cifar10-jpeg", "train", real_data_dir)
    te = D.load("cifar10-jpeg", "test", real_data_dir)
    assert (len(tr), len(te)) == (50_000, 10_000) and tr.classes == CIFAR10_CLASSES == te.classes
    assert tr.images.shape[1:] == (3, 32, 32)
    assert torch.bincount(tr.labels).tolist() == [5000] * 10 and torch.bincount(te.labels).tolist() == [1000] * 10
    mean, std = D.channel_stats(tr.images)
    assert np.allclose(mean, (0.4913, 0.4821, 0.4465), atol=0.002), mean
    assert np.allclose(std, (0.2452, 0.2428, 0.2606), atol=0.002), std
    q, e = D.query_eval_split(te.labels)
    assert len(q) == len(e) == 5000 and torch.bincount(te.labels[q]).tolist() == [500] * 10
    qs = D.query_set(te.images[q[:100]], "cifar10-jpeg")
    assert qs.shape == (1100, 3, 32, 32)


@pytest.mark.data
@pytest.mark.slow
def test_real_tinyimagenet(real_data_dir):
    tr = D.load("tinyimagenet", "train", real_data_dir)
    te = D.load("tinyimagenet", "test", real_data_dir)
    assert (len(tr), len(te)) == (100_000, 10_000) and tr.num_classes == te.num_classes == 200
    assert tr.classes == te.classes == tuple(sorted(tr.classes))
    assert tr.images.shape[1:] == (3, 64, 64) == te.images.shape[1:]
    assert torch.bincount(tr.labels).tolist() == [500] * 200 and torch.bincount(te.labels).tolist() == [50] * 200
    mean, _ = D.channel_stats(tr.images)
    assert np.allclose(mean, (0.4802, 0.4481, 0.3975), atol=0.002), mean


def test_stratified_subset_on_class_sorted_labels():
    labels = torch.arange(10).repeat_interleave(500)  # sorted by class, as cifar10-jpeg's halves
    idx = D.stratified_subset(labels, 100, seed=0)
    assert idx.tolist() == sorted(idx.tolist()) and len(set(idx.tolist())) == 100
    assert torch.bincount(labels[idx], minlength=10).tolist() == [10] * 10
    assert torch.equal(idx, D.stratified_subset(labels, 100, seed=0))
    assert not torch.equal(idx, D.stratified_subset(labels, 100, seed=1))
    # uneven classes: largest remainder, sizes exact
    uneven = torch.tensor([0] * 7 + [1] * 2 + [2] * 1)
    assert torch.bincount(uneven[D.stratified_subset(uneven, 5)], minlength=3).tolist() == [4, 1, 0]
    assert torch.equal(D.stratified_subset(labels, None), torch.arange(5000))
    assert torch.equal(D.stratified_subset(labels, 9999), torch.arange(5000))
    with pytest.raises(ValueError, match="n must be"):
        D.stratified_subset(labels, -1)


def test_workspace_subsets_are_stratified_on_sorted_data(tmp_path):
    """Every 'n images' of a split is a stratified sample: the first n of a class-sorted half
    would be one class (the defect this guards against)."""
    from dynn_lib import zoo
    from dynn_lib.experiments import common, rq4

    ws = zoo.Workspace("synthetic", "smoke", store=tmp_path, n_eval=None, n_query=100, n_train=100)
    ts = ws.test_set
    order = torch.argsort(ts.labels, stable=True)  # make the test set class-sorted
    ws.__dict__["test_set"] = dataclasses.replace(ts, images=ts.images[order], labels=ts.labels[order])
    x, y, pos = ws.eval_subset(50)
    assert torch.bincount(y, minlength=10).tolist() == [5] * 10
    assert torch.equal(ws.eval_half[1][pos], y)
    _, y2, _ = common._images(ws, common.ExperimentConfig(n_images=20))
    assert torch.bincount(y2, minlength=10).tolist() == [2] * 10
    _, y3 = rq4._images(ws, 10)
    assert torch.bincount(y3, minlength=10).tolist() == [1] * 10
    assert torch.bincount(ws.query_half[1], minlength=10).tolist() == [10] * 10
    assert torch.bincount(ws.train_subset(100, 0)[1], minlength=10).tolist() == [10] * 10
