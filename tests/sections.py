"""Which typed config each preset section builds into: every section some stage reads."""

from sweeps.stages import STAGES

SECTIONS = {section: (lambda cls=cls: cls) for info in STAGES.values() for section, cls in info.sections()}
