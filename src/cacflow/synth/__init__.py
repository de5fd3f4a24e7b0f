"""Synthetic NLST-style low-dose chest CT cohorts with exact ground truth.

Modules (each does one thing):

* :mod:`~cacflow.synth.shapes` - analytic signed-distance shapes (LPS mm).
* :mod:`~cacflow.synth.anatomy` - the chest phantom: tissues, heart, aorta, coronaries, plaques, distractors.
* :mod:`~cacflow.synth.acquisition` - scanner / protocol / storage / transfer-syntax draws.
* :mod:`~cacflow.synth.render` - slice grid, partial volume, kernel blur, noise, quantisation.
* :mod:`~cacflow.synth.scout` - localizer projections.
* :mod:`~cacflow.synth.dicom_writer` - pydicom datasets and lossless encodings.
* :mod:`~cacflow.synth.truth` - reference Agatston scores and the ``out/truth`` files.
* :mod:`~cacflow.synth.cohort` - orchestration; entry point :func:`cacflow.synth.cohort.generate_cohort`.
"""
