"""Record the example NoiseStore shipped in data/: a real (small) training run.

    .venv/bin/python data/make_example_store.py      # ~30 s on 2 CPU cores, needs torch

A 2-layer MLP (20-64-1, tanh) learns a fixed random teacher network (teacher-student
regression, 2048 training samples) by SGD with momentum, batch 32, for 3000 steps.  The
NoiseCollector records u_t = g_B(w_t) - grad L(w_t) with the exact full-data reference on 256
stratified coordinates of both layers, every step, with loss, learning rate and B_simple.
Result: data/example_store (about 3 MB).  Seeded: the same store every time on the same torch.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import sgn_memory as sgn  # noqa: E402

STEPS, BATCH, N, DIM = 3000, 32, 2048, 20


def main() -> None:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(1)
    teacher = torch.nn.Sequential(torch.nn.Linear(DIM, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    x = torch.randn(N, DIM, generator=g)
    with torch.no_grad():
        y = teacher(x) + 0.1 * torch.randn(N, 1, generator=g)
    model = torch.nn.Sequential(torch.nn.Linear(DIM, 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = torch.nn.MSELoss()
    full = [(x[i : i + 512], y[i : i + 512]) for i in range(0, N, 512)]
    out = HERE / "example_store"
    if out.exists():
        shutil.rmtree(out)
    with sgn.NoiseCollector(
        model,
        opt,
        out,
        coordinates=256,
        reference="exact",
        reference_data=full,
        loss_fn=loss_fn,
        batch_size=BATCH,
        attrs={
            "dataset": "teacher-student regression, 2048 samples, 20 inputs",
            "model": "MLP 20-64-1 tanh",
            "made_by": "data/make_example_store.py",
        },
    ) as collector:
        for step in range(STEPS):
            idx = torch.randint(0, N, (BATCH,))
            opt.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            collector.observe_loss(loss)
            opt.step()
            if step % 500 == 0:
                print(f"step {step}: loss {loss.item():.4f}", file=sys.stderr)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
