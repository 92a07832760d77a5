"""Analyzers read videos back and measure them, where the generic metrics (FID, FVD, CLIPSIM in
``magicvideo/metrics.py``) need feature networks or say nothing about the prompt:

* ``shapes``: the shapes domain's analyzer: the object's color, shape, direction, displacement,
  jitter and flicker read from the frames, scored against the prompt (``analyze_video``, ``score``);
* ``reconstruction``: a decoded video against its reference, any domain (``psnr``, ``dithering``).
"""
