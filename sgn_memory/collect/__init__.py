"""Record the stochastic gradient noise of a PyTorch training loop, invisibly.

This is the only module of :mod:`sgn_memory` that imports torch.  Two lines attach it (three
with the optional loss)::

    with sgn.NoiseCollector(model, optimizer, "runs/sgn", reference="exact",
                            reference_data=full_loader, loss_fn=loss_fn) as collector:
        for x, y in loader:                      # the user's loop, unchanged
            optimizer.zero_grad()
            loss = loss_fn(model(x), y)
            loss.backward()
            collector.observe_loss(loss)         # optional: store the minibatch loss
            optimizer.step()                     # or optimizer.step(closure)

What is recorded, at every ``every``-th optimizer step t: the noise u_t = g_{B_t}(w_t) - grad L(w_t)
on k chosen coordinates, where g_{B_t} is the gradient the update uses (read in the optimizer's
step pre-hook, or, for ``optimizer.step(closure)``, as soon as the closure has returned: after
gradient accumulation, clipping, AMP unscaling and the DDP all-reduce) and grad L(w_t) the
reference gradient at the same weights.  Beside it, per step: the minibatch loss (if observed;
the mean over the micro-batches of the step), the learning rate of every param group (``lr``,
``lr.1``, ...), |grad L|^2 and |u|^2 over *all* coordinates, the gradient noise scale
B_simple = B |u|^2 / |grad L|^2 (McCandlish et al. 2018), the AMP scale, and the number of
forward passes since the previous step (gradient accumulation; 2 under SAM).

References for grad L(w_t) (``reference=``):

``"exact"``
    A full pass over ``reference_data`` (an iterable of batches, typically the training set in
    large batches) with ``torch.autograd.grad``, batch by batch, weighted by batch size.  Unbiased;
    costs one forward and backward pass over the data per recorded step.  With BatchNorm in training
    mode each reference batch is normalised with its own statistics (as in training).
``"batch"``
    The gradient of one batch of size M drawn afresh at every recorded step: M samples uniformly
    without replacement from the dataset of a reference DataLoader (or a map-style dataset with
    ``reference_batch_size``), or one batch chosen at random from a list.  The draws are
    independent across steps and of training, so the reference error is white: the recorded
    noise is u_t = e_{B_t} - e_{M_t} with Cov = Sigma (1/B + 1/M) (finite-population factors
    (N - B)/(N - 1), (N - M)/(N - 1) for batches drawn without replacement from N samples) and
    no temporal structure of its own; it adds white noise of relative variance B / (B + M), which
    pulls memory estimates towards H = 1/2, so use M >> B.  (Taking the batches of a list or
    loader in turn would be sampling without replacement again: their errors sum to zero over
    each cycle, which is the epoch structure that makes noise anti-persistent.)  M is recorded.
``"none"``
    Raw minibatch gradients g_{B_t} (no reference).  Free; the series then contains the slowly
    moving full gradient, which biases memory estimates upward: subtract a reference first.

Invisibility: reference passes use ``torch.autograd.grad`` (``.grad`` is never touched), restore
every buffer of the model (BatchNorm's running statistics, spectral norm's power-iteration
vectors, ...), never run the DDP wrapper (the reference uses ``model.module``), and draw their
randomness (dropout masks, a reference loader's shuffling, the choice of the reference batch,
augmentation from torch, Python's ``random`` or NumPy's global generator) from a stream of their
own: at step t it is seeded from (``reference_seed``, t) alone, recorded in the store, so a
resumed run draws what the uninterrupted one drew.  Training's generators (torch CPU and CUDA,
``random``, ``np.random``) are saved and restored bitwise around each pass
(``torch.random.fork_rng`` alone would not do: inside it a pass replays the numbers training
draws next, so an "independent" reference batch of a shuffled loader is training's batch one
epoch later, and reference dropout masks are the next training step's).  With the collector
attached, the parameters after N steps are bitwise identical to a run without it (tested).

Resuming: :meth:`NoiseCollector.state_dict` (which flushes the store) goes into the training
checkpoint; after a restart, ``NoiseCollector(..., resume=state)`` continues the same store,
dropping the rows recorded after the checkpoint.  Frameworks: ``sgn_memory.integrations``
(PyTorch Lightning callback, Hugging Face ``TrainerCallback``); under Accelerate pass the prepared
model and optimizer.

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
