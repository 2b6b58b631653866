"""Train: a JEPA world model on collected data, watched live; the result is a checkpoint
the Plan and Experiments pages can pick."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import streamlit as st

from app import home, views
from app.screens.scene import collect_panel
from app.state import adopt, current, device, fmt_eta, registry, seeded
from app.workers import TrainRun
from worldmodels.train import TrainConfig

SS = st.session_state


def settings() -> TrainConfig | None:
    have = home.datasets()
    if not have:
        st.info(
            "No data yet: a world model learns from exploration data. Collect some here (300 "
            "Reach episodes take about a minute on 2 cores) or drive a scene first on the "
            "Scene page."
        )
        key = st.selectbox(
            "Scene", home.scene_choices(), key="train/col_scene", format_func=home.scene_label
        )
        collect_panel(key, then_train=True)
        return None
    folders = {folder: m for folder, m in have}
    c = st.columns([2, 1, 1, 1])
    data = c[0].selectbox(
        "Data",
        list(folders),
        format_func=lambda f: (
            f"{Path(f).name} ({folders[f]['scene']}, {folders[f]['episodes']} episodes"
            + (", pixels)" if folders[f].get("pixels") else ")")
        ),
        key="train/data",
    )
    man = folders[data]
    kinds = ["state", "pixels"] if man.get("pixels") else ["state"]
    obs = c[1].radio("Encoder sees", kinds, horizontal=True, key="train/obs")
    steps = c[2].number_input("Steps", 10, 100000, step=100, key=seeded("train/steps", 1500))
    batch = c[3].select_slider(
        "Batch",
        [16, 32, 64, 128, 256, 512],
        key=seeded("train/batch", 256 if obs == "state" else 32),
    )
    with st.expander("More settings: the loss and the model"):
        d = st.columns(4)
        latent = d[0].select_slider(
            "Latent size D", [16, 32, 64, 128], key=seeded("train/latent", 64)
        )
        horizon = d[1].slider("Open-loop steps in the loss", 1, 16, key=seeded("train/horizon", 8))
        var_w = d[2].number_input(
            "VICReg variance weight", 0.0, 100.0, key=seeded("train/var", 1.0)
        )
        cov_w = d[3].number_input(
            "VICReg covariance weight", 0.0, 10.0, key=seeded("train/cov", 0.04)
        )
        e = st.columns(4)
        ema = e[0].toggle(
            "EMA target encoder",
            key=seeded("train/ema", True),
            help="switch it off with VICReg at 0 to watch the latent collapse",
        )
        lr = e[1].number_input(
            "Learning rate", 1e-5, 1e-1, format="%.0e", key=seeded("train/lr", 1e-3)
        )
        every = e[2].number_input(
            "Evaluate every", 10, 5000, step=10, key=seeded("train/every", 100)
        )
        seed = e[3].number_input("Seed", 0, 10**6, key=seeded("train/seed", 0))
    default = f"{man['scene']}-{obs}-{time.strftime('%H%M%S')}"
    name = st.text_input("Run name", key=seeded(f"train/name/{data}/{obs}", default))
    return TrainConfig(
        data=data,
        out=str(home.RUNS / name),
        obs=obs,
        steps=int(steps),
        batch=int(batch),
        latent_dim=int(latent),
        horizon=int(horizon),
        var_weight=float(var_w),
        cov_weight=float(cov_w),
        ema=bool(ema),
        lr=float(lr),
        eval_every=int(every),
        seed=int(seed),
        progress=False,
    )


def watch(run_id: str) -> None:
    run = registry().get(run_id, "train")
    if run is None:
        st.info(
            "This training run is no longer known to the server; its folder keeps the checkpoint."
        )
        return
    run.touch()
    p = run.snapshot()
    step = p.step if p else 0
    total = p.total if p else run.cfg.steps
    status = p.status if p and run.status != "error" else run.status
    eta = ""
    if p and status == "running":
        every = run.cfg.eval_every  # the time left is known once an evaluation is timed
        after = min(total, (p.step // every + 1) * every)
        eta = fmt_eta(p.eta) if p.eta is not None else f"· time left known after step {after}"
    st.progress(
        min(step / max(total, 1), 1.0), text=f"{run.title}: step {step}/{total} · {status} {eta}"
    )
    if run.status == "error" or (p and p.error):
        st.error(run.error or p.error)
    if run.idle_stopped and not run.active:
        st.info("Stopped while nobody watched: the checkpoint and the resume state are saved.")
    c = st.columns(4)
    if run.active and status == "running":
        c[0].button("Pause", on_click=run.pause, key="train/pause")
    if run.active and status == "paused":
        c[0].button("Resume", on_click=run.resume, key="train/resume")
    if run.active:
        c[1].button("Stop and save", on_click=run.stop, key="train/stop")
    elif step < total:
        c[1].button("Go on from the last save", on_click=run.restart, key="train/restart")
    if p is None:
        st.caption("loading the data...")
        return
    if p.checkpoint:
        c[2].markdown(f"checkpoint: `{p.checkpoint}`")
    val = p.validation
    if val:
        st.markdown(
            " · ".join(f"**{k}** {v:.3f}" for k, v in val.items())
            + "  (nRMSE of imagined probed signals on held-out episodes, open loop)"
        )
    g = st.columns([2, 2, 1.3])
    if p.history:
        g[0].plotly_chart(views.curves(p.history, "loss/", "loss terms", log=True), key="tr/l")
        if any(k.startswith("val/") for h in p.history for k in h):
            # two units, two charts: nRMSE (1 = as bad as the mean) and a count of dimensions
            nrmse = views.curves(p.history, "val/nrmse_", "held-out nRMSE of imagined signals")
            g[1].plotly_chart(nrmse, key="tr/v")
            rank = views.curves(p.history, "val/effective_rank", "effective rank of latents")
            g[2].plotly_chart(rank, key="tr/rank")
    h = st.columns(2)
    if p.latent_std:
        h[0].plotly_chart(views.latent_spread(p.latent_std), key="tr/std")
    if p.samples:
        real, dec = p.samples["real"], p.samples["decoded"]
        pair = np.concatenate([views.strip(real, 1), views.strip(dec, 1)], axis=0)
        h[1].image(
            pair,
            caption="top: real frames · bottom: decoded from their latents "
            "(display only; the loss never sees pixels)",
            width="stretch",
        )


def _settings_from(cfg: TrainConfig) -> None:
    """A reopened tab: the form shows the found run's settings, not the defaults."""
    if cfg.data not in dict(home.datasets()):
        return  # its data are gone: the defaults will do
    SS["train/data"], SS["train/obs"] = cfg.data, cfg.obs
    SS["train/steps"], SS["train/batch"] = cfg.steps, cfg.batch
    SS["train/latent"], SS["train/horizon"] = cfg.latent_dim, cfg.horizon
    SS["train/var"], SS["train/cov"] = cfg.var_weight, cfg.cov_weight
    SS["train/ema"], SS["train/lr"] = cfg.ema, cfg.lr
    SS["train/every"], SS["train/seed"] = cfg.eval_every, cfg.seed
    SS[f"train/name/{cfg.data}/{cfg.obs}"] = Path(cfg.out).name


def page() -> None:
    st.title("Train")
    st.caption(
        "A JEPA world model: the encoder maps observations to latents; the predictor imagines "
        "the next latent from the action; the loss compares imagined latents with an EMA "
        "target encoder's, plus VICReg variance and covariance terms against collapse. Probes "
        "(which read signals) and the decoder (pictures) learn beside it on detached latents."
    )
    run = current("train")
    if run is not None and "train/data" not in SS:
        _settings_from(run.cfg)
    cfg = settings()
    busy = run is not None and run.active
    if cfg is not None and st.button("Start training", type="primary", disabled=busy):
        run = adopt(TrainRun(cfg, device()))
    if run is not None:
        poll = 0.5 if run.active else None
        st.fragment(run_every=poll)(watch)(run.id)
