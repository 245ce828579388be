"""Record the stochastic gradient noise of a PyTorch training loop, invisibly.

This is the only module of :mod:`sgn_memory` that imports torch.  Two lines attach it::

    with sgn.NoiseCollector(model, optimizer, "runs/sgn", reference="exact",
                            reference_data=full_loader, loss_fn=loss_fn) as collector:
        for x, y in loader:                      # the user's loop, unchanged
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            collector.observe_loss(loss)         # optional: store the minibatch loss
            optimizer.step()

What is recorded, at every ``every``-th optimizer step t: the noise u_t = g_{B_t}(w_t) - grad L(w_t)
on k chosen coordinates, where g_{B_t} is the gradient the update is about to use (read in the
optimizer's step pre-hook: after gradient accumulation, clipping, AMP unscaling and the DDP
all-reduce) and grad L(w_t) the reference gradient at the same weights.  Beside it, per step: the
minibatch loss (if observed), the learning rate, |grad L|^2 and |u|^2 over *all* coordinates, the
gradient noise scale B_simple = B |u|^2 / |grad L|^2 (McCandlish et al. 2018), the AMP scale, and
the number of forward passes since the previous step (gradient accumulation; 2 under SAM).

References for grad L(w_t) (``reference=``):

``"exact"``
    A full pass over ``reference_data`` (an iterable of batches, typically the training set in
    large batches) with ``torch.autograd.grad``, batch by batch, weighted by batch size.  Unbiased;
    costs one forward and backward pass over the data per recorded step.  With BatchNorm in training
    mode each reference batch is normalised with its own statistics (as in training).
``"batch"``
    The gradient of one independent batch of size M from ``reference_data`` (cycled).  Cheap; the
    recorded noise then has covariance Sigma (1/B + 1/M) instead of Sigma / B, so use M >> B.
    M is recorded in the store's attributes.
``"none"``
    Raw minibatch gradients g_{B_t} (no reference).  Free; the series then contains the slowly
    moving full gradient, which biases memory estimates upward: subtract a reference first.

Invisibility: reference passes use ``torch.autograd.grad`` (``.grad`` is never touched), run
inside ``torch.random.fork_rng`` (dropout masks there are independent draws and the global RNG is
left exactly as it was), restore every BatchNorm running statistic, and never run the DDP wrapper
(the reference uses ``model.module``).  With the collector attached, the parameters after N steps
are bitwise identical to a run without it (tested).

SAM-type optimizers (objects with ``first_step``, ``second_step`` and ``base_optimizer``): the hook
goes on the innermost base optimizer, so the recorded gradient is the one taken at the perturbed
point w + e(w), and the reference is taken at that same point.  A SAM-type optimizer that rescales
the perturbed-point gradient before the base step (StableSAM: g_s <- gamma g_s) may expose the
factor as ``optimizer.gradient_scale``; the collector then records the noise of g_s itself,
u = g_s - grad L(w + e) (gamma is random, so gamma g_s - grad L(w + e) would carry a term
(gamma - 1) grad L that is not noise), and stores gamma as the per-step scalar ``gradient_scale``.
"""

from ._collector import NoiseCollector, Reference
from ._coordinates import select_coordinates
from ._probe import probe_checkpoint

__all__ = ["NoiseCollector", "Reference", "probe_checkpoint", "select_coordinates"]
