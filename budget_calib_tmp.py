import json, sys, time
import numpy as np, torch
from dainr.config import load_config
from dainr.data import CineData
from dainr.physics import radial_trajectory
from dainr.recon import reconstruct
from dainr.recon.budget import SeriesShape, estimate_memory

def cine(m, f, c, s):
    ns = 2 * m
    rng = np.random.default_rng(0)
    k = (rng.standard_normal((f, c, s, ns)) + 1j * rng.standard_normal((f, c, s, ns))).astype(np.complex64)
    return CineData(kspace=k, traj=radial_trajectory("goldenangle", f, s, ns), matrix=(m, m))

cases = [] if __name__ != '__main__' else [("fast", 128, 20, 8, 13, 4, []), ("fast", 128, 20, 8, 13, 1, []), ("fast", 256, 20, 12, 24, 4, []),
         ("paper", 128, 20, 8, 13, 1, []), ("fast", 256, 30, 16, 32, 8, []),
         ("fast", 192, 24, 8, 16, 4, ["dainr.features.enabled=false"]),
         ("fast", 256, 20, 12, 24, 4, ["dainr.sr_ratio=2"]),
         ("fast", 256, 30, 16, 32, 1, ["method=cgsense"])]
out = []
for preset in [] if __name__ != '__main__' else [0]:
  pass
for preset, m, f, c, s, b, extra in cases:
    cfg = load_config(preset, None, [f"dainr.frames_per_step={b}", "dainr.steps=20", "device=cuda", *extra])
    x = cine(m, f, c, s)
    torch.cuda.empty_cache(); torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    t = time.perf_counter()
    r = reconstruct(x, cfg)
    torch.cuda.synchronize()
    est = estimate_memory(SeriesShape.of(x), cfg)
    row = dict(case=[preset, m, f, c, s, b, extra], peak_alloc=(torch.cuda.max_memory_allocated() - base) / 2**20,
               peak_reserved=torch.cuda.max_memory_reserved() / 2**20, est_total=est.total / 2**20,
               est_parts={k: round(v / 2**20, 1) for k, v in est.__dict__.items()},
               fit_s=r.info.get("fit_seconds"), secs=round(time.perf_counter() - t, 2), graph=r.info.get("cuda_graph"))
    print(json.dumps(row), flush=True)
    del r
