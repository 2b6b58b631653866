"""The Learn page: the architecture of objective-driven AI, tied to the lab and its code.

Each section takes one idea of the talk (Y. LeCun, "From machine learning to autonomous
intelligence", a lecture on "A Path Towards Autonomous Machine Intelligence", 2022,
openreview.net/forum?id=BZ5a1r-kVsf; docs/design.md) and says where the lab
shows it (which page, what to look at) and which file and function do it.
The live facts (shipped checkpoints, expression functions, scene signals,
default settings) are read from the repository when the page renders: JSON
and dataclass defaults only, no model is loaded. A missing or broken file
gives a note, never an exception.

Entry point: ``page()``; importing this module renders nothing. What the sections
draw on lives in ``app/screens/learn_parts.py``.
"""

from __future__ import annotations

import streamlit as st

from agents.planners import PlannerConfig
from app import measured
from app.screens.learn_parts import (
    CODE,
    DIAGRAM,
    code_link,
    defaults_of,
    expression_reference,
    hierarchy_figures,
    lessons_link,
    shipped_checkpoints,
    where_in_lab,
)
from worldmodels.loss import LossConfig
from worldmodels.train import TrainConfig


def page() -> None:
    """The Learn page: a section per idea of the architecture, in the talk's order."""
    _introduction()
    _perception()
    _world_model()
    _cost()
    _actor()
    _two_systems()
    _hierarchy()
    _observation()
    _cat_level()
    _try_this()


def _introduction() -> None:
    """The title, what the lab builds and the diagram of its parts."""
    st.title("Learn: how the agent thinks")
    st.markdown(
        "This lab builds, at a small scale, the architecture of *objective-driven AI* "
        '(Y. LeCun, "From machine learning to autonomous intelligence"): an agent that '
        "perceives, imagines the outcome of its actions with a learned world model, and picks "
        "the actions whose imagined outcome minimises a cost made of a task objective and "
        "guardrails. Each section below takes one idea, says where the lab shows it and "
        "which code does it. Read it with the other pages open."
    )
    st.graphviz_chart(DIAGRAM)
    st.caption(
        "Solid arrows run at every step of the agent; the dashed box and the dotted arrows "
        "exist only while training. The predictor never produces pixels: the decoder draws "
        "imagined latents for you, and nothing the agent decides depends on it."
    )


def _perception() -> None:
    """1. Perception: the encoder."""
    st.header("1. Perception: the encoder")
    st.markdown(
        "The encoder maps an observation to a latent vector `s_t` of size D (64 here). From "
        "the state vector it is an MLP; from 64x64 pixels, four stride-2 convolutions. Every "
        "later module works on `s_t`, never on the observation. The goal is encoded the same "
        "way: the scene renders the world at its goal, and its embedding is the target of the "
        "latent task term. Memory, in the talk's diagram, is what perception cannot see now. "
        "A single frame shows where things are but not how fast they move, so a pixel model "
        "is given the previous frame too and the action the agent just took (an efference "
        "copy: the agent knows what it did); without them its probes could not read a speed "
        "at all. The agent also keeps its previous plan, the warm start of the next one.\n\n"
        "Two frames keep nothing that leaves the view. In the occluded kitchen one screen "
        "stands beside the board and another at the far end of the person's path, and the "
        "person walks behind them: in the scene, within reach of the knife rule, not in the "
        "pixels; a frame with nobody in it does not say behind which. A model with memory "
        "(`worldmodels/memory.py`) carries a *belief*: each step the predictor says what it "
        "expects from the last belief and the action, and the frame corrects it where it "
        "differs from what the belief expected to see, as a Kalman filter does (Dreamer's "
        "recurrent state, in latent space). A person the belief puts behind a screen is "
        "expected not to be seen, so a frame without them keeps them. How far a frame corrects "
        "the belief is the model's *surprise*: an ordinary occlusion should not surprise it; a "
        "person who vanishes in the open should (violation of expectation, the measure with "
        "which V-JEPA told impossible videos from possible ones)."
    )
    where_in_lab(
        "Scene and Plan",
        "the real frame on Plan is what the encoder sees at this step; with a memory model "
        "on the occluded kitchen, the plane shows where the belief puts the person and a "
        "chart the surprise at each step.",
        [
            ("worldmodels/model.py", "StateEncoder, PixelEncoder, WorldModel.encode"),
            ("worldmodels/model.py", "BeliefUpdate, WorldModel.observe"),
            ("worldmodels/memory.py", "run_filter, MemoryTrainer"),
        ],
    )
    lessons_link("memory")


def _world_model() -> None:
    """2. The world model: a JEPA, its loss, the checkpoints."""
    st.header("2. The world model: a JEPA")
    st.markdown(
        "The predictor maps `(s_t, a_t)` to `s_t+1`; applied H times to a sequence of actions "
        "it *imagines* H steps ahead (`WorldModel.rollout`). It is a Joint-Embedding "
        "Predictive Architecture: both the present and the future are encoded, and the "
        "predictor is trained to hit the future's *embedding*, not its pixels. Predicting "
        "pixels forces a model to spend capacity on details it cannot know (the future is "
        "uncertain, so a pixel predictor outputs a blurry average); predicting in "
        "representation space lets the encoder drop them.\n\n"
        "The danger of that freedom is collapse: an encoder that maps everything to one point "
        "makes prediction trivially perfect. Two things prevent it here. The targets come from "
        "an exponential-moving-average (EMA) copy of the encoder that gets no gradient, so the "
        "online encoder cannot drag its own target along (as in I-JEPA and BYOL); and VICReg "
        "terms keep every latent dimension's spread above 1 and the dimensions decorrelated.\n\n"
        "Two small parts read the latent without shaping it (they train on detached latents): "
        "**probes**, one head per named signal, read positions, speeds and distances out of "
        "any latent, real or imagined; the guardrails are written over their names. The "
        "**decoder** turns a latent into a 64x64 image, for display only."
    )
    with st.expander("The training loss, written out (worldmodels/loss.py, `losses`)"):
        st.markdown(
            "A batch holds windows of H+1 observations and H actions. Online embeddings "
            "$s_t = f_\\theta(o_t)$; the rollout starts from the real $s_0$ and never sees "
            "another observation (open loop), $\\hat s_{t} = g_\\phi(\\hat s_{t-1}, a_{t-1})$, "
            "$\\hat s_0 = s_0$; targets come from the EMA encoder, with stop-gradient:"
        )
        st.latex(
            r"z_t = \mathrm{sg}\,f_\xi(o_t), \qquad "
            r"\xi \leftarrow m\,\xi + (1-m)\,\theta \quad (\texttt{ema\_update})"
        )
        st.latex(r"\texttt{pred} = \frac{1}{BHD}\sum_{b,t,d}\big(\hat s_{t} - z_t\big)^2")
        st.markdown(
            "VICReg (`vicreg_terms`) on the online embeddings $e$ of the batch, "
            "$N$ rows by $D$ dimensions, with $C$ their covariance matrix:"
        )
        st.latex(
            r"\texttt{var} = \frac1D\sum_{j}\max\!\big(0,\;1-\sqrt{\mathrm{Var}(e_{\cdot j})"
            r"+10^{-4}}\big), \qquad \texttt{cov} = \frac1D\sum_{i\neq j} C_{ij}^2"
        )
        st.latex(
            r"\begin{aligned}\texttt{total} = {}& w_p\,\texttt{pred} + w_v\,\texttt{var}"
            r" + w_c\,\texttt{cov} \\ &+ w_r(\texttt{probe} + \texttt{probe\_imagined})"
            r" + w_d\,\texttt{decoder}\end{aligned}"
        )
        st.markdown(
            "Defaults (`LossConfig`): "
            + defaults_of(
                LossConfig, ["horizon", "var_weight", "cov_weight", "ema_start", "ema_end"]
            )
            + ". The momentum $m$ rises from `ema_start` to `ema_end` on a cosine schedule "
            "(`ema_momentum`). Training on the whole open-loop rollout, not one step, is what "
            "keeps 16-step imagination usable for planning. Collapse is watched with the "
            "effective rank (`effective_rank`): $\\exp$ of the entropy of the normalised "
            "singular values of the centred latents, counting only directions with std above "
            "0.01. It is D for a latent spread in every direction and 0 for a point."
        )
    st.markdown(
        "**Shipped checkpoints** (read now from `pretrained/*/config.json`). nRMSE is the "
        "error of the *imagined* signals, read by the probes h steps after the last real "
        "observation, divided by each signal's spread in the data: 1 is no better than "
        "guessing the mean."
    )
    shipped_checkpoints()
    where_in_lab(
        "Train",
        "the loss terms by name, the effective rank and per-dimension variance (a collapse "
        "shows as dimensions falling to zero), and decoded samples next to the real frames.",
        [
            ("worldmodels/model.py", "WorldModel.rollout / probe / decode; Predictor, Probes"),
            ("worldmodels/loss.py", "losses, vicreg_terms, ema_update, effective_rank"),
            ("worldmodels/train.py", "TrainConfig, Trainer"),
            ("worldmodels/metrics.py", "model_nrmse and its two baselines"),
        ],
    )

    lessons_link("blur", "collapse")


def _cost() -> None:
    """3. The cost: the task, guardrails, the margin and rules that freeze."""
    st.header("3. The cost: a task objective plus guardrails")
    st.markdown(
        "The cost scores each imagined future. The **task term** is either a distance in "
        "probe space (the probed hand, disc or block position against the goal's: the default) or "
        "the distance between imagined latents and the goal's embedding. **Guardrail terms** "
        "are expressions over the probed signals: a *soft* term adds `weight * expr` to the "
        "cost; a *hard* term requires `expr <= limit` at every step of the horizon, and a plan "
        "that breaks it is infeasible, whatever its cost.\n\n"
        "Because guardrails are minimised at inference time, on every plan, the agent cannot "
        "choose a plan that breaks them *according to its world model*. That is a stronger "
        "guarantee than training a behaviour in, which a new situation can get around. It "
        "holds under two provisos:\n\n"
        "1. **The guardrail must express safety.** `hand_speed <= 0.2` near a person is "
        "only as good as the choice of 0.2 m/s and 0.5 m; a term that says the wrong thing is "
        "kept faithfully.\n"
        "2. **The world model must be accurate.** A plan is feasible in imagination; if "
        "imagination is wrong, reality can still break the guardrail. The lab measures this "
        "as the **false-safe rate**: the share of steps planned as feasible that violated the "
        "guardrail in reality."
    )
    with st.expander("The cost of one sampled plan (agents/cost.py, `Cost.evaluate`)"):
        st.latex(
            r"J(a_{1:H}) = w_\text{task}\sum_{h=1}^{H} d\big(\hat s_h, \text{goal}\big)"
            r" + \sum_{k\,\in\,\text{soft}} w_k \sum_{h} g_k(\hat y_h)"
        )
        st.latex(
            r"V(a_{1:H}) = \sum_{k\,\in\,\text{hard}}\sum_h \max\!\big(0,\; g_k(\hat y_h)"
            r" - \ell_k\big), \qquad \text{feasible} \iff V = 0"
        )
        st.markdown(
            "$\\hat y_h$ are the probed signals of $\\hat s_h$. Planners rank feasible samples "
            "by $J$ first; when none is feasible they rank by $V$, then $J$, and the plan "
            "record says so (`none_feasible`); the agent then acts on the least violating plan "
            "or stops, as `AgentConfig.fallback` says. A NaN or infinite value counts as 10^6 "
            "(cost, or violation for a hard term), so it is never chosen over a finite plan."
        )
    with st.expander("Room for the model's error: the guardrail margin"):
        st.markdown(
            "A hard guardrail checked on imagined values holds only as well as imagination "
            "is right. Every checkpoint stores its measured error: per signal, the RMSE of "
            "its probes at each imagined step $h$ of held-out rollouts, $\\sigma_h$ "
            "(`probe_rmse`, measured at every save, or by `./lab calibrate`). With a margin "
            "$m$ (the *Guardrail margin* setting), a hard term must hold for every signal "
            "value in $\\hat y_h \\pm m\\,\\sigma_h$, not only at $\\hat y_h$: the term is "
            "evaluated at the corners of that box and the worst counts (exact for "
            "expressions monotone or convex in each signal, as guardrails usually are). "
            "The rule itself is unchanged and reality is still checked against it. Without "
            "a margin the planner skims the edge of the zone at speed, where a few "
            "centimetres of error in the distance to the person or in the hand's speed "
            f"decide. {measured.margin()} (`./lab bench agent_quality`).\n\n"
            "A multiple of an RMSE promises nothing. The calibrated margin does: `./lab "
            "calibrate --episodes 60` runs the agent's own episodes, follows each chosen plan "
            "open loop in reality from a snapshot, and keeps $|\\hat y_h - y_h|$ per signal "
            "and step. Steps of one episode err alike (an episode along a wall errs on most "
            "of them); episodes are what is exchangeable. So each of the $E$ episodes weighs "
            "$1/E$, and for a miss rate $\\delta$ the bound $b_h$ is the smallest gap at "
            "which the episodes' mean coverage reaches $(1-\\delta)(E+1)/E$ (split conformal "
            "prediction, counted in episodes): a new episode's gap at step $h$ is within "
            "$b_h$ with probability at least $1-\\delta$ on average (per signal and step, "
            "not jointly). The margin setting *calibrated, delta* makes the hard terms hold "
            "over $\\hat y_h \\pm b_h$."
        )
    with st.expander("Rules that freeze the agent, and where a design fails"):
        st.markdown(
            "A rule that binds in part of the space (*with the knife low, at most 0.3 m/s*) "
            "can freeze a sampling planner: Gaussian samples almost never stay slow for "
            "every step of a descent, so the feasible plans are the ones that never "
            "descend, and the agent hovers at the zone's edge. Each search round therefore "
            "repairs the cheapest plans that break a hard term (copies of each, slowed "
            "down x0.8 ... x0.2, join the next round, whose ranking keeps the ones that "
            "hold); when a rule still holds the agent back "
            "the Plan page names it. Random episodes say how often a design fails; a "
            "stress test (Experiments, `./lab stress`) searches the start, the goal and the "
            "person's walk for the episodes where it does, by the cross-entropy method, and "
            "every failure replays on the Plan page as it happened. "
            f"{measured.guardrails()} (`./lab bench guardrail_science`)."
        )
    expression_reference()
    where_in_lab(
        "Plan and Experiments",
        "on Plan, the per-term costs of the chosen plan and the live cost editor (an edit "
        "applies to the next plan); on Experiments, guardrail designs compared over the same "
        "seeded episodes: success rate, violation rates in reality and the false-safe rate, "
        "each with its interval.",
        [
            ("agents/expressions.py", "compile_expression, FUNCTIONS"),
            ("agents/cost.py", "CostSet, Term, Cost.update, Cost.evaluate, Cost.set_margins"),
            ("agents/episode.py", "run_episode; experiments/metrics.py: false_safe_rate"),
        ],
    )


def _actor() -> None:
    """4. The actor: planning by model-predictive control."""
    st.header("4. The actor: planning by model-predictive control")
    st.markdown(
        "The actor searches for the action sequence whose imagined future has the lowest "
        "cost among the feasible ones, acts on its *first* action only, observes again and "
        "plans again (receding horizon). The next search starts from the last plan shifted "
        "by one step (warm start). Three searches share one base class, and all of them "
        "evaluate every sample in one batch: "
        "**CEM** samples around a Gaussian mean, keeps the best (the elites) and refits; "
        "**MPPI** moves the mean to a cost-weighted average of all samples; "
        "**gradient descent** follows the gradient of the cost through the predictor, "
        "with smooth comparisons so the guardrails have a slope. Defaults (`PlannerConfig`): "
        + defaults_of(PlannerConfig, ["samples", "horizon", "iterations", "elites", "init_std"])
        + "."
    )
    with st.expander("The CEM and MPPI updates (agents/planners/cem.py, mppi.py)"):
        st.markdown(
            "Samples $a^{(i)} = \\mathrm{clip}(\\mu + \\sigma\\,\\varepsilon^{(i)}, -1, 1)$, "
            "$i = 1..N$, shape `(N, H, A)`, with $a^{(1)} = \\mu$ so a warm start is never lost "
            "(`Planner.perturb`). CEM ranks them (feasible first, `rank`) and keeps the K best:"
        )
        st.latex(
            r"\mu \leftarrow \frac1K\sum_{i\in\text{elites}} a^{(i)}, \qquad "
            r"\sigma \leftarrow \max\big(\mathrm{std}_{i\in\text{elites}}\,a^{(i)},"
            r"\;\sigma_\text{min}\big)"
        )
        st.markdown("MPPI scores $S_i = J_i + \\lambda V_i$ and weights every sample:")
        st.latex(
            r"w_i = \mathrm{softmax}_i\!\left(-\frac{S_i - \min_j S_j}"
            r"{T\,\mathrm{std}(S)}\right), \qquad \mu \leftarrow \sum_i w_i\,a^{(i)}"
        )
        st.markdown(
            "After the last iteration the base class evaluates the final samples "
            "and the best ranked one is the plan."
        )
    with st.expander("Fewer samples for the same plan: iCEM's three changes"):
        st.markdown(
            "iCEM (Pinneri et al., CoRL 2020) reached CEM's results with 2.7-22x fewer "
            "samples. Each of its changes is a setting here (`PlannerConfig`), all three on "
            "by default at N = 30, measured by `./lab bench search_efficiency`: "
            "**coloured noise** (`noise_beta`): $\\varepsilon$ drawn with power falling as "
            "$1/f^\\beta$ along the horizon, still of unit variance, so a sample holds a "
            "direction for several steps, as a body's actions do (a car must hold its "
            "throttle for many steps before Bullet-Safety-Gym's Circle pays: with white "
            "noise the search found almost none of its reward); "
            "**kept elites** (`keep`): a fraction of each round's elites joins the next "
            "round, and of the last round the next plan, shifted a step; "
            "**fewer samples in later rounds** (`decay`): round $i$ draws "
            "$N / \\gamma^i$, at least twice the elites. "
            f"{measured.search()}."
        )
    where_in_lab(
        "Plan",
        "the sampled trajectories drawn in signal space and coloured by cost, the elites "
        "highlighted, infeasible samples marked; beside the real frame, the decoded frames of "
        "what the chosen plan imagines.",
        [
            ("agents/planners/base.py", "Planner.plan, Planner.perturb, rank, shift, PlanRecord"),
            ("agents/planners/cem.py", "CEM"),
            ("agents/planners/mppi.py", "MPPI"),
            ("agents/planners/gd.py", "GradientDescent"),
            ("agents/agent.py", "Agent.think (plan without acting), Agent.step"),
        ],
    )

    lessons_link("open_loop")


def _two_systems() -> None:
    """5. System 1 and System 2: where a guardrail lives."""
    st.header("5. System 1 and System 2")
    st.markdown(
        "System 1 is reactive: one pass from perception to action, a fixed amount of "
        "computation per output. An autoregressive model is System 1 all the way down: it "
        "cannot plan, and an early error compounds with nothing to pull it back. System 2 "
        "is deliberate: it searches for actions by optimising an objective over a horizon, "
        "can spend more computation on a harder decision, and can recover because it "
        "replans from what it observes. Here System 2 is the planner; System 1 is a policy "
        "distilled from it (`./lab distill`: it imitates the planner's first action at the "
        "states it visits itself in the world model, DAgger), one small network pass per "
        "action. On Plan, *Who decides* switches between them, or lets the policy's "
        "proposal join the planner's search (amortised planning)."
    )
    st.markdown(
        "**Where a guardrail lives.** A policy distilled from a planner that held a rule "
        "has the rule *trained in*: it learned to behave well in the situations it was "
        "trained on, and nothing checks the rule when it acts. The planner holds the rule "
        "*at inference time*: no plan that breaks it in imagination is chosen, in any "
        "situation, including a rule typed a minute ago. Measured on the shipped models "
        f"(`./lab bench system12`): {measured.system12()}"
    )
    where_in_lab(
        "Plan (Who decides) and Experiments (System 1 designs)",
        "the policy's path beside the planner's choice; its decision time in the status line",
        [
            ("agents/policy.py", "Policy; experiments/distill.py: DAgger in the world model"),
            ("experiments/system12.py", "compare, new_situation: the figures above"),
        ],
    )
    st.markdown(
        "**On the field's benchmark.** The field trains its rules in with constrained "
        "reinforcement learning: PPO-Lagrangian, the baseline of every safe-RL table, "
        "trained here on Bullet-Safety-Gym's tasks (`./lab ppol`), with a rule's cost in "
        "its reward and a multiplier that grows while the cost is over its limit. When the "
        "rule changes (Circle's boundary at |x| <= 5, not 6; Run's speed limit lowered), "
        f"`./lab bench trained_in` measures: {measured.trained_in()}."
    )
    lessons_link("guardrails", "field")


def _hierarchy() -> None:
    """6. Hierarchical planning, and the measured comparison."""
    st.header("6. Hierarchical planning: an open problem")
    st.markdown(
        'The agent plans at one time scale: 16 steps of 0.1 s. Going from "be in Paris" '
        "to muscle commands needs several levels, each planning in its own abstract states "
        "and handing subgoals down, and nobody yet knows how to *learn* those levels. The "
        "Wall scene shows the problem in miniature: the goal is in the other room, a greedy "
        "plan runs into the wall, and the door may lie beyond what one horizon can imagine. "
        "A subgoal written by hand as a cost term (the Wall example above) is one way out; "
        "whoever writes it is doing the job a higher level would have to learn.\n\n"
        "A learned cost can do part of that job. The steps-to-go distance of section 7, "
        "learned from exploration alone, counts the way round through the door, so a plan "
        "that cannot see the door still falls towards it.\n\n"
        "**A learned high level.** Here a second level is learned from the same exploration "
        "data and handed the job the hand-written subgoal did (`./lab highlevel`). Two ways "
        "are built. *HWM* (2026): a chunk of 8 primitive actions is encoded into a small "
        "latent macro-action, a second predictor learns where 8 steps of it lead in the same "
        "latent space, and CEM plans 10 of them (80 steps) ahead; its first predicted latent "
        "becomes the planner's goal. *HIQL* (2023): a subgoal policy proposes the latent to "
        "be at 8 steps on, learned by regressing onto the data's own 8-step-later states, "
        "weighted by how many steps nearer the goal they came (read by the steps-to-go "
        "head); one pass, no search. Either way the planner then plans 8 steps on the goal "
        "with the way to the subgoal beside it: how far the agent itself (its probed x-y) "
        "is from where the subgoal puts it. The subgoal says where to be; the goal's own "
        "term moves the block. Your guardrails hold as always. No term about the door or "
        "the block is written anywhere. To tell a poor "
        "subgoal from a poor walk to it, a third high level that is not learned hands down "
        "where the scene's own scripted controller is 8 steps on: what the same planner "
        "makes of subgoals that are right."
    )
    hierarchy_figures()
    where_in_lab(
        "Plan (Wall or Push: *Learned high level*) and Experiments (Hierarchy designs)",
        "the high level's plan dashed in green on the x-y plane, its subgoal a diamond, and "
        "its plan decoded into frames under the planner's",
        [
            ("worldmodels/highlevel.py", "HighLevel, HighTrainer: macro-actions, subgoals"),
            ("agents/hierarchy.py", "HighPlanner"),
            ("experiments/hierarchy.py", "compare: the figures above"),
        ],
    )

    lessons_link("hierarchy")


def _observation() -> None:
    """7. Learning from observation: probes, steps to go."""
    st.header("7. Learning from observation")
    st.markdown(
        "Babies learn intuitive physics (objects persist, fall, keep moving) mostly by "
        "watching. The world model here learns the same way: from exploration data, without "
        "reward and without labels on the latent. The data are correlated random walks, plus "
        "a share of noisy runs of a scripted controller so that the door, the block and the "
        "person are met at all, the person both slowly and fast. The model's knowledge is "
        "bounded by that data: what exploration rarely shows, the model can only guess, and "
        "guesses are where false-safe plans come from. The probes do use the scene's true "
        "signals as labels, but on detached latents: they read the representation, they do "
        "not shape it."
    )
    st.markdown(
        "**A goal given as an observation, and no label at all.** The plain distance between "
        "two latents is not how far apart the states are in steps, so planning on it to a "
        "goal's embedding mostly fails. A small head learns, from the exploration data's own "
        "time steps and nothing else, an embedding where one step is at most one apart and "
        "any two states are as far apart as that allows: the shortest path in steps, *steps "
        "to go* (as in quasimetric RL). The world model stays frozen. "
        f"{measured.label_free()} (`./lab bench label_free`). On Plan, the chart *steps to go* "
        "shows the head's reading along the chosen plan beside the probes' distance in metres."
    )
    where_in_lab(
        "Scene",
        "drive by hand, then collect exploration data.",
        [("scenes/exploration.py", "ExplorationPolicy"), ("scenes/collect.py", "collect")],
    )


def _cat_level() -> None:
    """8. Cat level before human level."""
    st.header("8. Cat level before human level")
    st.markdown(
        "A cat plans, has intuitive physics and is careful near hazards, with no language. "
        "The way to human-level systems goes through such small systems with all the "
        "components in place, scaled up while objectives and guardrails are tested in "
        "sandboxes. This lab is such a sandbox: four scenes, a 64-dimensional latent, "
        "checkpoints under 1 MB trained in a few minutes on a 2-core CPU, and an oracle that plans "
        "on the true simulator to show how much of a failure is the world model's fault."
    )


def _try_this() -> None:
    """Exercises, and the code map."""
    st.header("Try this")
    tc = TrainConfig()
    st.markdown(
        "1. **The talk's guardrail.** On Plan, pick Kitchen: it starts with the hard term "
        "`relu(hand_speed - 0.2) * (dist_hand_person < 0.5)`, limit 0. Watch the hand slow "
        "down as the person comes within 0.5 m, then switch the term off (*On*) and run a new "
        "episode. Compare the imagined `hand_speed` with the real one: where do they "
        "disagree?\n"
        "2. **Room for error.** On Experiments, run the Kitchen knife rule over 20 episodes "
        "with *Guardrail margin* 0, then 1, then 1 with the stop fallback. How do the real "
        "violation rate, the false-safe rate and the success rate move?\n"
        "3. **A goal image, no labels.** On Plan, pick `pretrained/reach-pixels` and switch "
        "the task term to latent distance: the agent now plans to the goal's *image*, with "
        "the steps-to-go head. Watch *steps to go* fall along the plan; then run both task "
        "terms on Experiments over the same seeds. Train a model of your own (Train) and "
        "plan on its plain latent distance: it has no head until `./lab distance` gives it "
        "one. How often does it get there?\n"
        "4. **Break the world model, watch the guardrail fail.** On Experiments, evaluate "
        "one guardrail design with the shipped checkpoint and with a model you trained on "
        "Train for only a few hundred steps. "
        "Which numbers move: success, violations, the false-safe rate?\n"
        "5. **Collapse on purpose.** On Train, switch off the EMA target "
        f"(`ema`, default {tc.ema}) and set `var_weight` and `cov_weight` to 0; watch the "
        "effective rank and the per-dimension variance. Then put VICReg back alone, or the "
        "EMA alone: which one is enough?\n"
        f"6. **Short or long training horizon.** Train with `horizon` 1 instead of "
        f"{tc.horizon}. Is the h1 error worse? What happens at h16, and to planning?\n"
        "7. **Deliberation.** On Plan, set CEM's iterations to 1 (random shooting) and then "
        "to 5, and compare the plan time and the cost of the chosen plan.\n"
        "8. **Wall.** Plan on Wall without and with the door subgoal term above; then "
        "with a longer horizon instead; then with the *Learned high level* switched on and "
        "no subgoal term. Which fixes the dead end, and at what price? Does the learned "
        "one do the same on Push?"
    )
    with st.expander("Where everything is: the code map"):
        st.markdown("\n".join(f"- {code_link(p, n)}" for p, n in CODE))
