"""What pages share: the process-wide registry and device, and each session's runs.

A session's run of a kind is found, in order, from the URL (``?<kind>=<id>``,
e.g. ``?train=Ab3x_9``: a reloaded or reopened tab) or from the session's own
state; the page then writes its id back into the URL. Query parameters do not survive a page
switch in Streamlit, so each page puts its own run's id back when it draws.
"""

from __future__ import annotations

import logging
import os

import streamlit as st
import torch

from app import hosts
from app.runs import Registry, Run
from common.device import choose_device
from common.errors import LabError

log = logging.getLogger(__name__)


@st.cache_resource
def registry() -> Registry:
    """One registry per server process, shared by every session (it is thread-safe), with
    where its agents compute (``./lab --ray ADDRESS``, ``--placement``: app/hosts.py)."""
    ray, kind = os.environ.get("LAB_RAY", ""), os.environ.get("LAB_PLACEMENT", "")
    try:
        placement = hosts.serving(device(), ray=ray, placement=kind)
        slots = placement.slots()
    except LabError as e:  # a cluster that does not answer: serve from this machine
        log.error("%s; the agents compute on this machine", e)
        placement = hosts.serving(device())
        placement.problem = str(e)
        slots = placement.slots()
    log.info("agents compute in %s, %d at once", placement.kind, slots)
    return Registry(slots=slots, placement=placement)


@st.cache_resource
def device() -> torch.device:
    """Chosen once for the whole server: CUDA when present."""
    return choose_device("auto")


def current(kind: str) -> Run | None:
    """This session's run of ``kind`` (URL first), or None; marks it as watched."""
    reg = registry()
    run = reg.get(st.query_params.get(kind), kind)
    if run is None:
        run = reg.get(st.session_state.get(f"run/{kind}"), kind)
    if run is not None:
        st.session_state[f"run/{kind}"] = run.id
        if st.query_params.get(kind) != run.id:
            st.query_params[kind] = run.id
        run.touch()
    return run


def adopt(run: Run) -> Run:
    """Register a new run as this session's run of its kind and start it."""
    registry().add(run)
    st.session_state[f"run/{run.kind}"] = run.id
    st.query_params[run.kind] = run.id
    return run.start()


def seeded(key: str, default) -> str:
    """``key``, after putting ``default`` in Session State unless it holds a value already.

    For widgets that a reopened run fills in (each page's ``_settings_from``): a widget
    given a default argument while Session State holds its key's value makes Streamlit log
    a warning, so these widgets take their default from here and not as an argument.
    """
    st.session_state.setdefault(key, default)
    return key


def fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return ""
    m, s = divmod(int(seconds), 60)
    return f"about {m} min {s:02d} s left" if m else f"about {s} s left"
