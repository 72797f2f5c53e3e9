"""Which typed config each preset section builds into: every section a stage, the sweep machinery or `lab calibrate`
reads."""

from analysis.calibrate import CalibrateConfig
from sweeps.stages import STAGES, SWEEP_SECTIONS, _resolve

SECTIONS = {section: (lambda cls=cls: cls) for info in STAGES.values() for section, cls in info.sections()}
SECTIONS.update({section: (lambda path=path: _resolve(path)) for section, path in SWEEP_SECTIONS.items()})
SECTIONS["calibrate"] = lambda: CalibrateConfig  # no sweep step runs a calibration
