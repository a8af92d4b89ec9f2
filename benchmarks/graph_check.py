"""Which parts of a DA-INR step can be captured in a CUDA graph (diagnostic for the speed work)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from dainr.config import load_config  # noqa: E402
from dainr.model import centred_coords  # noqa: E402
from dainr.physics import MultiCoilNufft, radial_trajectory  # noqa: E402
from dainr.recon.dainr_model import build_model  # noqa: E402


def try_capture(name, fn):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    try:
        with torch.cuda.graph(g):
            fn()
        g.replay()
        torch.cuda.synchronize()
        print(f"{name}: capturable")
    except Exception as e:  # noqa: BLE001
        print(f"{name}: NOT capturable: {str(e).splitlines()[0]}")
        torch.cuda.synchronize()


dev = torch.device("cuda")
c = load_config("fast").dainr
model = build_model(c, 128).to(dev)
xy = centred_coords(128, 128, dev)
feats = torch.randn(4, 128 * 128, 128, device=dev)
t = torch.rand(4, device=dev)
traj = torch.from_numpy(radial_trajectory("goldenangle", 30, 13, 256)).to(dev)
maps = torch.randn(8, 128, 128, dtype=torch.complex64, device=dev)
op = MultiCoilNufft(traj, maps)
op_csr = MultiCoilNufft(traj, maps, backend="csr")
idx = torch.tensor([0, 3, 5, 7], device=dev)
grid = model.canonical.grid if hasattr(model, "canonical") else None
pts = torch.rand(4 * 128 * 128, 2, device=dev, requires_grad=True)
if grid is not None:
    try_capture("grid fwd+bwd", lambda: grid(pts).sum().backward())
try_capture("render fwd", lambda: model.render(t, xy, feats, image_shape=(128, 128)))
try_capture("render fwd+bwd", lambda: model.render(t, xy, feats, image_shape=(128, 128)).abs().sum().backward())
x = torch.randn(4, 128, 128, dtype=torch.complex64, device=dev, requires_grad=True)
try_capture("nufft fwd+bwd", lambda: op(x, idx).abs().sum().backward())
try_capture("nufft csr fwd+bwd", lambda: op_csr(x, idx).abs().sum().backward())
