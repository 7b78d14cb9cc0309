"""Interpretability: what in an image drives a trained network's answer.

- ``saliency`` (:mod:`.saliency`): the gradient of the class score with respect to each input
  voxel;
- ``gradcam`` (:mod:`.gradcam`): a layer's feature maps weighted by their pooled gradients
  (the last convolution by default, :mod:`.layers`), upsampled onto the image;
- ``occlusion`` (:mod:`.occlusion`): the score drop when a sliding patch, or a known region,
  is hidden;
- ``tcav`` (:mod:`.tcav`, examples from :mod:`.concepts`): whether a concept (example images;
  lesion patches by default on segmentation data) drives a class, against random concepts.

Every method explains a *score* per class (:mod:`.scores`): a classifier's logit, or for
segmentation the class's logit summed over the region the network predicts. The ``explain``
command (:func:`.runner.explain`) loads a run, picks cases of a split, runs a method and writes
``RUN_DIR/explain/<method>/``. Captum computes saliency, Grad-CAM and occlusion.

This module imports nothing heavy, so the command line can read :data:`METHODS` cheaply.
"""

METHODS: tuple[str, ...] = ("saliency", "gradcam", "occlusion", "tcav")
"""The methods of ``explain --method``, the first the default."""
