"""nnU-Net v2 as the GPU road: export LNQ data or a workspace as an nnU-Net raw dataset, and predict with a
trained nnU-Net model folder through the same :class:`~lnq_napari.inference.Prediction` as ours.

The export needs no nnU-Net; the predictor backend and the fine-tune need the ``[nnunet]`` extra
(``nnunetv2``), imported lazily (:mod:`lnq_napari.nnunet.deps`).
"""
