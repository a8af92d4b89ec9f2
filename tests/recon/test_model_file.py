"""Saved fitted models (dainr.recon.model_file): the same pixels after loading, and one-line refusals."""

from __future__ import annotations

import pickle
import zipfile

import numpy as np
import pytest
import torch

from dainr.config import load_config
from dainr.errors import ConfigError, InputError
from dainr.recon import reconstruct
from dainr.recon.model_file import FORMAT, FittedStack, load_models, save_models, slice_record
from dainr.recon.rendering import RenderRequest, render_slice
from dainr.simulate import simulate


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A 2-step cpu-test fit of a 16² phantom (spatial interpolation on, so the features are resampled), saved."""
    ser = simulate("phantom", matrix=16, frames=3, coils=2, spokes=7, seed=1)
    cine = ser.slices[0]
    cfg = load_config("cpu-test", overrides=["dainr.steps=2", "dainr.sr_ratio=2"])
    res = reconstruct(cine, cfg, keep_model=True, render=RenderRequest(motion=True))
    path = tmp_path_factory.mktemp("model") / "model.pt"
    save_models(path, [slice_record(res.fitted, cfg, cine, 7)], b"<ismrmrdHeader/>\0", series_index=4)
    return path, res, cine


def test_loaded_model_renders_the_same_pixels(saved):
    path, res, cine = saved
    model_file = load_models(path)
    (s,) = model_file.slices
    assert model_file.series_index == 4 and model_file.header_xml == "<ismrmrdHeader/>"
    assert s.image_index_start == 7 and s.cine.slice_index == cine.slice_index
    assert s.cine.geometry == cine.geometry and s.cine.n_frames == 3 and s.config.dainr.sr_ratio == 2
    again = render_slice(s.fitted, RenderRequest(motion=True), cine.geometry.fov_mm[:2])
    assert np.array_equal(again.images, res.images) and np.array_equal(again.motion, res.motion)
    assert model_file.versions["torch"] == str(torch.__version__)


def _refusal(path) -> str:
    with pytest.raises(InputError) as e:
        load_models(path)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_foreign_and_bad_files_are_refused_in_one_line(saved, tmp_path):
    path, _, _ = saved
    data = torch.load(path, weights_only=True)
    assert "does not exist" in _refusal(tmp_path / "none.pt")
    (tmp_path / "text.pt").write_text("not a model")
    assert "not a PyTorch archive" in _refusal(tmp_path / "text.pt")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as z:
        z.writestr("a.txt", "hello")
    assert "is not a DA-INR model file" in _refusal(tmp_path / "other.zip")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "foreign.pt")
    assert f"no '{FORMAT}' tag" in _refusal(tmp_path / "foreign.pt")
    torch.save({**data, "format_version": 99}, tmp_path / "future.pt")
    assert "format version 99" in _refusal(tmp_path / "future.pt")
    torch.save({**data, "slices": [{"config": data["slices"][0]["config"]}]}, tmp_path / "damaged.pt")
    assert "is damaged" in _refusal(tmp_path / "damaged.pt")
    torch.save({**data, "slices": []}, tmp_path / "empty.pt")
    assert "holds no slice" in _refusal(tmp_path / "empty.pt")


class _Payload:
    def __reduce__(self):
        return (print, ("this ran while loading",))


def test_arbitrary_python_objects_are_never_run(tmp_path, capsys):
    torch.save({"format": FORMAT, "format_version": 1, "x": _Payload()}, tmp_path / "evil.pt")
    assert "Python objects other than tensors" in _refusal(tmp_path / "evil.pt")
    assert "this ran" not in capsys.readouterr().out
    with open(tmp_path / "pickled.pt", "wb") as f:  # a bare pickle: not even a torch archive
        pickle.dump({"format": FORMAT}, f)
    assert "not a PyTorch archive" in _refusal(tmp_path / "pickled.pt")


def test_bad_config_or_weights_name_the_file(saved, tmp_path):
    path, _, _ = saved
    data = torch.load(path, weights_only=True)
    record = dict(data["slices"][0])
    record["config"] = {**record["config"], "dainr": {**record["config"]["dainr"], "steps": -1}}
    torch.save({**data, "slices": [record]}, tmp_path / "badcfg.pt")
    with pytest.raises(ConfigError, match="badcfg.pt: config key 'dainr.steps'"):
        load_models(tmp_path / "badcfg.pt")
    record = dict(data["slices"][0])
    record["weights"] = {k: v[..., :1] for k, v in record["weights"].items()}
    torch.save({**data, "slices": [record]}, tmp_path / "badweights.pt")
    with pytest.raises(ConfigError, match="saved weights belong to a network of other settings"):
        load_models(tmp_path / "badweights.pt")


def test_fitted_stack_needs_a_fitted_model():
    cine = simulate("phantom", matrix=16, frames=3, coils=2, spokes=5, seed=0).slices[0]
    cfg = load_config("cpu-test", overrides=["method=adjoint"])
    stack = FittedStack(save=True)
    assert stack.keep_model and stack.init_state() is None
    with pytest.raises(ConfigError, match="need method dainr"):
        stack.add(reconstruct(cine, cfg), cfg, cine, 1)
