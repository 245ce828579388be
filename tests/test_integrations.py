"""The collector inside real training frameworks: a PyTorch Lightning Trainer (automatic
optimization with clipping and accumulation, manual optimization, DDP on 2 CPU processes,
resume from a Lightning checkpoint after SIGKILL) and the Hugging Face Trainer."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pl = pytest.importorskip("pytorch_lightning")

from sgn_memory.integrations.lightning import NoiseCallback  # noqa: E402
from sgn_memory.store import NoiseStore  # noqa: E402

LOSS = torch.nn.functional.mse_loss


def _data(n=96, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = x @ torch.randn(d, 1, generator=g) + 0.3 * torch.randn(n, 1, generator=g)
    return torch.utils.data.TensorDataset(x, y)


class Regression(pl.LightningModule):
    def __init__(self, manual=False):
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)
        )
        self.automatic_optimization = not manual
        self.losses = []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = LOSS(self(x), y)
        self.losses.append(float(loss.detach()))
        if not self.automatic_optimization:
            opt = self.optimizers()
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
            return None
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


class Truth(pl.Callback):
    """What the update used: the weights before each optimizer step (step pre-hook) and the
    gradient the step applied (step post-hook: SGD leaves .grad as it used it)."""

    def __init__(self, data):
        self.data, self.grads, self.noise = data, [], []

    def on_train_start(self, trainer, pl_module):
        opt = trainer.optimizers[0]
        opt.register_step_pre_hook(self._pre)
        opt.register_step_post_hook(self._post)
        self.module = pl_module

    def _pre(self, opt, args, kwargs):
        self.weights = {k: v.detach().clone() for k, v in self.module.net.state_dict().items()}

    @torch.enable_grad()
    def _post(self, opt, args, kwargs):
        g = torch.cat([p.grad.reshape(-1) for p in self.module.parameters()]).numpy().copy()
        clone = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        clone.load_state_dict(self.weights)
        x, y = self.data.tensors
        LOSS(clone(x), y).backward()
        full = torch.cat([p.grad.reshape(-1) for p in clone.parameters()]).numpy()
        self.grads.append(g)
        self.noise.append(g - full)


def _trainer(tmp_path, callbacks, **kwargs):
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **kwargs,
    )


def test_lightning_automatic_optimization_with_clipping_and_accumulation(tmp_path):
    """Lightning steps with optimizer.step(closure) and clips inside the closure: the rows are
    the accumulated, clipped gradient of each step minus the exact gradient at that step's
    weights (before the closure fix: the previous step's gradient, row 1 all -grad L)."""
    data = _data()
    truth = Truth(data)
    callback = NoiseCallback(
        tmp_path / "run",
        coordinates="all",
        reference="exact",
        reference_data=[data.tensors],
        loss_fn=LOSS,
        batch_size=8,
    )
    model = Regression()
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    trainer = _trainer(
        tmp_path,
        [truth, callback],
        max_epochs=2,
        accumulate_grad_batches=3,
        gradient_clip_val=0.05,
    )
    trainer.fit(model, loader)
    store = NoiseStore.open(tmp_path / "run")
    assert store.n_complete == trainer.global_step == 8  # 2 epochs x 12 batches / 3
    np.testing.assert_array_equal(store.steps, np.arange(1, 9))
    np.testing.assert_allclose(store.read_noise(), np.array(truth.noise), rtol=1e-4, atol=1e-6)
    assert max(np.linalg.norm(g) for g in truth.grads) <= 0.05 * (1 + 1e-5)  # clipping ran
    np.testing.assert_array_equal(store.scalar("accumulation"), 3)
    losses = np.array(model.losses).reshape(8, 3).mean(axis=1)
    np.testing.assert_allclose(store.scalar("loss"), losses, rtol=1e-6)
    attrs = store.attrs
    assert attrs["framework"] == "pytorch_lightning" and attrs["accumulate_grad_batches"] == 3
    assert attrs["gradient_clip_val"] == 0.05 and attrs["base_optimizer"] == "SGD"


def test_lightning_manual_optimization(tmp_path):
    data = _data()
    truth = Truth(data)
    callback = NoiseCallback(tmp_path / "run", coordinates="all")
    trainer = _trainer(tmp_path, [truth, callback], max_steps=5)
    trainer.fit(Regression(manual=True), torch.utils.data.DataLoader(data, batch_size=8))
    store = NoiseStore.open(tmp_path / "run")
    assert store.n_complete == 5
    np.testing.assert_array_equal(store.read_noise(), np.array(truth.grads, dtype=np.float32))
    np.testing.assert_array_equal(store.scalar("accumulation"), 1)


_RESUME = textwrap.dedent(
    """
    import os, signal, sys
    import torch, pytorch_lightning as pl
    from sgn_memory.integrations.lightning import NoiseCallback

    root, kill_at, ckpt = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(60, 6, generator=g)
    y = x[:, :1] * 2 + 0.1 * torch.randn(60, 1, generator=g)
    data = torch.utils.data.TensorDataset(x, y)

    class M(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(),
                                           torch.nn.Linear(8, 1))
        def forward(self, x):  # the reference pass calls loss_fn(module(inputs), targets)
            return self.net(x)
        def training_step(self, batch, i):
            return torch.nn.functional.mse_loss(self(batch[0]), batch[1])
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)

    class Kill(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    noise = NoiseCallback(os.path.join(root, "store"), coordinates=30, reference="batch",
                          reference_data=data, reference_batch_size=20,
                          loss_fn=torch.nn.functional.mse_loss, reference_seed=3)
    saver = pl.callbacks.ModelCheckpoint(dirpath=os.path.join(root, "ckpt"), save_last=True,
                                         save_top_k=-1, every_n_epochs=1)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=4, callbacks=[noise, saver, Kill()],
                         logger=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=root)
    trainer.fit(M(), torch.utils.data.DataLoader(data, batch_size=12),
                ckpt_path=None if ckpt == "-" else ckpt)
    """
)


def _lightning_script(tmp_path, name, kill_at, ckpt="-"):
    root = tmp_path / name
    root.mkdir(exist_ok=True)
    script = tmp_path / "fit.py"
    script.write_text(_RESUME)
    return subprocess.run(
        [sys.executable, str(script), str(root), str(kill_at), ckpt],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_lightning_resume_from_checkpoint_after_sigkill(tmp_path, assert_same_store):
    """Killed at step 13 (epochs of 5 steps, checkpoints at their ends): trainer.fit(
    ckpt_path=last.ckpt) restores the callback's state and the collector resumes the store,
    dropping rows after step 10; the final store equals an uninterrupted run's bitwise."""
    whole = _lightning_script(tmp_path, "whole", -1)
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = _lightning_script(tmp_path, "killed", 13)
    assert killed.returncode == -9, killed.stderr[-2000:]
    last = tmp_path / "killed" / "ckpt" / "last.ckpt"
    state = torch.load(last, weights_only=True)
    assert state["global_step"] == 10
    resumed = _lightning_script(tmp_path, "killed", -1, str(last))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    _, b = assert_same_store(
        tmp_path / "whole" / "store", tmp_path / "killed" / "store", np.arange(1, 21)
    )
    assert b.attrs["resumed_at"] == [10]


_DDP = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    import torch, pytorch_lightning as pl
    from sgn_memory.integrations.lightning import NoiseCallback

    root = sys.argv[1]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g)
    y = x[:, :1] + 0.1 * torch.randn(64, 1, generator=g)
    data = torch.utils.data.TensorDataset(x, y)

    class M(pl.LightningModule):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.net = torch.nn.Linear(6, 1)
        def training_step(self, batch, i):
            return torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])
        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    class Grads(pl.Callback):
        def on_train_start(self, trainer, module):
            self.rows = []
            trainer.optimizers[0].register_step_post_hook(lambda *a: self.rows.append(
                torch.cat([p.grad.reshape(-1) for p in module.parameters()]).numpy().copy()))
        def on_train_end(self, trainer, module):
            np.save(os.path.join(root, f"grads{trainer.global_rank}.npy"), np.array(self.rows))

    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=6,
                         callbacks=[NoiseCallback(os.path.join(root, "store"), coordinates="all"),
                                    Grads()],
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=root)
    trainer.fit(M(), torch.utils.data.DataLoader(data, batch_size=8, shuffle=True))
    """
)


def test_lightning_ddp_two_processes_rank0_writes_the_all_reduced_gradient(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(_DDP)
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    store = NoiseStore.open(tmp_path / "store")
    g0, g1 = np.load(tmp_path / "grads0.npy"), np.load(tmp_path / "grads1.npy")
    assert store.n_complete == 6 == len(g0)
    np.testing.assert_array_equal(g0, g1)  # DDP: every rank holds the all-reduced gradient
    np.testing.assert_array_equal(store.read_noise(), g0.astype(np.float32))
    assert store.attrs["world_size"] == 2


def test_huggingface_trainer_with_accumulation_and_clipping(tmp_path):
    """A tiny GPT-2 built from its config (no download) under transformers.Trainer with
    gradient accumulation and clipping: one row per optimizer step, the gradient the step
    applied."""
    transformers = pytest.importorskip("transformers")
    from sgn_memory.integrations.huggingface import NoiseTrainerCallback

    config = transformers.GPT2Config(
        n_layer=1,
        n_head=2,
        n_embd=16,
        vocab_size=32,
        n_positions=16,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 32, (48, 12), generator=g)

    class Tokens(torch.utils.data.Dataset):
        def __len__(self):
            return len(tokens)

        def __getitem__(self, i):
            return {"input_ids": tokens[i], "labels": tokens[i]}

    class Truth(transformers.TrainerCallback):
        def __init__(self):
            self.grads = []

        def on_train_begin(self, args, state, control, model=None, optimizer=None, **kw):
            params = [p for p in model.parameters() if p.requires_grad]
            optimizer.optimizer.register_step_post_hook(
                lambda *a: self.grads.append(
                    torch.cat([p.grad.reshape(-1) for p in params]).numpy().copy()
                )
            )

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        max_grad_norm=0.5,
        max_steps=5,
        learning_rate=1e-3,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    truth = Truth()
    callback = NoiseTrainerCallback(tmp_path / "run", coordinates="all")
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=Tokens(), callbacks=[truth, callback]
    )
    trainer.train()
    store = NoiseStore.open(tmp_path / "run")
    assert store.n_complete == 5 == len(truth.grads)
    np.testing.assert_array_equal(store.read_noise(), np.array(truth.grads, dtype=np.float32))
    assert max(np.linalg.norm(gr) for gr in truth.grads) <= 0.5 * (1 + 1e-4)
    np.testing.assert_array_equal(store.scalar("accumulation"), 2)
    assert store.attrs["framework"] == "transformers"
    assert store.attrs["base_optimizer"] == "AdamW"


def test_lightning_mixed_precision_with_a_grad_scaler(tmp_path):
    """16-bit AMP with a GradScaler (the precision plugin's; Lightning gives none on the CPU,
    so it is passed explicitly): rows hold the unscaled gradient the update used (close to a
    float32 brute force, not 1024 times it), the scale is stored, the loss column is the
    unscaled minibatch loss."""
    from pytorch_lightning.plugins.precision import MixedPrecision

    data = _data(n=64)
    truth = Truth(data)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    model = Regression()
    trainer = _trainer(
        tmp_path,
        [truth, NoiseCallback(tmp_path / "run", coordinates="all")],
        max_steps=4,
        plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)],
    )
    trainer.fit(model, torch.utils.data.DataLoader(data, batch_size=8))
    store = NoiseStore.open(tmp_path / "run")
    assert store.n_complete == 4
    np.testing.assert_array_equal(store.read_noise(), np.array(truth.grads, dtype=np.float32))
    np.testing.assert_array_equal(store.scalar("amp_scale"), 1024.0)
    np.testing.assert_allclose(store.scalar("loss"), model.losses, rtol=1e-6)
    # step 1 at the initial weights, on the first batch: the float32 gradient
    clone = Regression()
    x, y = data.tensors
    LOSS(clone(x[:8]), y[:8]).backward()
    g = torch.cat([p.grad.reshape(-1) for p in clone.parameters()]).numpy()
    np.testing.assert_allclose(store.read_noise()[0], g, rtol=2e-2, atol=2e-3)


_HF = textwrap.dedent(
    """
    import os, signal, sys
    import torch, transformers
    from sgn_memory.integrations.huggingface import NoiseTrainerCallback

    root, kill_at, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    config = transformers.GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=32,
                                     n_positions=16)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config)  # dropout on: reference passes draw masks
    tokens = torch.randint(0, 32, (64, 12), generator=torch.Generator().manual_seed(1))
    train_set = [{"input_ids": t, "labels": t} for t in tokens]

    class Kill(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            if state.global_step == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    args = transformers.TrainingArguments(
        output_dir=os.path.join(root, "out"), per_device_train_batch_size=4, max_steps=10,
        save_steps=4, save_strategy="steps", learning_rate=1e-3, report_to=[], use_cpu=True,
        disable_tqdm=True, seed=3)
    noise = NoiseTrainerCallback(
        os.path.join(root, "store"), coordinates=300, reference="batch", reference_seed=9,
        reference_data=torch.utils.data.DataLoader(train_set, batch_size=16))
    trainer = transformers.Trainer(model=model, args=args, train_dataset=train_set,
                                   callbacks=[noise, Kill()])
    trainer.train(resume_from_checkpoint=None if resume == "-" else resume)
    """
)


def test_huggingface_resume_from_checkpoint_after_sigkill(tmp_path, assert_same_store):
    """Killed at step 6 (checkpoints every 4 steps): trainer.train(resume_from_checkpoint=
    checkpoint-4) resumes the store at global step 4; the final store equals an uninterrupted
    run's bitwise (batch reference with dropout: the reference stream is keyed by step)."""
    pytest.importorskip("transformers")
    script = tmp_path / "hf.py"
    script.write_text(_HF)

    def run(name, kill_at, resume="-"):
        (tmp_path / name).mkdir(exist_ok=True)
        return subprocess.run(
            [sys.executable, str(script), str(tmp_path / name), str(kill_at), resume],
            capture_output=True,
            text=True,
            timeout=300,
        )

    whole = run("whole", -1)
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = run("killed", 6)
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert NoiseStore.open(tmp_path / "killed" / "store").steps[-1] >= 4
    resumed = run("killed", -1, str(tmp_path / "killed" / "out" / "checkpoint-4"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _, b = assert_same_store(
        tmp_path / "whole" / "store", tmp_path / "killed" / "store", np.arange(1, 11)
    )
    assert b.attrs["resumed_at"] == [4]
    # the collector's own state went into the checkpoint folder (its step count, not the
    # Trainer's global step, which counts skipped fp16 steps too)
    saved = json.loads(
        (tmp_path / "killed" / "out" / "checkpoint-4" / "sgn_collector.json").read_text()
    )
    assert saved["steps_seen"] == 4
    assert "sgn_collector.json is missing" not in resumed.stderr


def test_two_lightning_callbacks_in_one_trainer(tmp_path):
    """Each NoiseCallback has its own state key (store, optimizer): two can share a Trainer and
    its checkpoints (before: "Found more than one stateful callback of type NoiseCallback")."""
    data = _data()
    a = NoiseCallback(tmp_path / "a", coordinates=5)
    b = NoiseCallback(tmp_path / "b", coordinates="all")
    assert a.state_key != b.state_key
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=3,
        callbacks=[a, b],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(Regression(), torch.utils.data.DataLoader(data, batch_size=8))
    trainer.save_checkpoint(tmp_path / "both.ckpt")
    states = torch.load(tmp_path / "both.ckpt", weights_only=True)["callbacks"]
    assert {k for k in states if "NoiseCallback" in k} == {a.state_key, b.state_key}
    assert (
        NoiseStore.open(tmp_path / "a").n_complete
        == NoiseStore.open(tmp_path / "b").n_complete
        == 3
    )


def test_lightning_exception_closes_the_collector_and_keeps_its_rows(tmp_path):
    class Failing(Regression):
        def training_step(self, batch, batch_idx):
            if batch_idx == 3:
                raise RuntimeError("boom")
            return super().training_step(batch, batch_idx)

    callback = NoiseCallback(tmp_path / "run", coordinates="all")
    trainer = _trainer(tmp_path, [callback], max_steps=10)
    model = Failing()
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit(model, torch.utils.data.DataLoader(_data(), batch_size=8))
    assert callback.collector is None
    assert not trainer.optimizers[0]._optimizer_step_pre_hooks
    np.testing.assert_array_equal(NoiseStore.open(tmp_path / "run").steps, [1, 2, 3])
