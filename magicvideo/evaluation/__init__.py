"""The measurements behind the figures we publish, each runnable and each writing its figures
as JSON with ``--out`` (the files beside the README and docs tables):

    python -m magicvideo.evaluation.keyframes    --out eval_metrics.json     # keyframe model, shapes analyzer
    python -m magicvideo.evaluation.cascade      --out cascade_metrics.json  # VideoVAE, interpolation, SR, speed
    python -m magicvideo.evaluation.applications --out applications.json     # animate, vary, edit, long videos
    python -m magicvideo.evaluation.dithering    --out dithering.json        # where the VideoVAE's dithering lies

Each takes ``--pipeline DIR`` (default: the shipped one); the first three print their figures
next to the targets we set ourselves and exit 1 when one is missed. ``magicvideo evaluate``
(FID, FVD, CLIPSIM of any videos) is ``magicvideo/metrics.py``; the analyzers that read the
videos are in ``magicvideo/analyzers/``.
"""
