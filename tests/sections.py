"""Which typed config each preset section builds into: every section a stage or the sweep machinery reads."""

from sweeps.stages import STAGES, SWEEP_SECTIONS, _resolve

SECTIONS = {section: (lambda cls=cls: cls) for info in STAGES.values() for section, cls in info.sections()}
SECTIONS.update({section: (lambda path=path: _resolve(path)) for section, path in SWEEP_SECTIONS.items()})
