"""Where it looks: the prediction, a class activation map (the method chosen) for one class or score, what
fires at the same layer, and the sanity check "Does this depend on the model?"."""

from __future__ import annotations

from typing import Any

import streamlit as st

from featviz_core import export, figures
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
from ui.router import ensure_routed
from ui.sidebar import page_header
from ui.state import Selection, current

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
    channels = next((i.shape[0] for i in selection.layers if i.name == layer and i.shape), 0)
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
        if st.button("Stop", key=f"stop_{job.key}", icon=":material/stop:"):
            jobs.stop(job.key)
    elif job.state == "failed":
        st.error(job.error or "This could not be computed.", icon=":material/error:")


def _slow(key: str, label: str, total: int, fn: Any, *, start: bool) -> Any:
    """The result of the background job ``key`` when it is done; else None, with its progress (or why it
    stopped) drawn. A rerun finds the same job; a stopped or failed one starts again only when asked."""
    state = st.session_state
    job = jobs.get(key)
    again = state.get("_restart") == key
    if (job is None and start) or (job is not None and again and job.state in ("stopped", "failed")):
        state.pop("_restart", None)
        job = jobs.start(key, fn, label=label, owner=jobs.session_id(), page=PAGE, total=total)
    if job is None:
        return None
    if job.state == "done":
        return job.result
    if job.state in ("stopped", "failed"):
        if job.state == "stopped":
            st.info(f"Stopped: {job.stop_reason}.", icon=":material/stop_circle:")
        else:
            st.error(job.error or "This could not be computed.", icon=":material/error:")
        if st.button("Run it again", key=f"again_{key}", icon=":material/replay:"):
            state["_restart"] = key
            st.rerun()
        return None
    jobs.watch(key, _progress)
    return None


def _overlay(
    view: Any, result: CamResult, title: str, key: str, filename: str, opacity: float, height: int | None = None
) -> None:
    st.plotly_chart(
        figures.overlay_figure(view, result.normalized, opacity=opacity, colorscale="Turbo", zrange=(0.0, 1.0),
                               title=title, colorbar_title="share of the strongest push (0–1)", height=height),
        width="stretch", key=key, config=export.plotly_config(filename),
    )


def _sanity(selection: Selection, result: CamResult, target: CamTarget | None, opacity: float, base: str) -> None:
    model = selection.model
    st.subheader("Does this depend on the model?")
    st.caption("The same map on a copy of the model whose layers, from the output down to this layer, get "
               "random weights. The copy is private to this check and freed afterwards.")
    if not model.supports_gradients:
        st.info("This check replaces the model's weights inside PyTorch; a model run by onnxruntime cannot be "
                "checked this way.", icon=":material/info:")
        return
    method = METHODS[result.method]
    class_index = None if target is not None else result.class_index
    args = (selection.image_digest, model.key, result.layer, class_index, result.method,
            target.key if target is not None else "", 0)
    check: SanityResult | None = None
    with guard("checking the map against a randomised model", stop=False):
        if method.many_passes:
            key = "sanity|" + cache.cam_key(*args[:3], class_index, result.method, target)
            asked = st.session_state.get("_sanity_asked") == key
            check = _slow(key, f"{result.method} sanity", 0, lambda progress: sanity_check(
                model, selection.image, result.layer, class_index, result.method, target=target,
                original=result, progress=progress), start=asked)
            if check is None and jobs.get(key) is None and st.button(
                f"Run the check ({result.weights.shape[0]} more forward passes)", icon=":material/science:",
                help=f"{method.title} runs the model once per channel; the check does it again on the copy.",
            ):
                st.session_state["_sanity_asked"] = key
                st.rerun()
        else:
            with st.spinner("Randomising a copy of the model and computing the map again…"):
                check = cache.sanity(*args, model, selection.image, target, result)
    if check is None:
        return
    VERDICT[check.level](check.verdict, icon=ICONS[check.level])
    m1, m2, m3 = st.columns([1, 1, 2])
    m1.metric("Rank correlation", f"{check.spearman:.2f}" if check.spearman == check.spearman else "—",
              help="Spearman: 1 = both maps rank the places in the same order, 0 = no relation.")
    m2.metric("SSIM", f"{check.ssim:.2f}", help="Structural similarity: 1 = the same picture, 0 = unrelated.")
    m3.caption(f"Re-initialised (seed {check.seed}): {', '.join(check.randomized_modules)}.")
    view = model.model_view(selection.image)
    c1, c2 = st.columns(2)
    with c1:
        _overlay(view, check.original, "The model", "sanity_model", f"{base}_sanity_model", opacity, 420)
    with c2:
        _overlay(view, check.randomized, "The same map, model randomised", "sanity_random",
                 f"{base}_sanity_randomised", opacity, 420)


def main() -> None:
    selection = current()
    page_header("Where it looks", HOW_TO_READ, selection)
    model = selection.model
    state = st.session_state
    with guard("running the model"):
        result = selection.extraction()
    top = result.top_k(5)
    layer_names = [info.name for info in selection.layers]
    labels = {info.name: info.label for info in selection.layers}
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
    top_indices = result.top_k_indices(5)
    if top and (state.get("_cam_for") != (model.key, selection.image_digest) or state.get("cam_class") not in top_indices):
        state["_cam_for"] = (model.key, selection.image_digest)
        state["cam_class"] = top_indices[0]

    left, right = st.columns([1, 1.4])
    target: CamTarget | None = None
    class_index: int | None = None
    with right:
        if top:
            class_index = int(st.radio(
                "Explain which guess?", top_indices, key="cam_class",
                format_func=lambda i: f"{result.category(i)} ({result.probabilities[i] * 100:.1f}%)",
                help="The map shows the image regions that push the model towards this one class.",
            ))
        else:
            target = _target_picker(selection)
            if target is None:
                state["_cam_target"] = None
                return
        state["_cam_target"] = target
        cam_layer = st.selectbox(
            "At which layer?", layer_names, key="cam_layer", format_func=labels.get,
            help="Deeper layers give the most meaningful maps (default: the last block before the classifier). "
            "Earlier layers are sharper but less about the class.",
        )
        method = st.selectbox("Which method?", allowed, key="cam_method",
                              format_func=lambda m: CAM_METHODS[m].replace(": ", " — ", 1),
                              help="\n\n".join(f"**{METHODS[m].title}**: {METHODS[m].summary}" for m in METHODS))
        st.caption(_cost(METHODS[method], cam_layer, selection))
        state.setdefault("cam_opacity", 0.8)
        opacity = st.slider("Overlay strength", 0.0, 1.0, step=0.05, key="cam_opacity",
                            help="0 shows only your image, 1 only the map.")
    with left:
        if top:
            st.plotly_chart(figures.probability_figure(top, title="The model's top 5 guesses"), width="stretch",
                            key="cam_probs")
        else:
            st.markdown("**What the model outputs** (it is not a classifier):")
            st.markdown("\n".join(f"- {o.label}" for o in describe_outputs(model)))

    cls = METHODS[method]
    cam_result: CamResult | None = None
    with guard("computing where the model looks"):
        if cls.many_passes:
            channels = next((i.shape[0] for i in selection.layers if i.name == cam_layer and i.shape), 0)
            key = cache.cam_key(selection.image_digest, model.key, cam_layer, class_index, method, target)
            cam_result = _slow(key, f"{method} {cam_layer}", channels, lambda progress: cache.compute_cam(
                model, selection.image, cam_layer, class_index, method, target=target, progress=progress), start=True)
        else:
            with st.spinner("Tracing the decision back through the network…"):
                cam_result = cache.cam(selection.image_digest, model.key, cam_layer, class_index, model,
                                       selection.image, method, target.key if target else "", target)
    if cam_result is None:
        return
    view = model.model_view(selection.image)
    base = export.export_filename(model.name, cam_layer, selection.image_stem, "png").rsplit(".", 1)[0]
    c1, c2 = st.columns(2)
    with c1:
        _overlay(view, cam_result, f"What drives “{cam_result.class_name}”", "cam_overlay",
                 f"{base}_{method}_{'class' + str(cam_result.class_index) if target is None else target.key}", opacity)
        peak = float(cam_result.cam.max())
        st.caption(f"{cls.title} at {cam_layer} ({cam_result.shape[1]}×{cam_result.shape[0]} cells); the score "
                   f"explained is {cam_result.score:.3g} (the model's raw output, before probabilities). " + ("No area pushes towards this score at this layer." if peak == 0
                                                  else "1 = the area that pushes hardest; hover for each cell's value."))
    with c2:
        st.plotly_chart(
            figures.overlay_figure(
                view, cam_result.activations_mean, opacity=opacity, colorscale="Viridis",
                title="What fires at this layer (all channels averaged)", colorbar_title="mean activation",
            ),
            width="stretch", key="cam_mean", config=export.plotly_config(f"{base}_mean_activation"),
        )
        st.caption("The average over the layer's channels, whatever the class: where the layer responds at all.")
    _sanity(selection, cam_result, target, opacity, base)


main()
