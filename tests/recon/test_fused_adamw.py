"""FusedAdamW: torch.optim.AdamW(fused=True)'s updates bit for bit, without importing TorchDynamo."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from dainr.recon.dainr_step import FusedAdamW, set_lr


def _params(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*shape, generator=g)) for shape in ((64, 2), (7, 5), (3,))]


@pytest.mark.parametrize("tensor_lr", [False, True])
def test_same_updates_as_torch_fused_adamw(tensor_lr):
    ours, theirs = _params(0), _params(0)

    def groups(ps):
        gs = [{"params": ps[:1], "lr_scale": 5.0}, {"params": ps[1:], "lr_scale": 1.0}]
        for g in gs:
            g["lr"] = torch.tensor(2e-3 * g["lr_scale"]) if tensor_lr else 2e-3 * g["lr_scale"]
        return gs

    a = FusedAdamW(groups(ours), weight_decay=0.01)
    b = torch.optim.AdamW(groups(theirs), lr=2e-3, weight_decay=0.01, fused=True)
    gen = torch.Generator().manual_seed(1)
    for step in range(6):
        if step == 3:  # a changed learning rate reaches both
            set_lr(a, 1e-3)
            set_lr(b, 1e-3)
        grads = [torch.randn(p.shape, generator=gen) for p in ours]
        for opt, ps in ((a, ours), (b, theirs)):
            opt.zero_grad(set_to_none=True)
            for p, gr in zip(ps, grads):
                p.grad = gr.clone()
            opt.step()
        for p, q in zip(ours, theirs):
            assert torch.equal(p, q), step
    assert all(float(a.state[p]["step"]) == 6 for p in ours)


def test_parameters_without_gradient_are_left_alone():
    ps = _params(2)
    before = ps[2].detach().clone()
    opt = FusedAdamW([{"params": ps, "lr": 1e-2}], weight_decay=0.1)
    for p in ps[:2]:
        p.grad = torch.ones_like(p)
    opt.step()
    assert torch.equal(ps[2], before) and ps[2] not in opt.state
    assert not torch.equal(ps[0], _params(2)[0])


def test_no_torchdynamo_import():
    code = ("import sys, torch\nfrom dainr.recon.dainr_step import FusedAdamW\n"
            "p = torch.nn.Parameter(torch.ones(4))\nopt = FusedAdamW([{'params': [p], 'lr': 1e-3}], 0.01)\n"
            "p.grad = torch.ones(4)\nopt.step()\nopt.zero_grad()\n"
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
