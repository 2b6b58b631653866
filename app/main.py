"""The lab in the browser: ``./lab`` runs ``streamlit run app/main.py``.

Pages are registered here with ``st.navigation`` (called once per run); each
page is a function in ``app/screens`` (not ``app/pages``: Streamlit would
mistake that folder for its old multipage layout). Plan is the default page,
so the first visit plans with a shipped checkpoint at once.

Everything happens in ``main()``, run only as ``__main__`` (as Streamlit runs
a script): the worker processes of data collection are spawned and re-import
this file as ``__mp_main__``, and must not build the app.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    if str(ROOT) not in sys.path:  # `streamlit run app/main.py` puts app/ on the path
        sys.path.insert(0, str(ROOT))
    import streamlit as st

    # heavy: streamlit and every page, built only as __main__ (collection workers
    # re-import this file and must not pay for them)
    from app.screens import experiments, learn, lessons, plan, scene, train  # heavy: as above
    from app.state import device  # heavy: as above

    st.set_page_config(page_title="Objective-driven agent lab", page_icon="🐈", layout="wide")
    # Plan is the default page, so it lives at "/"; /plan (the path of every other
    # page's pattern) leads there too, with its query (a run id), instead of "not found".
    home = st.Page(plan.page, title="Plan", icon=":material/route:", default=True)

    def to_plan() -> None:
        st.switch_page(home, query_params=st.query_params.to_dict())

    pages = [
        st.Page(scene.page, title="Scene", icon=":material/view_in_ar:", url_path="scene"),
        st.Page(train.page, title="Train", icon=":material/model_training:", url_path="train"),
        home,
        st.Page(
            experiments.page,
            title="Experiments",
            icon=":material/science:",
            url_path="experiments",
        ),
        st.Page(learn.page, title="Learn", icon=":material/school:", url_path="learn"),
        st.Page(to_plan, title="Plan", url_path="plan", visibility="hidden"),
    ]
    # The lessons: a page per claim of the talk, run live (a section of their own)
    nav = st.navigation({"Lab": pages, "Lessons": lessons.pages()})
    st.sidebar.caption(f"Objective-driven agent lab · torch device: **{device()}**")
    nav.run()


if __name__ == "__main__":
    main()
