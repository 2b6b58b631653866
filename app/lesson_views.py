"""What the Lessons pages draw and export, built from a lesson's figures, intervals,
rows and settings (``experiments.lessons``): the headline chart (the claim's figures
as bars, with their intervals, drawn from the shipped figures before a run), the
curves a run draws as it goes, the figures table in words, the CSV a teacher keeps
(headed by the settings that made it) and Kitchen's frames labelled for a slide.

Plain functions of data, no Streamlit: the pages (``app/screens/lessons.py``) show
them, the tests call them.
"""

from __future__ import annotations

import csv
import io

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from app.views import PALETTE, Fig, strip
from experiments.lessons import Lesson, Panel

# each row column a lesson reports: (what it is, unit, lower is better); "%": a rate
COLUMNS = {
    "sharpness_over_real": ("sharpness of the whole frame, imagined over real", "ratio", False),
    "person_sharpness_over_real": (
        "sharpness where the person walks, imagined over real",
        "ratio",
        False,
    ),
    "probe_nrmse": ("probes' error", "signal spreads", True),
    "pixel_mse": ("pixel error (mean squared)", "of 1", True),
    "effective_rank": ("effective rank of the latent", "dimensions", False),
    "median_spread": ("median spread of a latent dimension", "of unit", False),
    "violation_step_rate": ("share of real steps breaking the rule", "%", True),
    "success": ("share of episodes reaching the goal", "%", False),
    "plan_ms": ("time per plan", "ms", True),
    "steps_to_goal": ("steps to the goal", "steps", True),
    "blind_plan_gap_m": ("gap between imagined and real disc along the blind plan", "m", True),
    "rollout_error_m": ("the model's error, imagining from the first state", "m", True),
    "one_step_error_m": ("the model's error, one step from each real state", "m", True),
    "episode_cost": ("cost per episode (real steps breaking the rule)", "steps", True),
    "episode_return": ("return per episode", "reward", False),
    "person_y": ("the person's y: real, and read from each model's latent", "m", False),
}
AXES = {
    "h": "steps imagined ahead, h",
    "seconds": "training time (s)",
    "step": "step of the episode",
    "actor": "who decides",
    "design": "design",
}
PRESENT_FONT = 20  # px, the presentation view's chart text


def pct(rate: float) -> str:
    """A rate as a percentage, as few digits as it needs: 0.0014 -> '0.14 %', 0.9 -> '90 %'."""
    v = 100 * rate
    if v == 0 or v >= 10:
        return f"{v:.0f} %"
    return f"{v:.2g} %" if v < 1 else f"{v:.1f} %".replace(".0 %", " %")


def value_text(v, unit: str) -> str:
    if not isinstance(v, int | float):
        return str(v)
    if unit == "%":
        return pct(v)
    if isinstance(v, int) and abs(v) >= 1000:  # a count: every digit, in threes
        return f"{v:,}".replace(",", " ")
    text = f"{v:.3g}"
    return f"{text} {unit}" if unit in ("m", "ms", "s") else text


def unit_of(lesson: Lesson, key: str) -> str:
    """A figure's unit: its panel's, else by its name."""
    for panel in lesson.panels:
        if any(k == key for _, _, k in panel.bars):
            return panel.unit
    if key == "seconds":
        return "s"
    if "success" in key or "violation" in key:
        return "%"
    if key.endswith("_ms") or "_ms_" in key:  # plan_ms, plan_ms_memory
        return "ms"
    if "gap" in key or "_error" in key:  # distances: blind_gap_end, hidden_error_memory
        return "m"
    if "nrmse" in key:
        return "signal spreads"
    if "sharpness" in key:
        return "ratio"
    return ""


def interval_text(span, unit: str) -> str:
    if span is None:
        return ""
    lo, hi = span
    if unit == "%":
        return f"{pct(lo).removesuffix(' %')} to {pct(hi)}"
    return f"{lo:.3g} to {hi:.3g}"


def figure_rows(lesson: Lesson, figures: dict, intervals: dict) -> list[dict]:
    """The figures table: each figure in words, its value (rates as percentages), its
    95 % interval where one is known, and its unit."""
    rows = []
    for k, v in figures.items():
        unit = unit_of(lesson, k)
        rows.append(
            {
                "figure": lesson.words.get(k, k.replace("_", " ")),
                "value": value_text(v, unit),
                "95 % interval": interval_text(intervals.get(k), unit),
                "unit": "percent" if unit == "%" else unit,
            }
        )
    return rows


def chart_title(lesson: Lesson, settings: dict) -> str:
    """The claim, the scene and the episodes: what a slide's chart says on its own."""
    return (
        f"{lesson.title}<br><sup>{settings.get('scene', '')} · "
        f"{settings.get('episodes', '').split(';')[0]} · seed "
        f"{settings.get('seed', '').split(';')[0].split(' ')[0]}</sup>"
    )


def _panel_title(panel: Panel) -> str:
    unit = "percent" if panel.percent else panel.unit
    return f"{panel.measure} ({unit})" + (" · lower is better" if panel.lower_better else "")


def headline_chart(
    lesson: Lesson, figures: dict, intervals: dict, title: str, present: bool = False
) -> dict | None:
    """The lesson's headline figures as grouped bars, a panel per measure (its title
    says the unit and whether lower is better), each bar with its 95 % interval where
    known and its value written on it, so a bar of 0.14 % still shows. None when no
    figure of any panel is there."""
    panels = [p for p in lesson.panels if any(k in figures for _, _, k in p.bars)]
    if not panels:
        return None
    font = PRESENT_FONT if present else 12
    gap = 0.16
    span = (1.0 - gap * (len(panels) - 1)) / len(panels)
    data, layout, notes = [], {}, []
    bars = list(dict.fromkeys(b for p in panels for _, b, _ in p.bars))
    shown: set[str] = set()
    for r, panel in enumerate(panels, start=1):
        scale = 100.0 if panel.percent else 1.0
        top = max([abs(float(figures[k])) * scale for _, _, k in panel.bars if k in figures])
        hi = 1.0 - (r - 1) * (span + gap)
        ax = "" if r == 1 else str(r)
        layout[f"yaxis{ax}"] = {
            "domain": [max(0.0, round(hi - span, 4)), round(hi, 4)],
            "rangemode": "tozero",
            "title": {"text": "%" if panel.percent else panel.unit},
            "automargin": True,
        }
        layout[f"xaxis{ax}"] = {
            "anchor": f"y{ax}",
            "automargin": True,
            "type": "category",
            "tickfont": {"size": font},
        }
        layout[f"yaxis{ax}"]["tickfont"] = {"size": font}
        notes.append(
            {
                "text": f"<b>{_panel_title(panel)}</b>",
                "x": 0.5,
                "y": hi,
                "xref": "paper",
                "yref": "paper",
                "xanchor": "center",
                "yanchor": "bottom",
                "showarrow": False,
                "font": {"size": font},
            }
        )
        for bar in dict.fromkeys(b for _, b, _ in panel.bars):
            mine = [(g, k) for g, b, k in panel.bars if b == bar and k in figures]
            if not mine:
                continue
            ys = [float(figures[k]) * scale for _, k in mine]
            spans = [intervals.get(k) for _, k in mine]
            up = [(s[1] * scale - y) if s else 0.0 for s, y in zip(spans, ys, strict=True)]
            down = [(y - s[0] * scale) if s else 0.0 for s, y in zip(spans, ys, strict=True)]
            trace = {
                "type": "bar",
                "x": [g for g, _ in mine],
                "y": ys,
                "name": bar,
                "legendgroup": bar,
                "showlegend": bar not in shown and len(bars) > 1,
                "marker": {"color": PALETTE[bars.index(bar) % len(PALETTE)]},
                "text": [value_text(float(figures[k]), panel.unit) for _, k in mine],
                # inside a bar at its foot, clear of the interval's whisker; above a
                # bar too small to hold it, where it marks a bar of 0.14 % (or 0)
                "textposition": ["inside" if y > 0.15 * top else "outside" for y in ys],
                "insidetextanchor": "start",
                "textangle": 0,
                "constraintext": "none",
                "cliponaxis": False,
                "textfont": {"size": font},
                "error_y": {
                    "type": "data",
                    "symmetric": False,
                    "array": up,
                    "arrayminus": down,
                    "visible": any(spans),
                    "color": "#444",
                },
            }
            if r > 1:
                trace["xaxis"], trace["yaxis"] = f"x{ax}", f"y{ax}"
            shown.add(bar)
            data.append(trace)
    height = (340 if present else 260) * len(panels) + 120
    layout.update(
        {
            "annotations": notes,
            "barmode": "group",
            "height": height,
            "title": {"text": title, "font": {"size": font + 4}, "x": 0.01},
            "margin": {"l": 10, "r": 10, "t": 120 if present else 100, "b": 40},
            "legend": {
                "orientation": "h",
                "y": -0.08 if len(panels) > 1 else -0.2,
                "font": {"size": font},
            },
            "font": {"size": font},
        }
    )
    return {"data": data, "layout": layout}


def rows_chart(rows: list[dict], x: str, ys: list, color: str | None) -> dict:
    """A lesson's rows as they come in: one panel per measured column in ``ys``, against
    ``x``, each titled in words with its unit (and "lower is better" where it is); a
    line per value of ``color`` (or grouped bars when ``x`` is a name), broken where a
    row holds the column with None. A pair of columns shares a panel: the first drawn
    solid, the second dotted. Rates as percentages."""
    panels = [(y,) if isinstance(y, str) else tuple(y) for y in ys]

    def words(c: str) -> str:
        return COLUMNS.get(c, (c.replace("_", " "), "", False))[0]

    titles = []
    for p in panels:
        _, unit, lower = COLUMNS.get(p[0], ("", "", False))
        name = " (solid) vs ".join(words(c) for c in p) + (" (dotted)" if len(p) > 1 else "")
        unit = "percent" if unit == "%" else unit
        titles.append(
            f"{name}" + (f" ({unit})" if unit else "") + (" · lower is better" if lower else "")
        )
    fig = Fig(rows=len(panels), titles=titles, gap=0.12)
    groups = sorted({str(r.get(color, "")) for r in rows}) if color else [""]
    bars = any(isinstance(r.get(x), str) for r in rows)
    for i, group in enumerate(groups):
        mine = [r for r in rows if not color or str(r.get(color, "")) == group]
        name = f"{color} {group}" if color and group.replace(".", "").isdigit() else group
        for row, panel in enumerate(panels, start=1):
            for j, y in enumerate(panel):
                scale = 100.0 if COLUMNS.get(y, ("", "", False))[1] == "%" else 1.0
                # a row that has the column with no value is a gap in its line
                pts = [(r[x], None if r[y] is None else r[y] * scale) for r in mine if y in r]
                if bars:
                    pts = [pt for pt in pts if pt[1] is not None]
                trace = {
                    "x": [p[0] for p in pts],
                    "y": [p[1] for p in pts],
                    "name": name or y,
                    "legendgroup": name,
                    "showlegend": row == 1 and bool(name),
                    "marker": {"color": PALETTE[i % len(PALETTE)]},
                }
                if bars:
                    trace["text"] = [pct(v / 100) if scale > 1 else f"{v:.3g}" for _, v in pts]
                    trace["textposition"] = "outside"
                    trace["cliponaxis"] = False
                    fig.add(row, type="bar", **trace)
                else:
                    trace["line"] = {"dash": "dot" if j else "solid"}
                    fig.add(row, mode="lines+markers" if len(pts) < 30 else "lines", **trace)
    for row, p in enumerate(panels, start=1):
        unit = COLUMNS.get(p[0], ("", "", False))[1]
        fig.axis("yaxis", row, rangemode="tozero", title={"text": unit})  # from 0, not zoomed
    fig.axis("xaxis", len(panels), title={"text": AXES.get(x, x.replace("_", " "))})
    return fig.done(220 * len(panels) + 60, barmode="group")


def csv_text(
    lesson: Lesson, settings: dict, figures: dict, intervals: dict, rows: list[dict]
) -> str:
    """The rows as CSV, headed by comment lines (``#``): the settings that made them,
    then each figure in words with its value and interval (the headline a slide quotes).
    ``csv.reader`` and spreadsheets take the rows after the comments
    (``pandas.read_csv(..., comment="#")``)."""
    out = io.StringIO()
    for k, v in settings.items():
        out.write(f"# {k}: {_one_line(v)}\n")
    for row in figure_rows(lesson, figures, intervals):
        span = f" (95 % interval {row['95 % interval']})" if row["95 % interval"] else ""
        out.write(f"# {_one_line(row['figure'])}: {row['value']}{span}\n")
    if rows:
        keys = list(dict.fromkeys(k for r in rows for k in r))
        writer = csv.DictWriter(out, keys, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return out.getvalue()


def _one_line(text) -> str:
    return " ".join(str(text).replace("`", "").split())


def read_csv(text: str) -> tuple[dict[str, str], list[dict]]:
    """``csv_text``'s output back: (the comment lines as name -> value, the rows)."""
    header, body = {}, []
    for line in text.splitlines():
        if line.startswith("# "):
            name, _, value = line[2:].partition(": ")
            header[name] = value
        else:
            body.append(line)
    return header, list(csv.DictReader(io.StringIO("\n".join(body))))


def labelled_frames(
    pictures: dict[str, np.ndarray], horizons: tuple[int, ...], scale: int = 3
) -> np.ndarray:
    """Real frames at each horizon above each model's, upscaled, with a label column
    (real / JEPA / generative) and a header row (h = 1 / 4 / 16 steps ahead), all drawn
    into the image, so the PNG explains itself on a slide."""
    names = [n for n in ("real", "JEPA", "generative") if n in pictures]
    strips = [strip(pictures[n], every=1, scale=scale) for n in names]
    width, tile = strips[0].shape[1], 64 * scale
    label_w, head_h, gap = 150, 34, 4
    canvas = Image.new("RGB", (label_w + width, head_h + len(strips) * (tile + gap)), "white")
    draw = ImageDraw.Draw(canvas)
    font = _font(20)
    for c, h in enumerate(horizons):
        x = label_w + c * (tile + 2) + tile // 2
        draw.text((x, head_h // 2), f"h = {h}", fill="black", font=font, anchor="mm")
    for r, (name, row) in enumerate(zip(names, strips, strict=True)):
        y = head_h + r * (tile + gap)
        canvas.paste(Image.fromarray(row), (label_w, y))
        label = name if name == "real" else f"{name}\n(imagined)"
        draw.multiline_text((8, y + tile // 2), label, fill="black", font=font, anchor="lm")
    return np.asarray(canvas)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable font
    except TypeError:
        return ImageFont.load_default()
