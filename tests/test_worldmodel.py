"""The JEPA world model with real small training runs: loss, collapse, resume, checkpoints."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from common.errors import LabError
from scenes.collect import CollectConfig, collect
from worldmodels import ModelConfig, WorldModel, load_checkpoint, save_checkpoint
from worldmodels.data import WindowData
from worldmodels.metrics import copy_last_nrmse, linear_nrmse, model_nrmse
from worldmodels.train import TrainConfig, Trainer, eta_seconds

pytestmark = pytest.mark.slow  # trains world models

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def reach_data(tmp_path_factory) -> str:
    """40 short Reach episodes with pixels: about a second to collect."""
    out = tmp_path_factory.mktemp("data") / "reach"
    collect(
        CollectConfig(
            scene="reach",
            out=str(out),
            episodes=40,
            steps=40,
            workers=2,
            episodes_per_shard=5,
            progress=False,
        )
    )
    return str(out)


def tiny(data: str, out: Path, **kw) -> TrainConfig:
    args = dict(
        data=data,
        out=str(out),
        steps=300,
        batch=64,
        hidden=64,
        latent_dim=16,
        eval_every=1000,
        decoder=False,
        progress=False,
    )
    args.update(kw)
    return TrainConfig(**args)


def test_the_contract_shapes():
    for obs in ("state", "pixels"):
        cfg = ModelConfig(
            obs=obs,
            state_dim=4,
            action_dim=2,
            latent_dim=16,
            hidden=32,
            signals=("x", "y", "speed"),
        )
        m = WorldModel(cfg)
        x = torch.zeros(5, 4) if obs == "state" else torch.zeros(5, 64, 64, 3, dtype=torch.uint8)
        s = m.encode({obs: x})
        assert s.shape == (5, 16)
        assert m.encode(x[0]).shape == (1, 16)  # a single observation
        imagined = m.rollout(s, torch.zeros(5, 7, 2))
        assert imagined.shape == (5, 7, 16)
        sig = m.probe(imagined)
        assert set(sig) == {"x", "y", "speed"} and sig["x"].shape == (5, 7)
        img = m.decode(s)
        assert img.shape == (5, 64, 64, 3) and img.dtype == torch.uint8


def test_the_loss_falls_and_imagination_beats_copy_last(reach_data, tmp_path):
    t = Trainer(tiny(reach_data, tmp_path / "run", steps=400))
    first = np.mean([t.train_step()["total"] for _ in range(10)])
    for _ in range(380):
        t.train_step()
    last = np.mean([t.train_step()["total"] for _ in range(10)])
    assert last < 0.6 * first
    data = t.data
    h = 8
    model = model_nrmse(t.model, data, h)
    assert model[-1] < copy_last_nrmse(data, h)[-1]
    assert linear_nrmse(data, h)[-1] > 0


def test_without_vicreg_and_ema_the_latent_collapses(reach_data, tmp_path):
    """The ablation (no VICReg, target = online encoder) collapses; the full loss does not."""
    ranks = {}
    for name, kw in {
        "full": {},
        "ablated": {"var_weight": 0.0, "cov_weight": 0.0, "ema": False},
    }.items():
        t = Trainer(tiny(reach_data, tmp_path / name, steps=600, **kw))
        for _ in range(600):
            t.train_step()
        ranks[name] = t.evaluate()["effective_rank"]
        stds = t.snapshot().latent_std
        if name == "ablated":
            assert max(stds) < 0.05  # shrunk towards a point
        else:
            assert min(stds) > 0.3  # VICReg keeps every dimension spread
    assert ranks["full"] >= 3.0, ranks  # Reach's state has 4 degrees of freedom
    assert ranks["ablated"] <= 1.5, ranks


def test_resume_takes_the_same_next_step(reach_data, tmp_path):
    straight = Trainer(tiny(reach_data, tmp_path / "a", steps=30, decoder=True))
    straight.run()

    first = Trainer(tiny(reach_data, tmp_path / "b", steps=30, decoder=True))
    for _ in range(12):
        first.train_step()
    first.evaluate_and_save()  # what Ctrl-C or stop() does
    del first
    resumed = Trainer(tiny(reach_data, tmp_path / "b", steps=30, decoder=True))
    assert resumed.step == 12
    resumed.run()
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ha = [h for h in straight.snapshot().history if "loss/total" in h]
    hb = [h for h in resumed.snapshot().history if "loss/total" in h]
    assert ha[-1] == hb[-1]


def test_resume_refuses_other_settings(reach_data, tmp_path):
    t = Trainer(tiny(reach_data, tmp_path / "r", steps=5))
    t.run()
    with pytest.raises(LabError, match="other settings"):
        Trainer(tiny(reach_data, tmp_path / "r", steps=5, latent_dim=8))
    with pytest.raises(LabError, match="probe_hidden"):
        Trainer(tiny(reach_data, tmp_path / "r", steps=5, probe_hidden=16))
    # a resume file written before probe_hidden was a setting meant the old width, 64
    Trainer(tiny(reach_data, tmp_path / "w", steps=5, probe_hidden=64)).run()
    meta = json.loads((tmp_path / "w" / "resume.json").read_text())
    del meta["config"]["probe_hidden"]
    (tmp_path / "w" / "resume.json").write_text(json.dumps(meta))
    assert Trainer(tiny(reach_data, tmp_path / "w", steps=6, probe_hidden=64)).step == 5
    with pytest.raises(LabError, match="probe_hidden"):
        Trainer(tiny(reach_data, tmp_path / "w", steps=6))


def test_the_thread_api_pauses_resumes_and_stops(reach_data, tmp_path):
    t = Trainer(tiny(reach_data, tmp_path / "t", steps=100000, eval_every=200))
    t.start()
    deadline = time.time() + 30
    while t.snapshot().step < 20 and time.time() < deadline:
        time.sleep(0.02)
    t.pause()
    time.sleep(0.2)
    paused_at = t.snapshot().step
    time.sleep(0.3)
    assert t.snapshot().step == paused_at and t.snapshot().status == "paused"
    t.resume()
    while t.snapshot().step < paused_at + 20 and time.time() < deadline:
        time.sleep(0.02)
    assert t.snapshot().step >= paused_at + 20
    t.stop()
    t.join(30)
    snap = t.snapshot()
    assert snap.status == "stopped" and snap.checkpoint
    assert snap.losses["total"] > 0 and "effective_rank" in snap.validation
    _model, config = load_checkpoint(snap.checkpoint)
    assert config["step"] == snap.step and config["scene"] == "reach"


@pytest.fixture
def saved(reach_data, tmp_path):
    t = Trainer(tiny(reach_data, tmp_path / "s", steps=20, decoder=True))
    t.run()
    return Path(t.snapshot().checkpoint), t


def test_checkpoint_round_trip(saved):
    folder, trainer = saved
    model, config = load_checkpoint(folder)
    x = trainer.data.state[:8]
    with torch.no_grad():
        trainer.model.eval()
        np.testing.assert_allclose(model.encode(x), trainer.model.encode(x), rtol=0, atol=0)
    assert config["obs"] == "state" and config["model"]["latent_dim"] == 16
    assert set(config["normalisation"]) == {"state_mean", "state_std", "signal_mean", "signal_std"}
    assert len(list(folder.glob("weights-*.safetensors"))) == 1
    # the measured probe error travels with it: per signal, RMSE at imagined steps 1..H
    assert model.probe_rmse == config["probe_rmse"] == trainer.probe_rmse
    assert set(model.probe_rmse) == set(model.signal_names)
    assert all(len(v) == trainer.eval_horizon and min(v) >= 0 for v in model.probe_rmse.values())
    assert config["split"] == {"seed": 0, "val_fraction": 0.1}  # what calibrate measures on
    # a table measured on a diverging rollout (NaN) reads as never measured, not as broken
    _set_config(folder, probe_rmse={k: [float("nan")] for k in model.signal_names})
    assert load_checkpoint(folder)[0].probe_rmse is None


def test_calibrate_measures_the_probe_error_and_changes_no_weight(saved, reach_data, capsys):
    from worldmodels.calibrate import main as calibrate

    folder, _ = saved
    _set_config(folder, probe_rmse=None)  # as a checkpoint made before it was measured
    before, _ = load_checkpoint(folder)
    assert before.probe_rmse is None
    assert calibrate(["--checkpoint", str(folder), "--data", reach_data]) == 0
    assert "held-out probe RMSE" in capsys.readouterr().out
    after, config = load_checkpoint(folder)
    assert set(after.probe_rmse) == set(after.signal_names) and config["step"] == 20
    assert all(len(v) == 16 and min(v) > 0 for v in after.probe_rmse.values())
    old, new = before.state_dict(), after.state_dict()
    for k in old:
        torch.testing.assert_close(new[k], old[k], rtol=0, atol=0, msg=k)
    assert calibrate(["--checkpoint", str(folder), "--data", str(folder)]) == 2  # not a dataset
    assert "error:" in capsys.readouterr().err


def test_refit_decoder_improves_the_pictures_and_changes_nothing_else(saved, reach_data):
    from worldmodels.refit import RefitConfig, refit_checkpoint

    folder, _ = saved
    before, _ = load_checkpoint(folder)
    figures = refit_checkpoint(
        RefitConfig(checkpoint=str(folder), data=reach_data, steps=60, batch=32, progress=False)
    )
    assert figures["held_out_after"] < figures["held_out_before"]
    after, config = load_checkpoint(folder)
    assert config["decoder_refit"]["steps"] == 60 and config["step"] == 20
    old, new = before.state_dict(), after.state_dict()
    for k in old:
        if k.startswith("decoder."):
            continue
        torch.testing.assert_close(new[k], old[k], rtol=0, atol=0, msg=k)
    assert any(not torch.equal(new[k], old[k]) for k in old if k.startswith("decoder."))


def _weights(folder: Path) -> Path:
    return folder / json.loads((folder / "config.json").read_text())["weights"]


def _set_config(folder: Path, **kw) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(kw)
    (folder / "config.json").write_text(json.dumps(cfg))


BAD = {
    "truncated": lambda f: _weights(f).write_bytes(_weights(f).read_bytes()[:1000]),
    "truncated, size edited to match": lambda f: (
        _weights(f).write_bytes(_weights(f).read_bytes()[:1000]),
        _set_config(f, weights_bytes=1000),
    ),
    "random bytes": lambda f: (
        _weights(f).write_bytes(os.urandom(5000)),
        _set_config(f, weights_bytes=5000),
    ),
    "a pickle file": lambda f: (
        torch.save({"w": torch.zeros(3)}, _weights(f)),
        _set_config(f, weights_bytes=_weights(f).stat().st_size),
    ),
    "a foreign safetensors file": lambda f: (
        save_file({"conv.weight": torch.zeros(3, 3)}, str(_weights(f))),
        _set_config(f, weights_bytes=_weights(f).stat().st_size),
    ),
    "mismatched shapes": lambda f: _set_config(
        f, model={**json.loads((f / "config.json").read_text())["model"], "hidden": 32}
    ),
    "an unknown version": lambda f: _set_config(f, version=7),
    "a malformed probe error": lambda f: _set_config(f, probe_rmse={"x": [0.1, -1]}),
    "a probe error of another model": lambda f: _set_config(f, probe_rmse={"knife": [0.1]}),
    "config not JSON": lambda f: (f / "config.json").write_text("\x80\x04 not json"),
    "no config": lambda f: (f / "config.json").unlink(),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_bad_checkpoints_get_a_plain_error_and_the_loaded_model_stays(saved, tmp_path, kind):
    folder, trainer = saved
    loaded, _ = load_checkpoint(folder)  # the model the app holds now
    x = trainer.data.state[:4]
    with torch.no_grad():
        before = loaded.encode(x).clone()
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    BAD[kind](bad)
    with pytest.raises(LabError) as err:
        load_checkpoint(bad)
    msg = str(err.value)
    assert "Traceback" not in msg and len(msg) < 400
    with torch.no_grad():
        assert torch.equal(loaded.encode(x), before)  # untouched


def test_a_weights_file_given_instead_of_the_folder(saved):
    folder, _ = saved
    with pytest.raises(LabError, match="checkpoint folder"):
        load_checkpoint(_weights(folder))


def test_writes_are_atomic(saved):
    """A second save replaces the first in one step: config and weights always agree."""
    folder, trainer = saved
    old = _weights(folder)
    save_checkpoint(trainer.model, folder, {"scene": "reach", "step": 99})
    assert not old.exists() and _weights(folder).exists()
    assert load_checkpoint(folder)[1]["step"] == 99


def test_pixel_model_trains_a_few_steps(reach_data, tmp_path):
    t = Trainer(tiny(reach_data, tmp_path / "px", obs="pixels", batch=16, steps=4, decoder=True))
    terms = t.train_step()
    assert set(terms) >= {"pred", "var", "cov", "probe", "probe_imagined", "decoder", "total"}
    assert all(np.isfinite(v) for v in terms.values())
    t.run()
    model, config = load_checkpoint(t.snapshot().checkpoint)
    assert config["obs"] == "pixels"
    frame = t.data.pixels[:2]
    assert model.decode(model.encode(frame)).shape == (2, 64, 64, 3)


def test_a_two_frame_pixel_model_sees_motion(reach_data, tmp_path):
    t = Trainer(tiny(reach_data, tmp_path / "px2", obs="pixels", batch=8, steps=2, frames=2))
    data, model = t.data, t.model
    assert model.frames == 2 and model.encoder.conv[0].in_channels == 6
    # Stacks never reach into the previous episode: an episode's first row is its own past.
    start, length = (int(v) for v in data.episodes[1])
    rows = torch.tensor([start, start + 1, start + length - 1])
    stack = data.obs_at(rows)  # (3, 2, 64, 64, 3), oldest first
    assert stack.shape == (3, 2, 64, 64, 3)
    assert torch.equal(stack[0, 0], data.pixels[start]) and torch.equal(stack[0, 1], stack[0, 0])
    assert torch.equal(stack[1, 0], data.pixels[start]) and torch.equal(
        stack[1, 1], data.pixels[start + 1]
    )
    # The action taken before each row: none at an episode's start (an efference copy).
    assert not data.last_action[start].any()
    assert torch.equal(data.last_action[start + 1], data.actions[start])
    batch = data.windows(rows[:1], 3)
    assert torch.equal(batch["last_action"][0, 1:], batch["actions"][0])
    assert batch["obs"].shape == (1, 4, 2, 64, 64, 3) and batch["pixels"].shape == (1, 4, 64, 64, 3)
    # A lone frame reads as a scene at rest: the same latent as two copies of it.
    with torch.no_grad():
        frame = data.pixels[start + 5]
        assert torch.equal(model.encode(frame), model.encode(torch.stack([frame, frame])[None]))
        moving = model.encode(data.obs_at(rows[1:2]))
        assert not torch.equal(moving, model.encode(data.pixels[start + 1]))
        assert model.cfg.last_action  # the default for pixels
        pushed = model.encode({"pixels": frame, "last_action": torch.tensor([1.0, -1.0])})
        assert not torch.equal(pushed, model.encode(frame))
        assert torch.equal(
            model.encode({"pixels": frame, "last_action": torch.zeros(2)}), model.encode(frame)
        )
    t.run()
    loaded, config = load_checkpoint(t.snapshot().checkpoint)
    assert config["model"]["frames"] == 2 and loaded.frames == 2
    for bad in ({"frames": 2}, {"last_action": True}):  # settings of a pixel model only
        with pytest.raises(LabError, match="a state model takes one state"):
            WorldModel(ModelConfig(obs="state", **bad))
    # the robot's own sensors beside the frames: entries of the state, for pixels only
    for bad in ({"obs": "state", "proprio": (0,)}, {"obs": "pixels", "proprio": (4,)}):
        with pytest.raises(LabError, match=r"proprio \[\d\]: entries of the state vector"):
            WorldModel(ModelConfig(state_dim=4, **bad))
    with pytest.raises(LabError, match="latent_dim 24: the last action and the robot's"):
        WorldModel(ModelConfig(obs="pixels", latent_dim=24, last_action=True, proprio=(0,)))
    with pytest.raises(LabError, match="names no sensors of the robot's own"):
        Trainer(tiny(reach_data, tmp_path / "px3", obs="pixels", batch=8, steps=2, proprio=True))


def test_state_data_without_pixels_cannot_train_a_pixel_model(tmp_path):
    out = tmp_path / "nopix"
    collect(
        CollectConfig(
            scene="reach",
            out=str(out),
            episodes=2,
            steps=10,
            workers=1,
            pixels=False,
            progress=False,
        )
    )
    with pytest.raises(LabError, match="without pixels"):
        WindowData(str(out), "pixels", torch.device("cpu"), 4)


def test_train_cli_runs_and_resumes(reach_data, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [
        ROOT / "lab",
        "train",
        "--data",
        reach_data,
        "--out",
        tmp_path / "cli",
        "--steps",
        "10",
        "--batch",
        "32",
        "--hidden",
        "32",
        "--latent-dim",
        "8",
        "--no-progress",
    ]
    out = subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert "finished at step 10" in out.stdout
    more = [str(a) for a in args]
    more[more.index("--steps") + 1] = "15"
    out = subprocess.run(more, capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "finished at step 15" in out.stdout
    bad = subprocess.run(
        [str(ROOT / "lab"), "train", "--data", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        env=env,
    )
    assert bad.returncode == 2 and "no manifest.json" in bad.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_on_cuda(reach_data, tmp_path):
    t = Trainer(tiny(reach_data, tmp_path / "gpu", steps=5), device=torch.device("cuda"))
    t.run()
    assert t.model.device.type == "cuda"


def test_probes_in_blocks_give_the_same_values_and_gradients():
    m = WorldModel(ModelConfig(signals=("x", "y", "speed"), decoder=False))
    s = torch.randn(3, 2000, 64, requires_grad=True)  # 6000 rows: blocks of PROBE_BLOCK
    blocked = m.probes(s)
    one_by_one = torch.stack([m.probes(part) for part in s])  # 2000 rows each: one block
    assert blocked.shape == (3, 2000, 3) and torch.equal(blocked, one_by_one)
    (g,) = torch.autograd.grad(blocked.sum(), s)
    (g1,) = torch.autograd.grad(one_by_one.sum(), s)
    assert torch.allclose(g, g1)


def test_time_left_counts_the_evaluations_to_come_at_the_recent_pace():
    # nothing timed yet: no estimate (a step-4 guess left out the evaluations)
    assert eta_seconds(4, 1500, 500, [0.03] * 4, None) is None
    # at step 500, before its evaluation: 1000 steps at 0.04 s, then the evaluations at
    # 500 (about to run), 1000 and 1500: 3 x 20 s
    assert eta_seconds(500, 1500, 500, [0.04] * 50, 20.0) == pytest.approx(40 + 60)
    assert eta_seconds(501, 1500, 500, [0.04] * 50, 20.0) == pytest.approx(999 * 0.04 + 40)
    # a run whose end is not a multiple of eval_every evaluates once more at the end
    assert eta_seconds(900, 1200, 500, [0.1], 5.0) == pytest.approx(30 + 2 * 5)
    assert eta_seconds(1200, 1200, 500, [0.1], 5.0) == pytest.approx(5)  # the last one


def test_training_reports_no_time_left_until_an_evaluation_then_one_that_includes_it(
    reach_data, tmp_path
):
    t = Trainer(tiny(reach_data, tmp_path / "eta", steps=40, eval_every=20))
    seen = []  # (step, eta) as the app's page would read them, one per optimiser step

    @contextlib.contextmanager
    def watch():  # the turn hook: runs around every step, as the app's server does
        yield
        p = t.snapshot()
        seen.append((p.step, p.eta))

    t.turn = watch
    t.run()
    before = [eta for step, eta in seen[1:] if step < 20]  # read before the step published
    after = [eta for step, eta in seen if 21 <= step < 39]
    assert before and all(eta is None for eta in before)
    assert after and all(eta is not None and eta > 0 for eta in after)


def test_the_rollout_is_the_predictor_stepped_and_keeps_its_gradient():
    """``rollout`` precomputes the first layer's action part (``Predictor.unroll``): the
    same latents, and the same gradients, as calling the predictor a step at a time."""
    m = WorldModel(ModelConfig(signals=("x",), decoder=False, predictor_layers=3))
    for p in m.parameters():
        torch.nn.init.normal_(p, std=0.05)  # the last layer starts at zero: make it act
    s0 = torch.randn(5, 64)
    actions = (torch.rand(5, 7, 2) * 2 - 1).requires_grad_(True)
    stepped, s = [], s0
    for t in range(7):
        s = m.predictor(s, actions[:, t])
        stepped.append(s)
    stepped = torch.stack(stepped, dim=1)
    rolled = m.rollout(s0, actions)
    assert rolled.shape == (5, 7, 64) and torch.allclose(rolled, stepped, rtol=1e-4, atol=1e-5)
    (g,) = torch.autograd.grad(rolled.square().sum(), actions)
    (g1,) = torch.autograd.grad(stepped.square().sum(), actions)
    assert torch.allclose(g, g1, rtol=1e-4, atol=1e-5)
