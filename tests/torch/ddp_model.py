"""The small CNN, its data and its training loop, shared by the DDP worker (one process per rank)
and the single-process reference in test_ddp.py."""

import torch
import torch.nn as nn
import torch.nn.functional as F

GLOBAL_BATCH = 16
STEPS = 20


def make_model():
    torch.manual_seed(0)  # the same initial parameters in every process
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(16, 10))


def batches(steps=STEPS, global_batch=GLOBAL_BATCH):
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(global_batch, 3, 16, 16, generator=g)
        y = torch.randint(0, 10, (global_batch,), generator=g)
        yield x, y


def train(model, rank=0, world=1, device="cpu", steps=STEPS, on_step=None):
    """SGD on rank's contiguous slice of each global batch; returns the loss of every step.
    Cross-entropy is a mean over the local batch and DDP averages gradients over ranks, so every
    step equals one on the whole global batch."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    per_rank = GLOBAL_BATCH // world
    losses = []
    for step, (x, y) in enumerate(batches(steps)):
        if on_step:
            on_step(step)
        x = x[rank * per_rank:(rank + 1) * per_rank].to(device)
        y = y[rank * per_rank:(rank + 1) * per_rank].to(device)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def flat_parameters(model):
    return [float(v) for p in model.parameters() for v in p.detach().cpu().to(torch.float64).flatten()]
