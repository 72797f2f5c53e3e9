"""Which typed config each preset section builds into: every stage's, plus the shared sections."""

from sweeps.stages import STAGES

SECTIONS = {info.section: info.config_class for info in STAGES.values()}


def _ladder():
    from analysis.config import Ladder
    return Ladder


def _eval():
    from analysis.config import EvalConfig
    return EvalConfig


# The op ladder is shared by every stage that names a split; evaluation is not (yet) a sweep stage.
SECTIONS.update({"ladder": _ladder, "eval": _eval})
