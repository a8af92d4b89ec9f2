import torch, logging
logging.basicConfig(level=logging.DEBUG)
from dainr.config import load_config
from dainr.recon.budget import fit_to_device, device_free_bytes
from budget_calib_tmp import cine
dev = torch.device("cuda")
print("free", device_free_bytes(dev) / 2**30)
x = cine(256, 30, 16, 32)
c = fit_to_device(x, load_config("fast", None, ["dainr.frames_per_step=8"]), dev)
print("fps", c.dainr.frames_per_step)
hog = torch.empty(int(device_free_bytes(dev) - 6 * 2**30), dtype=torch.uint8, device=dev)
c = fit_to_device(x, load_config("fast", None, ["dainr.frames_per_step=8"]), dev)
print("fps with 6 GiB free", c.dainr.frames_per_step)
from dainr.recon import reconstruct
r = reconstruct(x, load_config("fast", None, [f"dainr.frames_per_step={c.dainr.frames_per_step}", "dainr.steps=20", "device=cuda"]))
print("ran", r.info.get("frames_per_step_after_oom"), torch.cuda.max_memory_allocated() / 2**30)
