"""Datasets as uint8 tensors: where they are read from, how they are decoded, the tensor cache.

Sources (``<dir>`` = :func:`resolve_data_dir`):

* ``cifar10`` / ``cifar100``: torchvision's pickled batches in ``<dir>/cifar-10-batches-py``
  or ``<dir>/cifar-100-python`` (downloaded there only with ``download=True``); not cached.
* ``cifar10-jpeg``: the folder ``<dir>/cifar10-jpeg/{train,test}/<class>/*.jpg`` or, when that
  is absent, the archive ``<dir>/cifar10-jpeg.tar.gz`` read as a stream (never extracted).
  Class folders sorted by name give the standard label order (airplane=0 ... truck=9).
* ``tinyimagenet``: ``<dir>/tiny-imagenet-200/`` extracted (``wnids.txt``,
  ``train/<wnid>/images/*.JPEG``, ``val/images`` + ``val/val_annotations.txt``) or, when absent,
  the archives ``train-{0,1,2,3}.tar.gz`` + ``val.tar.gz`` in that folder, read as streams.
  ``val`` is the test split. Class order = **sorted wnids** (torchvision ImageFolder
  convention), not the order of ``wnids.txt``. Grayscale JPEGs are converted to RGB.
* ``synthetic``: :func:`make_synthetic` with its defaults (generated, for tests/CI).

Images within a split are ordered by (label, file name in natural order); Tiny ImageNet val by
its image number. Decoded JPEG sets are cached as one tensor file per split in
:func:`resolve_cache_dir`, keyed by a checksum of the source (sha256 of the archives, or of the
file list with sizes and mtimes for a folder).
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import tarfile
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Literal, Sequence

import torch

from ..progress import progress
from .info import get_info

__all__ = ["ImageSet", "DatasetNotFoundError", "resolve_data_dir", "resolve_cache_dir", "load",
           "make_synthetic", "channel_stats", "check_report"]

Split = Literal["train", "test"]
SPLITS: tuple[str, ...] = ("train", "test")
CACHE_FORMAT = 1
_IMAGE_EXT = (".jpg", ".jpeg", ".png")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not at any of the places searched; the message lists them and the remedies."""


@dataclass(frozen=True, eq=False)
class ImageSet:
    """One split of a dataset held in memory.

    images: uint8 [N,3,H,W] (RGB, 0..255); labels: int64 [N]; classes: class names indexed by
    label; dataset: dataset name (a key of ``DATASETS``); split: "train" or "test";
    source: where it was read from (for provenance).
    """

    images: torch.Tensor
    labels: torch.Tensor
    classes: tuple[str, ...]
    dataset: str
    split: str
    source: str = ""

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def subset(self, idx: torch.Tensor | Sequence[int]) -> "ImageSet":
        """The images at ``idx`` (int64 indices), same metadata."""
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.images.device)
        return ImageSet(self.images[idx], self.labels[idx.to(self.labels.device)], self.classes,
                        self.dataset, self.split, self.source)


# ---------------------------------------------------------------------------------- locations

def _user_cache_root() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "dynn"


def _data_dir_and_origin(data_dir: str | os.PathLike | None) -> tuple[Path, str]:
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser(), "given by --data-dir / data_dir"
    env = os.environ.get("DYNN_DATA_DIR")
    if env:
        return Path(env).expanduser(), "from DYNN_DATA_DIR"
    return _user_cache_root() / "data", "default per-user folder"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data folder: ``data_dir`` if given, else env ``DYNN_DATA_DIR``, else
    ``$XDG_CACHE_HOME/dynn/data`` (default ``~/.cache/dynn/data``). Not created."""
    return _data_dir_and_origin(data_dir)[0]


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The decoded-tensor cache folder: ``cache_dir`` if given, else env ``DYNN_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/dynn/tensors`` (default ``~/.cache/dynn/tensors``). Never the data dir."""
    if cache_dir is not None and str(cache_dir) != "":
        return Path(cache_dir).expanduser()
    env = os.environ.get("DYNN_CACHE_DIR")
    return Path(env).expanduser() if env else _user_cache_root() / "tensors"


def _not_found(name: str, root: Path, origin: str, searched: Sequence[tuple[Path, str]],
               download_hint: bool = False) -> DatasetNotFoundError:
    info = get_info(name)
    lines = [f"dataset {name!r} ({info.label}) not found in data dir {root} ({origin}). Searched:"]
    for p, what in searched:
        lines.append(f"  {p}  [{what}: {'present' if p.exists() else 'missing'}]")
    how = ("Provide it with --data-dir DIR or the DYNN_DATA_DIR environment variable "
           "pointing at the folder that holds it")
    how += ", or pass download=True to fetch it there." if download_hint else "."
    lines.append(how)
    return DatasetNotFoundError("\n".join(lines))


# ---------------------------------------------------------------------------------- helpers

def _natkey(s: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s))


def _sha256_files(paths: Sequence[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()


def _digest_listing(root: Path, files: Sequence[Path]) -> str:
    """Cheap folder checksum: sha256 of (relative path, size, mtime_ns) of every file."""
    h = hashlib.sha256()
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(root).as_posix()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _iter_tar(path: Path):
    """Yield (posix member path, bytes) for regular files of a tar.gz read as a stream."""
    with tarfile.open(path, mode="r|gz") as tf:
        for m in tf:
            if not m.isfile():
                continue
            f = tf.extractfile(m)
            if f is None:
                continue
            name = m.name[2:] if m.name.startswith("./") else m.name
            yield name, f.read()


def _decode_one_pil(blob: bytes) -> torch.Tensor:
    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(blob)) as im:
        arr = np.asarray(im.convert("RGB"))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).contiguous()


def _decode_images(blobs: Sequence[bytes], names: Sequence[str], desc: str = "decode") -> torch.Tensor:
    """Decode encoded images (JPEG via torchvision, anything else via PIL) to uint8 [N,3,H,W].

    Grayscale/CMYK are converted to RGB. All images must share one size (ValueError otherwise).
    """
    try:
        with warnings.catch_warnings():  # torchvision 0.29 flags its image codecs as deprecated
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchvision.io import ImageReadMode, decode_jpeg as _tv_decode
    except ImportError:  # a torchvision without image codecs: PIL decodes everything
        _tv_decode, ImageReadMode = None, None

    def decode_jpeg(data, mode=None):
        if _tv_decode is None:
            raise RuntimeError("torchvision.io.decode_jpeg unavailable")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return _tv_decode(data, mode=mode)

    n = len(blobs)
    if n == 0:
        raise ValueError(f"{desc}: no images to decode")
    out: torch.Tensor | None = None
    chunk = 1000
    for start in progress(range(0, n, chunk), desc=desc, unit="kimg"):
        part = blobs[start:start + chunk]
        try:
            imgs = decode_jpeg([torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in part],
                               mode=ImageReadMode.RGB if ImageReadMode else None)
        except Exception:  # non-JPEG or unusual JPEG in this chunk: per image, PIL fallback
            imgs = []
            for j, b in enumerate(part):
                try:
                    imgs.append(decode_jpeg(torch.frombuffer(bytearray(b), dtype=torch.uint8),
                                            mode=ImageReadMode.RGB if ImageReadMode else None))
                except Exception:
                    try:
                        imgs.append(_decode_one_pil(b))
                    except Exception as e:
                        raise ValueError(f"{names[start + j]}: cannot decode image ({e})") from e
        for j, im in enumerate(imgs):
            if out is None:
                out = torch.empty((n, *im.shape), dtype=torch.uint8)
            if im.shape != out.shape[1:]:
                raise ValueError(f"{names[start + j]}: image shape {tuple(im.shape)} differs from "
                                 f"{tuple(out.shape[1:])} of the first image")
            out[start + j] = im
    assert out is not None
    return out


# ---------------------------------------------------------------------------------- sources

@dataclass
class _Source:
    """A located (not yet read) JPEG source: ``read()`` -> (blobs, names, labels, classes)."""

    description: str
    digest: Callable[[], str]
    read: Callable[[], tuple[list[bytes], list[str], list[int], tuple[str, ...]]]
    #: for an archive holding every split: one pass -> {split: read() result}, so that the
    #: other split is decoded and cached on the way (same digest, the key differs by split)
    read_all: Callable[[], dict[str, tuple[list[bytes], list[str], list[int], tuple[str, ...]]]] | None = None


def _records_to_source(records: list[tuple[str, str, bytes]], classes: Sequence[str] | None = None):
    """records (class name, file name, bytes) -> blobs/names/labels sorted by (label, natural name)."""
    classes = tuple(sorted({c for c, _, _ in records})) if classes is None else tuple(classes)
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted({c for c, _, _ in records if c not in index})
    if unknown:
        raise ValueError(f"images of classes not in the class list: {unknown[:5]}")
    records = sorted(records, key=lambda r: (index[r[0]], _natkey(r[1])))
    return ([r[2] for r in records], [f"{r[0]}/{r[1]}" for r in records],
            [index[r[0]] for r in records], classes)


def _check_classes(name: str, classes: Sequence[str], where: str) -> None:
    k = get_info(name).num_classes
    if len(classes) != k:
        raise ValueError(f"{name}: found {len(classes)} classes in {where}, expected {k}")


def _is_image(fname: str) -> bool:
    return fname.lower().endswith(_IMAGE_EXT)


def _locate_cifar10_jpeg(root: Path, origin: str, split: str) -> _Source:
    folder = root / "cifar10-jpeg" / split
    archive = root / "cifar10-jpeg.tar.gz"
    if folder.is_dir():
        files = sorted((p for p in folder.glob("*/*") if p.is_file() and _is_image(p.name)),
                       key=lambda p: (p.parent.name, _natkey(p.name)))

        def read():
            recs = [(p.parent.name, p.name, p.read_bytes()) for p in progress(files, desc="read")]
            out = _records_to_source(recs)
            _check_classes("cifar10-jpeg", out[3], str(folder))
            return out

        return _Source(f"folder {folder}", lambda: _digest_listing(folder, files), read)
    if archive.is_file():
        def read_all():
            recs: dict[str, list[tuple[str, str, bytes]]] = {sp: [] for sp in SPLITS}
            for member, data in progress(_iter_tar(archive), desc=f"read {archive.name}", unit="file"):
                parts = PurePosixPath(member).parts
                if len(parts) >= 3 and parts[-3] in recs and _is_image(parts[-1]):
                    recs[parts[-3]].append((parts[-2], parts[-1], data))
            out = {}
            for sp, r in recs.items():
                if r:
                    out[sp] = _records_to_source(r)
                    _check_classes("cifar10-jpeg", out[sp][3], f"{archive}:{sp}")
            if split not in out:
                raise ValueError(f"cifar10-jpeg: no {split} images in {archive}")
            return out

        return _Source(f"archive {archive}", lambda: _sha256_files([archive]),
                       lambda: read_all()[split], read_all)
    raise _not_found("cifar10-jpeg", root, origin, [(folder, "extracted folder"), (archive, "archive")])


def _parse_wnids(text: str) -> tuple[str, ...]:
    return tuple(sorted({w.strip() for w in text.splitlines() if w.strip()}))


def _parse_val_annotations(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) >= 2:
            out[parts[0].strip()] = parts[1].strip()
    return out


def _val_records(images: dict[str, bytes], annotations: dict[str, str]) -> list[tuple[str, str, bytes]]:
    missing = sorted(set(images) - set(annotations))
    if missing:
        raise ValueError(f"tinyimagenet val: {len(missing)} images without an annotation, e.g. {missing[0]}")
    return [(annotations[f], f, b) for f, b in images.items()]


def _val_sort(blobs_names_labels_classes):
    """Order val images by their file number (val_0, val_1, ...) instead of by class."""
    blobs, names, labels, classes = blobs_names_labels_classes
    order = sorted(range(len(names)), key=lambda i: _natkey(names[i].split("/", 1)[1]))
    return ([blobs[i] for i in order], [names[i] for i in order], [labels[i] for i in order], classes)


def _locate_tinyimagenet(root: Path, origin: str, split: str) -> _Source:
    base = root / "tiny-imagenet-200"
    wnids = base / "wnids.txt"
    shards = [base / f"train-{i}.tar.gz" for i in range(4)]
    val_arch = base / "val.tar.gz"
    if split == "train":
        folder = base / "train"
        folder_needed = [wnids, folder]
        arch_needed = [*shards, val_arch]  # val.tar.gz holds wnids.txt
    else:
        folder = base / "val"
        folder_needed = [wnids, folder / "images", folder / "val_annotations.txt"]
        arch_needed = [val_arch]

    if all(p.exists() for p in folder_needed):
        if split == "train":
            files = sorted((p for p in folder.glob("*/images/*") if p.is_file() and _is_image(p.name)),
                           key=lambda p: (p.parent.parent.name, _natkey(p.name)))
            extra = [wnids]
        else:
            files = sorted((p for p in (folder / "images").iterdir() if p.is_file() and _is_image(p.name)),
                           key=lambda p: _natkey(p.name))
            extra = [wnids, folder / "val_annotations.txt"]

        def read():
            classes = _parse_wnids(wnids.read_text())
            _check_classes("tinyimagenet", classes, str(wnids))
            if split == "train":
                recs = [(p.parent.parent.name, p.name, p.read_bytes()) for p in progress(files, desc="read")]
                return _records_to_source(recs, classes)
            ann = _parse_val_annotations((folder / "val_annotations.txt").read_text())
            imgs = {p.name: p.read_bytes() for p in progress(files, desc="read")}
            return _val_sort(_records_to_source(_val_records(imgs, ann), classes))

        return _Source(f"folder {folder}", lambda: _digest_listing(base, [*extra, *files]), read)

    if all(p.is_file() for p in arch_needed):
        def read():
            classes: tuple[str, ...] | None = None
            ann: dict[str, str] | None = None
            val_imgs: dict[str, bytes] = {}
            recs: list[tuple[str, str, bytes]] = []
            for arch in arch_needed:
                for member, data in progress(_iter_tar(arch), desc=f"read {arch.name}", unit="file"):
                    parts = PurePosixPath(member).parts
                    if parts[-1] == "wnids.txt":
                        classes = _parse_wnids(data.decode())
                    elif split == "test" and parts[-1] == "val_annotations.txt":
                        ann = _parse_val_annotations(data.decode())
                    elif not _is_image(parts[-1]) or len(parts) < 3 or parts[-2] != "images":
                        continue
                    elif split == "train" and len(parts) >= 4 and parts[-4] == "train":
                        recs.append((parts[-3], parts[-1], data))
                    elif split == "test" and parts[-3] == "val":
                        val_imgs[parts[-1]] = data
            if classes is None:
                raise ValueError(f"tinyimagenet: no wnids.txt in {val_arch}")
            _check_classes("tinyimagenet", classes, f"{val_arch}:wnids.txt")
            if split == "train":
                return _records_to_source(recs, classes)
            if ann is None:
                raise ValueError(f"tinyimagenet: no val/val_annotations.txt in {val_arch}")
            return _val_sort(_records_to_source(_val_records(val_imgs, ann), classes))

        return _Source(f"archives {', '.join(p.name for p in arch_needed)} in {base}",
                       lambda: _sha256_files(arch_needed), read)

    searched = [(p, "extracted") for p in folder_needed] + [(p, "archive") for p in arch_needed]
    raise _not_found("tinyimagenet", root, origin, searched)


_LOCATORS = {"cifar10-jpeg": _locate_cifar10_jpeg, "tinyimagenet": _locate_tinyimagenet}


# ---------------------------------------------------------------------------------- cache

def _cache_file(cache_dir: Path, name: str, split: str, digest: str) -> Path:
    key = hashlib.sha256(f"{CACHE_FORMAT}|{name}|{split}|{digest}".encode()).hexdigest()[:16]
    return cache_dir / f"{name}-{split}-{key}.pt"


def _read_cache(path: Path, name: str, split: str, digest: str) -> ImageSet | None:
    """The cached ImageSet, or None when absent; a damaged file is reported and ignored."""
    if not path.is_file():
        return None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(obj, dict):
            raise ValueError(f"payload is {type(obj).__name__}, not dict")
        if obj.get("format") != CACHE_FORMAT or obj.get("digest") != digest:
            raise ValueError("format or source checksum mismatch")
        images, labels, classes = obj["images"], obj["labels"], tuple(obj["classes"])
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images have dtype {images.dtype}, shape {tuple(images.shape)}")
        if labels.dtype != torch.int64 or labels.shape != (images.shape[0],):
            raise ValueError(f"labels have dtype {labels.dtype}, shape {tuple(labels.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= len(classes)):
            raise ValueError("labels out of range of the class list")
        return ImageSet(images, labels, classes, name, split, str(obj.get("source", "")))
    except Exception as e:  # noqa: BLE001 - any failure means: rebuild
        warnings.warn(f"corrupt tensor cache {path} ({type(e).__name__}: {e}); rebuilding it",
                      RuntimeWarning, stacklevel=3)
        return None


def _write_cache(path: Path, s: ImageSet, digest: str) -> None:
    """Atomic write (temp file in the same folder + os.replace); warn if the folder is unwritable."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"format": CACHE_FORMAT, "digest": digest, "images": s.images, "labels": s.labels,
                   "classes": list(s.classes), "dataset": s.dataset, "split": s.split, "source": s.source}
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        warnings.warn(f"could not write tensor cache {path}: {e}", RuntimeWarning, stacklevel=3)
    finally:
        if tmp.exists():
            tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------- loaders

def make_synthetic(num_classes: int = 10, size: int = 32, n_train: int = 2000, n_test: int = 1000,
                   seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """Generated (train, test) ImageSets for tests/CI, dataset name ``synthetic``.

    Each class has its own base colour and a stripe pattern (frequency and orientation depend on
    the class), plus pixel noise, so a tiny CNN learns it in an epoch. Labels are balanced
    (round-robin, then shuffled). Deterministic for a given seed. images uint8 [N,3,size,size].
    """
    g = torch.Generator().manual_seed(int(seed))
    colours = torch.rand(num_classes, 3, generator=g) * 0.6 + 0.2
    cls = torch.arange(num_classes)
    freq = (1 + cls % 4).float()
    vertical = (cls // 4) % 2 == 1
    coords = torch.arange(size, dtype=torch.float32) / size

    def gen(n: int, split: str) -> ImageSet:
        labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=g)]
        yy = coords.view(1, size, 1).expand(n, size, size)
        xx = coords.view(1, 1, size).expand(n, size, size)
        c = torch.where(vertical[labels].view(n, 1, 1), xx, yy)
        pattern = 0.15 * torch.sin(2 * torch.pi * freq[labels].view(n, 1, 1) * c).unsqueeze(1)
        x = colours[labels].view(n, 3, 1, 1) + pattern + 0.08 * torch.randn(n, 3, size, size, generator=g)
        images = (x.clamp(0, 1) * 255).round().to(torch.uint8)
        classes = tuple(f"class_{i:02d}" for i in range(num_classes))
        return ImageSet(images, labels.long(), classes, "synthetic", split, f"make_synthetic(seed={seed})")

    return gen(n_train, "train"), gen(n_test, "test")


def _load_torchvision(name: str, split: str, root: Path, origin: str, download: bool) -> ImageSet:
    folder = root / ("cifar-10-batches-py" if name == "cifar10" else "cifar-100-python")
    if not download and not folder.is_dir():
        raise _not_found(name, root, origin, [(folder, "torchvision folder")], download_hint=True)
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    if download:
        root.mkdir(parents=True, exist_ok=True)
    ds = cls(root=str(root), train=(split == "train"), download=download)
    images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
    labels = torch.as_tensor(ds.targets, dtype=torch.long)
    return ImageSet(images, labels, tuple(ds.classes), name, split, f"torchvision {folder}")


def load(name: str, split: Split, data_dir: str | os.PathLike | None = None, download: bool = False,
         *, cache_dir: str | os.PathLike | None = None, use_cache: bool = True) -> ImageSet:
    """Load one split of a dataset as an :class:`ImageSet` (images uint8 [N,3,H,W] on CPU).

    name: a key of ``DATASETS``; split: "train" or "test" (Tiny ImageNet: its val split).
    A missing dataset raises :class:`DatasetNotFoundError` before anything is decoded. JPEG
    sources are decoded once and cached in :func:`resolve_cache_dir` (``use_cache=False`` skips);
    reading ``cifar10-jpeg.tar.gz`` decodes and caches both splits in its one pass.
    """
    get_info(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; accepted: {', '.join(SPLITS)}")
    if name == "synthetic":
        return make_synthetic()[SPLITS.index(split)]
    root, origin = _data_dir_and_origin(data_dir)
    if name in ("cifar10", "cifar100"):
        return _load_torchvision(name, split, root, origin, download)

    src = _LOCATORS[name](root, origin, split)  # raises DatasetNotFoundError
    digest = src.digest()
    path = _cache_file(resolve_cache_dir(cache_dir), name, split, digest)
    if use_cache:
        cached = _read_cache(path, name, split, digest)
        if cached is not None:
            return cached
    if use_cache and src.read_all is not None:
        todo = src.read_all()
        for other in [sp for sp in todo if sp != split]:
            if _cache_file(path.parent, name, other, digest).is_file():
                del todo[other]  # already cached: do not decode it again
    else:
        todo = {split: src.read()}
    result = None
    for sp, (blobs, names, labels, classes) in todo.items():
        images = _decode_images(blobs, names, desc=f"decode {name}/{sp}")
        s = ImageSet(images, torch.tensor(labels, dtype=torch.long), tuple(classes), name, sp,
                     f"{src.description} [{sp}]")
        if use_cache:
            _write_cache(_cache_file(path.parent, name, sp, digest), s, digest)
        if sp == split:
            result = s
    assert result is not None
    return result


# ---------------------------------------------------------------------------------- report

def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of x/255 over uint8 images [N,C,H,W].

    Exact: built from per-channel histograms of the 256 levels (no float accumulation error).
    """
    c = images.shape[1]
    hist = torch.zeros(c, 256, dtype=torch.float64)
    for i in range(0, images.shape[0], chunk):
        part = images[i:i + chunk]
        for k in range(c):
            hist[k] += torch.bincount(part[:, k].reshape(-1), minlength=256).cpu().double()
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    n = hist.sum(1).clamp_min(1)
    mean = (hist * levels).sum(1) / n
    std = ((hist * levels ** 2).sum(1) / n - mean ** 2).clamp_min(0).sqrt()
    return tuple(mean.tolist()), tuple(std.tolist())


def check_report(name: str, data_dir: str | os.PathLike | None = None, download: bool = False) -> str:
    """Printable summary of both splits: counts, per-class counts, per-channel mean/std of x/255."""
    info = get_info(name)
    lines = [f"{info.label}  [{name}]", f"data dir: {resolve_data_dir(data_dir)}"]
    for split in SPLITS:
        s = load(name, split, data_dir, download)
        expected = info.train_size if split == "train" else info.test_size
        _, _, h, w = s.images.shape
        counts = torch.bincount(s.labels, minlength=s.num_classes).tolist()
        mean, std = channel_stats(s.images)
        lines.append(f"{split}: {len(s)} images of 3x{h}x{w} (expected {expected}), "
                     f"{s.num_classes} classes; source: {s.source}")
        if s.num_classes <= 20:
            lines.append("  per class: " + ", ".join(f"{c}={k}" for c, k in zip(s.classes, counts)))
        elif min(counts) == max(counts):
            lines.append(f"  per class: {counts[0]} each")
        else:
            lo = [c for c, k in zip(s.classes, counts) if k == min(counts)][:5]
            lines.append(f"  per class: min {min(counts)} (e.g. {', '.join(lo)}), max {max(counts)}")
        lines.append("  mean (x/255): " + ", ".join(f"{v:.4f}" for v in mean))
        lines.append("  std  (x/255): " + ", ".join(f"{v:.4f}" for v in std))
    return "\n".join(lines)
