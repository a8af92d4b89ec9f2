"""Fitted DA-INR models saved to a file and loaded back to render again without refitting.

``dainr recon --save-model FILE`` writes one file for all the slices it reconstructed; ``dainr render FILE`` renders
them again (:mod:`dainr.recon.rendering`): the same pixels as the fit that saved them (on the same kind of device),
or other frame counts, matrices and the motion series.

File format (``torch.save`` of plain values only, read back with ``torch.load(weights_only=True)``, which refuses
anything else: loading never runs code from the file)::

    {"format": "dainr-fitted-model", "format_version": 1,
     "versions": {"dainr": str, "torch": str},
     "header_xml": str,                       # the raw data's ISMRMRD header, written to the rendered image files
     "series_index": int,                     # image_series_index the images were written with
     "slices": [{
        "config": dict,                       # the slice's whole config (Config.to_dict)
        "grid_backend": str,                  # the grid backend the weights are laid out for (torch or tcnn)
        "feature_dim": int, "weights": {name: tensor},   # the network (state_dict, CPU)
        "features": tensor (F, C, h, w) float32 | None, "support": tensor (H, W) bool, "scale": float,
        "n_frames": int, "train_frames": [int], "matrix": [H, W], "train_matrix": [h, w],
        "slice_index": int, "image_index_start": int,
        "geometry": {fov_mm, position, read_dir, phase_dir, slice_dir, patient_table_position: [3 floats]},
        "frame_headers": tensor (F, 340) uint8 | None,   # each frame's reference ISMRMRD acquisition header
     }, ...]}

A file of another ``format_version`` is refused in one line (:func:`load_models`), as is anything that is not such a
file. The features are stored at full precision so that the file renders exactly what the fit rendered; they make up
most of the file (``F × 128 × h × w × 4`` bytes per slice, about 190 MB for 23 frames at 128²).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dainr import __version__
from dainr.config import Config, config_from_dict
from dainr.data import CineData, SliceGeometry
from dainr.errors import ConfigError, DainrError, InputError
from dainr.recon.dainr_model import FittedDainr, build_model, load_weights

FORMAT = "dainr-fitted-model"
FORMAT_VERSION = 1


@dataclass
class SavedSlice:
    """One slice of a model file, ready to render.

    Attributes
    ----------
    fitted:
        The fitted model on the loading device.
    cine:
        The slice without its samples (:meth:`dainr.data.CineData.headers_only`): slice index, geometry and the
        per-frame acquisition headers the images are built from.
    image_index_start:
        ``image_index`` of its frame 0 as first written (:func:`dainr.mrd.image_index_start`).
    config:
        The config it was fitted with.
    """

    fitted: FittedDainr
    cine: CineData
    image_index_start: int
    config: Config


@dataclass
class ModelFile:
    """What :func:`load_models` returns.

    Attributes
    ----------
    slices:
        The saved slices, in the order they were reconstructed.
    header_xml:
        The raw data's ISMRMRD header.
    series_index:
        ``image_series_index`` the images were written with.
    versions:
        ``dainr`` and ``torch`` versions that wrote the file.
    """

    slices: list[SavedSlice]
    header_xml: str
    series_index: int
    versions: dict[str, str]


def slice_record(fitted: FittedDainr, config: Config, cine: CineData, image_index_start: int) -> dict[str, Any]:
    """The plain-value record of one fitted slice (tensors copied to the CPU; see the module docstring)."""
    refs = cine.frame_refs
    headers = None
    if refs:
        headers = torch.stack([torch.frombuffer(bytearray(bytes(r)), dtype=torch.uint8) for r in refs])
    return {
        "config": config.to_dict(),
        "grid_backend": fitted.model.grid.backend,
        "feature_dim": int(fitted.model.feature_dim),
        "weights": {k: v.detach().cpu().clone() for k, v in fitted.model.state_dict().items()},
        "features": None if fitted.features is None else fitted.features.detach().cpu().float().clone(),
        "support": fitted.support.detach().cpu().clone(),
        "scale": float(fitted.scale),
        "n_frames": int(fitted.n_frames),
        "train_frames": [int(f) for f in fitted.train_frames],
        "matrix": [int(v) for v in fitted.matrix],
        "train_matrix": [int(v) for v in fitted.train_matrix],
        "slice_index": int(cine.slice_index),
        "image_index_start": int(image_index_start),
        "geometry": {k: [float(x) for x in v] for k, v in dataclasses.asdict(cine.geometry).items()},
        "frame_headers": headers,
    }


def save_models(path: str | os.PathLike, records: list[dict[str, Any]], header_xml: bytes | str,
                series_index: int = 1) -> Path:
    """Write the slice records (:func:`slice_record`) to ``path`` (replaced atomically)."""
    path = Path(path)
    xml = header_xml.decode("utf-8", "replace") if isinstance(header_xml, bytes) else str(header_xml)
    data = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "versions": {"dainr": str(__version__), "torch": str(torch.__version__)},
            "header_xml": xml.rstrip("\0"), "series_index": int(series_index), "slices": list(records)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        torch.save(data, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"model file {path} does not exist")
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive
        raise InputError(f"{path} is not a DA-INR model file (not a PyTorch archive); write one with dainr recon "
                         "--save-model")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(f"{path} is refused: it holds Python objects other than tensors and plain values (a DA-INR "
                         "model file holds none)") from None
    except Exception as e:  # not a torch file at all (zip or pickle errors of many kinds)
        raise InputError(f"{path} is not a DA-INR model file ({type(e).__name__}); write one with dainr recon "
                         "--save-model") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path} is not a DA-INR model file (no '{FORMAT}' tag); write one with dainr recon "
                         "--save-model")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(f"{path} is a DA-INR model file of format version {version}, this dainr {__version__} reads "
                         f"version {FORMAT_VERSION}: render it with the dainr that wrote it "
                         f"({data.get('versions', {}).get('dainr', 'unknown')}) or fit again")
    return data


def _fitted(record: dict[str, Any], device: torch.device) -> tuple[FittedDainr, Config]:
    tree = record["config"]
    tree["dainr"]["grid"]["backend"] = record["grid_backend"]  # the layout the weights were saved in
    cfg = config_from_dict(tree)
    model = build_model(cfg.dainr, int(record["feature_dim"])).to(device)
    load_weights(model, record["weights"], "the saved weights")
    model.eval()
    feats = record["features"]
    fitted = FittedDainr(model=model, config=cfg.dainr, n_frames=int(record["n_frames"]),
                         train_frames=np.asarray(record["train_frames"], dtype=np.int64),
                         matrix=tuple(int(v) for v in record["matrix"]),
                         train_matrix=tuple(int(v) for v in record["train_matrix"]),
                         features=None if feats is None else feats.to(device),
                         support=record["support"].to(device), scale=float(record["scale"]))
    return fitted, cfg


def load_models(path: str | os.PathLike, device: torch.device | str = "cpu") -> ModelFile:
    """Load a model file written by :func:`save_models` onto ``device``.

    Raises
    ------
    InputError
        One line: the file is missing, not a DA-INR model file, holds anything but tensors and plain values, is of
        another format version, or is damaged.
    ConfigError
        Its config is not one this dainr accepts, or its grid backend is not available here.
    """
    path = Path(path)
    data = _read(path)
    device = torch.device(device)
    slices = []
    try:
        for record in data["slices"]:
            fitted, cfg = _fitted(record, device)
            headers = record["frame_headers"]
            geometry = SliceGeometry(**{k: tuple(v) for k, v in record["geometry"].items()})
            cine = CineData.headers_only(
                n_frames=fitted.n_frames, matrix=fitted.matrix, slice_index=int(record["slice_index"]),
                geometry=geometry, frame_refs=None if headers is None else [bytes(h.numpy()) for h in headers])
            slices.append(SavedSlice(fitted=fitted, cine=cine, image_index_start=int(record["image_index_start"]),
                                     config=cfg))
    except DainrError as e:
        raise type(e)(f"model file {path}: {e}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise InputError(f"model file {path} is damaged ({type(e).__name__}: {e})") from None
    if not slices:
        raise InputError(f"model file {path} holds no slice")
    return ModelFile(slices=slices, header_xml=str(data["header_xml"]), series_index=int(data["series_index"]),
                     versions=dict(data["versions"]))


class FittedStack:
    """The fitted models of a stack's slices, reconstructed one after the other: the weights of the last one for a
    warm start of the next, and the records to save.

    Parameters
    ----------
    save:
        Keep every slice's record for :meth:`save` (``--save-model``).
    warm_start:
        Hand each slice the previous slice's weights (``--warm-start``).
    """

    def __init__(self, save: bool = False, warm_start: bool = False):
        self.records: list[dict[str, Any]] = []
        self.save_models, self.warm_start = save, warm_start
        self._last: dict[str, torch.Tensor] | None = None

    @property
    def keep_model(self) -> bool:
        """Whether a reconstruction must return its fitted model."""
        return self.save_models or self.warm_start

    def init_state(self) -> dict[str, torch.Tensor] | None:
        """The weights the next slice starts from: the previous slice's with a warm start, else None."""
        return self._last if self.warm_start else None

    def add(self, result, config: Config, cine: CineData, image_index_start: int) -> None:
        """Take the fitted model of a slice's :class:`~dainr.data.ReconResult` (and release it from the result, so
        the device memory it holds is freed with the next slice)."""
        fitted = result.fitted
        if fitted is None:
            raise ConfigError(f"slice {cine.slice_index} has no fitted model to keep (method {result.method}); "
                              "--save-model and --warm-start need method dainr")
        if self.warm_start:
            self._last = {k: v.detach().cpu().clone() for k, v in fitted.model.state_dict().items()}
        if self.save_models:
            self.records.append(slice_record(fitted, config, cine, image_index_start))
        result.fitted = None

    def save(self, path: str | os.PathLike, header_xml: bytes | str, series_index: int = 1) -> Path:
        """Write the kept slices to ``path`` (:func:`save_models`)."""
        return save_models(path, self.records, header_xml, series_index)
