"""Figures and images the pages draw (plotly and numpy only; no st.* here)."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

COST_BINS = 5  # sampled trajectories are drawn in this many colour bands of cost
BAND_COLOURS = ["#1a9850", "#91cf60", "#fee08b", "#fc8d59", "#d73027"]  # cheap -> dear
REAL, IMAGINED, LIMIT, POLICY = "#1f4e9c", "#e07b00", "#c0392b", "#b0399c"
HIGH = "#16a085"  # the high level's plan and subgoal
PERSON = "#9b2fa0"  # Kitchen's person (the purple capsule)


class Fig:
    """A plotly figure as a plain dict (``st.plotly_chart`` takes it), built without
    plotly's per-call validation, which cost ~20-35 ms per figure on every poll."""

    def __init__(self, rows: int = 1, titles: list[str] | None = None, gap: float = 0.08):
        self.rows = rows
        self.data: list[dict] = []
        self.shapes: list[dict] = []
        self.layout: dict = {}
        span = (1.0 - gap * (rows - 1)) / rows
        notes = []
        for r in range(1, rows + 1):
            top = 1.0 - (r - 1) * (span + gap)
            low, high = max(0.0, round(top - span, 6)), min(1.0, round(top, 6))
            self.layout[self._axis("yaxis", r)] = {"domain": [low, high]}
            self.layout[self._axis("xaxis", r)] = {
                "anchor": self._ref("y", r),
                **({"matches": "x", "showticklabels": r == rows} if r > 1 else {}),
            }
            if titles:
                notes.append(
                    {
                        "text": titles[r - 1],
                        "x": 0.5,
                        "y": top,
                        "xref": "paper",
                        "yref": "paper",
                        "xanchor": "center",
                        "yanchor": "bottom",
                        "showarrow": False,
                        "font": {"size": 12},
                    }
                )
        if rows > 1:
            self.layout["xaxis"]["showticklabels"] = False
        self.layout["annotations"] = notes

    @staticmethod
    def _axis(kind: str, row: int) -> str:
        return kind if row == 1 else f"{kind}{row}"

    @staticmethod
    def _ref(kind: str, row: int) -> str:
        return kind if row == 1 else f"{kind}{row}"

    def add(self, row: int = 1, **trace) -> None:
        trace.setdefault("type", "scatter")
        if row > 1:
            trace["xaxis"], trace["yaxis"] = self._ref("x", row), self._ref("y", row)
        self.data.append(trace)

    def hline(self, y: float, row: int = 1, color: str = "#888") -> None:
        self.shapes.append(
            {
                "type": "line",
                "x0": 0,
                "x1": 1,
                "xref": f"{self._ref('x', row)} domain",
                "y0": y,
                "y1": y,
                "yref": self._ref("y", row),
                "line": {"color": color, "dash": "dot"},
            }
        )

    def axis(self, kind: str, row: int = 1, **kw) -> None:
        self.layout.setdefault(self._axis(kind, row), {}).update(kw)

    def done(self, height: int, title: str = "", **layout) -> dict:
        # room for the figure's title, then for the first panel's title under it
        top = 10 + (22 if title else 0) + (20 if self.layout["annotations"] else 0)
        # The legend goes below the bottom axis's tick labels and title. Plotly places it in
        # fractions of the plot's height and, when it spills into the margin, widens the
        # margin, which moves it again: so the bottom margin is made to hold it here, from
        # an estimate of its rows (entries about 40 px plus 6.5 px a character, on ~560 px).
        bottom_axis = self.layout.get(self._axis("xaxis", self.rows), {})
        below = 66 if bottom_axis.get("title") else 36  # px: tick labels, then the title
        names = [t["name"] for t in self.data if t.get("name") and t.get("showlegend", True)]
        rows = max(1, math.ceil(sum(40 + 6.5 * len(n) for n in names) / 560))
        bottom = below + 20 * rows + 6
        lay = {
            **self.layout,
            "height": height,
            "margin": {"l": 10, "r": 10, "t": top, "b": bottom},
            "legend": {
                "orientation": "h",
                "y": -below / max(height - top - bottom, 50),
                "font": {"size": 11},
            },
            "shapes": self.shapes,
            **layout,
        }
        if title:
            lay["title"] = {"text": title, "font": {"size": 14}}
        return {"data": self.data, "layout": lay}


def _lines(paths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, H, 2) paths -> x, y arrays with NaN between paths (one trace for all)."""
    if len(paths) == 0:
        return np.array([]), np.array([])
    k, _h, _ = paths.shape
    gap = np.full((k, 1, 2), np.nan)
    flat = np.concatenate([paths, gap], axis=1).reshape(-1, 2)
    return flat[:, 0], flat[:, 1]


def plane_bounds(terms, names: tuple[str, str]) -> list[tuple[int, float, str]]:
    """The enabled hard terms that bound one axis of the plot plane, ``abs(x) <= L`` (a
    Bullet-Safety-Gym task's rule: Circle's boundaries, Run's track): (axis 0 or 1, L,
    the rule in words), for ``trajectories`` to draw as lines at -L and +L."""
    out = []
    for t in terms:
        if t.kind != "hard" or not t.enabled:
            continue
        for i, name in enumerate(names):
            if t.expression.replace(" ", "") == f"abs({name})" and t.limit > 0:
                out.append((i, float(t.limit), f"rule: abs({name}) <= {t.limit:g}"))
    return out


def trajectories(
    view, names: tuple[str, str], height: int = 420, clickable: bool = False, bounds=()
) -> dict:
    """The last iteration's sampled plans in the plot plane, coloured by cost band; elites
    blue, infeasible ones dotted grey, the chosen one black; the real path and goal.
    ``clickable``: the points a goal may be put at (``view.goal_points``) as an invisible
    first trace, so that a click selects the nearest (the page makes it the goal).
    ``bounds``: rules that bound an axis (``plane_bounds``), drawn as dashed red lines."""
    fig = Fig()
    pts = view.goal_points
    if clickable and pts is not None and len(pts):
        fig.add(
            x=pts[:, 0],
            y=pts[:, 1],
            mode="markers",
            showlegend=False,
            name="click: the goal here",
            marker={"size": 9, "color": "rgba(0,0,0,0)"},
            hovertemplate="goal here (%{x:.2f}, %{y:.2f})<extra></extra>",
        )
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
                fig.add(
                    x=x,
                    y=y,
                    mode="lines",
                    opacity=0.45,
                    hoverinfo="skip",
                    line={"color": BAND_COLOURS[b], "width": 1},
                    name=f"cost {edges[b]:.3g}-{edges[b + 1]:.3g}",
                )
        bad = np.flatnonzero(~feasible)
        if len(bad):
            x, y = _lines(xy[bad])
            fig.add(
                x=x,
                y=y,
                mode="lines",
                opacity=0.5,
                hoverinfo="skip",
                line={"color": "#888", "width": 1, "dash": "dot"},
                name=f"infeasible ({len(bad)})",
            )
        x, y = _lines(xy[view.elites])
        best = f"best {len(view.elites)}"  # CEM's elites; the lowest-cost ones for any planner
        fig.add(x=x, y=y, mode="lines", line={"color": "#2c7bb6", "width": 2}, name=best)
        x, y = _lines(xy[[view.chosen]])
        chosen = "chosen" if view.policy_xy is None else "the planner's choice (not acted on)"
        fig.add(x=x, y=y, mode="lines+markers", line={"color": "black", "width": 3}, name=chosen)
    if view.policy_xy is not None:  # System 1 acts on its own imagined path
        path = np.concatenate([start, view.policy_xy])
        fig.add(
            x=path[:, 0],
            y=path[:, 1],
            mode="lines+markers",
            line={"color": POLICY, "width": 3},
            name="the policy's path (acted on)",
        )
    if view.high_xy is not None:  # the high level's plan; its first point is the subgoal
        path = np.concatenate([start, view.high_xy])
        fig.add(
            x=path[:, 0],
            y=path[:, 1],
            mode="lines+markers",
            name=(f"high level's plan ({view.high_k} steps a point)"),
            line={"color": HIGH, "width": 2, "dash": "dash"},
            marker={"size": 6},
        )
        fig.add(
            x=path[1:2, 0],
            y=path[1:2, 1],
            mode="markers",
            name="subgoal (low level's goal)",
            marker={"size": 14, "symbol": "diamond", "color": HIGH},
        )
    if view.history:
        path = [[h["signals"][names[0]], h["signals"][names[1]]] for h in view.history]
        path = np.array([*path, start[0].tolist()])
        fig.add(
            x=path[:, 0], y=path[:, 1], mode="lines", line={"color": REAL, "width": 3}, name="real"
        )
    fig.add(
        x=start[:, 0], y=start[:, 1], mode="markers", marker={"size": 12, "color": REAL}, name="now"
    )
    _person(fig, view)
    if view.goal is not None and len(view.goal) >= 2:
        fig.add(
            x=[float(view.goal[0])],
            y=[float(view.goal[1])],
            mode="markers",
            name="goal",
            marker={"size": 16, "symbol": "star", "color": "#f1c40f", "line": {"width": 1}},
        )
    for cx, cy, hx, hy in view.walls:  # Wall's rooms and door, the arena's edge
        fig.shapes.append(
            {
                "type": "rect",
                "x0": cx - hx,
                "x1": cx + hx,
                "y0": cy - hy,
                "y1": cy + hy,
                "fillcolor": "#9a9a9a",
                "line": {"width": 0},
                "layer": "below",
            }
        )
    for axis, limit, label in bounds:  # lines across the whole plot at -limit and +limit
        for at in (-limit, limit):
            ends = {"x0": at, "x1": at, "y0": 0, "y1": 1, "xref": "x", "yref": "paper"}
            if axis:
                ends = {"y0": at, "y1": at, "x0": 0, "x1": 1, "yref": "y", "xref": "paper"}
            line = {"color": "#d7191c", "width": 2, "dash": "dash"}
            fig.shapes.append({"type": "line", **ends, "line": line})
        # a legend entry (shapes have none): no data of its own
        fig.add(x=[None], y=[None], mode="lines", line=line, name=label)
    # equal scales, and every point in view: the plot area narrows, not the range
    fig.axis("xaxis", title={"text": names[0]}, constrain="domain")
    fig.axis("yaxis", title={"text": names[1]}, scaleanchor="x", scaleratio=1, constrain="domain")
    return fig.done(height)


def term_bars(
    terms: dict[str, np.ndarray], limits: dict[str, float], off: frozenset | set = frozenset()
) -> dict:
    """The chosen plan's per-term cost summed over the horizon (hard terms: excess).

    A term switched off (``off``) is not counted: it is drawn at 0, hollow, "(off)" by its
    name, not as a bar beside the ones that are (its full value read as a cost in force).
    """
    names = list(terms)
    values = [0.0 if k in off else float(np.sum(terms[k])) for k in names]

    def label(k: str) -> str:
        if k in off:
            return f"{k} (off)"
        return f"{k} (hard)" if k in limits else k

    fig = Fig()
    fig.add(
        type="bar",
        orientation="h",
        x=values,
        y=[label(k) for k in names],
        marker={
            "color": [
                "rgba(0,0,0,0)" if k in off else LIMIT if k in limits and v > 0 else "#2c7bb6"
                for k, v in zip(names, values, strict=True)
            ],
            "line": {
                "color": ["#999999" if k in off else "rgba(0,0,0,0)" for k in names],
                "width": 1,
            },
        },
        text=[
            "off: not counted" if k in off else f"{v:.4g}"
            for k, v in zip(names, values, strict=True)
        ],
        textposition=["outside" if k in off else "auto" for k in names],
        cliponaxis=False,
    )
    return fig.done(60 + 40 * len(names), "chosen plan: cost per term")


def _person(fig: Fig, view) -> None:
    """Kitchen's person on the plane: where they are, and where the model's latent puts
    them (its probes); "hidden" while a screen hides them (``scenes.occluded``)."""
    real = [view.signals.get(k) for k in ("person_x", "person_y")]
    if None in real:
        return
    hidden = view.signals.get("person_seen", 1.0) == 0
    fig.add(
        x=[real[0]],
        y=[real[1]],
        mode="markers",
        name="person (hidden from the camera)" if hidden else "person",
        marker={"size": 14, "color": PERSON, "opacity": 0.35 if hidden else 1.0},
    )
    believed = [view.believed.get(k) for k in ("person_x", "person_y")]
    if None not in believed:
        fig.add(
            x=[believed[0]],
            y=[believed[1]],
            mode="markers",
            name="person, where the model believes",
            marker={"size": 14, "symbol": "circle-open", "color": PERSON, "line": {"width": 3}},
        )


def surprise_over_time(view) -> dict | None:
    """The model's surprise at each step's latent (its gap to what it expected), the
    steps with the person hidden marked; None before there is any."""
    rows = [(h["t"], h["surprise"], h["signals"]) for h in view.history]
    rows = [r for r in [*rows, (view.t, view.surprise, view.signals)] if r[1] is not None]
    if not rows:
        return None
    t, values, signals = zip(*rows, strict=True)
    seen = [s.get("person_seen", 1.0) for s in signals]
    fig = Fig()
    fig.add(
        x=t,
        y=values,
        mode="lines+markers",
        name="surprise",
        line={"color": IMAGINED},
        marker={"color": [PERSON if s == 0 else IMAGINED for s in seen], "size": 6},
    )
    if any(s == 0 for s in seen):
        fig.add(x=[None], y=[None], mode="markers", marker={"color": PERSON}, name="person hidden")
    now = "" if view.surprise is None else f": {view.surprise:.3g} now"
    how = "belief against its prior" if view.memory else "latent against its prediction"
    fig.axis("xaxis", title={"text": "step"})
    fig.axis("yaxis", rangemode="tozero")
    return fig.done(220, f"Surprise{now} (the model's {how}, RMS)")


def signals_over_time(view, names: list[str], limits: dict[str, float]) -> dict:
    """Real signals so far, each step's one-step-ahead imagination, and the chosen plan's
    imagined signals from now on. ``limits`` draws a line on a signal's panel."""
    fig = Fig(len(names), names)
    t_now = view.t
    for i, name in enumerate(names, start=1):
        first = i == 1
        real_t = [h["t"] for h in view.history] + [t_now]
        real_v = [h["signals"].get(name, np.nan) for h in view.history]
        real_v.append(view.signals.get(name, np.nan))
        fig.add(
            i,
            x=real_t,
            y=real_v,
            mode="lines",
            line={"color": REAL},
            name="real",
            showlegend=first,
            legendgroup="real",
        )
        past = [h["imagined"].get(name) for h in view.history]
        if past and past[0] is not None:
            fig.add(
                i,
                x=[h["t"] + 1 for h in view.history],
                y=[float(p[0]) for p in past],
                mode="markers",
                marker={"color": IMAGINED, "size": 5},
                name="imagined 1 step ahead",
                showlegend=first,
                legendgroup="ahead",
            )
        if name in view.imagined:
            imag = view.imagined[name]
            fig.add(
                i,
                x=np.arange(t_now, t_now + len(imag) + 1),
                y=np.concatenate([[view.signals.get(name, np.nan)], imag]),
                mode="lines",
                line={"color": IMAGINED, "dash": "dash"},
                name="imagined (chosen plan)",
                showlegend=first,
                legendgroup="plan",
            )
        if name in limits:
            fig.hline(limits[name], i, LIMIT)
    fig.axis("xaxis", len(names), title={"text": "step"})
    return fig.done(150 * len(names) + 40)


def goal_distance(view, task: list[str]) -> dict:
    """Along the chosen plan, h = 1..H steps ahead: the steps to go the model's distance
    head reads off the imagined latents (no labels), beside the distance to the goal its
    probes read (metres, labelled signals): the label-free cost against the labelled one."""
    steps = np.asarray(view.goal_steps)
    h = np.arange(1, len(steps) + 1)
    fig = Fig(
        2,
        [
            "steps to go (latent distance head, no labels)",
            "distance to the goal the probes read (m)",
        ],
    )
    fig.add(
        1,
        x=h,
        y=steps,
        mode="lines+markers",
        line={"color": IMAGINED},
        name="steps to go",
        showlegend=False,
    )
    if all(k in view.imagined for k in task) and view.goal is not None:
        probed = np.sqrt(
            sum(
                (np.asarray(view.imagined[k]) - g) ** 2
                for k, g in zip(task, view.goal, strict=True)
            )
        )
        fig.add(
            2,
            x=h,
            y=probed[: len(h)],
            mode="lines+markers",
            line={"color": REAL},
            name="probed distance",
            showlegend=False,
        )
    fig.axis("xaxis", 2, title={"text": "steps ahead"})
    return fig.done(330)


def guardrails(view) -> dict | None:
    """Per hard term: the real value each step, the plan's predicted violation one step
    ahead, the limit; crosses where the plan was feasible but reality violated."""
    hist = view.history
    names = sorted({k for h in hist for k in h["real_terms"]})
    if not names:
        return None
    # a rule switched off is still measured in reality, but nothing was predicted for it
    planned = {k for h in hist for k in h["planned_terms"]}
    titles = [k if k in planned else f"{k} (off: measured, not planned with)" for k in names]
    fig = Fig(len(names), titles)
    legend = set()  # each kind of mark in the legend once, where it first has marks
    for i, name in enumerate(names, start=1):
        rows = [h for h in hist if name in h["real_terms"]]
        t = [h["t"] + 1 for h in rows]
        limit = rows[-1]["real_terms"][name][1]
        fig.add(
            i,
            x=t,
            y=[h["real_terms"][name][0] for h in rows],
            mode="lines+markers",
            line={"color": REAL},
            name="real",
            showlegend="real" not in legend,
            legendgroup="real",
        )
        legend.add("real")
        # planned_terms hold the excess over the limit; shown on the value's scale
        pred = [
            (h["t"] + 1, h["planned_terms"].get(name, 0.0) + limit)
            for h in rows
            if h["planned_terms"].get(name, 0.0) > 0
        ]
        fs = [(h["t"] + 1, h["real_terms"][name][0]) for h in rows if _false_safe(h, name)]
        label = "predicted violation" + (
            f" (within ±{view.margin:g} x error)" if view.margin else ""
        )
        for group, points, marker, text in (
            ("pred", pred, {"color": IMAGINED, "symbol": "diamond"}, label),
            ("fs", fs, {"color": LIMIT, "symbol": "x", "size": 11}, "false-safe"),
        ):
            if not points:  # a legend entry with no marks read as a broken chart
                continue
            fig.add(
                i,
                x=[a for a, _ in points],
                y=[b for _, b in points],
                mode="markers",
                marker=marker,
                name=text,
                showlegend=group not in legend,
                legendgroup=group,
            )
            legend.add(group)
        fig.hline(limit, i, LIMIT)
    fig.axis("xaxis", len(names), title={"text": "step"})
    return fig.done(140 * len(names) + 110, "guardrails: predicted vs real")


def _false_safe(step: dict, name: str) -> bool:
    value, limit = step["real_terms"][name]  # only terms planned with can be false-safe
    return name in step["planned_terms"] and step["planned_feasible"] and value > limit


GOAL_RING = np.array([255, 215, 0], np.uint8)  # gold: neither scene's marker nor a body


def mark_goal(frames: np.ndarray, uv: tuple[float, float] | None, radius: int = 3) -> np.ndarray:
    """(..., S, S, 3) frames with a ring where the goal is (``uv``: fractions of width and
    height). Decoded imagined frames come from latents that do not hold the goal, so the
    page draws it on them; returns a copy (the input is unchanged)."""
    out = frames.copy()
    if uv is None:
        return out
    size = frames.shape[-2]
    yy, xx = np.mgrid[:size, :size]
    d = np.hypot(xx + 0.5 - uv[0] * size, yy + 0.5 - uv[1] * size)  # px from the goal
    out[..., (d >= radius - 0.7) & (d <= radius + 0.7), :] = GOAL_RING
    return out


def strip(frames: np.ndarray, every: int = 2, scale: int = 2) -> np.ndarray:
    """(H, 64, 64, 3) -> one row of every ``every``-th frame, upscaled, 2-px gaps."""
    pick = frames[every - 1 :: every] if len(frames) >= every else frames
    big = pick.repeat(scale, axis=1).repeat(scale, axis=2)
    gap = np.full((big.shape[1], 2, 3), 255, np.uint8)
    row = []
    for f in big:
        row += [f, gap]
    return np.concatenate(row[:-1], axis=1)


def curves(history: list[dict], prefix: str, title: str, log: bool = False) -> dict:
    """Training history: one line per key starting with ``prefix``."""
    keys = sorted({k for h in history for k in h if k.startswith(prefix)})
    fig = Fig()
    for k in keys:
        pts = [(h["step"], h[k]) for h in history if k in h]
        fig.add(
            x=[p[0] for p in pts],
            y=[p[1] for p in pts],
            name=k.removeprefix(prefix) or k.split("/")[-1],
            mode="lines+markers" if len(pts) < 30 else "lines",
        )
    fig.axis("xaxis", title={"text": "step"})
    if log:
        fig.axis("yaxis", type="log")
    return fig.done(300, title)


def latent_spread(std: list[float]) -> dict:
    """Per-dimension standard deviation of held-out latents: collapse shows as zeros."""
    fig = Fig()
    fig.add(type="bar", y=std, marker={"color": "#2c7bb6"}, name="std")
    fig.hline(1.0)
    fig.axis("xaxis", title={"text": "latent dimension"})
    fig.axis("yaxis", title={"text": "std"})
    return fig.done(240, "collapse health: spread of each latent dimension")


def interval_bars(
    rows: list[dict], metrics: list[str], labels: list[str] | None = None, unit: str = ""
) -> dict:
    """Grouped bars with 95 % intervals: rows = [{"design", metric: {value, low, high}}]; a
    metric a row lacks (undefined for it) leaves a gap. ``labels``: the metrics in words.
    ``unit``: the y axis's title for figures that are not shares (an episode's return),
    drawn on their own scale; without it the axis is a share, 0 to 1."""
    fig = Fig()
    for r in rows:
        got = [r.get(m) for m in metrics]
        fig.add(
            type="bar",
            x=labels or metrics,
            y=[v and v["value"] for v in got],
            name=r["design"],
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [v and v["high"] - v["value"] for v in got],
                "arrayminus": [v and v["value"] - v["low"] for v in got],
            },
        )
    if unit:
        fig.axis("yaxis", title={"text": unit})
    else:
        fig.axis("yaxis", range=[0, 1.05], title={"text": "share of episodes or steps (0 to 1)"})
    return fig.done(360, barmode="group")


def stress_scatter(episodes: list[dict]) -> dict:
    """A stress test as it went: each episode's worst real excess over the rule, in the
    order run (above 0: it broke the rule)."""
    fig = Fig()
    x = [e["episode"] for e in episodes]
    y = [e["excess"] for e in episodes]
    fig.add(
        type="scatter",
        mode="markers",
        x=x,
        y=y,
        name="episode",
        marker={"color": ["#d7191c" if v > 0 else "#2c7bb6" for v in y], "size": 6},
    )
    fig.hline(0.0)
    fig.axis("xaxis", title={"text": "episode (in the order the search ran them)"})
    fig.axis("yaxis", title={"text": "worst real excess over the rule"})
    return fig.done(300, "red: the rule broken in reality")


PALETTE = ["#1f4e9c", "#e07b00", "#16a085", "#b0399c", "#c0392b", "#7f8c8d"]


_MARKDOWN = str.maketrans({c: "\\" + c for c in "\\`*_{}[]()<>#+-.!|~:$"})


def plain(text: str) -> str:
    """``text`` escaped for Streamlit's Markdown: a user's names and expressions shown as
    typed (``__import__`` not turned bold, ``:red[x]`` not coloured, ``$x$`` not maths)."""
    return str(text).translate(_MARKDOWN)


def drawn(fig: dict | None):
    """A figure of this module for ``st.plotly_chart``, as a plotly Figure that is not
    validated again: given a dict, Streamlit builds a validated Figure from it on every
    draw, and on a class's server that was most of the web process's work (20 agents on
    Run: plotly's validation in 206 of the web process's 971 samples, ``./lab bench
    class_load --phases run`` under py-spy). The figures here are tested as drawn
    (tests/test_app_plan.py)."""
    return None if fig is None else go.Figure(fig, _validate=False)
