"""F-CAM Decoder: a trained U-Net decoder turns the classifier's coarse CAM into a full-resolution map.

For the sidebar's image: the low-resolution CAM, the seeds drawn from it, the decoder's foreground
map, CAM versus F-CAM with their boxes, and their value histograms (F-CAM Fig. 6); the decoder's
training curves and settings from its card; and a form that fits a decoder on your own data.
"""

import streamlit as st

from explorer import ui, views

state = ui.selection()
ui.require_classifier(state, "F-CAM")

st.title("F-CAM Decoder")
st.markdown(
    "A CAM is computed on a coarse grid (7×7 to 14×14 here) and usually *interpolated* to the image. "
    "F-CAM (Belharbi et al.) trains a small U-Net **decoder** on the frozen classifier's multi-scale features "
    "instead, from the classifier's own CAM only: a few pixels drawn each step from the CAM's confident "
    "foreground (above Otsu's threshold, eroded) and background (its lowest *n⁻* fraction) supervise it, a CRF "
    "loss makes pixels of similar colour nearby agree, and a log-barrier size constraint keeps both regions "
    "from collapsing. No box or mask is ever used."
)
choices, problems = ui.decoder_choices(state)
fallback = ui.fallback_decoder_backbone() if not choices else None
if fallback is not None and not ui.remembered("fcam.opened_on_decoder", False):
    # Once per session: a first visit lands where there is something to see, and says so.
    ui.remember("fcam.opened_on_decoder", True)
    ui.remember("fcam.switched_from", state.backbone.name)
    ui.request_backbone(fallback[0])
    st.rerun()
switched_from = ui.remembered("fcam.switched_from", None)
if switched_from and switched_from != state.backbone.name and choices:
    st.info(f"`{switched_from}` has no F-CAM decoder, so this page opened on `{state.backbone.name}`, whose best "
            f"decoder scored highest on its validation split. Pick another backbone in the sidebar at any time.")
    ui.remember("fcam.switched_from", None)
ui.context_banner(state)

for problem in problems:
    st.warning(problem)
if not choices:
    st.info(f"No F-CAM decoder is trained for `{state.backbone.name}` layer `{state.layer}` with these weights. "
            f"The shipped decoders belong to {', '.join(f'`{n}`' for n in ui.backbones_with_shipped_decoders())} "
            "(pick one in the sidebar and upload an image of the synthetic benchmark version it was trained on), "
            "or fit one below for this backbone.")
else:
    labels = {c.path: c.label for c in choices}
    default = ui.best_decoder(choices).path  # by validation score, so a first look shows the strongest
    path = ui.selectbox("Decoder", f"fcam.decoder.{state.backbone.name}.{state.layer}", list(labels), default,
                        format_func=labels.get)
    choice = next(c for c in choices if c.path == path)
    if ui.active_decoders(state).get(choice.base_method) != choice:
        st.button("Use this decoder on the other pages", on_click=ui.use_decoder, args=(state, choice),
                  help="Compare and the evaluation form then use it as the F-CAM upsampler.")
    card = choice.card
    draw = ui.number_input("Seed draw", "fcam.draw", 0, 10_000, 0,
                           help="The seeds are drawn anew at every training step; change this to see another draw.")
    view = ui.attempt("running the decoder", lambda: ui.fcam_view(state, choice, draw))
    if view is not None:
        base = state.seen
        h, w = view.grid.shape
        st.subheader("From coarse CAM to seeds to F-CAM")
        c1, c2, c3 = st.columns(3, gap="medium")
        with c1:
            st.plotly_chart(views.heatmap_figure(view.grid, title=f"{ui.method_name(choice.base_method)}: raw {h}×{w} grid",
                                                 class_name=state.target_name), theme=None)  # keep the scale's dark end
            st.caption("The classifier's own map at grid level: all the decoder is told about the object.")
        with c2:
            st.image(views.seed_picture(base, view.foreground, view.background, view.labels), width="stretch",
                     output_format="PNG",
                     caption=f"C⁺ (green: above Otsu, eroded) and C⁻ (blue: the lowest "
                             f"{card.get('settings', {}).get('n_negative', 0.3):.0%} of the CAM); ringed: the seed "
                             f"patches of draw {draw}, the only pixels that supervise one training step")
        with c3:
            st.image(views.overlay(base, view.fcam, views.ColourScale(0.0, 1.0, False)), width="stretch",
                     output_format="PNG", caption="F-CAM: the decoder's foreground probability (0 to 1, not normalised)")

        st.subheader("CAM versus F-CAM, with their boxes")
        val = card.get("val", {})
        eval_cam, eval_fcam = ui.evaluation_thresholds(choice)
        t1, t2 = st.columns(2)
        with t1:
            tau_cam = ui.slider("τ for the CAM", f"fcam.tau_cam.{choice.path}", 0.0, 0.99, round(float(
                eval_cam if eval_cam is not None else card.get("val_baseline", {}).get("best_threshold", 0.2)), 2),
                step=0.01, help="Default: the threshold at which the base CAM + bilinear scored its best MaxBoxAcc "
                                "in the evaluation that scored this decoder (else on the validation split).")
        with t2:
            tau_fcam = ui.slider("τ for the F-CAM", f"fcam.tau_fcam.{choice.path}", 0.0, 0.99, round(float(
                eval_fcam if eval_fcam is not None else val.get("best_threshold", 0.5)), 2),
                step=0.01, help="Default: the decoder's best-MaxBoxAcc threshold in the evaluation that scored it "
                                "(else on the validation split).")
        left, right = st.columns(2, gap="large")
        cam_boxes = ui.largest_box(view.cam_bilinear, tau_cam)
        fcam_boxes = ui.largest_box(view.fcam, tau_fcam)
        with left:
            picture = views.overlay(base, view.cam_bilinear)
            st.image(views.draw_boxes(picture, cam_boxes, (255, 40, 40)), width="stretch", output_format="PNG",
                     caption=f"{ui.method_name(choice.base_method)} + bilinear, min-max · box at τ = {tau_cam:.2f}")
        with right:
            picture = views.overlay(base, view.fcam, views.ColourScale(0.0, 1.0, False))
            st.image(views.draw_boxes(picture, fcam_boxes, (255, 40, 40)), width="stretch", output_format="PNG",
                     caption=f"F-CAM · box at τ = {tau_fcam:.2f}")
        edges, histograms = ui.value_histograms(view)
        st.plotly_chart(views.value_histogram_figure(edges, histograms, title="Map values over this image (F-CAM Fig. 6)"))
        st.caption("A CAM piles its values near 0 with a long tail, so its box depends delicately on τ; the "
                   "decoder's cross-entropy pushes values to 0 or 1, and the second mode near 1 makes the box "
                   "robust to τ.")
        st.dataframe([{"step": name, "milliseconds": round(1000 * seconds, 1)} for name, seconds in view.seconds.items()],
                     hide_index=True, width="content")

    st.subheader("How this decoder was trained")
    history = card.get("history") or []
    if history:
        st.plotly_chart(views.training_curve_figure(card.get("curve") or [], history, ui.steps_per_epoch(card)))
    m1, m2, m3 = st.columns(3)
    base_val = card.get("val_baseline", {})
    if "max_box_acc" in val:
        m1.metric("validation MaxBoxAcc", f"{val['max_box_acc']:.1f}",
                  delta=f"{val['max_box_acc'] - base_val.get('max_box_acc', val['max_box_acc']):+.1f} vs CAM + bilinear")
    if "pxap" in val:
        m2.metric("validation PxAP", f"{val['pxap']:.1f}",
                  delta=f"{val['pxap'] - base_val.get('pxap', val['pxap']):+.1f} vs CAM + bilinear")
    m3.metric("training time", f"{card.get('train_seconds', 0) / 60:.0f} min", help=card.get("device", ""))
    st.caption(f"Reproduce with `{card.get('command', '')}`")
    st.dataframe(ui.card_settings_rows(card), hide_index=True)

    st.subheader("How it scored on held-out images")
    scores = ui.decoder_test_rows(choice.path)
    if scores:
        st.dataframe(scores, hide_index=True)
        st.caption("From every finished evaluation that scored this decoder (listed on the metrics pages), beside "
                   "the same seeds upsampled without it and the protocol's centre Gaussian on the same images, "
                   "with 95 % bootstrap intervals over images; then the F-CAM paper's numbers for the same seeds "
                   "on real photos. A decoder below the centre baseline has not learnt where objects are.")
    else:
        st.info("No finished evaluation has scored this decoder yet. Score it with `python -m explorer evaluate "
                f"--backbone {card.get('backbone', state.backbone.name)} --methods {choice.base_method} --upsampler "
                f"bilinear,gaussian,fcam --decoder {choice.path} --out runs/<name>`.")

st.subheader("Fit a decoder on your own data")
job = ui.fcam_job()
with st.form("fcam.fit"):
    spec = st.text_input("Dataset", value="synthetic",
                         help="synthetic (the benchmark, generated on first use), or folder:<path> (photos only: each "
                              "image's CAM explains the classifier's top-1, the last epoch is kept; uploads/<name> "
                              "for a zip from 'Your data'), synthetic:<path>, cub:<root>, openimages:<root>.")
    f1, f2, f3 = st.columns(3)
    method = f1.selectbox("Base CAM", ui.available_methods(state), format_func=ui.method_name)
    epochs = f2.slider("Epochs", *ui.FCAM_FIT_EPOCHS)
    limit = f3.number_input("Training images (at most)", ui.FCAM_FIT_LIMIT[0], ui.FCAM_FIT_LIMIT[1],
                            ui.FCAM_FIT_LIMIT[2], step=1)
    submitted = st.form_submit_button("Fit a decoder", type="primary",
                                      disabled=job is not None and job.status in ("running", "queued"))
if submitted:
    problem = ui.dataset_problem(spec.strip())
    if problem:
        st.error(problem)
    else:
        job = ui.attempt("starting the fit",
                         lambda: ui.start_fcam_fit(state, spec.strip(), method, int(epochs), int(limit)))


@st.fragment(run_every=1.0)
def fit_progress() -> None:
    job = ui.fcam_job()
    if job is None:
        return
    job.touch()  # its owner is looking: the idle timeout starts again
    with st.container(border=True):
        st.markdown(f"**Fitting** a decoder for `{job.settings['backbone']}` from "
                    f"{ui.method_name(job.settings['base_method'])} on `{job.settings['spec']}`")
        if job.status in ("running", "queued"):
            st.progress(job.fraction, text=job.describe())
            st.button("Stop", key="fcam.stop", on_click=ui.stop_fcam_fit,
                      help="Stops after the current step; the run state is kept, so fitting the same settings "
                           "again continues it.")
        elif job.status == "done":
            st.success(f"Done: {job.out.name} is in the decoder list above, marked [yours] (kept in this session's "
                       "own folder; no other visitor sees it).")
            if not getattr(job, "announced", False):
                job.announced = True
                st.rerun(scope="app")  # the decoder list at the top of the page now includes it
        elif job.status == "stopped":
            st.info((job.note.capitalize() + ". " if job.note else "Stopped. ")
                    + "Fit the same settings again to continue from the last checkpoint.")
        else:
            st.error(job.error or "The fit failed.")
        for record in job.history:
            scores = ", ".join(f"{k[4:]} {v:.1f}" for k, v in record.items() if k.startswith("val_"))
            st.caption(f"epoch {record['epoch']}: loss {record.get('train_loss', float('nan')):.4f}"
                       + (f", validation {scores}" if scores else ""))


fit_progress()
