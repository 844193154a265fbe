"""The command-line studies, one module (or package) per seed paper, over :mod:`.scaffold`.

``compare`` (seed 000, package: options / protocol / figures), ``bitflip`` (001), ``bnn`` (002),
``analog`` (003), ``resilience`` (004). Studies never import each other: what they share is in
:mod:`.scaffold` (options, presets, output folder, errors, plots) and :mod:`spikenoise.data`
(loaders). Adding a study: one new module here and one line in ``spikenoise.cli.COMMANDS``.
"""
