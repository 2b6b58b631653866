"""Figures and images the pages draw (plotly and numpy only; no st.* here)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

COST_BINS = 5  # sampled trajectories are drawn in this many colour bands of cost
BAND_COLOURS = ["#1a9850", "#91cf60", "#fee08b", "#fc8d59", "#d73027"]  # cheap -> dear
REAL, IMAGINED, LIMIT = "#1f4e9c", "#e07b00", "#c0392b"


def _layout(fig: go.Figure, height: int, title: str = "") -> go.Figure:
    fig.update_layout(
        height=height,
        margin=dict(l=10, r=10, t=30 if title else 10, b=10),
        title=dict(text=title, font=dict(size=14)) if title else None,
        legend=dict(orientation="h", y=-0.15, font=dict(size=11)),
        template="plotly_white",
    )
    return fig


def _lines(paths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, H, 2) paths -> x, y arrays with NaN between paths (one trace for all)."""
    if len(paths) == 0:
        return np.array([]), np.array([])
    k, _h, _ = paths.shape
    gap = np.full((k, 1, 2), np.nan)
    flat = np.concatenate([paths, gap], axis=1).reshape(-1, 2)
    return flat[:, 0], flat[:, 1]


def trajectories(view, names: tuple[str, str], height: int = 420) -> go.Figure:
    """The last iteration's sampled plans in the plot plane, coloured by cost band; elites
    thicker, infeasible ones dotted grey, the chosen one black; the real path and goal."""
    fig = go.Figure()
    xy = view.samples_xy
    start = np.array([[view.signals.get(names[0], np.nan), view.signals.get(names[1], np.nan)]])
    if xy is not None:
        xy = np.concatenate([np.repeat(start[None], len(xy), 0), xy], axis=1)  # from now
        total, feasible = view.total, view.feasible
        ok = np.flatnonzero(feasible)
        if len(ok):
            edges = np.quantile(total[ok], np.linspace(0, 1, COST_BINS + 1))
            band = np.clip(np.searchsorted(edges, total[ok], side="right") - 1, 0, COST_BINS - 1)
            for b in range(COST_BINS):
                x, y = _lines(xy[ok[band == b]])
                lo, hi = edges[b], edges[b + 1]
                fig.add_scatter(
                    x=x,
                    y=y,
                    mode="lines",
                    line=dict(color=BAND_COLOURS[b], width=1),
                    opacity=0.45,
                    name=f"cost {lo:.3g}-{hi:.3g}",
                    hoverinfo="skip",
                )
        bad = np.flatnonzero(~feasible)
        if len(bad):
            x, y = _lines(xy[bad])
            fig.add_scatter(
                x=x,
                y=y,
                mode="lines",
                line=dict(color="#888", width=1, dash="dot"),
                opacity=0.5,
                name=f"infeasible ({len(bad)})",
                hoverinfo="skip",
            )
        x, y = _lines(xy[view.elites])
        fig.add_scatter(x=x, y=y, mode="lines", line=dict(color="#2c7bb6", width=2), name="elites")
        x, y = _lines(xy[[view.chosen]])
        fig.add_scatter(
            x=x, y=y, mode="lines+markers", line=dict(color="black", width=3), name="chosen"
        )
    if view.history:
        path = [[h["signals"][names[0]], h["signals"][names[1]]] for h in view.history]
        path.append(start[0].tolist())
        path = np.array(path)
        fig.add_scatter(
            x=path[:, 0], y=path[:, 1], mode="lines", line=dict(color=REAL, width=3), name="real"
        )
    fig.add_scatter(
        x=start[:, 0], y=start[:, 1], mode="markers", marker=dict(size=12, color=REAL), name="now"
    )
    if view.goal is not None and len(view.goal) >= 2:
        fig.add_scatter(
            x=[view.goal[0]],
            y=[view.goal[1]],
            mode="markers",
            marker=dict(size=16, symbol="star", color="#f1c40f", line=dict(width=1)),
            name="goal",
        )
    fig.update_xaxes(title=names[0])
    fig.update_yaxes(title=names[1], scaleanchor="x", scaleratio=1)
    return _layout(fig, height)


def term_bars(terms: dict[str, np.ndarray], limits: dict[str, float]) -> go.Figure:
    """The chosen plan's per-term cost summed over the horizon (hard terms: excess)."""
    names = list(terms)
    values = [float(np.sum(terms[k])) for k in names]
    colours = [
        LIMIT if k in limits and v > 0 else "#2c7bb6" for k, v in zip(names, values, strict=False)
    ]
    labels = [f"{k} (hard)" if k in limits else k for k in names]
    fig = go.Figure(
        go.Bar(
            x=values,
            y=labels,
            orientation="h",
            marker_color=colours,
            text=[f"{v:.4g}" for v in values],
        )
    )
    return _layout(fig, 60 + 40 * len(names), "chosen plan: cost per term")


def signals_over_time(view, names: list[str], limits: dict[str, float]) -> go.Figure:
    """Real signals so far, then the chosen plan's imagined ones from now on.

    ``limits`` draws a horizontal line on a signal's panel (a guardrail's edge)."""
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, subplot_titles=names)
    t_now = view.t
    for i, name in enumerate(names, start=1):
        real_t = [h["t"] for h in view.history] + [t_now]
        real_v = [h["signals"].get(name, np.nan) for h in view.history]
        real_v.append(view.signals.get(name, np.nan))
        fig.add_scatter(
            x=real_t,
            y=real_v,
            mode="lines",
            line=dict(color=REAL),
            name="real",
            showlegend=i == 1,
            row=i,
            col=1,
        )
        past = [h["imagined"].get(name) for h in view.history]
        if past and past[0] is not None:  # what each step's plan said one step ahead
            fig.add_scatter(
                x=[h["t"] + 1 for h in view.history],
                y=[p[0] for p in past],
                mode="markers",
                marker=dict(color=IMAGINED, size=5),
                name="imagined 1 step ahead",
                showlegend=i == 1,
                row=i,
                col=1,
            )
        if name in view.imagined:
            imag = view.imagined[name]
            fig.add_scatter(
                x=np.arange(t_now, t_now + len(imag) + 1),
                y=np.concatenate([[view.signals.get(name, np.nan)], imag]),
                mode="lines",
                line=dict(color=IMAGINED, dash="dash"),
                name="imagined (chosen plan)",
                showlegend=i == 1,
                row=i,
                col=1,
            )
        if name in limits:
            fig.add_hline(y=limits[name], line=dict(color=LIMIT, dash="dot"), row=i, col=1)
    fig.update_xaxes(title="step", row=len(names), col=1)
    return _layout(fig, 150 * len(names) + 40)


def guardrails(view) -> go.Figure | None:
    """Per hard term: the real value each step, what the plan predicted one step ahead,
    the limit; crosses where the plan was feasible but reality violated (false-safe)."""
    hist = view.history
    names = sorted({k for h in hist for k in h["real_terms"]})
    if not names:
        return None
    fig = make_subplots(rows=len(names), cols=1, shared_xaxes=True, subplot_titles=names)
    for i, name in enumerate(names, start=1):
        rows = [h for h in hist if name in h["real_terms"]]
        t = [h["t"] + 1 for h in rows]
        real = [h["real_terms"][name][0] for h in rows]
        limit = rows[-1]["real_terms"][name][1]
        pred = [h["planned_terms"].get(name, np.nan) for h in rows]
        kw = dict(row=i, col=1)
        fig.add_scatter(x=t, y=real, mode="lines+markers", line=dict(color=REAL), name="real", **kw)
        # planned_terms hold the excess over the limit; show it on the value's scale
        fig.add_scatter(
            x=t,
            y=[p + limit if p > 0 else None for p in pred],
            mode="markers",
            marker=dict(color=IMAGINED, symbol="diamond"),
            name="predicted violation",
            **kw,
        )
        fs = [(h["t"] + 1, h["real_terms"][name][0]) for h in rows if _false_safe(h, name)]
        if fs:
            fig.add_scatter(
                x=[a for a, _ in fs],
                y=[b for _, b in fs],
                mode="markers",
                marker=dict(color=LIMIT, symbol="x", size=11),
                name="false-safe",
                **kw,
            )
        fig.add_hline(y=limit, line=dict(color=LIMIT, dash="dot"), **kw)
    fig.update_layout(showlegend=True)
    fig.update_xaxes(title="step", row=len(names), col=1)
    return _layout(fig, 140 * len(names) + 60, "guardrails: predicted vs real")


def _false_safe(step: dict, name: str) -> bool:
    value, limit = step["real_terms"][name]
    return step["planned_feasible"] and value > limit


def strip(frames: np.ndarray, every: int = 2, scale: int = 2) -> np.ndarray:
    """(H, 64, 64, 3) -> one row of every ``every``-th frame, upscaled, 2-px gaps."""
    pick = frames[every - 1 :: every] if len(frames) >= every else frames
    big = pick.repeat(scale, axis=1).repeat(scale, axis=2)
    gap = np.full((big.shape[1], 2, 3), 255, np.uint8)
    row = []
    for f in big:
        row += [f, gap]
    return np.concatenate(row[:-1], axis=1)


def curves(history: list[dict], prefix: str, title: str, log: bool = False) -> go.Figure:
    """Training history: one line per key starting with ``prefix``."""
    keys = sorted({k for h in history for k in h if k.startswith(prefix)})
    fig = go.Figure()
    for k in keys:
        pts = [(h["step"], h[k]) for h in history if k in h]
        fig.add_scatter(
            x=[p[0] for p in pts],
            y=[p[1] for p in pts],
            mode="lines+markers" if len(pts) < 30 else "lines",
            name=k.removeprefix(prefix),
        )
    fig.update_xaxes(title="step")
    if log:
        fig.update_yaxes(type="log")
    return _layout(fig, 300, title)


def latent_spread(std: list[float]) -> go.Figure:
    """Per-dimension standard deviation of held-out latents: collapse shows as zeros."""
    fig = go.Figure(go.Bar(y=std, marker_color="#2c7bb6"))
    fig.add_hline(y=1.0, line=dict(color="#888", dash="dot"))
    fig.update_xaxes(title="latent dimension")
    fig.update_yaxes(title="std")
    return _layout(fig, 240, "collapse health: spread of each latent dimension")


def interval_bars(rows: list[dict], metrics: list[str]) -> go.Figure:
    """Grouped bars with 95 % intervals: rows = [{"design", metric: {value, low, high}}]."""
    fig = go.Figure()
    for r in rows:
        vals = [r[m]["value"] for m in metrics]
        fig.add_bar(
            x=metrics,
            y=vals,
            name=r["design"],
            error_y=dict(
                type="data",
                symmetric=False,
                array=[r[m]["high"] - r[m]["value"] for m in metrics],
                arrayminus=[r[m]["value"] - r[m]["low"] for m in metrics],
            ),
        )
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1.05])
    return _layout(fig, 360)
