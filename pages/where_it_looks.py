"""Where it looks: the prediction, a class activation map (the method chosen) for one class or score, what
fires at the same layer, and the sanity check "Does this depend on the model?"."""

from __future__ import annotations

from typing import Any

import streamlit as st

from featviz_core import Extraction, export, figures
from featviz_core.cam import (
    CAM_METHODS,
    METHODS,
    CamResult,
    CamTarget,
    SanityResult,
    default_cam_layer,
    describe_outputs,
    no_target_reason,
    sanity_check,
)
from featviz_core.cam.methods import available_methods
from ui import cache, jobs
from ui.errors import guard
from ui.job_view import result_when_done, stop_button
from ui.router import ensure_routed
from ui.sidebar import page_header
from ui.state import CamChoice, Selection, choose_cam, current

ensure_routed()

PAGE = "where_it_looks"  # the page's url_path (ui.jobs stops its jobs when the user leaves it)

HOW_TO_READ = """
**Left — what drives this class.** Warm areas are the parts of the image that, at the chosen layer, push the
model towards the chosen class: making them stronger would raise that class's score. Areas with no colour did
not help that class (they may help another one). **Methods** compute this differently (one line on each under
the menu): Grad-CAM is the classic; Score-CAM and Ablation-CAM need no gradients but run the model once per
channel (a progress bar shows how far they are); Eigen-CAM shows the layer's strongest pattern, the same for
every class.

**Right — what fires.** The average of all channels at the same layer: where the layer responds at all,
whatever the class. Comparing both tells apart “the network notices this area” and “this area is why it says
*cat*”.

**Does this depend on the model?** The same map is computed again on a copy of the model whose layers, from
the output down to the chosen layer, get random weights (Adebayo et al., 2018). A map that reflects what the
model learned changes a lot; a map that barely changes shows the image more than the model. The two numbers:
rank correlation (Spearman, 1 = same order of places) and SSIM (structural similarity, 1 = same picture); the
verdict uses the larger of the two (below 0.5: changes a lot; 0.8 or more: barely changes).

**What these maps do not prove.** They are coarse (one cell per position of the layer, here drawn smoothly
over the image), they show correlation inside this one network and not a cause in the world, and a map that
sits on the right spot does not mean the prediction is right. For medical images in particular, these
pictures explain the *model's* behaviour; they are not a diagnosis.
"""

VERDICT = {"model": st.success, "partly": st.warning, "image": st.warning, "empty": st.info}
ICONS = {"model": ":material/check_circle:", "partly": ":material/warning:", "image": ":material/report:",
         "empty": ":material/info:"}


def _target_picker(selection: Selection) -> CamTarget | None:
    """For a model that is not a classifier: which output and channel to explain (None: nothing can be)."""
    model = selection.model
    state = st.session_state
    with guard("reading what the model outputs"):
        reason = no_target_reason(model)
        outputs = [o for o in describe_outputs(model) if o.explainable]
    if reason is not None:
        st.info(reason, icon=":material/info:")
        return None
    if state.get("_cam_target_model") != model.key:
        state["_cam_target_model"] = model.key
        state["cam_output"], state["cam_channel"] = 0, 0
    index = 0
    if len(outputs) > 1 or outputs[0].output is not None:
        index = st.selectbox("Explain which output?", list(range(len(outputs))), key="cam_output",
                             format_func=lambda i: outputs[i].label,
                             help="This model is not a classifier: choose one of its outputs to explain.")
    chosen = outputs[index]
    channel = None
    if chosen.channels is not None:
        if not 0 <= int(state.get("cam_channel") or 0) < chosen.channels:
            state["cam_channel"] = 0
        channel = int(st.number_input(
            "Which channel of it?", min_value=0, max_value=chosen.channels - 1, step=1, key="cam_channel",
            help="The number explained is the mean of this channel (over its positions, e.g. a whole heatmap).",
        ))
    st.caption("The map explains the **mean** of the chosen channel: what raises that number.")
    return CamTarget(output=chosen.output, channel=channel)


def _cost(cls: type, layer: str, selection: Selection) -> str:
    """What the chosen method needs and costs, in one line."""
    channels = _channels(selection, layer)
    if cls.many_passes:
        return (f"{cls.title}: no gradients; {channels} forward passes of the model (one per channel), computed "
                "in the background with a progress bar.")
    if cls.uses_gradients:
        return f"{cls.title}: uses gradients; one forward and one backward pass."
    return f"{cls.title}: no gradients; one forward pass."


def _progress(job: jobs.Job) -> None:
    what = METHODS[job.label.split(" ")[0]].title if job.label.split(" ")[0] in METHODS else job.label
    if job.running:
        eta = job.eta()
        left = f", about {eta:.0f} s left" if eta is not None else ""
        st.progress(job.fraction, text=f"{what}: {job.done} of {job.total or '…'} forward passes{left}")
        stop_button(job, f"stop_{job.key}")
    elif job.state == "failed":
        st.error(job.error or "This could not be computed.", icon=":material/error:")


# ---------------------------------------------------------------------------------------------------
# Choose


def _defaults(selection: Selection, extraction: Extraction) -> list[str]:
    """Set the layer, method and class of a new model or image to their defaults; the methods on offer."""
    model, state = selection.model, st.session_state
    layer_names = [info.name for info in selection.layers]
    with guard("choosing a layer for the map"):
        default = default_cam_layer(model)
    if state.get("_cam_model") != model.key or state.get("cam_layer") not in layer_names:
        state["_cam_model"] = model.key
        state["cam_layer"] = default if default in layer_names else layer_names[-1]
    allowed = [m for m, why_not in available_methods(model).items() if why_not is None]
    if state.get("cam_method") not in allowed:
        state["cam_method"] = "gradcam" if "gradcam" in allowed else "eigencam"
    if not model.supports_gradients:
        st.info("Grad-CAM needs the model's gradients, and this model runs in onnxruntime, which computes none "
                "(the model line in the sidebar says why). Score-CAM and Eigen-CAM need none: they are offered "
                "here instead.", icon=":material/info:")
    top_indices = extraction.top_k_indices(5)
    here = (model.key, selection.image_digest)
    if extraction.top_k(5) and (state.get("_cam_for") != here or state.get("cam_class") not in top_indices):
        state["_cam_for"] = here
        state["cam_class"] = top_indices[0]
    return allowed


def _choose(selection: Selection, extraction: Extraction, allowed: list[str]) -> tuple[CamChoice, float | None]:
    """The class (or output) to explain, the layer, the method and the overlay strength (None: nothing can be
    explained, and the page says why). The choice is kept for the report."""
    state = st.session_state
    target: CamTarget | None = None
    class_index: int | None = None
    if extraction.top_k(5):
        class_index = int(st.radio(
            "Explain which guess?", extraction.top_k_indices(5), key="cam_class",
            format_func=lambda i: f"{extraction.category(i)} ({extraction.probabilities[i] * 100:.1f}%)",
            help="The map shows the image regions that push the model towards this one class.",
        ))
    else:
        target = _target_picker(selection)
    state["_cam_target"] = target
    if class_index is None and target is None:
        return _keep(selection, state["cam_layer"], None, state["cam_method"], None), None
    labels = {info.name: info.label for info in selection.layers}
    layer = st.selectbox(
        "At which layer?", list(labels), key="cam_layer", format_func=labels.get,
        help="Deeper layers give the most meaningful maps (default: the last block before the classifier). "
        "Earlier layers are sharper but less about the class.",
    )
    method = st.selectbox("Which method?", allowed, key="cam_method",
                          format_func=lambda m: CAM_METHODS[m].replace(": ", " — ", 1),
                          help="\n\n".join(f"**{METHODS[m].title}**: {METHODS[m].summary}" for m in METHODS))
    st.caption(_cost(METHODS[method], layer, selection))
    state.setdefault("cam_opacity", 0.8)
    opacity = st.slider("Overlay strength", 0.0, 1.0, step=0.05, key="cam_opacity",
                        help="0 shows only your image, 1 only the map.")
    return _keep(selection, layer, class_index, method, target), opacity


def _keep(selection: Selection, layer: str, class_index: int | None, method: str,
          target: CamTarget | None) -> CamChoice:
    return choose_cam(CamChoice(selection.image_digest, selection.model.key, layer, class_index, method, target))


def _channels(selection: Selection, layer: str) -> int:
    return next((i.shape[0] for i in selection.layers if i.name == layer and i.shape), 0)


# ---------------------------------------------------------------------------------------------------
# Compute


def _compute(selection: Selection, choice: CamChoice) -> CamResult | None:
    """The map (None while a slow method's job runs, its progress drawn)."""
    model, image = selection.model, selection.image
    layer, class_index, method, target = choice.layer, choice.class_index, choice.method, choice.target
    with guard("computing where the model looks"):
        if METHODS[method].many_passes:
            return result_when_done(
                choice.key, lambda progress: cache.compute_cam(model, image, layer, class_index, method,
                                                               target=target, progress=progress),
                label=f"{method} {layer}", page=PAGE, total=_channels(selection, layer), start_now=True,
                draw=_progress)
        with st.spinner("Tracing the decision back through the network…"):
            return cache.cam(selection.image_digest, model.key, layer, class_index, model, image, method,
                             target.key if target else "", target)
    return None  # pragma: no cover - guard stops the script


def _check(selection: Selection, choice: CamChoice, result: CamResult) -> SanityResult | None:
    """The sanity check of ``result`` (a slow method's only once asked for, as a job)."""
    model, target = selection.model, choice.target
    with guard("checking the map against a randomised model", stop=False):
        if METHODS[result.method].many_passes:
            key = choice.sanity_key
            check = result_when_done(
                key, lambda progress: sanity_check(model, selection.image, result.layer, choice.class_index,
                                                   result.method, target=target, original=result, progress=progress),
                label=f"{result.method} sanity", page=PAGE, total=0,
                start_now=st.session_state.get("_sanity_asked") == key, draw=_progress)
            if check is None and jobs.get(key) is None and st.button(
                f"Run the check ({result.weights.shape[0]} more forward passes)", icon=":material/science:",
                help=f"{METHODS[result.method].title} runs the model once per channel; the check does it again on "
                "the copy.",
            ):
                st.session_state["_sanity_asked"] = key
                st.rerun()
            return check
        with st.spinner("Randomising a copy of the model and computing the map again…"):
            return cache.sanity(selection.image_digest, model.key, result.layer, choice.class_index, result.method,
                                target.key if target is not None else "", 0, model, selection.image, target, result)
    return None


# ---------------------------------------------------------------------------------------------------
# Draw


def _prediction(selection: Selection, extraction: Extraction) -> None:
    top = extraction.top_k(5)
    if top:
        st.plotly_chart(figures.probability_figure(top, title="The model's top 5 guesses"), width="stretch",
                        key="cam_probs", config=export.PLOTLY_CONFIG)
    else:
        st.markdown("**What the model outputs** (it is not a classifier):")
        st.markdown("\n".join(f"- {o.label}" for o in describe_outputs(selection.model)))


def _overlay(
    view: Any, result: CamResult, title: str, key: str, filename: str, opacity: float, height: int | None = None
) -> None:
    st.plotly_chart(
        figures.overlay_figure(view, result.normalized, opacity=opacity, colorscale="Turbo", zrange=(0.0, 1.0),
                               title=title, colorbar_title="share of the strongest push (0–1)", height=height),
        width="stretch", key=key, config=export.plotly_config(filename),
    )


def _draw_map(selection: Selection, choice: CamChoice, result: CamResult, opacity: float, base: str) -> None:
    view = selection.model.model_view(selection.image)
    method, target = choice.method, choice.target
    c1, c2 = st.columns(2)
    with c1:
        _overlay(view, result, f"What drives “{result.class_name}”", "cam_overlay",
                 f"{base}_{method}_{'class' + str(result.class_index) if target is None else target.key}", opacity)
        peak = float(result.cam.max())
        st.caption(f"{METHODS[method].title} at {choice.layer} ({result.shape[1]}×{result.shape[0]} cells); the "
                   f"score explained is {result.score:.3g} (the model's raw output, before probabilities). "
                   + ("No area pushes towards this score at this layer." if peak == 0
                      else "1 = the area that pushes hardest; hover for each cell's value."))
    with c2:
        st.plotly_chart(
            figures.overlay_figure(
                view, result.activations_mean, opacity=opacity, colorscale="Viridis",
                title="What fires at this layer (all channels averaged)", colorbar_title="mean activation",
            ),
            width="stretch", key="cam_mean", config=export.plotly_config(f"{base}_mean_activation"),
        )
        st.caption("The average over the layer's channels, whatever the class: where the layer responds at all.")


def _draw_sanity(selection: Selection, choice: CamChoice, result: CamResult, opacity: float, base: str) -> None:
    st.subheader("Does this depend on the model?")
    st.caption("The same map on a copy of the model whose layers, from the output down to this layer, get "
               "random weights. The copy is private to this check and freed afterwards.")
    if not selection.model.supports_gradients:
        st.info("This check replaces the model's weights inside PyTorch; a model run by onnxruntime cannot be "
                "checked this way.", icon=":material/info:")
        return
    check = _check(selection, choice, result)
    if check is None:
        return
    VERDICT[check.level](check.verdict, icon=ICONS[check.level])
    m1, m2, m3 = st.columns([1, 1, 2])
    m1.metric("Rank correlation", f"{check.spearman:.2f}" if check.spearman == check.spearman else "—",
              help="Spearman: 1 = both maps rank the places in the same order, 0 = no relation.")
    m2.metric("SSIM", f"{check.ssim:.2f}", help="Structural similarity: 1 = the same picture, 0 = unrelated.")
    m3.caption(f"Re-initialised (seed {check.seed}): {', '.join(check.randomized_modules)}.")
    view = selection.model.model_view(selection.image)
    c1, c2 = st.columns(2)
    with c1:
        _overlay(view, check.original, "The model", "sanity_model", f"{base}_sanity_model", opacity, 420)
    with c2:
        _overlay(view, check.randomized, "The same map, model randomised", "sanity_random",
                 f"{base}_sanity_randomised", opacity, 420)


def main() -> None:
    selection = current()
    page_header("Where it looks", HOW_TO_READ, selection)
    with guard("running the model"):
        extraction = selection.extraction()
    allowed = _defaults(selection, extraction)
    left, right = st.columns([1, 1.4])
    with right:
        choice, opacity = _choose(selection, extraction, allowed)
    if opacity is None:
        return
    with left:
        _prediction(selection, extraction)
    result = _compute(selection, choice)
    if result is None:
        return
    base = export.export_filename(selection.model.name, choice.layer, selection.image_stem, "png").rsplit(".", 1)[0]
    _draw_map(selection, choice, result, opacity, base)
    _draw_sanity(selection, choice, result, opacity, base)


main()
