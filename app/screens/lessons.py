"""The Lessons: one page per claim of the talk, each run live on this machine.

A page says the claim in a sentence and what runs (scene, rule, what "a new situation"
is, episodes, seed), draws the claim's figures measured when the shipped checkpoints
were made (``benchmarks/results/lessons.json``, so a lecture can start at once), and
has one button that runs the experiment (``experiments.lessons``) with the seed (and,
where the lesson allows, the scene) chosen on the page, in a worker thread
(``LessonRun``; a closed tab loses nothing, a reopened one finds it by the URL).
The result is drawn as it comes in, each rate with its 95 % interval. Exports for a
slide: the chart as PNG (the camera in its toolbar; titled with the claim, scene and
episodes), the rows as CSV headed by their settings and figures, Kitchen's frames as
a labelled PNG. A presentation view (``?present=1``, or its toggle) shows the claim,
the chart and the figures large, without the sidebar. Then what it shows and what to
try next.

Entry point: ``pages()``, the ``st.Page`` of each lesson for ``st.navigation``.
"""

from __future__ import annotations

import os
from pathlib import Path

import imageio.v3 as iio
import streamlit as st

from app import lesson_views, views
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
    "field": ":material/sports_score:",
    "memory": ":material/visibility_off:",
}


# each lesson's short version (a smoke test of the pages: the browser tests set it)
QUICK = os.environ.get("LAB_LESSONS_QUICK") == "1"
PAGES: dict = {}  # key -> its st.Page, for links from other pages (the Learn page)
MAX_SEED = 2**31 - 1
# The presentation view: no sidebar, larger text. Streamlit has no setting for either,
# so a style block does it (only this page's run draws it).
PRESENT_STYLE = """<style>
[data-testid="stSidebar"], [data-testid="stSidebarCollapsedControl"],
[data-testid="stExpandSidebarButton"] {display: none;}
.st-key-lesson-present p, .st-key-lesson-present li {font-size: 1.6rem; line-height: 1.4;}
.st-key-lesson-present h1 {font-size: 3rem;}
.st-key-lesson-present table {font-size: 1.3rem;}
</style>"""


def pages() -> list:
    """A page per lesson, in the talk's order, at ``/lesson-<key>``."""
    out = []
    for key, lesson in LESSONS.items():

        def draw(key: str = key) -> None:
            _lesson(key)

        PAGES[key] = st.Page(
            draw, title=lesson.nav, icon=ICONS[key], url_path=f"lesson-{key.replace('_', '-')}"
        )
        out.append(PAGES[key])
    return out


def _presenting() -> bool:
    return st.query_params.get("present") == "1"


def _toggle_present() -> None:
    if _presenting():
        del st.query_params["present"]
    else:
        st.query_params["present"] = "1"


def _lesson(key: str) -> None:
    lesson = LESSONS[key]
    present = _presenting()
    run = current(f"lesson-{key}")
    shipped = record("lessons")  # ./lab bench lessons, benchmarks/results/lessons.json
    measured = (shipped or {}).get("figures", {}).get(key)
    st.toggle(
        "Presentation view",
        value=present,
        on_change=_toggle_present,
        key=f"lesson/{key}/present",
        help="The claim, the chart and the figures, large, without the sidebar "
        "(this page's address with ?present=1 opens it so)",
    )
    if present:
        st.html(PRESENT_STYLE)
        with st.container(key="lesson-present"):
            st.title(lesson.title)
            st.markdown(f"**The claim.** {lesson.claim}")
            if run is not None:
                st.fragment(run_every=1.0 if run.active else None)(_result)(run.id, key, True)
            elif measured:
                _shipped(lesson, shipped, measured, True)
        return
    st.title(lesson.title)
    st.markdown(f"**The claim.** {lesson.claim}")
    seed, scene = _settings(key, run)
    if run is None:
        _what_runs(lesson.setup(QUICK, seed, scene), "What a run runs")
        if measured:
            _shipped(lesson, shipped, measured, False)
        else:
            st.caption(
                "No figures measured for this lesson yet: `./lab bench lessons` "
                "measures them, or run it below."
            )
    elif measured:
        said = _said(shipped, measured)
        with st.expander(said):  # beside this run's own figures: out of the way
            _shipped(lesson, shipped, measured, False, chart=False)
    missing = [n for n in lesson.needs if not Path(PRETRAINED, n).is_dir()]
    if missing:
        st.warning(f"This lesson needs the shipped {', '.join(missing)}: `./lab pretrain`.")
        return
    go, halt = st.columns([3, 1])
    if go.button(
        "Run the experiment (at most two minutes)",
        type="primary",
        disabled=run is not None and run.active,
        key=f"lesson/{key}/run",
    ):
        run = adopt(LessonRun(key, device(), QUICK, seed, scene))
    if run is not None and run.active and halt.button("Stop", key=f"lesson/{key}/stop"):
        run.stop()
    if run is not None:
        st.fragment(run_every=1.0 if run.active else None)(_result)(run.id, key, False)
    st.markdown(f"**What it shows.** {lesson.shows}")
    st.markdown(f"**Try next.** {lesson.next}")


def _settings(key: str, run) -> tuple[int, str]:
    """The seed and scene the next run takes, kept in this session's own key (a widget's
    key is dropped when its page is left)."""
    lesson = LESSONS[key]
    mine = st.session_state.setdefault(
        f"lesson/{key}/settings", {"seed": 0, "scene": lesson.scenes[0]}
    )
    left, right = st.columns(2)
    seed = left.number_input(
        "Seed",
        min_value=0,
        max_value=MAX_SEED,
        value=mine["seed"],
        step=1,
        key=f"lesson/{key}/seed",
        help=f"It chooses {lesson.seed_means}. The shipped figures ran with 0.",
    )
    mine["seed"] = int(seed)
    if len(lesson.scenes) > 1:
        scene = right.selectbox(
            "Scene",
            lesson.scenes,
            index=lesson.scenes.index(mine["scene"]),
            format_func=str.capitalize,
            key=f"lesson/{key}/scene",
        )
        mine["scene"] = scene
    else:
        right.caption(f"Scene: {lesson.scenes[0].capitalize()} (the only one this lesson runs on)")
    return mine["seed"], mine["scene"]


def _what_runs(settings: dict, heading: str) -> None:
    lines = [f"- **{k.capitalize()}:** {v}" for k, v in settings.items() if k != "lesson"]
    st.markdown(f"**{heading}.**\n" + "\n".join(lines))


def _said(shipped: dict, measured: dict) -> str:
    return (
        f"Measured when the shipped checkpoints were made (`{shipped['command']}`, "
        f"{shipped['machine']['description']}, {measured.get('seconds', '?')} s, "
        f"{shipped['date']}; seed 0)"
    )


def _shipped(lesson, shipped: dict, measured: dict, present: bool, chart: bool = True) -> None:
    """The shipped figures: chart, then table, before anything runs."""
    intervals = lesson.figure_intervals(measured)
    settings = lesson.setup(False, 0)
    st.caption(
        _said(shipped, measured) + ". Intervals: 95 % Wilson intervals on success "
        "rates over the episodes; a step rate's interval comes with a run "
        "(a bootstrap over its episodes)."
    )
    if chart:
        _headline(lesson, measured, intervals, settings, present, "shipped")
    st.table(lesson_views.figure_rows(lesson, measured, intervals))


def _headline(
    lesson, figures: dict, intervals: dict, settings: dict, present: bool, tag: str
) -> None:
    title = lesson_views.chart_title(lesson, settings)
    fig = lesson_views.headline_chart(lesson, figures, intervals, title, present)
    if fig is None:
        return
    st.plotly_chart(
        fig,
        key=f"lesson/{lesson.key}/headline/{tag}",
        config={
            "displaylogo": False,
            "toImageButtonOptions": {
                "format": "png",
                "filename": f"lesson-{lesson.key}",
                "scale": 2,
            },
        },
    )


def _result(run_id: str, key: str, present: bool) -> None:
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
    st.progress(
        min(1.0, live.done / max(live.total, 1)), text=f"{live.stage} · {done} {fmt_eta(run.eta)}"
    )
    if run.status == "error":
        st.error(views.plain(run.error))
    if live.settings and not present:
        _what_runs(live.settings, "What this run ran")
    if live.figures:
        _headline(lesson, live.figures, live.intervals, live.settings, present, "run")
        if present:
            st.table(lesson_views.figure_rows(lesson, live.figures, live.intervals))
            return
    if present:
        return
    if live.rows:
        chart = lesson.chart
        fig = lesson_views.rows_chart(live.rows, chart["x"], chart["y"], chart["color"])
        fig["layout"]["title"] = {
            "text": lesson_views.chart_title(lesson, live.settings),
            "font": {"size": 14},
        }
        fig["layout"]["margin"]["t"] += 40
        fig["layout"]["height"] += 40
        st.plotly_chart(
            fig,
            key=f"lesson/{key}/chart",
            config={
                "displaylogo": False,
                "toImageButtonOptions": {
                    "format": "png",
                    "filename": f"lesson-{key}-curves",
                    "scale": 2,
                },
            },
        )
        text = lesson_views.csv_text(lesson, live.settings, live.figures, live.intervals, live.rows)
        st.download_button(
            "Download the rows (CSV)",
            text,
            f"lesson-{key}.csv",
            "text/csv",
            key=f"lesson/{key}/csv",
            on_click="ignore",
        )
    if key == "blur" and live.pictures:
        _frames(live.pictures)
    if key == "collapse" and live.pictures:
        cols = st.columns(len(live.pictures))
        for col, (name, spread) in zip(cols, live.pictures.items(), strict=True):
            fig = views.latent_spread(list(spread))
            fig["layout"]["title"]["text"] = f"{name}: spread of each dimension"
            col.plotly_chart(fig, key=f"lesson/{key}/spread/{name}")
    if live.figures:
        st.table(lesson_views.figure_rows(lesson, live.figures, live.intervals))


def _frames(pictures: dict) -> None:
    """Real frames at h = 1, 4, 16 above each model's, upscaled and labelled; as a PNG."""
    grid = lesson_views.labelled_frames(pictures, HORIZONS)
    st.image(
        grid,
        caption="Kitchen: the real frames and each model's imagined ones, "
        f"h = {', '.join(str(h) for h in HORIZONS)} steps ahead",
        width=700,
    )
    st.download_button(
        "Download the frames (PNG)",
        iio.imwrite("<bytes>", grid, extension=".png"),
        "lesson-blur-frames.png",
        "image/png",
        key="lesson/blur/png",
        on_click="ignore",
    )
