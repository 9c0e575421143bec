"""``rollout demo``: the whole loop on the embedded default (see :mod:`rollout.demo.run`)."""
