"""The Lessons: one page per claim of the talk, each run live on this machine.

A page says the claim in a sentence, shows the figures measured when the shipped
checkpoints were made (``benchmarks/results/lessons.json``, so a lecture can start
at once), and has one button that
runs the experiment (``experiments.lessons``) in a worker thread (``LessonRun``; a
closed tab loses nothing, a reopened one finds it by the URL). The result is drawn
as it comes in; the chart exports as PNG (the camera in its toolbar), the rows as
CSV, Kitchen's frames as PNG. Then what it shows and what to try next.

Entry point: ``pages()``, the ``st.Page`` of each lesson for ``st.navigation``.
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import streamlit as st

from app import views
from app.measured import record
from app.state import adopt, current, device, fmt_eta, registry
from app.workers import LessonRun
from common.paths import PRETRAINED
from experiments.lessons import LESSONS
from experiments.lessons.blur import HORIZONS

ICONS = {
    "blur": ":material/blur_on:",
    "collapse": ":material/compress:",
    "guardrails": ":material/shield:",
    "open_loop": ":material/replay:",
    "hierarchy": ":material/account_tree:",
}


# each lesson's short version (a smoke test of the pages: the browser tests set it)
QUICK = os.environ.get("LAB_LESSONS_QUICK") == "1"
PAGES: dict = {}  # key -> its st.Page, for links from other pages (the Learn page)


def pages() -> list:
    """A page per lesson, in the talk's order, at ``/lesson-<key>``."""
    out = []
    for key, lesson in LESSONS.items():

        def draw(key: str = key) -> None:
            _lesson(key)

        PAGES[key] = st.Page(draw, title=lesson.nav, icon=ICONS[key],
                             url_path=f"lesson-{key.replace('_', '-')}")  # fmt: skip
        out.append(PAGES[key])
    return out


def _lesson(key: str) -> None:
    lesson = LESSONS[key]
    st.title(lesson.title)
    st.markdown(f"**The claim.** {lesson.claim}")
    run = current(f"lesson-{key}")
    shipped = record("lessons")  # ./lab bench lessons, benchmarks/results/lessons.json
    measured = (shipped or {}).get("figures", {}).get(key)
    if measured:
        said = (
            f"Measured when the shipped checkpoints were made (`{shipped['command']}`, "
            f"{shipped['machine']['description']}, {measured.get('seconds', '?')} s, "
            f"{shipped['date']})"
        )
        if run is None:  # before anything runs: the lecture starts from these
            st.caption(said + ":")
            st.table(_figure_rows(measured))
        else:  # beside this run's own figures: out of the way
            with st.expander(said):
                st.table(_figure_rows(measured))
    elif run is None:
        st.caption("No figures measured for this lesson yet: `./lab bench lessons` measures "
                   "them, or run it below.")  # fmt: skip
    missing = [n for n in lesson.needs if not Path(PRETRAINED, n).is_dir()]
    if missing:
        st.warning(f"This lesson needs the shipped {', '.join(missing)}: `./lab pretrain`.")
        return
    go, halt = st.columns([3, 1])
    if go.button("Run the experiment (at most two minutes)", type="primary",
                 disabled=run is not None and run.active, key=f"lesson/{key}/run"):  # fmt: skip
        run = adopt(LessonRun(key, device(), quick=QUICK))
    if run is not None and run.active and halt.button("Stop", key=f"lesson/{key}/stop"):
        run.stop()
    if run is not None:
        st.fragment(run_every=1.0 if run.active else None)(_result)(run.id, key)
    st.markdown(f"**What it shows.** {lesson.shows}")
    st.markdown(f"**Try next.** {lesson.next}")


def _result(run_id: str, key: str) -> None:
    run = registry().get(run_id, f"lesson-{key}")
    if run is None:
        return
    run.touch()
    polling = f"lesson/{key}/polling"
    if run.active:
        st.session_state[polling] = True
    elif st.session_state.pop(polling, False):
        st.rerun(scope="app")  # it has ended: the page stops polling, its buttons come back
    live = run.view()
    lesson = LESSONS[key]
    done = "finished" if run.status == "finished" else run.status
    st.progress(min(1.0, live.done / max(live.total, 1)),
                text=f"{live.stage} · {done} {fmt_eta(run.eta)}")  # fmt: skip
    if run.status == "error":
        st.error(views.plain(run.error))
    if live.rows:
        chart = lesson.chart
        fig = views.lesson_chart(live.rows, chart["x"], chart["y"], chart["color"])
        st.plotly_chart(fig, key=f"lesson/{key}/chart", config={
            "displaylogo": False,
            "toImageButtonOptions": {"format": "png", "filename": f"lesson-{key}", "scale": 2},
        })  # fmt: skip
        st.download_button("Download the rows (CSV)", _csv(live.rows), f"lesson-{key}.csv",
                           "text/csv", key=f"lesson/{key}/csv", on_click="ignore")  # fmt: skip
    if key == "blur" and live.pictures:
        _frames(live.pictures)
    if key == "collapse" and live.pictures:
        cols = st.columns(len(live.pictures))
        for col, (name, spread) in zip(cols, live.pictures.items(), strict=True):
            fig = views.latent_spread(list(spread))
            fig["layout"]["title"]["text"] = f"{name}: spread of each dimension"
            col.plotly_chart(fig, key=f"lesson/{key}/spread/{name}")
    if live.figures:
        st.table(_figure_rows(live.figures))


def _frames(pictures: dict[str, np.ndarray]) -> None:
    """Real frames at h = 1, 4, 16 above each model's, upscaled; and as a PNG."""
    rows, names = [], []
    for name in ("real", "JEPA", "generative"):
        if name in pictures:
            rows.append(views.strip(pictures[name], every=1, scale=3))
            names.append(name if name == "real" else f"{name} (imagined)")
    gap = np.full((4, rows[0].shape[1], 3), 255, np.uint8)
    grid = np.concatenate([x for r in rows for x in (r, gap)][:-1], axis=0)
    st.image(grid, caption=f"rows: {', '.join(names)} · columns: h = "
             f"{', '.join(str(h) for h in HORIZONS)} steps ahead", width=640)  # fmt: skip
    st.download_button("Download the frames (PNG)", iio.imwrite("<bytes>", grid, extension=".png"),
                       "lesson-blur-frames.png", "image/png", key="lesson/blur/png",
                       on_click="ignore")  # fmt: skip


# what a figure's name says, by the words in it (first match): its unit or meaning
MEANINGS = (
    ("seconds", "s, the whole lesson"),
    ("sharpness", "image-gradient energy, predicted frame over real frame (1: as sharp)"),
    ("probe_nrmse", "probes' error over each signal's spread, mean of the signals"),
    ("violation", "share of real steps breaking the rule"),
    ("success", "share of episodes reaching the goal"),
    ("_ms", "ms per plan"),
    ("rank", "effective rank of the latent (of 64 dimensions; 0: collapsed)"),
    ("gap", "m between the imagined and the real disc at the plan's last step"),
)


def _figure_rows(figures: dict) -> list[dict]:
    """Name, value (as few digits as it has, up to 4) and what it means."""
    rows = []
    for k, v in figures.items():
        what = next((m for word, m in MEANINGS if word in k), "")
        value = f"{v:.4g}" if isinstance(v, float) else str(v)
        rows.append({"figure": k.replace("_", " "), "value": value, "what it is": what})
    return rows


def _csv(rows: list[dict]) -> str:
    out = io.StringIO()
    keys = list(dict.fromkeys(k for r in rows for k in r))
    writer = csv.DictWriter(out, keys)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()
